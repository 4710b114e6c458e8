// Types of the raw binding, build/Release/hypha_native.node (native/src/*.c).
// This file describes exactly what the C code accepts and returns; keep the two in
// step. Conveniences live in index.ts.

/** Opaque, type-tagged handles. Each kind owns kernel resources (fds, a loaded
 * object, a poller thread); `close()` releases them, the GC does so for handles
 * that are dropped unclosed. Passing a handle of the wrong kind throws
 * EBADHANDLE; using a closed one throws ECLOSED. */
export type ObjectHandle = { readonly __brand: 'hypha.ObjectHandle' };
export type MapHandle = { readonly __brand: 'hypha.MapHandle' };
export type ProgHandle = { readonly __brand: 'hypha.ProgHandle' };
export type RingbufHandle = { readonly __brand: 'hypha.RingbufHandle' };
/** A NETLINK_ROUTE socket; it stays in the network namespace it was opened in. */
export type NetlinkHandle = { readonly __brand: 'hypha.NetlinkHandle' };
export type Handle = ObjectHandle | MapHandle | ProgHandle | RingbufHandle | NetlinkHandle;

/** Codes that are not errno names. */
export type NativeErrorSpecialCode =
  | 'EBADHANDLE' // not a handle, or a handle of the wrong kind (a TypeError)
  | 'ECLOSED' // the handle was closed
  | 'EINVALARG' // bad argument type, size or value (a TypeError)
  | 'EHANDLEBUSY' // the handle is in use by an async operation (a load, a netlink transact)
  | 'ENAPI'; // a Node-API call failed (a bug)

/** Every error the addon throws or rejects with. */
export interface NativeError extends Error {
  /** errno name ('ENOENT', 'E2BIG', 'EACCES', 'ENOTSUPP', ...) or a NativeErrorSpecialCode. */
  readonly code: string;
  /** Positive errno; 0 for the special codes. */
  readonly errno: number;
  /** The libbpf or syscall function that failed, or the addon function for bad arguments. */
  readonly op: string;
  /** loadObject: the failing program's full verifier log ('' when no program failed). */
  readonly verifierLog?: string;
  /** openObject, loadObject, ringbufOpen, XDP and TC calls: libbpf's own warnings. */
  readonly libbpfLog?: string;
  /** loadObject: name of the program the verifier rejected. */
  readonly program?: string;
  /** mapUpdateBatch / mapDeleteBatch: entries handled before the failure. */
  readonly processed?: number;
}

export interface OpenObjectOptions {
  /** Directory for maps declared with LIBBPF_PIN_BY_NAME: reused if pinned there, pinned there otherwise. */
  pinRoot?: string;
  /** New max_entries per map name, applied before load. Unknown names throw EINVALARG. */
  maxEntries?: Record<string, number>;
}

