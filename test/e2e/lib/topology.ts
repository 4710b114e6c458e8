// A cluster of "nodes", "pods" and outside hosts built from network namespaces on
// this one machine, for the datapath tests, demos and benchmarks.
//
//   fabric netns:  br0 (the L2 network between machines) + one veth end per machine
//   node netns:    eth0 (peer enslaved to br0), node IP on the fabric subnet,
//                  ip_forward=1, rp_filter=0, one lxcXXXX veth per pod,
//                  routes podIP/32 dev lxcXXXX and (routePodCidrs) other nodes'
//                  pod CIDRs via their node IPs
//   pod netns:     eth0 with podIP/32, default via 169.254.1.1 (a permanent
//                  neighbour entry pointing at the host-side veth's MAC)
//   host netns:    an outside machine (client, control plane) on the fabric
//   scratch netns: loopback only, on no network (to load rulesets into where no
//                  traffic is needed)
//
// Every namespace name starts with a per-run prefix `hy<base36 pid><2 random>-`, so
// a crashed run can be recognised and swept (Topology.sweepStale). Commands run
// inside a namespace through `nsenter --net=/run/netns/<name>`, never `ip netns
// exec`: the latter remounts /sys and hides /sys/fs/bpf, where the BPF maps are
// pinned.
//
// Setup uses the `ip` command on purpose: this is test scaffolding, and the
// product's endpoint code (rtnetlink through the native addon) is what it tests.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Address4 } from 'ip-address';
import { pino, type Logger } from 'pino';
export { Proc, isProcError, waitForReady, type ExitStatus } from './proc.ts';
import {
  Proc,
  lastJsonObject,
  run,
  waitForReady,
  type RunOptions,
  type RunResult,
  type StartOptions,
  type WaitOptions,
} from './proc.ts';

export const NETNS_DIR = '/run/netns';
/** Set as the alias of `lo` in every namespace a Topology creates; sweepStale looks for it. */
export const NETNS_MARKER = 'hypha-topology';
/** The link-local gateway every pod routes through (answered by a static neighbour entry). */
export const POD_GATEWAY = '169.254.1.1';
export const DEFAULT_FABRIC_CIDR = '192.168.77.0/24';
export const BRIDGE = 'br0';

/** `hy` + base36 pid + 2 random base36 chars + `-`. */
const PREFIX_RE = /^hy([0-9a-z]{1,6})([0-9a-z]{2})-/;
const NAME_RE = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
const PID_MAX_LIMIT = 4_194_304; // kernel's PID_MAX_LIMIT on 64-bit
const RESERVED_NAMES = new Set(['fabric']);

export type TopologyErrorCode =
  | 'INVALID_ARGUMENT' // a field has a bad value (the message names it)
  | 'DUPLICATE' // a name or address already used in this topology
  | 'EXHAUSTED' // no free address left
  | 'DESTROYED' // the topology was destroyed
  | 'STEP_FAILED' // creating something failed; what was created was removed
  | 'BAD_OUTPUT'; // a tool printed no JSON result

export class TopologyError extends Error {
  readonly code: TopologyErrorCode;
  constructor(code: TopologyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TopologyError';
    this.code = code;
  }
}

export function isTopologyError(err: unknown, code?: TopologyErrorCode): err is TopologyError {
  return err instanceof TopologyError && (code === undefined || err.code === code);
}

export interface Fabric {
  readonly kind: 'fabric';
  readonly name: 'fabric';
  readonly netns: string;
  readonly bridge: string;
  /** The subnet shared by nodes and hosts, e.g. 192.168.77.0/24. */
  readonly cidr: string;
}

export interface Node {
  readonly kind: 'node';
  readonly name: string;
  readonly netns: string;
  /** 1-based position in creation order; the defaults derive from it. */
  readonly index: number;
  /** Address on the fabric (without prefix length). */
  readonly ip: string;
  readonly podCidr: string;
  readonly eth0: 'eth0';
  readonly mac: string;
  /** The veth end in the fabric netns, enslaved to br0. */
  readonly fabricIfname: string;
}

export interface Pod {
  readonly kind: 'pod';
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  /** MAC of the pod's eth0. */
  readonly mac: string;
  /** Host-side veth in the node netns: `lxc` + 11 hex chars of sha256(pod name). */
  readonly hostIfname: string;
  readonly hostIfindex?: number;
  readonly hostMac: string;
  readonly node: Node;
}

export interface Host {
  readonly kind: 'host';
  readonly name: string;
  readonly netns: string;
  readonly role: 'external' | 'control-plane';
  readonly ip: string;
  readonly mac: string;
  readonly fabricIfname: string;
}

/** A namespace with only `lo` (up, marked): no devices, addresses or routes. */
export interface Scratch {
  readonly kind: 'scratch';
  readonly name: string;
  readonly netns: string;
}

export type Member = Fabric | Node | Pod | Host | Scratch;
/** Where to run something: a member of the topology, or a netns name. */
export type Where = Member | string;

export interface Route {
  /** Destination prefix (`10.96.0.0/12`), address, or `default`. */
  to: string;
  via: string;
}

export interface CreateOptions {
  /** A label for logs, e.g. `lb`. */
  name: string;
  /** Default 192.168.77.0/24. */
  fabricCidr?: string;
  /** Debug-level logging of every step. Default: silent (or HYPHA_E2E_LOG=debug). */
  log?: Logger;
}

export interface AddNodeOptions {
  /** Default: fabric network address + 10 + index. */
  ip?: string;
  /** Default: 10.244.<index>.0/24. */
  podCidr?: string;
}

export interface AddPodOptions {
  /** Default: the next free address of the node's pod CIDR. Not with a node's
   *  pod wiring (its IPAM picks the address). */
  ip?: string;
  /** The pod's Kubernetes namespace, for a pod wiring (CNI_ARGS). Default `default`. */
  namespace?: string;
}

/** What connects a pod's namespace to its node instead of the harness's own
 *  `ip` commands: the CNI plugin (test/e2e/lib/cni.ts), driven the way a
 *  container runtime drives it. */
