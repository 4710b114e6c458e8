// A real container runtime on a node of a Topology: containerd 2.x + runc,
// driven through the CRI with crictl (as the kubelet would), so containerd's
// own CNI calls reach whatever CNI plugin the caller configures.
//
//   node netns        containerd runs there (setpriv --pdeathsig KILL nsenter
//                     --net=...), so the CNI plugins it execs see the node's
//                     devices, and the CRI streaming server is on the node's lo
//   mount namespace   private to this containerd (unshare -m, propagation
//                     private): <dir>/run is bound over /run/containerd (shim
//                     sockets /run/containerd/s, FIFOs) and <dir>/cni over
//                     /var/lib/cni (libcni's result cache, host-local's default
//                     store), both hard-coded in containerd/libcni. Pod netns
//                     files (<dir>/state/netns/cni-*, netns_mounts_under_state_dir)
//                     are nsfs mounts inside this namespace only: the CNI plugin
//                     (exec'd by containerd) sees them; from outside, enter a
//                     pod's network through /proc/<pod pid>/ns/net (PodInfo.pid).
//   cgroups           runc (cgroupfs driver) puts every pod under the cgroup
//                     parent /<cgroupName>/pods in every hierarchy, incl.
//                     /sys/fs/cgroup/unified on cgroup v1. containerd itself
//                     starts in <tracking hierarchy>/<cgroupName>/daemon (the
//                     cgroup2 mount when there is one), so its shims and every
//                     container process are found there: that subtree is the
//                     list of processes this runtime owns, killed by pid.
//   files             <workDir>/containerd-<node>/: config.toml, crictl.yaml,
//                     containerd.sock, root/, state/, runc/ (runc's root),
//                     pods/<name>/ (CRI configs and container logs),
//                     containerd.log
//
// Cleanup runs on stop() and on every exit path (process exit, SIGINT,
// SIGTERM, uncaught exception), like topology.ts: pods are removed through the
// CRI when there is time, then the processes in the cgroup subtree are killed
// by pid, the cgroups removed in every hierarchy and the directory deleted.
// The mounts die with the mount namespace once its last process is gone.
// sweepStaleContainerd() removes what a SIGKILLed run left (orphaned shims
// and containers, cgroups).

import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { pino, type Logger } from 'pino';
import { REPO_ROOT } from './apiserver.ts';
import { formatArgv, isProcError, makeTarget, run, type RunResult } from './proc.ts';
import { pidAlive, prefixPid, type Node, type Proc, type Topology } from './topology.ts';

const UNIX_PATH_MAX = 107;
const CGROUP_ROOT = '/sys/fs/cgroup';
/** Kubernetes object names: a DNS-1123 label. */
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const CONTAINER_NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;
/** What Topology prefixes look like, `hy<pid base36><2 chars>-`, then `ctrd-<node>`. */
const CGROUP_NAME_RE = /^hy[0-9a-z]{3,8}-ctrd-[a-z0-9.-]+$/;
const CRI_NAMESPACE = 'k8s.io';

export type ContainerdErrorCode =
  | 'E_CTRD_INVALID' // an argument has a bad value (the message names it)
  | 'E_CTRD_BINARIES' // the binaries are missing and could not be built
  | 'E_CTRD_EXITED' // containerd exited while starting or while we waited for it
  | 'E_CTRD_TIMEOUT' // something did not become ready in time
  | 'E_CTRD_COMMAND' // a crictl or ctr call failed (the message has its stderr)
  | 'E_CTRD_NOT_FOUND' // a pod or container id this runtime does not know
  | 'E_CTRD_STOPPED'; // the runtime was stopped

export class ContainerdError extends Error {
  readonly code: ContainerdErrorCode;
  constructor(code: ContainerdErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ContainerdError';
    this.code = code;
  }
}

export function isContainerdError(err: unknown, code?: ContainerdErrorCode): err is ContainerdError {
  return err instanceof ContainerdError && (code === undefined || err.code === code);
}

// ---------------------------------------------------------------- binaries

export interface ContainerdBinaries {
  containerdVersion: string;
  runcVersion: string;
  crictlVersion: string;
  containerd: string;
  shim: string;
  ctr: string;
  runc: string;
  crictl: string;
  /** OCI archive of registry.k8s.io/pause:<tag> (the name is in its index.json). */
  pauseImageTar: string;
  /** OCI archive of registry.k8s.io/e2e-test-images/agnhost:<version>. */
  agnhostImageTar: string;
  /** The agnhost root filesystem as registry.k8s.io/e2e-test-images/busybox (CMD sh, no entrypoint). */
  busyboxImageTar: string;
  /** The same as registry.k8s.io/e2e-test-images/glibc-dns-testing (the DNS specs' dig image). */
  dnsutilsImageTar: string;
}

function parseKeyValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return out;
}

const BINARY_KEYS = {
  containerdVersion: 'CONTAINERD_VERSION',
  runcVersion: 'RUNC_VERSION',
  crictlVersion: 'CRICTL_VERSION',
  containerd: 'CONTAINERD',
  shim: 'CONTAINERD_SHIM',
  ctr: 'CTR',
  runc: 'RUNC',
  crictl: 'CRICTL',
  pauseImageTar: 'PAUSE_IMAGE_TAR',
  agnhostImageTar: 'AGNHOST_IMAGE_TAR',
  busyboxImageTar: 'E2E_BUSYBOX_IMAGE_TAR',
  dnsutilsImageTar: 'E2E_DNSUTILS_IMAGE_TAR',
} as const satisfies Record<keyof ContainerdBinaries, string>;

/**
 * The runtime's binaries and images at the versioned cache paths the Makefile
 * defines (`make containerd-versions`). When one is missing and `build` is true
 * (the default) this runs `make containerd-bins` first, its progress on stderr
 * (a cold build takes minutes). The same variables in the environment
 * (exported by `make test-containerd`) override the paths.
 */