export interface ObjectMapDescription {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export interface ObjectProgramDescription {
  name: string;
  section: string;
  type: number;
}

export interface MapCreateOptions {
  name?: string;
  flags?: number;
}

export interface MapInfo {
  id: number;
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Per-CPU map: values are `possibleCpus` slots of valueSize rounded up to 8 bytes. */
  perCpu: boolean;
  possibleCpus: number;
}

/** Entries side by side: key i is keys[i*keySize ..], value i is values[i*valueLen ..]
 * (valueLen is valueSize, or for per-CPU maps roundUp(valueSize, 8) * possibleCpus). */
export interface MapDump {
  keys: Uint8Array<ArrayBuffer>;
  values: Uint8Array<ArrayBuffer>;
  count: number;
}

export interface SweepOptions {
  /** Byte offset, in the swept map's value, of a u32 deadline: seconds of
   * CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns() / 1e9), compared with
   * wrap-around. An entry whose deadline is past is nominated. */
  expiresOffset: number;
  /** Entries per BPF_MAP_LOOKUP_BATCH call, 1..2^20 (default 4096). */
  batch?: number;
  /** Nominated keys per program run, 1..the keys map's size (default: its size). */
  perRun?: number;
}

export interface SweepResult {
  /** entries read (a map that changes meanwhile may show one twice or not at all) */
  visited: number;
  /** entries whose deadline was past when read: handed to the program */
  nominated: number;
  /** the sum of the program's return values */
  deleted: number;
  /** BPF_MAP_LOOKUP_BATCH calls */
  lookups: number;
  /** program runs */
  runs: number;
  /** the longest single kernel call (lookup, key update or run), wall clock */
  maxCallNs: number;
  /** the most CPU time (this thread's) one kernel call took: what it held a CPU
   * for, without the time it waited for one on a busy machine */
  maxCallCpuNs: number;
  /** the longest program run, as the kernel timed it */
  maxRunNs: number;
  /** the whole sweep, wall clock */
  durationNs: number;
  /** the whole sweep, CPU time of the thread that ran it (user and kernel) */
  cpuNs: number;
}

export interface TestRunOptions {
  data: Uint8Array;
  /** Runs (default 1); durationNs is the average per run. */
  repeat?: number;
  ctxIn?: Uint8Array;
  /** Room for ctxOut; ctxOut is returned only when this is given. */
  ctxOutSize?: number;
  /** Room for dataOut (default data.length + 256, so programs can grow packets). */
  dataOutSize?: number;
  flags?: number;
}

export interface TestRunResult {
  retval: number;
  durationNs: number;
  /** The packet after the run, exactly as long as the kernel reports. */
  dataOut: Uint8Array<ArrayBuffer>;
  ctxOut?: Uint8Array<ArrayBuffer>;
}

export interface ProgInfo {
  id: number;
  type: number;
  name: string;
  /** 16 hex digits. */
  tag: string;
}

export type XdpMode = 'native' | 'generic' | 'auto';

export interface XdpAttachOptions {
  /** native = driver mode, generic = skb mode, auto (default) = kernel's choice. */
  mode?: XdpMode;
  /** Swap atomically, and only if this program is the one attached now (EEXIST otherwise). */
  replaceProgId?: number;
}

export interface XdpDetachOptions {
  mode?: XdpMode;
}

export interface XdpQueryResult {
  /** The attached program's id, 0 when none. */
  progId: number;
  /** 'offload' (hardware) and 'multi' (driver and generic at once) are rare but possible. */
  mode: 'native' | 'generic' | 'offload' | 'multi' | 'none';
  nativeProgId: number;
  genericProgId: number;
}

export type TcDirection = 'ingress' | 'egress';

export interface TcOptions {
  /** Filter handle, default 1. */
  handle?: number;
  /** Filter priority in [1, 65535], default 1. */
  priority?: number;
}

export interface TcQueryResult {
  progId: number;
}

export interface NetlinkTransactOptions {
  /** After a request fails, send none of the rest (they come back skipped). Default true. */
  stopOnError?: boolean;
  /** How long to wait for the kernel's answer to each request, in ms (1 to 3 600 000,
   * default 30 000). A request that times out has errno ETIMEDOUT; its late answer
   * is recognised by its sequence number and ignored. */
  timeoutMs?: number;
}

/** What the kernel answered to one request. */
export interface NetlinkReply {
  /** 0: acknowledged (or the dump completed). Otherwise the positive errno from
   * NLMSG_ERROR / NLMSG_DONE, or of a failed send/receive: ENOBUFS when the kernel
   * dropped messages for this socket (a dump's `messages` are then incomplete),
   * ETIMEDOUT, ECANCELED for a skipped request. */
  errno: number;
  /** errno name ('EEXIST', 'ENOTSUPP', ...), when errno is not 0. */
  code?: string;
  /** strerror text ('File exists'), when errno is not 0. */
  strerror?: string;
  /** The kernel's extended ACK message (NLMSGERR_ATTR_MSG), also on success (a warning). */
  extack?: string;
  /** NLMSGERR_ATTR_OFFS: byte offset in the request of the attribute the kernel refused. */
  extackOffset?: number;
  /** Not sent, because an earlier request failed and stopOnError was on (errno ECANCELED). */
  skipped?: true;
  /** A dump message carried NLM_F_DUMP_INTR: the table changed while it was dumped;
   * the result may be inconsistent, dump again. */
  interrupted?: true;
  /** Reply messages (each a whole message with its nlmsghdr) other than the final
   * ACK/DONE: the answer of a GET, every part of a dump. Views into one buffer. */
  messages: Uint8Array<ArrayBuffer>[];
}

type Group<K extends string> = { readonly [name in K]: number };

/** Kernel constants, read from the UAPI headers when the addon was built. */
export interface NativeConstants {
  readonly mapTypes: Group<
    | 'HASH' | 'ARRAY' | 'PROG_ARRAY' | 'PERF_EVENT_ARRAY' | 'PERCPU_HASH' | 'PERCPU_ARRAY'
    | 'STACK_TRACE' | 'CGROUP_ARRAY' | 'LRU_HASH' | 'LRU_PERCPU_HASH' | 'LPM_TRIE'
    | 'ARRAY_OF_MAPS' | 'HASH_OF_MAPS' | 'DEVMAP' | 'SOCKMAP' | 'CPUMAP' | 'XSKMAP' | 'SOCKHASH'
    | 'CGROUP_STORAGE' | 'REUSEPORT_SOCKARRAY' | 'PERCPU_CGROUP_STORAGE' | 'QUEUE' | 'STACK'
    | 'SK_STORAGE' | 'DEVMAP_HASH' | 'STRUCT_OPS' | 'RINGBUF' | 'INODE_STORAGE' | 'TASK_STORAGE'
    | 'BLOOM_FILTER' | 'USER_RINGBUF'
  >;
  readonly progTypes: Group<
    | 'SOCKET_FILTER' | 'KPROBE' | 'SCHED_CLS' | 'SCHED_ACT' | 'TRACEPOINT' | 'XDP' | 'PERF_EVENT'
    | 'CGROUP_SKB' | 'CGROUP_SOCK' | 'LWT_IN' | 'LWT_OUT' | 'LWT_XMIT' | 'SOCK_OPS' | 'SK_SKB'
    | 'CGROUP_DEVICE' | 'SK_MSG' | 'RAW_TRACEPOINT' | 'CGROUP_SOCK_ADDR' | 'LWT_SEG6LOCAL'
    | 'LIRC_MODE2' | 'SK_REUSEPORT' | 'FLOW_DISSECTOR' | 'CGROUP_SYSCTL'
    | 'RAW_TRACEPOINT_WRITABLE' | 'CGROUP_SOCKOPT' | 'TRACING' | 'STRUCT_OPS' | 'EXT' | 'LSM'
    | 'SK_LOOKUP' | 'SYSCALL'
  >;
  readonly updateFlags: Group<'ANY' | 'NOEXIST' | 'EXIST' | 'LOCK'>;
  readonly mapFlags: Group<
    | 'NO_PREALLOC' | 'NO_COMMON_LRU' | 'NUMA_NODE' | 'RDONLY' | 'WRONLY' | 'ZERO_SEED'
    | 'RDONLY_PROG' | 'WRONLY_PROG' | 'MMAPABLE' | 'INNER_MAP'
  >;
  readonly testRunFlags: Group<'RUN_ON_CPU' | 'XDP_LIVE_FRAMES'>;
  readonly xdpActions: Group<'ABORTED' | 'DROP' | 'PASS' | 'TX' | 'REDIRECT'>;
  readonly tcActions: Group<
    'UNSPEC' | 'OK' | 'RECLASSIFY' | 'SHOT' | 'PIPE' | 'STOLEN' | 'QUEUED' | 'REPEAT' | 'REDIRECT' | 'TRAP'
  >;
}

/** The binding object. Functions throw (or reject with) a NativeError. */
export interface SockOptions {
  transparent?: boolean;
  mark?: number;
}

export interface HyphaNative {
  readonly constants: NativeConstants;

