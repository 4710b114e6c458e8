// rtnetlink for the agent: pod veths created with the peer directly in the pod's
// namespace, addresses, routes, neighbours, VXLAN devices and their FDB, without
// ever running `ip`. One Rtnl is one NETLINK_ROUTE socket in one network namespace
// (native netlinkOpen); its requests run one at a time, in call order, each on a
// worker thread (native netlinkTransact). Messages are made and read by
// rtnl-codec.ts.
//
//   const host = Rtnl.open();                      // the agent's namespace
//   const pod = Rtnl.open('/run/netns/cni-1234');  // a pod's
//   const fd = fs.openSync('/run/netns/cni-1234', 'r');
//   await host.vethCreate({ name: 'lxc1a2b', peerName: 'eth0', peerNetnsFd: fd });
//   fs.closeSync(fd);
//
// Failures are RtnlError with the errno name as `code` (classify with
// isRtnlError(err, 'EEXIST')), the request as `op`, the kernel's extended ACK as
// `extack`, and a message naming the object and the namespace. Deletes of what is
// not there return false instead.
import { closeSync, openSync } from 'node:fs';

import * as native from '../../native/index.ts';
import type { NetlinkTransactOptions } from '../../native/index.ts';
import * as codec from './rtnl-codec.ts';
import { RtnlError, isRtnlError } from './rtnl-codec.ts';
import type {
  AddrInfo,
  FdbEntry,
  FdbInfo,
  FibRule,
  LinkInfo,
  LinkRef,
  Neigh,
  NeighInfo,
  Route,
  RouteFilter,
  RtnlReply,
  RtnlRequest,
  VethCreateOptions,
  VxlanCreateOptions,
} from './rtnl-codec.ts';

export { RtnlError, isRtnlError, RT_TABLE_LOCAL, RT_TABLE_MAIN, RTPROT_BOOT, VXLAN_DEFAULT_PORT } from './rtnl-codec.ts';
export type {
  AddrInfo,
  FdbEntry,
  FdbInfo,
  FibRule,
  LinkInfo,
  LinkRef,
  Neigh,
  NeighInfo,
  NeighStateName,
  OperState,
  Route,
  RouteFilter,
  RouteTypeName,
  RtnlReply,
  RtnlRequest,
  RtnlSpecialCode,
  ScopeName,
  VethCreateOptions,
  VxlanCreateOptions,
  VxlanInfo,
} from './rtnl-codec.ts';

export interface VxlanOptions extends Omit<VxlanCreateOptions, 'devIndex'> {
  /** The underlying device (IFLA_VXLAN_LINK), by ifindex or name (a name costs one lookup). */
  dev?: LinkRef;
}

/** What Rtnl needs of a netlink socket: native netlinkTransact/close on one handle. */
export interface RtnlTransport {
  transact(messages: readonly Uint8Array[], opts?: NetlinkTransactOptions): Promise<RtnlReply[]>;
  close(): void;
}

/** A dump whose table changed meanwhile (NLM_F_DUMP_INTR) is taken again, this often. */
const DUMP_ATTEMPTS = 3;
/** Messages per netlinkTransact (the addon's limit). */
const BATCH_MAX = 4096;

export class Rtnl {
  /** The namespace path given to open(); undefined for the caller's namespace. Named in errors. */
  readonly netns: string | undefined;
  readonly #transport: RtnlTransport;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Calls made and not finished. */
  #active = 0;

  /** No I/O: wraps an open transport (see Rtnl.open). */
  constructor(transport: RtnlTransport, opts: { netns?: string } = {}) {
    this.#transport = transport;
    this.netns = opts.netns;
  }

  /** A socket in the namespace at netnsPath (/run/netns/<name>, /proc/<pid>/ns/net), or in
   * the caller's. Throws RtnlError ENOENT (no such path) or EINVAL (not a network namespace). */
  static open(netnsPath?: string): Rtnl {
    let h: native.NetlinkHandle;
    try {
      h = native.netlinkOpen(netnsPath);
    } catch (err) {
      const e = err as native.NativeError;
      const where = netnsPath === undefined ? '' : ` netns ${netnsPath}`;
      throw new RtnlError(
        { code: e.code ?? 'EIO', errno: e.errno ?? 0, op: e.op ?? 'netlinkOpen', object: netnsPath === undefined ? '' : `netns ${netnsPath}` },
        `rtnl open${where}: ${e.message}`,
        { cause: err },
      );
    }
    return new Rtnl(
      {
        transact: (messages, opts) => native.netlinkTransact(h, messages, opts),
        close: () => native.close(h),
      },
      netnsPath === undefined ? {} : { netns: netnsPath },
    );
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Refuses further calls (ECLOSED) and closes the socket as soon as the calls made
   * before close() have finished (they complete normally). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#active === 0) this.#transport.close();
  }