export async function containerdBinaries(opts: { build?: boolean; log?: Logger } = {}): Promise<ContainerdBinaries> {
  const make = ['make', '-s', '--no-print-directory', '-C', REPO_ROOT];
  // Under `make test` the parent's flags (jobserver fds, -k, ...) must not leak in.
  const { MAKEFLAGS: _flags, MFLAGS: _mflags, MAKELEVEL: _level, ...env } = process.env;
  const read = async (): Promise<ContainerdBinaries> => {
    const r = await run([...make, 'containerd-versions'], { timeoutMs: 60_000, env, context: 'listing containerd binaries' });
    const kv = parseKeyValues(r.stdout);
    const out: Partial<Record<keyof ContainerdBinaries, string>> = {};
    for (const [field, key] of Object.entries(BINARY_KEYS) as Array<[keyof ContainerdBinaries, string]>) {
      const v = process.env[key] || kv.get(key);
      if (v === undefined || v === '') {
        throw new ContainerdError('E_CTRD_BINARIES', `make containerd-versions printed no ${key} (is hack/containerd/containerd.mk included?): ${r.stdout.trim()}`);
      }
      out[field] = v;
    }
    return out as ContainerdBinaries;
  };
  const files = (b: ContainerdBinaries): string[] =>
    [b.containerd, b.shim, b.ctr, b.runc, b.crictl, b.pauseImageTar, b.agnhostImageTar, b.busyboxImageTar, b.dnsutilsImageTar];
  const missing = (b: ContainerdBinaries): string[] => files(b).filter((p) => !existsSync(p));
  const bins = await read();
  if (missing(bins).length === 0) return bins;
  if (opts.build === false) {
    throw new ContainerdError('E_CTRD_BINARIES', `missing ${missing(bins).join(', ')}; run \`make containerd-bins\``);
  }
  opts.log?.info({ missing: missing(bins) }, 'building the container runtime (make containerd-bins); a cold build takes minutes');
  const code = await makeTarget(make, 'containerd-bins', env);
  const after = await read();
  if (code !== 0 || missing(after).length > 0) {
    throw new ContainerdError('E_CTRD_BINARIES', `make containerd-bins exited with ${code}; still missing: ${missing(after).join(', ') || 'nothing'}`);
  }
  return after;
}

// ---------------------------------------------------------------- cgroups

interface CgroupHierarchy {
  /** Mount point, e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup/unified. */
  path: string;
  v2: boolean;
}

/** The cgroup hierarchies mounted in this mount namespace (from /proc/self/mountinfo). */
export function cgroupHierarchies(): CgroupHierarchy[] {
  const out: CgroupHierarchy[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    const fsType = line.slice(sep + 3).split(' ')[0];
    if (mountPoint === undefined || (fsType !== 'cgroup' && fsType !== 'cgroup2')) continue;
    if (!mountPoint.startsWith(CGROUP_ROOT)) continue;
    out.push({ path: mountPoint.replace(/\\040/g, ' '), v2: fsType === 'cgroup2' });
  }
  return out;
}

/** The hierarchy whose subtree lists a runtime's processes: cgroup2 if mounted, else the first v1 one. */
function trackingHierarchy(hierarchies: readonly CgroupHierarchy[]): CgroupHierarchy {
  const h = hierarchies.find((x) => x.v2) ?? hierarchies[0];
  if (h === undefined) throw new ContainerdError('E_CTRD_INVALID', `no cgroup hierarchy is mounted under ${CGROUP_ROOT}`);
  return h;
}

/** Every pid in a cgroup and its descendants (none when it does not exist). */
function cgroupPids(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    try {
      for (const s of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) {
        const pid = Number.parseInt(s, 10);
        if (pid > 0) pids.push(pid);
      }
    } catch {
      // removed meanwhile
    }
    for (const e of entries) if (e.isDirectory()) walk(join(d, e.name));
  };
  walk(dir);
  return pids;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * SIGKILL every process in a cgroup subtree, by pid, until it is empty (new
 * children of a dying process are caught on the next pass). Returns the pids
 * signalled and whatever is still there after timeoutMs.
 */
function killCgroupSync(dir: string, timeoutMs: number): { killed: number[]; left: number[] } {
  const killed = new Set<number>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = cgroupPids(dir).filter((p) => p !== process.pid);
    if (pids.length === 0) return { killed: [...killed], left: [] };
    if (Date.now() > deadline) return { killed: [...killed], left: pids };
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.add(pid);
      } catch {
        // gone already
      }
    }
    sleepSync(20);
  }
}

/** rmdir a cgroup and its descendants, deepest first. Returns the directories that would not go. */
function removeCgroupTreeSync(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const left: string[] = [];
  for (const e of entries) if (e.isDirectory()) left.push(...removeCgroupTreeSync(join(dir, e.name)));
  try {
    rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
  }
  return left;
}

/** Remove `<hierarchy>/<name>` in every hierarchy, retrying busy ones (a memory cgroup lingers briefly after its last task). */
function removeCgroupsSync(name: string, timeoutMs: number): { removed: string[]; left: string[] } {
  const removed: string[] = [];
  const deadline = Date.now() + timeoutMs;
  let left: string[] = [];
  for (const h of cgroupHierarchies()) {
    const dir = join(h.path, name);
    if (!existsSync(dir)) continue;
    for (;;) {
      const l = removeCgroupTreeSync(dir);
      if (l.length === 0) {
        removed.push(dir);
        break;
      }
      if (Date.now() > deadline) {
        left = left.concat(l);
        break;
      }
      sleepSync(20);
    }
  }
  return { removed, left };
}

/** Directories named `name` under any cgroup hierarchy (what a runtime's stop must leave none of). */
export function cgroupDirs(name: string): string[] {
  return cgroupHierarchies().map((h) => join(h.path, name)).filter((d) => existsSync(d));
}

/** Lines of /proc/<pid>/mountinfo, for every process, that mention `path` (mounts still alive somewhere). */
export function mountsUnder(path: string): Array<{ pid: number; line: string }> {
  const out: Array<{ pid: number; line: string }> = [];
  const seen = new Set<string>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return out;
  }
  for (const p of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${p}/mountinfo`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const mountPoint = line.split(' ')[4];
      if (mountPoint === undefined || !(mountPoint === path || mountPoint.startsWith(`${path}/`))) continue;
      // One namespace is seen through many processes: report each mount once.
      const key = `${readNsId(p)} ${mountPoint}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ pid: Number(p), line });
    }
  }
  return out;
}

function readNsId(pid: string): string {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return `pid ${pid}`;
  }
}

export interface StaleSweep {
  /** Cgroup names removed (with their processes killed). */
  removed: string[];
  killed: number[];
}

/**
 * Remove what runtimes of crashed runs left: for every `hy...-ctrd-<node>`
 * cgroup whose run's pid is gone, kill the processes in it (orphaned shims,
 * pause and app containers) and remove it in every hierarchy. Their work
 * directories are the caller's (usually mkdtemp under /tmp) and stay.
 */