  /** Closes any handle; closing twice is fine. A ringbuf close stops and joins its thread. */
  close(handle: Handle): void;

  // objects
  openObject(path: string, opts?: OpenObjectOptions): ObjectHandle;
  /** Loads on a worker thread; rejects (never throws) with verifierLog and libbpfLog
   * attached. While loading, other calls on obj throw EHANDLEBUSY; close(obj) is deferred
   * until the load ends. An object loads once; after a failed load, open it again. */
  loadObject(obj: ObjectHandle): Promise<void>;
  objectMaps(obj: ObjectHandle): ObjectMapDescription[];
  objectPrograms(obj: ObjectHandle): ObjectProgramDescription[];
  /** After load. The handle has its own fd and outlives the object. ENOENT for unknown names. */
  objectMap(obj: ObjectHandle, name: string): MapHandle;
  objectProgram(obj: ObjectHandle, name: string): ProgHandle;

  // maps
  mapCreate(type: number, keySize: number, valueSize: number, maxEntries: number, opts?: MapCreateOptions): MapHandle;
  openPinnedMap(path: string): MapHandle;
  pin(handle: MapHandle | ProgHandle, path: string): void;
  mapInfo(map: MapHandle): MapInfo;
  /** Put `inner` into `slot` of the array of maps `outer` (null: empty the slot).
   * A lookup of a slot from userspace gives the inner map's id. */
  mapSetInner(outer: MapHandle, slot: number, inner: MapHandle | null): void;
  /** undefined when the key is missing. */
  mapLookup(map: MapHandle, key: Uint8Array): Uint8Array<ArrayBuffer> | undefined;
  /** flags: 0 any, 1 noexist, 2 exist (constants.updateFlags). */
  mapUpdate(map: MapHandle, key: Uint8Array, value: Uint8Array, flags?: number): void;
  /** false when the key was missing. */
  mapDelete(map: MapHandle, key: Uint8Array): boolean;
  /** null: the first key. undefined: no further key. */
  mapGetNextKey(map: MapHandle, key: Uint8Array | null): Uint8Array<ArrayBuffer> | undefined;
  /** keys/values hold count entries side by side. With flags ANY (or LOCK) this is one
   * kernel batch call; NOEXIST/EXIST (which the kernel's batch call refuses) and map
   * types without batch support go entry by entry. On failure the error's
   * `processed` says how many entries were written. */
  mapUpdateBatch(map: MapHandle, keys: Uint8Array, values: Uint8Array, count: number, flags?: number): void;
  /** Returns how many were deleted; missing keys are skipped. */
  mapDeleteBatch(map: MapHandle, keys: Uint8Array, count: number): number;
  /** All entries: bpf_map_lookup_batch in chunks of 4096, or get_next_key + lookup
   * for map types without batch lookup (LPM tries). Entries added or removed while
   * dumping may or may not appear; nothing fails because of them. */
  mapDump(map: MapHandle): MapDump;
  /** mapDump on a worker thread (on its own dup of the map fd, so close(map) meanwhile
   * is safe); rejects, never throws. */
  mapDumpAsync(map: MapHandle): Promise<MapDump>;
  /** Delete expired entries in bounded steps, on a worker thread (own dups of the
   * fds): read `map` with BPF_MAP_LOOKUP_BATCH, `batch` entries per call, nominate
   * the entries whose deadline is past, write up to `perRun` of their keys at
   * indexes 0..n-1 of `keys` (an array map whose value is one of map's keys) and
   * test-run `prog` with a 64-byte input starting with n (u32, host order). The
   * program must re-check and delete each nominee itself (a nomination comes from a
   * copy that may be stale) and return how many it deleted. Per-CPU maps are
   * refused. Rejects, never throws; a failure after some runs carries `visited` and
   * `deleted` (what was done before it). */
  mapSweepAsync(map: MapHandle, keys: MapHandle, prog: ProgHandle, opts: SweepOptions): Promise<SweepResult>;