  // --- links ---

  /** undefined when there is no such device. */
  linkGet(nameOrIndex: LinkRef): Promise<LinkInfo | undefined> {
    return this.#api(() => this.#linkGet(nameOrIndex));
  }

  async #linkGet(nameOrIndex: LinkRef): Promise<LinkInfo | undefined> {
    const req = codec.linkGetRequest(nameOrIndex);
    const reply = await this.#call(req);
    if (reply.code === 'ENODEV') return undefined;
    this.#check(req, reply);
    const [m] = reply.messages;
    return m === undefined ? undefined : codec.decodeLink(m);
  }

  linkList(): Promise<LinkInfo[]> {
    return this.#api(async () => {
      return this.#dump(codec.linkDumpRequest(), codec.decodeLink);
    });
  }

  /**
   * One RTM_NEWLINK creating both ends: `name` here, `peerName` directly in the peer's
   * namespace (peerNetnsFd, or peerNetnsPath opened for the call). Resolves to the new
   * host-side link: its `index`, and in `linkIndex` the peer's ifindex in its namespace
   * (from the kernel's echo on Linux >= 6.3, else from one RTM_GETLINK). EEXIST says
   * which name was taken where.
   */
  vethCreate(opts: VethCreateOptions): Promise<LinkInfo> {
    return this.#api(async () => {
      let fd = opts?.peerNetnsFd;
      let opened = false;
      if (fd === undefined && opts?.peerNetnsPath !== undefined) {
        const req = codec.vethCreateRequest(opts); // validates before anything is opened
        try {
          fd = openSync(opts.peerNetnsPath, 'r');
          opened = true;
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          throw new RtnlError(
            { code: e.code ?? 'EIO', errno: -(e.errno ?? 0), op: req.op, object: req.object },
            `rtnl ${req.op} ${req.object}: cannot open netns ${opts.peerNetnsPath}: ${e.message}`,
            { cause: err },
          );
        }
      }
      try {
        const req = codec.vethCreateRequest(fd === undefined ? opts : { ...opts, peerNetnsFd: fd });
        const reply = await this.#call(req);
        if (reply.code === 'EEXIST') throw codec.replyError(req, reply, this.netns, await this.#whichExists(opts));
        this.#check(req, reply);
        for (const m of reply.messages) {
          const link = codec.decodeLink(m);
          if (link.name === opts.name) return link;
        }
        const link = await this.#linkGet(opts.name);
        if (!link) {
          throw new RtnlError(
            { code: 'ENODEV', errno: 19, op: 'RTM_GETLINK', object: `link ${opts.name}` },
            `rtnl ${req.op} ${req.object}${this.netns ? ` in netns ${this.netns}` : ''}: created, but gone before it could be looked up`,
          );
        }
        return link;
      } finally {
        if (opened && fd !== undefined) closeSync(fd);
      }
    });
  }

  /** Names the clash of an EEXIST from vethCreate, as far as it can be seen from here. */
  async #whichExists(o: VethCreateOptions): Promise<string> {
    try {
      if (await this.#linkGet(o.name)) return `device ${o.name} already exists`;
      if (o.peerNetnsFd === undefined && o.peerNetnsPath === undefined) {
        if (await this.#linkGet(o.peerName)) return `device ${o.peerName} (the peer name) already exists`;
      } else {
        return `${o.name} is free, so the peer name ${o.peerName} is taken in netns ${o.peerNetnsPath ?? `fd ${o.peerNetnsFd}`}`;
      }
    } catch {
      // the lookup is only for the message
    }
    return 'neither name is taken here: an ifindex asked for may be';
  }

  linkSetUp(nameOrIndex: LinkRef, up = true): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.linkSetUpRequest(nameOrIndex, up));
    });
  }

  linkSetMtu(nameOrIndex: LinkRef, mtu: number): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.linkSetMtuRequest(nameOrIndex, mtu));
    });
  }

  /** false when there was no such device. Deleting one end of a veth deletes both. */
  linkDelete(nameOrIndex: LinkRef): Promise<boolean> {
    return this.#api(async () => {
      return this.#delete(codec.linkDeleteRequest(nameOrIndex), 'ENODEV');
    });
  }

  /** A VXLAN device (down; set it up with linkSetUp). */
  vxlanCreate(opts: VxlanOptions): Promise<void> {
    return this.#api(async () => {
      const { dev, ...rest } = opts ?? ({} as VxlanOptions);
      let devIndex: number | undefined;
      if (typeof dev === 'string') {
        const link = await this.#linkGet(dev);
        if (!link) {
          throw new RtnlError(
            { code: 'ENODEV', errno: 19, op: 'RTM_GETLINK', object: `link ${dev}` },
            `rtnl vxlanCreate ${String(rest.name)}: dev ${dev} does not exist${this.netns ? ` in netns ${this.netns}` : ''}`,
          );
        }
        devIndex = link.index;
      } else if (dev !== undefined) {
        devIndex = dev;
      }
      await this.#do(codec.vxlanCreateRequest(devIndex === undefined ? rest : { ...rest, devIndex }));
    });
  }

  // --- addresses (IPv4) ---

  /** EEXIST when the address is there already. */
  addrAdd(ifindex: number, cidr: string): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.addrAddRequest(ifindex, cidr));
    });
  }

  /** Adds, or updates the address when it is there. */
  addrReplace(ifindex: number, cidr: string): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.addrReplaceRequest(ifindex, cidr));
    });
  }

  /** false when the device has no such address. */
  addrDelete(ifindex: number, cidr: string): Promise<boolean> {
    return this.#api(async () => {
      return this.#delete(codec.addrDeleteRequest(ifindex, cidr), 'EADDRNOTAVAIL');
    });
  }

  addrList(ifindex?: number): Promise<AddrInfo[]> {
    return this.#api(async () => {
      const all = await this.#dump(codec.addrDumpRequest(ifindex), codec.decodeAddr);
      return ifindex === undefined ? all : all.filter((a) => a.ifindex === ifindex);
    });
  }

  // --- routes (IPv4) ---

  /** Adds the route, or replaces the one with the same destination, table, metric (and tos). */
  routeReplace(route: Route): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.routeReplaceRequest(route));
    });
  }

  /** false when no such route. Matches on dst and table, and on gateway, ifindex,
   * protocol, scope and metric when given (IPv4 deletes the first match). */
  routeDelete(route: Route): Promise<boolean> {
    return this.#api(async () => {
      return this.#delete(codec.routeDeleteRequest(route), 'ESRCH');
    });
  }

  /** Routes of the main table by default (filter.table 0: all tables); cloned cache entries are left out. */
  routeList(filter: RouteFilter = {}): Promise<Route[]> {
    return this.#api(async () => {
      const routes = await this.#dump(codec.routeDumpRequest(filter), codec.decodeRoute, 'ENOENT');
      return routes.filter((r) => codec.routeMatches(r, filter));
    });
  }

  // --- policy routing rules (IPv4) ---

  /** Adds the rule unless the same one is there. */
  ruleEnsure(rule: FibRule): Promise<void> {
    return this.#api(async () => {
      const req = codec.ruleAddRequest(rule);
      const reply = await this.#call(req);
      if (reply.code === 'EEXIST') return;
      this.#check(req, reply);
    });
  }

  /** false when no such rule. */
  ruleDelete(rule: FibRule): Promise<boolean> {
    return this.#api(async () => {
      return this.#delete(codec.ruleDeleteRequest(rule), 'ENOENT');
    });
  }

  /** The IPv4 rules that match on a mark. */
  ruleList(): Promise<FibRule[]> {
    return this.#api(async () => {
      const rules = await this.#dump(codec.ruleDumpRequest(), codec.decodeRule);
      return rules.filter((r): r is FibRule => r !== undefined);
    });
  }

  // --- neighbours (IPv4) ---

  /** Adds or replaces; state 'permanent' by default. */
  neighReplace(n: Neigh): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.neighReplaceRequest(n));
    });
  }

  /** false when no such entry. */
  neighDelete(n: { ifindex: number; ip: string }): Promise<boolean> {
    return this.#api(async () => {
      return this.#delete(codec.neighDeleteRequest(n), 'ENOENT');
    });
  }

  neighList(ifindex?: number): Promise<NeighInfo[]> {
    return this.#api(async () => {
      const all = await this.#dump(codec.neighDumpRequest(ifindex), codec.decodeNeigh);
      return ifindex === undefined ? all : all.filter((n) => n.ifindex === ifindex);
    });
  }

  // --- VXLAN FDB (AF_BRIDGE neighbours, NTF_SELF) ---

  /** `bridge fdb replace MAC dev X dst D self permanent`. */
  fdbReplace(e: FdbEntry): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.fdbReplaceRequest(e));
    });
  }

  /** `bridge fdb append MAC dev X dst D self permanent`: one more remote for MAC (for
   * 00:00:00:00:00:00 the flooding list). A remote that is there already stays as it is. */
  fdbAppend(e: FdbEntry): Promise<void> {
    return this.#api(async () => {
      await this.#do(codec.fdbAppendRequest(e));
    });
  }

  /** Deletes one remote (dst given) or the whole entry; false when no such entry (or
   * remote). The kernel acknowledges the delete of a remote that an existing entry does
   * not have, so with dst the FDB is looked at first (one dump). */
  fdbDelete(e: { ifindex: number; mac: string; dst?: string; self?: boolean }): Promise<boolean> {
    return this.#api(async () => {
      const req = codec.fdbDeleteRequest(e);
      if (e.dst !== undefined) {
        const mac = e.mac.toLowerCase();
        const entries = await this.#fdbList(e.ifindex);
        if (!entries.some((f) => f.mac === mac && f.dst === e.dst)) return false;
      }
      return this.#delete(req, 'ENOENT');
    });
  }

  /** The device's FDB, one entry per remote. */
  fdbList(ifindex: number): Promise<FdbInfo[]> {
    return this.#api(() => this.#fdbList(ifindex));
  }

  async #fdbList(ifindex: number): Promise<FdbInfo[]> {
    const all = await this.#dump(codec.fdbDumpRequest(ifindex), codec.decodeFdb);
    return all.filter((e) => e.ifindex === ifindex);
  }


  // --- several writes at once ---

  /**
   * The writes that `build` adds, as one exchange with the kernel (one worker round trip
   * instead of one per write): sent in order, each still one message. The first that
   * fails is thrown (its RtnlError says which request of the batch it was) and the rest
   * are not sent; what came before it stays done. Bad input in any is thrown before
   * anything is sent.
   *
   *   await pod.batch((b) => b.addrAdd(i, '10.0.1.5/32').linkSetUp(i).routeReplace(...));
   */
  batch(build: (b: RtnlBatch) => unknown): Promise<void> {
    return this.#api(async () => {
      const b = new RtnlBatch();
      build(b);
      const reqs = b.requests;
      for (let start = 0; start < reqs.length; start += BATCH_MAX) {
        const chunk = reqs.slice(start, start + BATCH_MAX);
        const replies = await this.#callMany(chunk);
        for (const [i, reply] of replies.entries()) {
          if (reply.errno === 0) continue;
          const req = chunk[i] as RtnlRequest;
          const n = start + i + 1;
          const rest = reqs.length - n;
          throw codec.replyError(req, reply, this.netns, `request ${n} of ${reqs.length} in a batch${rest ? `; the ${rest} after it were not sent` : ''}`);
        }
      }
    });
  }

  // --- internals ---

  /** A public call: refused once closed; the last one to finish after close() closes the socket. */
  #api<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    this.#active++;
    const p = (async () => fn())();
    const done = (): void => {
      if (--this.#active === 0 && this.#closed) this.#transport.close();
    };
    p.then(done, done);
    return p;
  }

  /** Runs fn after every earlier request of this Rtnl has finished. */
  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(fn, fn);
    this.#tail = p.catch(() => undefined);
    return p;
  }

  #closedError(): RtnlError {
    return new RtnlError(
      { code: 'ECLOSED', errno: 0, op: 'transact', object: '' },
      `rtnl${this.netns ? ` (netns ${this.netns})` : ''}: closed`,
    );
  }

  /** One request, its reply (errors are in the reply). */
  async #call(req: RtnlRequest): Promise<RtnlReply> {
    const [reply] = await this.#callMany([req]);
    return reply as RtnlReply;
  }

  /** Requests in one transact (the first failure skips the rest), their replies. */
  #callMany(reqs: readonly RtnlRequest[]): Promise<RtnlReply[]> {
    const req = reqs[0] as RtnlRequest;
    return this.#enqueue(async () => {
      let replies: RtnlReply[];
      try {
        replies = await this.#transport.transact(reqs.map((r) => r.message));
      } catch (err) {
        const e = err as native.NativeError;
        if (e?.code === 'ECLOSED') throw this.#closedError();
        throw new RtnlError(
          { code: e?.code ?? 'EIO', errno: e?.errno ?? 0, op: req.op, object: req.object },
          `rtnl ${req.op} ${req.object}${this.netns ? ` in netns ${this.netns}` : ''}: ${e?.message ?? String(err)}`,
          { cause: err },
        );
      }
      if (replies.length !== reqs.length) {
        throw new RtnlError({ code: 'EBADREPLY', errno: 0, op: req.op, object: req.object }, `rtnl ${req.op} ${req.object}: ${replies.length} replies to ${reqs.length} requests`);
      }
      return replies;
    });
  }

  #check(req: RtnlRequest, reply: RtnlReply): void {
    if (reply.errno !== 0) throw codec.replyError(req, reply, this.netns);
  }

  async #do(req: RtnlRequest): Promise<RtnlReply> {
    const reply = await this.#call(req);
    this.#check(req, reply);
    return reply;
  }

  async #delete(req: RtnlRequest, missing: string): Promise<boolean> {
    const reply = await this.#call(req);
    if (reply.code === missing) return false;
    this.#check(req, reply);
    return true;
  }

  /** A dump, decoded; taken again when the kernel says it was interrupted. `empty`: an
   * errno that means "nothing to list" (a routing table that does not exist). */
  async #dump<T>(req: RtnlRequest, decode: (m: Uint8Array) => T | undefined, empty?: string): Promise<T[]> {
    let reply: RtnlReply | undefined;
    for (let attempt = 0; attempt < DUMP_ATTEMPTS; attempt++) {
      reply = await this.#call(req);
      if (empty !== undefined && reply.code === empty) return [];
      this.#check(req, reply);
      if (!reply.interrupted) break;
    }
    const out: T[] = [];
    for (const m of reply?.messages ?? []) {
      const item = decode(m);
      if (item !== undefined) out.push(item);
    }
    return out;
  }
}