export function sweepStaleContainerd(opts: { log?: Logger } = {}): StaleSweep {
  const result: StaleSweep = { removed: [], killed: [] };
  const hierarchies = cgroupHierarchies();
  if (hierarchies.length === 0) return result;
  const track = trackingHierarchy(hierarchies);
  let names: string[];
  try {
    names = readdirSync(track.path).filter((n) => CGROUP_NAME_RE.test(n));
  } catch {
    return result;
  }
  for (const name of names) {
    const pid = prefixPid(name);
    if (pid === undefined || pidAlive(pid)) continue;
    const { killed } = killCgroupSync(join(track.path, name), 5000);
    result.killed.push(...killed);
    const { left } = removeCgroupsSync(name, 2000);
    if (left.length === 0) result.removed.push(name);
    else opts.log?.warn({ cgroup: name, left }, 'cannot remove stale cgroups');
  }
  if (result.removed.length > 0) opts.log?.debug(result, 'swept stale container runtimes');
  return result;
}

// ---------------------------------------------------------------- runtime

export interface StartContainerdOptions {
  /**
   * A directory of this run (created if missing). The runtime works in
   * `<workDir>/containerd-<node name>/`, which must not exist yet and which
   * stop() deletes; several nodes can share one workDir.
   */
  workDir: string;
  /** Where containerd looks for CNI plugin binaries (CNI_PATH), e.g. ['/usr/lib/cni']. */
  cniBinDirs: readonly string[];
  /**
   * Where containerd reads the network configuration (the first .conflist/.conf
   * in name order). Watched: it may be written after start, before runPod.
   */
  cniConfDir: string;
  log?: Logger;
  /** Binaries to use instead of containerdBinaries(). */
  binaries?: ContainerdBinaries;
  /** How long containerd may take to answer the CRI (default 60 s). */
  startTimeoutMs?: number;
  /** containerd's log level (default 'info'; the log is <dir>/containerd.log). */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /**
   * containerd's environment, which the CNI plugins it execs inherit (plus the
   * CNI_* variables). Merged over the default, which is only PATH: the
   * containerd and runc directories, then /usr/local/sbin:/usr/local/bin:
   * /usr/sbin:/usr/bin:/sbin:/bin (where `node` is Debian's Node 20: a plugin
   * with a `#!/usr/bin/env node` line needs PATH set here).
   */
  env?: Record<string, string>;
  /**
   * A kubelet's node (kube-cluster.ts): containerd's mount namespace also gets
   * per-node directories bound over the paths a kubelet, a CNI plugin and a
   * DaemonSet's hostPath volumes use (NODE_PATHS, each <dir>/node/<path>),
   * its own BPF filesystem at /sys/fs/bpf, and pod network namespaces at
   * /run/netns (a shared mount, so a container mounting it HostToContainer
   * sees ones made later). The kubelet joins this namespace (mountNsPath).
   */
  kubeletNode?: boolean;
}

/** What a kubelet node has to itself (kubeletNode): bound from <dir>/node/<path>. */
export const NODE_PATHS = [
  'var/lib/kubelet', 'var/log/pods', 'var/log/containers', 'etc/cni/net.d', 'opt/cni/bin',
  'run/hypha', 'var/lib/hypha', 'run/netns',
] as const;