  // programs
  /** BPF_PROG_TEST_RUN, synchronously. Signals are held off on this thread while it
   * runs (the kernel would abort a repeat loop with EINTR); a run interrupted anyway is
   * retried, so side effects of the interrupted part may be counted twice. */
  progTestRun(prog: ProgHandle, opts: TestRunOptions): TestRunResult;
  /** The same run on a worker thread (the event loop goes on), for programs that
   * take long. No ctx: ctxIn/ctxOutSize are refused (EINVALARG). */
  progTestRunAsync(prog: ProgHandle, opts: Omit<TestRunOptions, 'ctxIn' | 'ctxOutSize'>): Promise<Omit<TestRunResult, 'ctxOut'>>;
  progInfo(prog: ProgHandle): ProgInfo;

  // links (act on the calling thread's network namespace)
  ifNameToIndex(name: string): number;
  ifIndexToName(ifindex: number): string;
  xdpAttach(ifindex: number, prog: ProgHandle, opts?: XdpAttachOptions): void;
  xdpDetach(ifindex: number, opts?: XdpDetachOptions): void;
  xdpQuery(ifindex: number): XdpQueryResult;
  tcAttach(ifindex: number, direction: TcDirection, prog: ProgHandle, opts?: TcOptions): void;
  /** A bpf_link from a cgroup's socket-address hook to prog, pinned at linkPin (an existing link there gets prog instead). */
  cgroupAttach(prog: ProgHandle, cgroupPath: string, attachType: 'connect4' | 'sendmsg4' | 'recvmsg4' | 'getpeername4', linkPin: string): void;
  /** The calling thread's network namespace cookie (SO_NETNS_COOKIE). */
  netnsCookie(): bigint;
  /** IP_TRANSPARENT and SO_MARK on a socket the caller owns (CAP_NET_ADMIN). */
  sockSetOpts(fd: number, opts: SockOptions): void;
  /** A new non-blocking, close-on-exec IPv4 TCP socket with opts set, then bound
   *  to opts.bind when given; the caller owns the fd (net.Socket({ fd }) takes it). */
  tcpSocket4(opts: SockOptions & { bind?: { address: string; port?: number } }): number;
  /** false when no such filter (or no clsact qdisc) existed. */
  tcDetach(ifindex: number, direction: TcDirection, opts?: TcOptions): boolean;
  /** undefined when no such filter (or no clsact qdisc) exists. */
  tcQuery(ifindex: number, direction: TcDirection, opts?: TcOptions): TcQueryResult | undefined;