export interface PodWiring {
  /** The namespace exists (loopback up); connect it and say what it got. */
  attach(p: { name: string; namespace: string; netns: string; netnsPath: string; node: Node }): Promise<{ ip: string; mac: string; hostIfname: string; hostIfindex?: number; hostMac: string }>;
  /** Undo attach (before the namespace is deleted). */
  detach(pod: Pod): Promise<void>;
}

export interface AddHostOptions {
  /** Default: the first free fabric address from network + 200. */
  ip?: string;
  routes?: Route[];
}

export type ExecResult = RunResult;

export interface SweepResult {
  /** Namespaces deleted. */
  removed: string[];
  /** Namespaces with the prefix shape that were left alone, and why. */
  kept: Array<{ netns: string; reason: 'pid-alive' | 'not-ours' }>;
}

/** argv that runs `argv` inside network namespace `netns` (and nothing else changed). */
export function nsExecArgv(netns: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=${NETNS_DIR}/${netns}`, ...argv];
}

/** The directory holding the traffic tools (echo-server.ts, client.ts). */
export const TOOLS_DIR = fileURLToPath(new URL('../tools/', import.meta.url));

/** Built by `make build` from test/e2e/bpf/xdp_pass.c. */
export const FABRIC_XDP_OBJECT = fileURLToPath(new URL('../../../bpf/build/test/xdp_pass.o', import.meta.url));

/** argv that runs one of test/e2e/tools with this Node binary: toolArgv('client', ['once', ...]). */
export function toolArgv(tool: 'echo-server' | 'client', args: readonly string[]): string[] {
  return [process.execPath, `${TOOLS_DIR}${tool}.ts`, ...args];
}

/** Namespace names under /run/netns (none when the directory does not exist). */
export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The pid a prefix like `hy2bk4x7-` encodes, or undefined if the name has no such prefix. */
export function prefixPid(netns: string): number | undefined {
  const m = PREFIX_RE.exec(netns);
  return m?.[1] === undefined ? undefined : Number.parseInt(m[1], 36);
}

/** True while `pid` runs (a zombie, exited but not reaped, counts as gone). */
export function pidAlive(pid: number): boolean {
  if (pid <= 1) return true; // never treat init (or a parse accident) as gone
  if (pid > PID_MAX_LIMIT) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false; // gone between the two looks
  }
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Deterministic locally administered unicast MAC. */
function macFor(seed: string): string {
  const b = createHash('sha256').update(`mac:${seed}`).digest().subarray(0, 6);
  b[0] = ((b[0] ?? 0) & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Host-side veth name of a pod: `lxc` + 11 hex chars of sha256(pod name) (14 chars). */
export function hostIfnameFor(podName: string): string {
  return `lxc${sha256Hex(podName).slice(0, 11)}`;
}

function fabricMacFor(member: `node:${string}` | `host:${string}`): string {
  return macFor(`fabric:${member}`);
}

/** Fabric-side veth of a node or host: `fab` + 11 hex chars of sha256(`node:<name>` | `host:<name>`). */
export function fabricIfnameFor(member: `node:${string}` | `host:${string}`): string {
  return `fab${sha256Hex(member).slice(0, 11)}`;
}

function parseAddress(field: string, value: string): Address4 {
  let a: Address4;
  try {
    a = new Address4(value);
  } catch {
    throw new TopologyError('INVALID_ARGUMENT', `${field} "${value}" is not a valid IPv4 address`);
  }
  if (a.subnetMask !== 32 || value.includes('/')) {
    throw new TopologyError(
      'INVALID_ARGUMENT',
      `${field} "${value}" must be a plain IPv4 address without a prefix length`,
    );
  }
  return a;
}

function parsePrefix(field: string, value: string, maxLen = 32): Address4 {
  let a: Address4;
  try {
    a = new Address4(value);
  } catch {
    throw new TopologyError('INVALID_ARGUMENT', `${field} "${value}" is not a valid IPv4 prefix`);
  }
  if (!value.includes('/')) {
    throw new TopologyError('INVALID_ARGUMENT', `${field} "${value}" needs a prefix length`);
  }
  if (a.startAddress().correctForm() !== a.correctForm()) {
    throw new TopologyError(
      'INVALID_ARGUMENT',
      `${field} "${value}" has host bits set (network address is ${a.startAddress().correctForm()}/${a.subnetMask})`,
    );
  }
  if (a.subnetMask > maxLen) {
    throw new TopologyError('INVALID_ARGUMENT', `${field} "${value}" is longer than /${maxLen}`);
  }
  return a;
}

function rangeOf(p: Address4): [bigint, bigint] {
  return [p.startAddress().bigInt(), p.endAddress().bigInt()];
}

function addrOf(n: bigint): string {
  return Address4.fromBigInt(n).correctForm();
}

function validateRoute(field: string, r: Route): void {
  if (r.to !== 'default') {
    try {
      new Address4(r.to);
    } catch {
      throw new TopologyError('INVALID_ARGUMENT', `${field}.to "${r.to}" is not an IPv4 address or prefix`);
    }
  }
  parseAddress(`${field}.via`, r.via);
}

/** Silent unless HYPHA_E2E_LOG names a level (then to stderr, keeping stdout for results). */
function defaultLogger(): Logger {
  const level = process.env['HYPHA_E2E_LOG'];
  return level === undefined || level === ''
    ? pino({ level: 'silent' })
    : pino({ name: 'topology', level }, pino.destination(2));
}

interface NodeState {
  node: Node;
  range: [bigint, bigint];
  podIps: Set<string>;
  hostIfnames: Set<string>;
  wiring?: PodWiring;
}

/**
 * A set of namespaces forming a small cluster. Create with `Topology.create`; always
 * `destroy()` (also registered for process exit, SIGINT, SIGTERM and uncaught
 * exceptions).
 */
export class Topology {
  readonly name: string;
  readonly prefix: string;
  readonly fabric: Fabric;
  readonly #log: Logger;
  readonly #fabricRange: [bigint, bigint];
  readonly #fabricLen: number;
  /** Every netns this topology created and has not deleted yet. */
  readonly #netns = new Set<string>();
  readonly #names = new Set<string>(['fabric']);
  readonly #addresses = new Set<string>();
  readonly #nodes = new Map<string, NodeState>();
  readonly #pods = new Map<string, Pod>();
  readonly #hosts = new Map<string, Host>();
  readonly #scratches = new Map<string, Scratch>();
  readonly #procs = new Map<Proc, string>();
  readonly #children = new Set<ChildProcess>();
  readonly #pending = new Set<Promise<unknown>>();
  #nodeSeq = 0;
  #destroying: Promise<void> | undefined;
  #syncDone = false;
  /** Set once this topology created `<prefix>fabric`: from then on every `<prefix>*` is ours. */
  #ownsPrefix = false;
  readonly #onExit = (): void => this.#destroySync('exit');
  readonly #onUncaught = (): void => this.#destroySync('uncaughtException');
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    this.#destroySync(signal);
    // Behave as if we were not there: if nobody else handles the signal, die of it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };

  private constructor(name: string, prefix: string, fabricCidr: Address4, log: Logger) {
    this.name = name;
    this.prefix = prefix;
    this.#log = log;
    this.#fabricRange = rangeOf(fabricCidr);
    this.#fabricLen = fabricCidr.subnetMask;
    this.fabric = {
      kind: 'fabric',
      name: 'fabric',
      netns: `${prefix}fabric`,
      bridge: BRIDGE,
      cidr: `${fabricCidr.correctForm()}/${fabricCidr.subnetMask}`,
    };
  }

  /** Build the fabric (a netns with bridge br0) and register the cleanup hooks. */
  static async create(opts: CreateOptions): Promise<Topology> {
    if (typeof opts.name !== 'string' || !NAME_RE.test(opts.name)) {
      throw new TopologyError(
        'INVALID_ARGUMENT',
        `topology name "${String(opts.name)}" must be lowercase letters, digits, '-' or '.'`,
      );
    }
    const fabricCidr = parsePrefix('fabricCidr', opts.fabricCidr ?? DEFAULT_FABRIC_CIDR, 28);
    const baseLog = opts.log ?? defaultLogger();
    // The prefix is ours once `ip netns add <prefix>fabric` succeeds (it fails when the
    // file exists). A prefix already in use, or taken by a topology created at the same
    // moment in this process, is never adopted, so destroy() cannot touch a sibling's.
    for (let attempt = 0; attempt < 20; attempt++) {
      const prefix = `hy${process.pid.toString(36)}${randomInt(36 * 36).toString(36).padStart(2, '0')}-`;
      if (listNetns().some((n) => n.startsWith(prefix))) continue;
      const topo = new Topology(opts.name, prefix, fabricCidr, baseLog.child({ topology: opts.name, prefix }));
      const t0 = performance.now();
      try {
        await run(['ip', 'netns', 'add', topo.fabric.netns], { context: `topology ${opts.name}` });
      } catch (err) {
        if (listNetns().includes(topo.fabric.netns)) continue; // lost a race for this prefix
        throw new TopologyError('STEP_FAILED', `creating the fabric of topology "${opts.name}" failed: ${(err as Error).message}`, { cause: err });
      }
      topo.#ownsPrefix = true;
      topo.#netns.add(topo.fabric.netns);
      topo.#register();
      try {
        await topo.#ip(topo.fabric.netns, [
          `link set dev lo up alias ${NETNS_MARKER}`,
          `link add ${BRIDGE} type bridge stp_state 0 forward_delay 0`,
          `link set ${BRIDGE} up`,
        ]);
      } catch (err) {
        await topo.destroy();
        throw new TopologyError('STEP_FAILED', `creating the fabric of topology "${opts.name}" failed: ${(err as Error).message}`, { cause: err });
      }
      topo.#log.debug({ netns: topo.fabric.netns, ms: +(performance.now() - t0).toFixed(1) }, 'fabric created');
      return topo;
    }
    throw new TopologyError('EXHAUSTED', `no free netns prefix for pid ${process.pid}`);
  }

  get nodes(): Node[] {
    return [...this.#nodes.values()].map((s) => s.node);
  }

  get pods(): Pod[] {
    return [...this.#pods.values()];
  }

  get hosts(): Host[] {
    return [...this.#hosts.values()];
  }

  get scratches(): Scratch[] {
    return [...this.#scratches.values()];
  }

  /** Every namespace this topology currently owns. */
  get namespaces(): string[] {
    return [...this.#netns];
  }

  /** The bind-mount path of a member's namespace, e.g. for setns from the native addon. */
  netnsPath(where: Where): string {
    return `${NETNS_DIR}/${this.#netnsOf(where)}`;
  }

  /**
   * Add a node: netns with eth0 on the fabric, ip_forward=1, rp_filter=0.
   * Defaults: IP = fabric network + 10 + index, pod CIDR 10.244.<index>.0/24
   * (index is 1-based in creation order).
   */
  addNode(name: string, opts: AddNodeOptions = {}): Promise<Node> {
    return this.#op(() => this.#addNode(name, opts));
  }

  async #addNode(name: string, opts: AddNodeOptions): Promise<Node> {
    this.#checkName('node name', name);
    const explicitIp = opts.ip === undefined ? undefined : this.#fabricIp('node ip', opts.ip);
    const explicitCidr = opts.podCidr === undefined ? undefined : parsePrefix('podCidr', opts.podCidr, 30);
    // Taken before the first await, so nodes added in parallel get distinct numbers;
    // given back when this node fails and no other was numbered after it.
    const index = ++this.#nodeSeq;
    try {
      return await this.#createNode(name, index, explicitIp, explicitCidr);
    } catch (err) {
      if (this.#nodeSeq === index) this.#nodeSeq--;
      throw err;
    }
  }

  async #createNode(name: string, index: number, explicitIp: string | undefined, explicitCidr: Address4 | undefined): Promise<Node> {
    const ip = explicitIp ?? this.#defaultNodeIp(index);
    if (explicitCidr === undefined && index > 255) {
      throw new TopologyError('INVALID_ARGUMENT', `node "${name}" is number ${index}: pass podCidr explicitly beyond 255 nodes`);
    }
    const cidr = explicitCidr ?? parsePrefix('podCidr', `10.244.${index}.0/24`);
    const range = rangeOf(cidr);
    for (const other of this.#nodes.values()) {
      if (range[0] <= other.range[1] && other.range[0] <= range[1]) {
        throw new TopologyError('DUPLICATE', `podCidr "${cidr.correctForm()}/${cidr.subnetMask}" overlaps node "${other.node.name}" (${other.node.podCidr})`);
      }
    }
    this.#claimAddress('node ip', ip);
    this.#names.add(name);
    const node: Node = {
      kind: 'node',
      name,
      netns: `${this.prefix}${name}`,
      index,
      ip,
      podCidr: `${cidr.correctForm()}/${cidr.subnetMask}`,
      eth0: 'eth0',
      mac: macFor(`node:${name}`),
      fabricIfname: fabricIfnameFor(`node:${name}`),
    };
    const t0 = performance.now();
    try {
      await this.#addNetns(node.netns);
      // Before eth0 exists: a new netns inherits the root's IPv4 defaults, and a
      // device takes `default` when it is created.
      await this.exec(node, [
        'sysctl', '-q', '-w',
        'net.ipv4.ip_forward=1',
        'net.ipv4.conf.all.rp_filter=0',
        'net.ipv4.conf.default.rp_filter=0',
      ]);
      await this.#plugIntoFabric(node.netns, `node:${name}`, node.mac);
      await Promise.all([
        this.#ip(node.netns, [
          `addr add ${ip}/${this.#fabricLen} dev eth0`,
          'link set eth0 up',
        ]),
        // Frames a node sends back with XDP_TX arrive on this veth end as XDP
        // frames; a veth only receives those with GRO (NAPI) on...
        this.exec(this.fabric, ['ethtool', '-K', node.fabricIfname, 'gro', 'on']),
      ]);
      // ...and only flushes them to this end when it runs an XDP program
      // (drivers/net/veth.c, veth_xdp_flush). A real NIC has no such rule,
      // so the fabric plays the wire with a pass-through program.
      await this.exec(this.fabric, ['ip', 'link', 'set', 'dev', node.fabricIfname, 'xdpdrv', 'obj', FABRIC_XDP_OBJECT, 'sec', 'xdp']);
    } catch (err) {
      await this.#undoMember(node.netns, [{ netns: this.fabric.netns, ifname: node.fabricIfname, mac: fabricMacFor(`node:${name}`) }]);
      this.#names.delete(name);
      this.#addresses.delete(ip);
      throw new TopologyError('STEP_FAILED', `adding node "${name}" failed: ${(err as Error).message}`, { cause: err });
    }
    this.#nodes.set(name, { node, range, podIps: new Set(), hostIfnames: new Set() });
    this.#log.debug({ node: name, netns: node.netns, ip, podCidr: node.podCidr, ms: +(performance.now() - t0).toFixed(1) }, 'node added');
    return node;
  }

  /**
   * Add a pod on a node: a netns whose eth0 is the peer of `lxcXXXX` in the node
   * netns, created there directly (never moved). IP/32, default via 169.254.1.1
   * with a permanent neighbour entry to the host-side veth's MAC.
   */
  addPod(node: Node, name: string, opts: AddPodOptions = {}): Promise<Pod> {
    return this.#op(() => (this.#nodes.get(node?.name)?.wiring ? this.#addWiredPod(node, name, opts) : this.#addPod(node, name, opts)));
  }

  /** Pods of this node are connected by `wiring` from now on (undefined: by
   *  the harness's `ip` commands again). Pods that exist keep how they were made. */
  setPodWiring(node: Node, wiring: PodWiring | undefined): void {
    const state = this.#nodes.get(node?.name);
    if (state === undefined || state.node !== node) throw new TopologyError('INVALID_ARGUMENT', `node "${String(node?.name)}" is not a node of topology "${this.name}"`);
    state.wiring = wiring;
  }

  readonly #wiredBy = new Map<string, PodWiring>();

  async #addWiredPod(nodeRef: Node, name: string, opts: AddPodOptions): Promise<Pod> {
    const state = this.#nodes.get(nodeRef.name);
    const wiring = state?.wiring;
    if (state === undefined || wiring === undefined || state.node !== nodeRef) {
      throw new TopologyError('INVALID_ARGUMENT', `node "${String(nodeRef?.name)}" is not a node of topology "${this.name}"`);
    }
    if (opts.ip !== undefined) throw new TopologyError('INVALID_ARGUMENT', `pod "${name}": ip ${JSON.stringify(opts.ip)} cannot be chosen on node "${nodeRef.name}": its pod wiring's IPAM picks addresses`);
    this.#checkName('pod name', name);
    this.#names.add(name);
    const netns = `${this.prefix}${name}`;
    const t0 = performance.now();
    let got: Awaited<ReturnType<PodWiring['attach']>>;
    try {
      await this.#addNetns(netns);
      got = await wiring.attach({ name, namespace: opts.namespace ?? 'default', netns, netnsPath: `${NETNS_DIR}/${netns}`, node: state.node });
      this.#claimAddress('pod ip', got.ip);
    } catch (err) {
      await this.#undoMember(netns, []);
      this.#names.delete(name);
      throw new TopologyError('STEP_FAILED', `adding pod "${name}" on node "${nodeRef.name}" failed: ${(err as Error).message}`, { cause: err });
    }
    state.podIps.add(got.ip);
    state.hostIfnames.add(got.hostIfname);
    const pod: Pod = { kind: 'pod', name, netns, ip: got.ip, mac: got.mac, hostIfname: got.hostIfname, ...(got.hostIfindex === undefined ? {} : { hostIfindex: got.hostIfindex }), hostMac: got.hostMac, node: state.node };
    this.#pods.set(name, pod);
    this.#wiredBy.set(name, wiring);
    this.#log.debug({ pod: name, node: nodeRef.name, ip: got.ip, hostIfname: got.hostIfname, ms: +(performance.now() - t0).toFixed(1) }, 'pod added through its wiring');
    return pod;
  }

  async #addPod(nodeRef: Node, name: string, opts: AddPodOptions): Promise<Pod> {
    const state = this.#nodes.get(nodeRef?.name);
    if (state === undefined || state.node !== nodeRef) {
      throw new TopologyError('INVALID_ARGUMENT', `node "${String(nodeRef?.name)}" is not a node of topology "${this.name}"`);
    }
    this.#checkName('pod name', name);
    const node = state.node;
    const ip = opts.ip === undefined ? this.#nextPodIp(state) : parseAddress('pod ip', opts.ip).correctForm();
    const hostIfname = hostIfnameFor(name);
    if (state.hostIfnames.has(hostIfname)) {
      throw new TopologyError('DUPLICATE', `pod "${name}" hashes to host interface ${hostIfname}, already used on node "${node.name}"; pick another name`);
    }
    this.#claimAddress('pod ip', ip);
    this.#names.add(name);
    state.podIps.add(ip);
    state.hostIfnames.add(hostIfname);
    const netns = `${this.prefix}${name}`;
    const mac = macFor(`pod:${name}`);
    const hostMac = macFor(`lxc:${name}`);
    const t0 = performance.now();
    let hostIfindex: number | undefined;
    try {
      await this.#addNetns(netns);
      await this.#ip(node.netns, [
        `link add ${hostIfname} address ${hostMac} type veth peer name eth0 address ${mac} netns ${netns}`,
        `link set ${hostIfname} up`,
        `route add ${ip}/32 dev ${hostIfname} scope link`,
      ]);
      const [, shown] = await Promise.all([
        this.#ip(netns, [
          `addr add ${ip}/32 dev eth0`,
          'link set eth0 up',
          `route add ${POD_GATEWAY} dev eth0 scope link`,
          `route add default via ${POD_GATEWAY} dev eth0`,
          `neigh replace ${POD_GATEWAY} lladdr ${hostMac} dev eth0 nud permanent`,
        ]),
        this.exec(node, ['ip', '-j', 'link', 'show', 'dev', hostIfname]),
      ]);
      const links = JSON.parse(shown.stdout) as Array<{ ifindex?: number }>;
      hostIfindex = links[0]?.ifindex;
    } catch (err) {
      await this.#undoMember(netns, [{ netns: node.netns, ifname: hostIfname, mac: hostMac }]);
      this.#names.delete(name);
      this.#addresses.delete(ip);
      state.podIps.delete(ip);
      state.hostIfnames.delete(hostIfname);
      throw new TopologyError('STEP_FAILED', `adding pod "${name}" on node "${node.name}" failed: ${(err as Error).message}`, { cause: err });
    }
    const pod: Pod = {
      kind: 'pod',
      name,
      netns,
      ip,
      mac,
      hostIfname,
      ...(hostIfindex === undefined ? {} : { hostIfindex }),
      hostMac,
      node,
    };
    this.#pods.set(name, pod);
    this.#log.debug({ pod: name, node: node.name, ip, hostIfname, ms: +(performance.now() - t0).toFixed(1) }, 'pod added');
    return pod;
  }

  /** Remove a pod: stop its processes, delete its veth (and so its route) and its netns. */
  removePod(pod: Pod): Promise<void> {
    return this.#op(async () => {
      if (this.#pods.get(pod.name) !== pod) {
        throw new TopologyError('INVALID_ARGUMENT', `pod "${pod.name}" is not a pod of topology "${this.name}"`);
      }
      await this.#stopProcsIn(pod.netns);
      const wiring = this.#wiredBy.get(pod.name);
      if (wiring) {
        await wiring.detach(pod);
        this.#wiredBy.delete(pod.name);
        await this.#undoMember(pod.netns, []);
      } else {
        await this.#undoMember(pod.netns, [{ netns: pod.node.netns, ifname: pod.hostIfname, mac: pod.hostMac }]);
      }
      const state = this.#nodes.get(pod.node.name);
      state?.podIps.delete(pod.ip);
      state?.hostIfnames.delete(pod.hostIfname);
      this.#pods.delete(pod.name);
      this.#names.delete(pod.name);
      this.#addresses.delete(pod.ip);
      this.#log.debug({ pod: pod.name }, 'pod removed');
    });
  }

  /**
   * Add a machine outside the cluster on the fabric (a client for NodePort tests).
   * Its eth0 has transmit checksum offload off, so what it sends carries complete
   * checksums like frames from a real wire. rp_filter is off, like on nodes.
   */
  addExternalHost(name: string, opts: AddHostOptions = {}): Promise<Host> {
    return this.#op(() => this.#addHost(name, 'external', opts));
  }

  /** An external host meant to run the API server (and etcd). */
  addControlPlaneHost(name = 'control-plane', opts: AddHostOptions = {}): Promise<Host> {
    return this.#op(() => this.#addHost(name, 'control-plane', opts));
  }

  async #addHost(name: string, role: Host['role'], opts: AddHostOptions): Promise<Host> {
    this.#checkName('host name', name);
    const routes = opts.routes ?? [];
    routes.forEach((r, i) => validateRoute(`routes[${i}]`, r));
    const ip = opts.ip === undefined ? this.#nextHostIp() : this.#fabricIp('host ip', opts.ip);
    this.#claimAddress('host ip', ip);
    this.#names.add(name);
    const host: Host = {
      kind: 'host',
      name,
      netns: `${this.prefix}${name}`,
      role,
      ip,
      mac: macFor(`host:${name}`),
      fabricIfname: fabricIfnameFor(`host:${name}`),
    };
    const t0 = performance.now();
    try {
      await this.#addNetns(host.netns);
      await this.exec(host, [
        'sysctl', '-q', '-w',
        'net.ipv4.conf.all.rp_filter=0',
        'net.ipv4.conf.default.rp_filter=0',
      ]);
      await this.#plugIntoFabric(host.netns, `host:${name}`, host.mac);
      await Promise.all([
        this.#ip(host.netns, [
          `addr add ${ip}/${this.#fabricLen} dev eth0`,
          'link set eth0 up',
          ...routes.map((r) => `route replace ${r.to} via ${r.via}`),
        ]),
        this.exec(host, ['ethtool', '-K', 'eth0', 'tx', 'off']),
      ]);
    } catch (err) {
      await this.#undoMember(host.netns, [{ netns: this.fabric.netns, ifname: host.fabricIfname, mac: fabricMacFor(`host:${name}`) }]);
      this.#names.delete(name);
      this.#addresses.delete(ip);
      throw new TopologyError('STEP_FAILED', `adding host "${name}" failed: ${(err as Error).message}`, { cause: err });
    }
    this.#hosts.set(name, host);
    this.#log.debug({ host: name, role, ip, ms: +(performance.now() - t0).toFixed(1) }, 'host added');
    return host;
  }

  /**
   * Add a scratch namespace: loopback only, on no network. For what needs a
   * namespace of its own and no traffic, e.g. loading a firewall ruleset to time it
   * (a fresh one per load starts from empty tables).
   */
  addScratch(name: string): Promise<Scratch> {
    return this.#op(async () => {
      this.#checkName('scratch name', name);
      this.#names.add(name);
      const scratch: Scratch = { kind: 'scratch', name, netns: `${this.prefix}${name}` };
      try {
        await this.#addNetns(scratch.netns);
      } catch (err) {
        await this.#undoMember(scratch.netns, []);
        this.#names.delete(name);
        throw new TopologyError('STEP_FAILED', `adding scratch namespace "${name}" failed: ${(err as Error).message}`, { cause: err });
      }
      this.#scratches.set(name, scratch);
      this.#log.debug({ scratch: name, netns: scratch.netns }, 'scratch namespace added');
      return scratch;
    });
  }

  /** Remove a scratch namespace: stop its processes, delete its netns (and what was loaded into it). */
  removeScratch(scratch: Scratch): Promise<void> {
    return this.#op(async () => {
      if (this.#scratches.get(scratch?.name) !== scratch) {
        throw new TopologyError('INVALID_ARGUMENT', `scratch namespace "${String(scratch?.name)}" is not one of topology "${this.name}"`);
      }
      await this.#stopProcsIn(scratch.netns);
      await this.#undoMember(scratch.netns, []);
      this.#scratches.delete(scratch.name);
      this.#names.delete(scratch.name);
      this.#log.debug({ scratch: scratch.name }, 'scratch namespace removed');
    });
  }

  /**
   * Native routing: on every node, a route to every other node's pod CIDR via that
   * node's IP; on each of `hosts`, routes to every node's pod CIDR. Idempotent (replace);
   * call again after adding nodes.
   */
  routePodCidrs(opts: { hosts?: Host[] } = {}): Promise<void> {
    return this.#op(async () => {
      const nodes = this.nodes;
      const jobs = nodes.map((n) => {
        const lines = nodes
          .filter((o) => o !== n)
          .map((o) => `route replace ${o.podCidr} via ${o.ip} dev eth0`);
        return lines.length === 0 ? Promise.resolve() : this.#ip(n.netns, lines).then(() => {});
      });
      for (const h of opts.hosts ?? []) {
        const lines = nodes.map((o) => `route replace ${o.podCidr} via ${o.ip} dev eth0`);
        if (lines.length > 0) jobs.push(this.#ip(this.#netnsOf(h), lines).then(() => {}));
      }
      await Promise.all(jobs);
      this.#log.debug({ nodes: nodes.length, hosts: opts.hosts?.length ?? 0 }, 'pod CIDR routes set');
    });
  }

  /** `ip route replace <to> via <via>` inside a member. */
  addRoute(where: Where, route: Route): Promise<void> {
    return this.#op(async () => {
      validateRoute('route', route);
      await this.#ip(this.#netnsOf(where), [`route replace ${route.to} via ${route.via}`]);
    });
  }

  /**
   * Run argv inside a member's netns and collect its output. Throws a ProcError
   * (code COMMAND_FAILED, with argv, exit code and stderr) on a nonzero exit unless
   * `allowFail`.
   */
  exec(where: Where, argv: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
    this.#checkAlive();
    const netns = this.#netnsOf(where);
    return run(nsExecArgv(netns, argv), {
      ...opts,
      context: opts.context ?? `in netns ${netns}`,
      onSpawn: (child) => {
        this.#children.add(child);
        child.once('close', () => this.#children.delete(child));
        opts.onSpawn?.(child);
      },
    });
  }

  /** exec, then parse the last JSON object line of stdout (what the tools print). */
  async execJson<T = Record<string, unknown>>(
    where: Where,
    argv: readonly string[],
    opts: RunOptions = {},
  ): Promise<T> {
    const r = await this.exec(where, argv, opts);
    const v = lastJsonObject(r.stdout);
    if (v === undefined) {
      throw new TopologyError('BAD_OUTPUT', `no JSON result from ${argv.join(' ')} in ${this.#netnsOf(where)} (exit ${r.code}): ${(r.stdout + r.stderr).trim().slice(-1000)}`);
    }
    return v as T;
  }

  /**
   * Start a long-running process inside a member's netns. It is tracked, stopped
   * (by its pid) at destroy(), and dies with this process (parent-death signal).
   */
  spawn(where: Where, argv: readonly string[], opts: StartOptions = {}): Proc {
    this.#checkAlive();
    const netns = this.#netnsOf(where);
    // setpriv sets PR_SET_PDEATHSIG and execs nsenter, which execs argv: the pid we
    // hold is the pid of the final program, and a SIGKILLed test leaves no orphans.
    const proc = Proc.start(['setpriv', '--pdeathsig', 'KILL', ...nsExecArgv(netns, argv)], {
      ...opts,
      context: opts.context ?? `in netns ${netns}`,
    });
    this.#procs.set(proc, netns);
    void proc.exited.then(() => this.#procs.delete(proc));
    this.#log.debug({ netns, pid: proc.pid, argv }, 'spawned');
    return proc;
  }

  /** spawn, then wait for the `{"ready":true}` line; stops the process if it never comes. */
  async spawnReady(where: Where, argv: readonly string[], opts: StartOptions & WaitOptions = {}): Promise<Proc> {
    const proc = this.spawn(where, argv, opts);
    try {
      await waitForReady(proc, opts);
    } catch (err) {
      await proc.stop({ graceMs: 500 });
      throw err;
    }
    return proc;
  }

  /**
   * Stop tracked processes (SIGTERM, then SIGKILL; only the pids started here) and
   * delete every namespace with this topology's prefix. Idempotent; never throws.
   */
  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    const t0 = performance.now();
    // The exit hooks stay until the end: a signal arriving meanwhile still cleans up.
    await Promise.allSettled([...this.#pending]);
    for (const child of this.#children) child.kill('SIGKILL');
    await Promise.allSettled([...this.#procs.keys()].map((p) => p.stop({ graceMs: 1000 })));
    const names = this.#namesToDelete();
    if (names.length > 0) {
      try {
        await run(['ip', '-force', '-batch', '-'], {
          input: names.map((n) => `netns del ${n}\n`).join(''),
          allowFail: true,
          timeoutMs: 30_000,
        });
      } catch (err) {
        this.#log.warn({ err }, 'deleting namespaces failed');
      }
    }
    const left = listNetns().filter((n) => n.startsWith(this.prefix));
    if (left.length > 0) this.#log.warn({ left }, 'namespaces left after destroy');
    for (const n of names) if (!left.includes(n)) this.#netns.delete(n);
    this.#unregister();
    this.#log.debug({ namespaces: names.length, ms: +(performance.now() - t0).toFixed(1) }, 'destroyed');
  }

  /**
   * Delete namespaces left by crashed runs: the pid in the prefix is gone and the
   * namespace carries our marker (so a look-alike name of someone else's is kept).
   */
  static sweepStale(opts: { log?: Logger } = {}): SweepResult {
    const log = opts.log ?? defaultLogger();
    const result: SweepResult = { removed: [], kept: [] };
    for (const netns of listNetns()) {
      const pid = prefixPid(netns);
      if (pid === undefined) continue;
      if (pidAlive(pid)) {
        result.kept.push({ netns, reason: 'pid-alive' });
        continue;
      }
      if (!isMarked(netns)) {
        result.kept.push({ netns, reason: 'not-ours' });
        continue;
      }
      const r = spawnSync('ip', ['netns', 'del', netns], { encoding: 'utf8' });
      if (r.status === 0) result.removed.push(netns);
      else log.warn({ netns, stderr: r.stderr }, 'cannot delete stale netns');
    }
    if (result.removed.length > 0) log.debug({ removed: result.removed }, 'swept stale namespaces');
    return result;
  }

  // --- internals ---

  #op<T>(fn: () => Promise<T>): Promise<T> {
    try {
      this.#checkAlive();
    } catch (err) {
      return Promise.reject(err);
    }
    const p = (async () => fn())();
    this.#pending.add(p);
    const forget = (): void => {
      this.#pending.delete(p);
    };
    p.then(forget, forget);
    return p;
  }

  #checkAlive(): void {
    if (this.#destroying !== undefined) {
      throw new TopologyError('DESTROYED', `topology "${this.name}" (${this.prefix}) is destroyed`);
    }
  }

  #checkName(field: string, name: string): void {
    if (typeof name !== 'string' || !NAME_RE.test(name)) {
      throw new TopologyError('INVALID_ARGUMENT', `${field} "${String(name)}" must be 1-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit`);
    }
    if (RESERVED_NAMES.has(name) || this.#names.has(name)) {
      throw new TopologyError('DUPLICATE', `${field} "${name}" is already used in topology "${this.name}" (names are unique across nodes, pods, hosts and scratch namespaces)`);
    }
  }

  #claimAddress(field: string, ip: string): void {
    if (this.#addresses.has(ip)) {
      throw new TopologyError('DUPLICATE', `${field} "${ip}" is already used in topology "${this.name}"`);
    }
    this.#addresses.add(ip);
  }

  #fabricIp(field: string, value: string): string {
    const a = parseAddress(field, value);
    const n = a.bigInt();
    const [lo, hi] = this.#fabricRange;
    if (n <= lo || n >= hi) {
      throw new TopologyError('INVALID_ARGUMENT', `${field} "${value}" is not a host address of the fabric ${this.fabric.cidr}`);
    }
    return a.correctForm();
  }

  #defaultNodeIp(index: number): string {
    const n = this.#fabricRange[0] + 10n + BigInt(index);
    if (n >= this.#fabricRange[1]) {
      throw new TopologyError('EXHAUSTED', `fabric ${this.fabric.cidr} has no default address for node number ${index}; pass ip`);
    }
    return addrOf(n);
  }

  #nextHostIp(): string {
    const [lo, hi] = this.#fabricRange;
    const start = lo + 200n < hi ? lo + 200n : lo + 1n;
    for (let n = start; n < hi; n++) {
      const ip = addrOf(n);
      if (!this.#addresses.has(ip)) return ip;
    }
    throw new TopologyError('EXHAUSTED', `fabric ${this.fabric.cidr} has no free address for a host; pass ip`);
  }

  #nextPodIp(state: NodeState): string {
    const [lo, hi] = state.range;
    const [first, last] = hi - lo >= 3n ? [lo + 1n, hi - 1n] : [lo, hi];
    for (let n = first; n <= last; n++) {
      const ip = addrOf(n);
      if (!this.#addresses.has(ip)) return ip;
    }
    throw new TopologyError('EXHAUSTED', `pod CIDR ${state.node.podCidr} of node "${state.node.name}" is full`);
  }

  #netnsOf(where: Where): string {
    const netns = typeof where === 'string' ? where : where?.netns;
    if (typeof netns !== 'string' || netns === '' || netns.includes('/') || netns.startsWith('.')) {
      throw new TopologyError('INVALID_ARGUMENT', `netns "${String(netns)}" is not a namespace name`);
    }
    return netns;
  }

  async #addNetns(netns: string): Promise<void> {
    // Tracked once created (`ip netns add` removes its own half-made file on failure,
    // and fails on a name that exists, which must not become ours). A crash in
    // between is covered by the prefix: destroy and exit hooks delete `<prefix>*`.
    await run(['ip', 'netns', 'add', netns], { context: `topology ${this.prefix}` });
    this.#netns.add(netns);
    // The marker first: sweepStale only deletes namespaces that carry it.
    await this.#ip(netns, [`link set dev lo up alias ${NETNS_MARKER}`]);
  }

  /** Create a veth in the fabric whose peer is `eth0` in `netns`, enslaved to br0. */
  async #plugIntoFabric(netns: string, member: `node:${string}` | `host:${string}`, mac: string): Promise<void> {
    const fabricIfname = fabricIfnameFor(member);
    await this.#ip(this.fabric.netns, [
      `link add ${fabricIfname} address ${fabricMacFor(member)} type veth peer name eth0 address ${mac} netns ${netns}`,
      `link set ${fabricIfname} master ${BRIDGE}`,
      `link set ${fabricIfname} up`,
    ]);
  }

  /** Run `ip` commands in a netns, as one batch (one process). */
  #ip(netns: string, lines: readonly string[]): Promise<RunResult> {
    return run(['ip', '-n', netns, '-batch', '-'], {
      input: lines.join('\n') + '\n',
      context: `in netns ${netns} [${lines.join('; ')}]`,
      onSpawn: (child) => {
        this.#children.add(child);
        child.once('close', () => this.#children.delete(child));
      },
    });
  }

  /**
   * Remove a member after a failed step or on request: its devices first (only those
   * carrying the MAC we gave them, never a device someone else made under that name;
   * deleting them now rather than with the netns makes the removal synchronous), then
   * its netns.
   */
  async #undoMember(netns: string, links: Array<{ netns: string; ifname: string; mac: string }>): Promise<void> {
    await Promise.allSettled(
      links.map(async (l) => {
        const shown = await run(['ip', '-n', l.netns, '-j', 'link', 'show', 'dev', l.ifname], { allowFail: true });
        if (shown.code !== 0) return;
        const [link] = JSON.parse(shown.stdout) as Array<{ address?: string }>;
        if (link?.address !== l.mac) return;
        await run(['ip', '-n', l.netns, 'link', 'del', l.ifname], { allowFail: true });
      }),
    );
    if (!this.#netns.has(netns)) return; // never created (or not by us)
    await run(['ip', 'netns', 'del', netns], { allowFail: true });
    if (!listNetns().includes(netns)) this.#netns.delete(netns);
  }

  async #stopProcsIn(netns: string): Promise<void> {
    const procs = [...this.#procs].filter(([, ns]) => ns === netns).map(([p]) => p);
    await Promise.allSettled(procs.map((p) => p.stop({ graceMs: 1000 })));
  }

  #namesToDelete(): string[] {
    const ours = new Set(this.#netns);
    if (this.#ownsPrefix) for (const n of listNetns()) if (n.startsWith(this.prefix)) ours.add(n);
    // Pods first, fabric last: not required by the kernel, but the order reads well in logs.
    return [...ours].sort((a, b) => Number(a === this.fabric.netns) - Number(b === this.fabric.netns));
  }

  #register(): void {
    process.on('exit', this.#onExit);
    process.on('uncaughtExceptionMonitor', this.#onUncaught);
    process.on('SIGINT', this.#onSignal);
    process.on('SIGTERM', this.#onSignal);
  }

  #unregister(): void {
    process.off('exit', this.#onExit);
    process.off('uncaughtExceptionMonitor', this.#onUncaught);
    process.off('SIGINT', this.#onSignal);
    process.off('SIGTERM', this.#onSignal);
  }

  /**
   * Cleanup that cannot wait (process exit, a fatal signal, an uncaught exception):
   * SIGKILL by pid, delete the namespaces. The signal handlers stay registered until
   * it is done, so a second signal (the test runner's SIGTERM after a Ctrl-C) waits
   * for it instead of killing the process halfway.
   */
  #destroySync(why: string): void {
    if (this.#syncDone) return;
    this.#syncDone = true;
    this.#destroying ??= Promise.resolve();
    for (const child of this.#children) child.kill('SIGKILL');
    for (const proc of this.#procs.keys()) proc.killNow();
    const names = this.#namesToDelete();
    if (names.length > 0) {
      // setsid: out of our process group, so a second Ctrl-C cannot stop it halfway.
      spawnSync('setsid', ['ip', '-force', '-batch', '-'], {
        input: names.map((n) => `netns del ${n}\n`).join(''),
        stdio: ['pipe', 'ignore', 'ignore'],
        timeout: 30_000,
      });
    }
    this.#netns.clear();
    this.#unregister();
    this.#log.debug({ why, namespaces: names.length }, 'destroyed on process exit');
  }
}

/** True when a namespace carries our marker as the alias of lo. */
function isMarked(netns: string): boolean {
  const r = spawnSync('ip', ['-n', netns, '-j', 'link', 'show', 'dev', 'lo'], { encoding: 'utf8' });
  if (r.status !== 0) return false;
  try {
    const links = JSON.parse(r.stdout) as Array<{ ifalias?: string }>;
    return links[0]?.ifalias === NETNS_MARKER;
  } catch {
    return false;
  }
}