export interface RunPodOptions {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Default: a random UUID (what the kubelet passes as the pod's UID). */
  uid?: string;
  /** Default: the pod name. */
  hostname?: string;
  /** Waiting for the CNI configuration plus RunPodSandbox (default 60 s). */
  timeoutMs?: number;
}

export interface PodInfo {
  /** The CRI pod sandbox id. */
  podId: string;
  name: string;
  namespace: string;
  uid: string;
  /** The pod's primary address from the CNI result (status.network.ip). */
  ip: string;
  /** Every address: ip first, then status.network.additionalIps. */
  ips: string[];
  /** The pause process (as seen from here): /proc/<pid>/ns/net is the pod's netns. */
  pid: number;
  /** The netns path containerd passed as CNI_NETNS; it exists only inside containerd's mount namespace. */
  netnsPath: string;
  /** Wall time of `crictl runp` (RunPodSandbox, incl. the CNI ADD), in ms. */
  ms: number;
}

export interface RunContainerOptions {
  /** CRI container name, unique in the pod. Default: c<number>. */
  name?: string;
  /** CRI `args` (appended to argv, or to the image's entrypoint when argv is empty). */
  args?: readonly string[];
  env?: Record<string, string>;
  workingDir?: string;
  timeoutMs?: number;
}

export interface ContainerInfo {
  containerId: string;
  podId: string;
  name: string;
  /** The container's first process as seen from here. */
  pid: number;
  /** The CRI log file of the container. */
  logPath: string;
  /** Wall time of create + start, in ms. */
  ms: number;
}

export interface ExecOptions {
  /** ExecSync timeout (default 30 s). */
  timeoutMs?: number;
  /** Return the result when the command exits nonzero instead of throwing E_CTRD_COMMAND. */
  allowFail?: boolean;
}

export interface StopReport {
  /** Pod sandboxes stopped and removed through the CRI. */
  podsRemoved: string[];
  /** Pids killed after containerd stopped (shims and containers it left). */
  killed: number[];
  cgroupsRemoved: string[];
  /** What could not be cleaned up (empty on a clean stop). */
  problems: string[];
}

export interface Runtime {
  readonly node: Node;
  /** <workDir>/containerd-<node>. */
  readonly dir: string;
  /** containerd's CRI (gRPC) socket. */
  readonly socketPath: string;
  readonly configPath: string;
  readonly logPath: string;
  /** Host path bound over /var/lib/cni inside containerd's mount namespace. */
  readonly cniStateDir: string;
  /** Cgroup name under every hierarchy (`<topology prefix>ctrd-<node>`). */
  readonly cgroupName: string;
  /** CRI cgroup_parent of every pod: `/<cgroupName>/pods`. */
  readonly cgroupParent: string;
  /** The sandbox (pause) image containerd is configured with. */
  readonly pauseImage: string;
  /** containerd's mount namespace (/proc/<pid>/ns/mnt): a kubelet node's paths are there. */
  readonly mountNsPath: string;
  /** containerd's UTS namespace (a kubelet node's hostname). */
  readonly utsNsPath: string;
  /** cgroup.procs a process writes itself into to be part of this runtime (killed and cleaned up with it). */
  readonly trackProcsPath: string;
  /** Where a kubelet node's NODE_PATHS entry lives on the host: <dir>/node/<path>. */
  nodePath(p: (typeof NODE_PATHS)[number]): string;
  readonly binaries: ContainerdBinaries;
  /** containerd's pid (undefined once stopped). */
  readonly pid: number | undefined;
  /** RunPodSandbox via `crictl runp`, then inspectp for the address. */
  runPod(name: string, namespace?: string, opts?: RunPodOptions): Promise<PodInfo>;
  /** CreateContainer + StartContainer in a pod; argv is the CRI `command` ([] = the image's entrypoint). */
  runContainer(podId: string, image: string, argv: readonly string[], opts?: RunContainerOptions): Promise<ContainerInfo>;
  /** ExecSync in a container (`crictl exec -s`); code is the command's exit code. */
  exec(containerId: string, argv: readonly string[], opts?: ExecOptions): Promise<RunResult>;
  /** StopPodSandbox: containers stopped, CNI DEL, netns removed. */
  stopPod(podId: string): Promise<void>;
  /** StopPodSandbox (if needed) and RemovePodSandbox. */
  removePod(podId: string): Promise<void>;
  /** `crictl inspectp -o json` of a pod. */
  inspectPod(podId: string): Promise<Record<string, unknown>>;
  /** `ctr -n k8s.io images import` of an OCI archive; resolves with the image names, once the CRI lists them. */
  importImage(tarPath: string): Promise<string[]>;
  /** Wait until containerd reports NetworkReady (a CNI configuration was loaded). */
  waitNetworkReady(timeoutMs?: number): Promise<void>;
  /** Pids in this runtime's cgroup subtree: containerd, shims, every container process. */
  processes(): number[];
  /** Run crictl against this containerd, inside the node's netns (the escape hatch). */
  crictl(args: readonly string[], opts?: { timeoutMs?: number; allowFail?: boolean }): Promise<RunResult>;
  /** Remove every pod, stop containerd, kill what is left, remove cgroups and the directory. Never throws; idempotent. */
  stop(): Promise<StopReport>;
}

function invalid(message: string): ContainerdError {
  return new ContainerdError('E_CTRD_INVALID', message);
}

function checkStringMap(field: string, v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${field} must be an object of strings, not ${JSON.stringify(v)}`);
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw invalid(`${field}["${k}"] must be a string, not ${JSON.stringify(x)}`);
  }
  return v as Record<string, string>;
}

function checkArgv(field: string, v: unknown, allowEmpty: boolean): string[] {
  if (!Array.isArray(v) || v.some((a) => typeof a !== 'string')) throw invalid(`${field} must be an array of strings, not ${JSON.stringify(v)}`);
  if (!allowEmpty && v.length === 0) throw invalid(`${field} is empty`);
  return v as string[];
}

function toml(v: string | number | boolean | readonly string[]): string {
  // JSON string escapes are valid TOML basic-string escapes.
  return typeof v === 'object' ? `[${v.map((s) => JSON.stringify(s)).join(', ')}]` : JSON.stringify(v);
}

/** containerd 2.x configuration (version 4) for one node. */
function containerdConfig(p: {
  dir: string;
  socketPath: string;
  binaries: ContainerdBinaries;
  cniBinDirs: readonly string[];
  cniConfDir: string;
  pauseImage: string;
  logLevel: string;
  kubeletNode: boolean;
}): string {
  const { dir, binaries } = p;
  return `# Written by test/e2e/lib/containerd.ts for one test node.
version = 4
root = ${toml(join(dir, 'root'))}
state = ${toml(join(dir, 'state'))}
temp = ${toml(join(dir, 'tmp'))}
imports = []
# The NRI socket defaults to a shared path (/var/run/nri).
disabled_plugins = ['io.containerd.nri.v1.nri']

[debug]
  level = ${toml(p.logLevel)}

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = ${toml(p.socketPath)}
  [plugins.'io.containerd.server.v1.ttrpc']
    address = ${toml(`${p.socketPath}.ttrpc`)}
  [plugins.'io.containerd.server.v1.debug']
    address = ''
  [plugins.'io.containerd.server.v1.metrics']
    address = ''
  [plugins.'io.containerd.internal.v1.opt']
    path = ${toml(join(dir, 'opt'))}
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = ${toml(join(dir, 'opt', 'image-verifier'))}

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = ${toml(p.pauseImage)}

  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: never ask for a lower oom_score_adj.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = ${p.kubeletNode ? 'false' : 'true'}
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ${toml(p.cniBinDirs)}
      conf_dir = ${toml(p.cniConfDir)}
      max_conf_num = 1${p.kubeletNode ? `
      # The node has no loopback plugin in /opt/cni/bin: containerd brings lo up itself.
      use_internal_loopback = true` : ''}
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = ${toml(binaries.shim)}
        sandboxer = 'podsandbox'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = ${toml(binaries.runc)}
          Root = ${toml(join(dir, 'runc'))}
          SystemdCgroup = false

  [plugins.'io.containerd.grpc.v1.cri']
    # The streaming server (exec/attach/port-forward) on the node's loopback.
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
`;
}

/**
 * Runs in the new mount namespace, then execs containerd (same pid):
 *   $1 tracking cgroup's cgroup.procs, $2 runtime dir, $3 containerd, $4 config, $5 log
 */
const LAUNCHER = `set -e
echo $$ > "$1"
# Mount points for the hard-coded paths; on the host they stay empty directories.
mkdir -p /run/containerd /var/lib/cni
mount --bind "$2/run" /run/containerd
mount --bind "$2/cni" /var/lib/cni
if [ "$6" = kubelet-node ]; then
  # The host's /run/netns (a mount point holding the topology's namespaces)
  # goes from this namespace, so the node's own is the only mount there.
  if mountpoint -q /run/netns; then umount -l /run/netns; fi
  for p in ${NODE_PATHS.join(' ')}; do
    mkdir -p "/$p" "$2/node/$p"
    mount --bind "$2/node/$p" "/$p"
  done
  mount --make-shared /run/netns
  mount -t bpf bpf /sys/fs/bpf
  hostname "$7"
fi
exec >>"$5" 2>&1
exec "$3" --config "$4"
`;

interface PodRecord {
  podId: string;
  name: string;
  namespace: string;
  configPath: string;
  logDir: string;
  containers: number;
}

interface ContainerRecord {
  podId: string;
  logPath: string;
}

class ContainerdRuntime implements Runtime {
  readonly node: Node;
  readonly dir: string;
  readonly socketPath: string;
  readonly configPath: string;
  readonly logPath: string;
  readonly cniStateDir: string;
  readonly cgroupName: string;
  readonly cgroupParent: string;
  readonly binaries: ContainerdBinaries;
  readonly #topo: Topology;
  readonly #opts: StartContainerdOptions;
  readonly #log: Logger;
  readonly #crictlConfig: string;
  readonly #trackDir: string;
  readonly #pods = new Map<string, PodRecord>();
  readonly #containers = new Map<string, ContainerRecord>();
  #pauseImage = '';
  #proc: Proc | undefined;
  /** Set once this runtime created its directory / its tracking cgroup: only then does cleanup touch them. */
  #ownsDir = false;
  #ownsCgroup = false;
  #networkReady = false;
  #stopping: Promise<StopReport> | undefined;
  #syncDone = false;
  #registered = false;
  readonly #onExit = (): void => this.#cleanupSync('exit');
  readonly #onUncaught = (): void => this.#cleanupSync('uncaughtException');
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    this.#cleanupSync(signal);
    // As topology.ts: if nobody else handles the signal, die of it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };

  constructor(topo: Topology, node: Node, opts: StartContainerdOptions, binaries: ContainerdBinaries, track: CgroupHierarchy) {
    this.#topo = topo;
    this.node = node;
    this.#opts = opts;
    this.binaries = binaries;
    this.dir = join(opts.workDir, `containerd-${node.name}`);
    this.socketPath = join(this.dir, 'containerd.sock');
    this.configPath = join(this.dir, 'config.toml');
    this.logPath = join(this.dir, 'containerd.log');
    this.cniStateDir = join(this.dir, 'cni');
    this.#crictlConfig = join(this.dir, 'crictl.yaml');
    this.cgroupName = `${topo.prefix}ctrd-${node.name}`;
    this.cgroupParent = `/${this.cgroupName}/pods`;
    this.#trackDir = join(track.path, this.cgroupName);
    this.#log = (opts.log ?? pino({ level: 'silent' })).child({ component: 'containerd', node: node.name });
  }

  get pid(): number | undefined {
    return this.#proc?.status === undefined ? this.#proc?.pid : undefined;
  }

  get pauseImage(): string {
    return this.#pauseImage;
  }

  get mountNsPath(): string {
    return `/proc/${this.#proc?.pid ?? 0}/ns/mnt`;
  }

  get utsNsPath(): string {
    return `/proc/${this.#proc?.pid ?? 0}/ns/uts`;
  }

  get trackProcsPath(): string {
    return join(this.#trackDir, 'daemon', 'cgroup.procs');
  }

  nodePath(p: (typeof NODE_PATHS)[number]): string {
    return join(this.dir, 'node', p);
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    this.#pauseImage = (await archiveImageNames(this.binaries.pauseImageTar))[0] ?? '';
    // mkdir without `recursive` fails on what exists: a directory or cgroup
    // another runtime made is never adopted (nor removed by our cleanup).
    this.#register();
    try {
      mkdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      throw invalid(`workDir "${this.#opts.workDir}" already has ${basename(this.dir)} (a runtime for node "${this.node.name}" runs or ran there)`);
    }
    this.#ownsDir = true;
    try {
      mkdirSync(this.#trackDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      throw invalid(`cgroup ${this.#trackDir} exists: a runtime for node "${this.node.name}" of topology ${this.#topo.prefix} runs`);
    }
    this.#ownsCgroup = true;
    await Promise.all(['root', 'state', 'tmp', 'opt', 'run', 'cni', 'runc', 'pods'].map((d) => mkdir(join(this.dir, d))));
    await mkdir(join(this.#trackDir, 'daemon'));
    await writeFile(this.configPath, containerdConfig({
      dir: this.dir,
      socketPath: this.socketPath,
      binaries: this.binaries,
      cniBinDirs: this.#opts.cniBinDirs,
      cniConfDir: this.#opts.cniConfDir,
      pauseImage: this.#pauseImage,
      logLevel: this.#opts.logLevel ?? 'info',
      kubeletNode: this.#opts.kubeletNode === true,
    }));
    const endpoint = `unix://${this.socketPath}`;
    await writeFile(this.#crictlConfig, `runtime-endpoint: ${endpoint}\nimage-endpoint: ${endpoint}\ntimeout: 60\ndebug: false\npull-image-on-create: false\n`);
    const binDirs = [...new Set([dirname(this.binaries.containerd), dirname(this.binaries.runc)])];
    this.#proc = this.#topo.spawn(this.node, [
      // A kubelet node also gets its own UTS namespace: its hostname is the
      // node's name (hostNetwork pods share it, as on a real node).
      'unshare', '--mount', ...(this.#opts.kubeletNode === true ? ['--uts'] : []), '--propagation', 'private', '--',
      'sh', '-c', LAUNCHER, 'containerd-launcher',
      join(this.#trackDir, 'daemon', 'cgroup.procs'), this.dir, this.binaries.containerd, this.configPath, this.logPath,
      this.#opts.kubeletNode === true ? 'kubelet-node' : 'plain', this.node.name,
    ], {
      env: { PATH: [...binDirs, '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':'), ...this.#opts.env },
      context: `containerd of node ${this.node.name}`,
    });
    this.#log.info({ pid: this.#proc.pid, dir: this.dir, version: this.binaries.containerdVersion }, 'starting containerd');
    await this.#waitReady(this.#opts.startTimeoutMs ?? 60_000);
    await this.importImage(this.binaries.pauseImageTar);
    this.#log.info({ pid: this.#proc.pid, ms: Math.round(performance.now() - t0) }, 'containerd ready');
  }

  #describeExit(): string {
    const st = this.#proc?.status;
    const how = st === undefined ? 'is running' : st.code !== null ? `exited with code ${st.code}` : `was killed by ${st.signal}`;
    const early = this.#proc?.stderr.trim() ?? '';
    return `containerd of node ${this.node.name} (pid ${this.#proc?.pid}) ${how}${early === '' ? '' : `; launcher: ${early.slice(-1000)}`}; last lines of ${this.logPath}:\n${logTail(this.logPath)}`;
  }

  #checkRunning(): void {
    if (this.#stopping !== undefined || this.#syncDone) throw new ContainerdError('E_CTRD_STOPPED', `containerd of node ${this.node.name} was stopped`);
    if (this.#proc?.status !== undefined) throw new ContainerdError('E_CTRD_EXITED', this.#describeExit());
  }

  async #waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'not probed yet';
    for (;;) {
      this.#checkRunning();
      if (existsSync(this.socketPath)) {
        const r = await this.crictl(['info'], { timeoutMs: 10_000, allowFail: true });
        if (r.code === 0) {
          const cond = criConditions(r.stdout).get('RuntimeReady');
          if (cond?.status === true) return;
          last = `RuntimeReady is ${JSON.stringify(cond)}`;
        } else {
          last = r.stderr.trim();
        }
      } else {
        last = `no socket ${this.socketPath} yet`;
      }
      if (Date.now() > deadline) {
        throw new ContainerdError('E_CTRD_TIMEOUT', `containerd of node ${this.node.name} not ready after ${timeoutMs} ms (last: ${last.slice(0, 1000)}); ${this.#describeExit()}`);
      }
      await sleep(100);
    }
  }

  async crictl(args: readonly string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}): Promise<RunResult> {
    const argv = [this.binaries.crictl, '--config', this.#crictlConfig, ...args];
    try {
      return await this.#topo.exec(this.node, argv, {
        timeoutMs: opts.timeoutMs ?? 90_000,
        allowFail: opts.allowFail ?? false,
        context: `crictl on node ${this.node.name}`,
      });
    } catch (err) {
      if (isProcError(err)) {
        throw new ContainerdError('E_CTRD_COMMAND', `${err.message}${this.#proc?.status === undefined ? '' : `; ${this.#describeExit()}`}`, { cause: err });
      }
      throw err;
    }
  }

  async waitNetworkReady(timeoutMs = 10_000): Promise<void> {
    if (this.#networkReady) return;
    const deadline = Date.now() + timeoutMs;
    let last: CriCondition | undefined;
    for (;;) {
      this.#checkRunning();
      const r = await this.crictl(['info'], { timeoutMs: 10_000 });
      last = criConditions(r.stdout).get('NetworkReady');
      if (last?.status === true) {
        this.#networkReady = true;
        return;
      }
      if (Date.now() > deadline) {
        throw new ContainerdError('E_CTRD_TIMEOUT', `containerd of node ${this.node.name} is not NetworkReady after ${timeoutMs} ms (cniConfDir "${this.#opts.cniConfDir}", cniBinDirs ${JSON.stringify(this.#opts.cniBinDirs)}): ${last?.reason ?? ''} ${last?.message ?? JSON.stringify(last)}`);
      }
      await sleep(100);
    }
  }

  async runPod(name: string, namespace = 'default', opts: RunPodOptions = {}): Promise<PodInfo> {
    this.#checkRunning();
    if (typeof name !== 'string' || !DNS_LABEL_RE.test(name)) throw invalid(`pod name "${String(name)}" must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)`);
    if (typeof namespace !== 'string' || !DNS_LABEL_RE.test(namespace)) throw invalid(`pod namespace "${String(namespace)}" must be a DNS-1123 label`);
    const labels = checkStringMap('labels', opts.labels);
    const annotations = checkStringMap('annotations', opts.annotations);
    const uid = opts.uid ?? randomUUID();
    const hostname = opts.hostname ?? name;
    if (typeof uid !== 'string' || uid === '') throw invalid(`uid "${String(uid)}" must be a non-empty string`);
    if (typeof hostname !== 'string' || !DNS_LABEL_RE.test(hostname)) throw invalid(`hostname "${String(hostname)}" must be a DNS-1123 label`);
    const key = `${namespace}_${name}`;
    if ([...this.#pods.values()].some((p) => p.name === name && p.namespace === namespace)) {
      throw invalid(`pod "${namespace}/${name}" already runs on node "${this.node.name}"`);
    }
    const timeoutMs = opts.timeoutMs ?? 60_000;
    await this.waitNetworkReady(Math.min(timeoutMs, 10_000));
    const podDir = join(this.dir, 'pods', key);
    const logDir = join(podDir, 'logs');
    await mkdir(logDir, { recursive: true });
    const config = {
      metadata: { name, namespace, uid, attempt: 0 },
      hostname,
      log_directory: logDir,
      labels,
      annotations,
      linux: {
        cgroup_parent: this.cgroupParent,
        security_context: { namespace_options: { network: 0, pid: 1, ipc: 0 } },
      },
    };
    const configPath = join(podDir, 'pod.json');
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const t0 = performance.now();
    const r = await this.crictl(['runp', configPath], { timeoutMs });
    const ms = Math.round(performance.now() - t0);
    const podId = r.stdout.trim().split('\n').pop()?.trim() ?? '';
    if (!/^[0-9a-f]{64}$/.test(podId)) {
      throw new ContainerdError('E_CTRD_COMMAND', `crictl runp for pod "${namespace}/${name}" printed no pod id: ${(r.stdout + r.stderr).trim().slice(-1000)}`);
    }
    this.#pods.set(podId, { podId, name, namespace, configPath, logDir, containers: 0 });
    const inspect = await this.inspectPod(podId);
    const status = (inspect['status'] ?? {}) as { network?: { ip?: string; additionalIps?: Array<{ ip?: string }> } };
    const info = (inspect['info'] ?? {}) as { pid?: number; runtimeSpec?: { linux?: { namespaces?: Array<{ type?: string; path?: string }> } } };
    const ip = status.network?.ip ?? '';
    const ips = [ip, ...(status.network?.additionalIps ?? []).map((a) => a.ip ?? '')].filter((x) => x !== '');
    const netnsPath = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path ?? '';
    const pid = info.pid ?? 0;
    this.#log.info({ pod: key, podId: podId.slice(0, 12), ip, pid, ms }, 'pod sandbox running');
    return { podId, name, namespace, uid, ip, ips, pid, netnsPath, ms };
  }

  #pod(podId: string): PodRecord {
    const pod = this.#pods.get(podId);
    if (pod === undefined) throw new ContainerdError('E_CTRD_NOT_FOUND', `pod id "${String(podId)}" is not a pod of the runtime on node "${this.node.name}"`);
    return pod;
  }

  async inspectPod(podId: string): Promise<Record<string, unknown>> {
    this.#checkRunning();
    this.#pod(podId);
    const r = await this.crictl(['inspectp', '-o', 'json', podId], { timeoutMs: 30_000 });
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  async runContainer(podId: string, image: string, argv: readonly string[], opts: RunContainerOptions = {}): Promise<ContainerInfo> {
    this.#checkRunning();
    const pod = this.#pod(podId);
    if (typeof image !== 'string' || image === '') throw invalid(`image "${String(image)}" must be a non-empty image reference`);
    const command = checkArgv('argv', argv, true);
    const args = checkArgv('args', opts.args ?? [], true);
    const env = checkStringMap('env', opts.env);
    const name = opts.name ?? `c${pod.containers + 1}`;
    if (typeof name !== 'string' || !CONTAINER_NAME_RE.test(name)) throw invalid(`container name "${String(name)}" must be lowercase letters, digits, '-' or '.'`);
    if (opts.workingDir !== undefined && (typeof opts.workingDir !== 'string' || !isAbsolute(opts.workingDir))) {
      throw invalid(`workingDir "${String(opts.workingDir)}" must be an absolute path`);
    }
    pod.containers++;
    const logName = `${name}.log`;
    const config = {
      metadata: { name, attempt: 0 },
      image: { image },
      command,
      args,
      envs: Object.entries(env).map(([key, value]) => ({ key, value })),
      ...(opts.workingDir === undefined ? {} : { working_dir: opts.workingDir }),
      log_path: logName,
      linux: {},
    };
    const configPath = join(dirname(pod.configPath), `container-${name}.json`);
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const t0 = performance.now();
    const created = await this.crictl(['create', '--no-pull', podId, configPath, pod.configPath], { timeoutMs });
    const containerId = created.stdout.trim().split('\n').pop()?.trim() ?? '';
    if (!/^[0-9a-f]{64}$/.test(containerId)) {
      throw new ContainerdError('E_CTRD_COMMAND', `crictl create of "${name}" in pod "${pod.namespace}/${pod.name}" printed no container id: ${(created.stdout + created.stderr).trim().slice(-1000)}`);
    }
    const logPath = join(pod.logDir, logName);
    this.#containers.set(containerId, { podId, logPath });
    await this.crictl(['start', containerId], { timeoutMs });
    const ms = Math.round(performance.now() - t0);
    const inspect = JSON.parse((await this.crictl(['inspect', '-o', 'json', containerId], { timeoutMs: 30_000 })).stdout) as {
      status?: { state?: string };
      info?: { pid?: number };
    };
    const pid = inspect.info?.pid ?? 0;
    this.#log.info({ pod: `${pod.namespace}_${pod.name}`, container: name, containerId: containerId.slice(0, 12), image, pid, state: inspect.status?.state, ms }, 'container started');
    return { containerId, podId, name, pid, logPath, ms };
  }

  async exec(containerId: string, argv: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
    this.#checkRunning();
    if (!this.#containers.has(containerId)) {
      throw new ContainerdError('E_CTRD_NOT_FOUND', `container id "${String(containerId)}" is not a container of the runtime on node "${this.node.name}"`);
    }
    const command = checkArgv('argv', argv, false);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    const r = await this.crictl(['exec', '--sync', `--timeout=${seconds}`, containerId, ...command], { timeoutMs: timeoutMs + 10_000, allowFail: true });
    if (r.code !== 0 && opts.allowFail !== true) {
      throw new ContainerdError('E_CTRD_COMMAND', `exec ${formatArgv(command)} in container ${containerId.slice(0, 12)} on node ${this.node.name} exited with ${r.code}: ${(r.stderr || r.stdout).trim().slice(-2000)}`);
    }
    return r;
  }

  async stopPod(podId: string): Promise<void> {
    this.#checkRunning();
    this.#pod(podId);
    await this.crictl(['stopp', podId], { timeoutMs: 60_000 });
  }

  async removePod(podId: string): Promise<void> {
    this.#checkRunning();
    this.#pod(podId);
    await this.crictl(['stopp', podId], { timeoutMs: 60_000 });
    await this.crictl(['rmp', podId], { timeoutMs: 60_000 });
    this.#pods.delete(podId);
    for (const [id, c] of this.#containers) if (c.podId === podId) this.#containers.delete(id);
  }

  async importImage(tarPath: string): Promise<string[]> {
    this.#checkRunning();
    if (typeof tarPath !== 'string' || !isAbsolute(tarPath) || !existsSync(tarPath)) {
      throw invalid(`image archive "${String(tarPath)}" must be the absolute path of an existing file`);
    }
    const names = await archiveImageNames(tarPath);
    const argv = [this.binaries.ctr, '--address', this.socketPath, '--namespace', CRI_NAMESPACE, 'images', 'import', tarPath];
    const t0 = performance.now();
    try {
      await run(argv, { timeoutMs: 120_000, context: `importing ${basename(tarPath)} into containerd of node ${this.node.name}` });
    } catch (err) {
      throw new ContainerdError('E_CTRD_COMMAND', err instanceof Error ? err.message : String(err), { cause: err });
    }
    // The CRI learns about images from containerd's events: wait until it lists them.
    const deadline = Date.now() + 10_000;
    for (const name of names) {
      for (;;) {
        const r = await this.crictl(['inspecti', '-q', name], { timeoutMs: 10_000, allowFail: true });
        if (r.code === 0) break;
        if (Date.now() > deadline) throw new ContainerdError('E_CTRD_TIMEOUT', `image ${name} imported from ${tarPath} is not listed by the CRI after 10 s: ${r.stderr.trim()}`);
        await sleep(50);
      }
    }
    this.#log.info({ archive: tarPath, images: names, ms: Math.round(performance.now() - t0) }, 'image imported');
    return names;
  }

  processes(): number[] {
    return cgroupPids(this.#trackDir);
  }

  stop(): Promise<StopReport> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<StopReport> {
    const t0 = performance.now();
    const report: StopReport = { podsRemoved: [], killed: [], cgroupsRemoved: [], problems: [] };
    if (this.#syncDone) return report;
    const proc = this.#proc;
    if (proc !== undefined && proc.status === undefined) {
      // Every pod containerd knows, not only ours: a CNI DEL for each, through the CRI.
      const listed = await this.crictl(['pods', '-q'], { timeoutMs: 30_000, allowFail: true }).catch((err: unknown) => err as Error);
      const ids = listed instanceof Error || listed.code !== 0 ? [...this.#pods.keys()] : listed.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
      for (const id of ids) {
        const stopped = await this.crictl(['stopp', id], { timeoutMs: 60_000, allowFail: true }).catch((err: unknown) => err as Error);
        const removed = stopped instanceof Error || stopped.code !== 0 ? stopped : await this.crictl(['rmp', id], { timeoutMs: 60_000, allowFail: true }).catch((err: unknown) => err as Error);
        if (removed instanceof Error || removed.code !== 0) {
          report.problems.push(`removing pod ${id.slice(0, 12)}: ${removed instanceof Error ? removed.message : removed.stderr.trim()}`);
        } else {
          report.podsRemoved.push(id);
        }
      }
      const st = await proc.stop({ graceMs: 5000 });
      if (st.signal === 'SIGKILL') report.problems.push('containerd did not exit on SIGTERM within 5 s');
    }
    this.#pods.clear();
    this.#containers.clear();
    this.#finish(report, 5000);
    this.#unregister();
    if (this.#ownsDir) {
      try {
        await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (err) {
        report.problems.push(`removing ${this.dir}: ${(err as Error).message}`);
      }
    }
    const level = report.problems.length === 0 ? 'info' : 'warn';
    this.#log[level]({ ...report, ms: Math.round(performance.now() - t0) }, 'containerd stopped');
    return report;
  }

  /** Kill what is left in the cgroup subtree, remove the cgroups, note mounts that outlived it. */
  #finish(report: StopReport, killTimeoutMs: number): void {
    if (!this.#ownsCgroup) return;
    const { killed, left } = killCgroupSync(this.#trackDir, killTimeoutMs);
    report.killed.push(...killed);
    if (left.length > 0) report.problems.push(`processes still in ${this.#trackDir}: ${left.join(' ')}`);
    const cg = removeCgroupsSync(this.cgroupName, 2000);
    report.cgroupsRemoved.push(...cg.removed);
    if (cg.left.length > 0) report.problems.push(`cgroups not removed: ${cg.left.join(' ')}`);
    const mounts = mountsUnder(this.dir);
    if (mounts.length > 0) report.problems.push(`mounts under ${this.dir} still alive: ${mounts.map((m) => `pid ${m.pid}: ${m.line.split(' ')[4]}`).join('; ')}`);
  }

  #register(): void {
    if (this.#registered) return;
    this.#registered = true;
    process.on('exit', this.#onExit);
    process.on('uncaughtExceptionMonitor', this.#onUncaught);
    process.on('SIGINT', this.#onSignal);
    process.on('SIGTERM', this.#onSignal);
  }

  #unregister(): void {
    if (!this.#registered) return;
    this.#registered = false;
    process.off('exit', this.#onExit);
    process.off('uncaughtExceptionMonitor', this.#onUncaught);
    process.off('SIGINT', this.#onSignal);
    process.off('SIGTERM', this.#onSignal);
  }

  /**
   * Cleanup that cannot wait (process exit, a fatal signal, an uncaught
   * exception): no CRI calls, SIGKILL by pid of containerd and everything in
   * its cgroup subtree, cgroups and directory removed.
   */
  #cleanupSync(why: string): void {
    if (this.#syncDone) return;
    this.#syncDone = true;
    this.#proc?.killNow();
    const report: StopReport = { podsRemoved: [], killed: [], cgroupsRemoved: [], problems: [] };
    this.#finish(report, 3000);
    if (this.#ownsDir) {
      try {
        rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (err) {
        report.problems.push(`removing ${this.dir}: ${(err as Error).message}`);
      }
    }
    this.#unregister();
    this.#log.debug({ why, ...report }, 'containerd cleaned up on process exit');
  }
}

interface CriCondition {
  type?: string;
  status?: boolean;
  reason?: string;
  message?: string;
}

/** The runtime conditions from `crictl info` (RuntimeReady, NetworkReady). */
function criConditions(stdout: string): Map<string, CriCondition> {
  const out = new Map<string, CriCondition>();
  try {
    const v = JSON.parse(stdout) as { status?: { conditions?: CriCondition[] } };
    for (const c of v.status?.conditions ?? []) if (c.type !== undefined) out.set(c.type, c);
  } catch {
    // not JSON: no conditions
  }
  return out;
}

/**
 * The image names an OCI archive carries in index.json: io.containerd.image.name
 * (the full reference, which containerd's importer uses) per manifest.
 */
export async function archiveImageNames(tarPath: string): Promise<string[]> {
  const list = await run(['tar', '-tf', tarPath], { timeoutMs: 30_000, context: `listing ${tarPath}` });
  const member = list.stdout.split('\n').find((m) => m === 'index.json' || m === './index.json');
  if (member === undefined) throw invalid(`image archive "${tarPath}" has no index.json (not an OCI image layout archive)`);
  const r = await run(['tar', '-xOf', tarPath, member], { timeoutMs: 30_000, context: `reading ${tarPath}` });
  let index: { manifests?: Array<{ annotations?: Record<string, string> }> };
  try {
    index = JSON.parse(r.stdout) as typeof index;
  } catch {
    throw invalid(`image archive "${tarPath}" has an index.json that is not JSON`);
  }
  const names = (index.manifests ?? []).map((m) => m.annotations?.['io.containerd.image.name'] ?? '').filter((n) => n !== '');
  if (names.length === 0) {
    throw invalid(`image archive "${tarPath}" names no image (no io.containerd.image.name annotation in index.json; build it with hack/containerd/oci-image.sh)`);
  }
  return names;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function logTail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Start containerd for one node of a topology, inside the node's netns and a
 * private mount namespace, and wait until it answers the CRI (RuntimeReady)
 * with the pause image imported. Always stop() it (also done on process exit
 * and signals); stop it before destroying the topology for a clean CNI DEL.
 */
export async function startContainerd(topo: Topology, node: Node, opts: StartContainerdOptions): Promise<Runtime> {
  if (!topo.nodes.includes(node)) throw invalid(`node "${String(node?.name)}" is not a node of topology "${topo.name}"`);
  if (typeof opts.workDir !== 'string' || !isAbsolute(opts.workDir)) throw invalid(`workDir "${String(opts.workDir)}" must be an absolute path`);
  const socketPath = join(opts.workDir, `containerd-${node.name}`, 'containerd.sock.ttrpc');
  if (Buffer.byteLength(socketPath) > UNIX_PATH_MAX) {
    throw invalid(`workDir "${opts.workDir}" is too long for containerd's sockets inside it (${socketPath} is over ${UNIX_PATH_MAX} bytes)`);
  }
  if (!Array.isArray(opts.cniBinDirs) || opts.cniBinDirs.length === 0) throw invalid(`cniBinDirs ${JSON.stringify(opts.cniBinDirs)} must be a non-empty array of directories`);
  for (const [i, d] of opts.cniBinDirs.entries()) {
    // A kubelet node's /opt/cni/bin is inside its mount namespace (made at start).
    if (typeof d !== 'string' || !isAbsolute(d) || (opts.kubeletNode !== true && !existsSync(d))) throw invalid(`cniBinDirs[${i}] "${String(d)}" must be the absolute path of an existing directory`);
  }
  if (typeof opts.cniConfDir !== 'string' || !isAbsolute(opts.cniConfDir)) throw invalid(`cniConfDir "${String(opts.cniConfDir)}" must be an absolute path`);
  checkStringMap('env', opts.env);
  const hierarchies = cgroupHierarchies();
  const track = trackingHierarchy(hierarchies);
  const binaries = opts.binaries ?? await containerdBinaries(opts.log === undefined ? {} : { log: opts.log });
  await mkdir(opts.workDir, { recursive: true });
  if (opts.kubeletNode !== true) await mkdir(opts.cniConfDir, { recursive: true });
  const rt = new ContainerdRuntime(topo, node, opts, binaries, track);
  try {
    await rt.start();
  } catch (err) {
    await rt.stop();
    throw err;
  }
  return rt;
}