  // ring buffers
  /** A poller thread delivers copies of records on the JS thread, in order, until
   * close(). While open the subscription keeps the event loop and itself alive, like
   * a socket (dropping the handle does not stop it). A slow consumer holds records
   * back in the kernel ring (producers then see it full) rather than queueing without
   * bound. An exception thrown by onRecord becomes an uncaught exception. */
  ringbufOpen(map: MapHandle, onRecord: (data: Uint8Array<ArrayBuffer>) => void): RingbufHandle;

  // rtnetlink
  /** A NETLINK_ROUTE socket in the network namespace at netnsPath (a /run/netns/<name>
   * file, /proc/<pid>/ns/net, or /proc/<pid>/fd/<n> of an open nsfs fd), or in the
   * caller's namespace when netnsPath is undefined or null. The socket is made on a
   * short-lived thread that enters the namespace and exits, so no thread of the
   * process changes namespace. 4 MiB receive buffer, extended ACKs, capped ACKs,
   * strict checking of GET requests. ENOENT (open) names a missing path; EINVAL (setns)
   * one that is no network namespace. */
  netlinkOpen(netnsPath?: string | null): NetlinkHandle;
  /** Sends each message (a complete netlink message: nlmsghdr + payload, nlmsg_len
   * equal to its length) in turn on a worker thread, after setting its nlmsg_seq and
   * NLM_F_REQUEST | NLM_F_ACK, and waits for its final status (NLMSG_ERROR, or
   * NLMSG_DONE for a dump) before sending the next. One reply per message, in order.
   * Kernel errors are in the replies, not thrown. Rejects (never throws) for bad
   * arguments (EINVALARG: not an array, a message under 16 bytes or over 1 MiB,
   * nlmsg_len not its length; at most 4096 messages), a closed handle (ECLOSED) and
   * a transact already running on the handle (EHANDLEBUSY). close(h) meanwhile is
   * deferred until it ends. */
  netlinkTransact(h: NetlinkHandle, messages: readonly Uint8Array[], opts?: NetlinkTransactOptions): Promise<NetlinkReply[]>;
}