/** Writes collected for Rtnl.batch; each method validates at once and returns the batch. */
export class RtnlBatch {
  readonly #reqs: RtnlRequest[] = [];

  get requests(): readonly RtnlRequest[] {
    return this.#reqs;
  }

  #add(req: RtnlRequest): this {
    this.#reqs.push(req);
    return this;
  }

  /** Needs peerNetnsFd for a peer elsewhere (no path is opened here); EEXIST is not refined. */
  vethCreate(opts: VethCreateOptions): this {
    return this.#add(codec.vethCreateRequest(opts));
  }

  /** dev only as an ifindex here. */
  vxlanCreate(opts: VxlanCreateOptions): this {
    return this.#add(codec.vxlanCreateRequest(opts));
  }

  linkSetUp(nameOrIndex: LinkRef, up = true): this {
    return this.#add(codec.linkSetUpRequest(nameOrIndex, up));
  }

  linkSetMtu(nameOrIndex: LinkRef, mtu: number): this {
    return this.#add(codec.linkSetMtuRequest(nameOrIndex, mtu));
  }

  addrAdd(ifindex: number, cidr: string): this {
    return this.#add(codec.addrAddRequest(ifindex, cidr));
  }

  addrReplace(ifindex: number, cidr: string): this {
    return this.#add(codec.addrReplaceRequest(ifindex, cidr));
  }

  routeReplace(route: Route): this {
    return this.#add(codec.routeReplaceRequest(route));
  }

  neighReplace(n: Neigh): this {
    return this.#add(codec.neighReplaceRequest(n));
  }

  fdbReplace(e: FdbEntry): this {
    return this.#add(codec.fdbReplaceRequest(e));
  }

  fdbAppend(e: FdbEntry): this {
    return this.#add(codec.fdbAppendRequest(e));
  }
}
