// Start a Hypha agent inside a node's netns, the way a DaemonSet would run
// it there, with its maps pinned under a per-run pin root.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import * as native from '../../../native/index.ts';
import { type Ct4Entry, type Ct4Key, layouts } from '../../../src/abi/abi.gen.ts';
import { codec, scalarLayouts } from '../../../src/abi/codec.ts';
import { ipcacheKeyCodec, ipcacheValCodec } from '../../../src/datapath/ipcache-reconciler.ts';
import { describeLbMaps, type FrontendView } from '../../../src/datapath/lb-view.ts';
import { openPinnedMaps } from '../../../src/datapath/loader.ts';
import { CniPlugin, cniWiring } from './cni.ts';
import type { Node, Topology } from './topology.ts';
import type { Proc } from './proc.ts';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const NODE_BIN = path.join(REPO, 'node_modules/.bin/node');
export const CLI = path.join(REPO, 'src/cli/main.ts');
/** The agent runs the way it is installed: through bin/hypha (which sets its V8 flags). */
export const HYPHA_BIN = path.join(REPO, 'bin/hypha');

export interface AgentOptions {
  /** bpf.socketLb (default off here: it attaches at the machine's cgroup v2 root). */
  socketLb?: boolean;
  /** bpf.socketLbCgroup: a cgroup of the test's own (its clients are put there). */
  socketLbCgroup?: string;
  pinRoot: string;
  /** Standalone mode: follow the Kubernetes YAML in this directory. */
  servicesDir?: string;
  /** Kubernetes mode: watch the API server this kubeconfig points at. */
  kubeconfig?: string;
  /** With kubeconfig: NodePort addresses come from the Node object unless set. */
  nodeAddresses?: string[];
  workDir: string;
  external?: string;
  externalMode?: 'xdp' | 'tc' | 'auto';
  /** bpf.mapSizes (fixed sizes). Default: small fixed sizes; {} lets the agent size and grow every map. */
  mapSizes?: Record<string, number>;
  /** bpf.initialMapSizes (maps the agent creates and may grow). */
  initialMapSizes?: Record<string, number>;
  resyncSeconds?: number;
  /** bpf.hostRouting (the agent's default: on). */
  hostRouting?: boolean;
  /** sync.conntrackGcMaxSeconds (the agent's default when unset). */
  ctGcMaxSeconds?: number;
  extra?: Record<string, unknown>;
  /** Flags for the agent's node process (e.g. V8 heap settings). */
  nodeArgs?: string[];
  /** Another checkout's bin/hypha (bench/cold-restarts.ts --other: an A/B on one API server). */
  bin?: string;
  /** cni.enabled (default on: the harness's pods on this node are made by
   *  the agent through the CNI plugin once it has started). */
  cni?: boolean;
  /** ipam: default static with the node's pod CIDR. */
  ipam?: { mode: 'static'; podCIDRs?: string[] } | { mode: 'cluster-pool' | 'kubernetes' };
  /** routing: mode, the other nodes (standalone), cluster CIDRs (default the pod pool 10.244.0.0/16). */
  routing?: { mode?: 'native' | 'vxlan'; nodes?: { name: string; addresses: string[]; podCIDRs: string[] }[]; clusterCIDRs?: string[]; masquerade?: boolean };
  /** Extra environment of the agent process (test hooks). */
  env?: Record<string, string>;
}

export class TestAgent {
  readonly topo: Topology;
  readonly node: Node;
  readonly opts: AgentOptions;
  readonly configPath: string;
  /** The node's CNI directories (under workDir/<node>). */
  readonly cniDirs: { socket: string; binDir: string; confDir: string; stateDir: string; delQueueDir: string };
  readonly plugin: CniPlugin;
  proc: Proc | undefined;

  constructor(topo: Topology, node: Node, opts: AgentOptions) {
    this.topo = topo;
    this.node = node;
    this.opts = opts;
    mkdirSync(opts.workDir, { recursive: true });
    this.configPath = path.join(opts.workDir, `agent-${node.name}.yaml`);
    const base = path.join(opts.workDir, `cni-${node.name}`);
    this.cniDirs = {
      socket: path.join(base, 'run/cni.sock'), binDir: path.join(base, 'bin'), confDir: path.join(base, 'net.d'),
      stateDir: path.join(base, 'state'), delQueueDir: path.join(base, 'state/cni-del-queue'),
    };
    this.plugin = new CniPlugin({ topo, node, binDir: this.cniDirs.binDir, confDir: this.cniDirs.confDir });
    const ipam = opts.ipam ?? { mode: 'static' as const };
    const cfg = {
      node: { name: node.name, addresses: opts.nodeAddresses ?? (opts.kubeconfig ? [] : [node.ip]) },
      // The harness says which device is external; without one, none (no detection).
      devices: opts.external ? { external: opts.external, externalMode: opts.externalMode ?? 'auto' } : { detectExternal: false },
      cni: { enabled: opts.cni ?? true, ...this.cniDirs },
      ipam: ipam.mode === 'static' ? { mode: 'static', podCIDRs: ipam.podCIDRs ?? [node.podCidr] } : { mode: ipam.mode },
      routing: {
        mode: opts.routing?.mode ?? 'native', clusterCIDRs: opts.routing?.clusterCIDRs ?? ['10.244.0.0/16'],
        ...(opts.routing?.nodes ? { nodes: opts.routing.nodes } : {}), ...(opts.routing?.masquerade === undefined ? {} : { masquerade: opts.routing.masquerade }),
      },
      bpf: {
        // Socket LB attaches at the machine's cgroup root: only where a test asks for it.
        socketLb: opts.socketLb ?? false, ...(opts.socketLbCgroup ? { socketLbCgroup: opts.socketLbCgroup } : {}),
        pinRoot: opts.pinRoot, mapSizes: opts.mapSizes ?? { services: 8192, backends: 8192, affinity: 8192, ct: 65536 },
        ...(opts.initialMapSizes ? { initialMapSizes: opts.initialMapSizes } : {}), ...(opts.hostRouting === undefined ? {} : { hostRouting: opts.hostRouting }) },
      ...(opts.kubeconfig
        ? { kubernetes: { kubeconfig: opts.kubeconfig, silenceSeconds: 20, resyncSeconds: 120 } }
        : { services: { files: [opts.servicesDir ?? path.join(opts.workDir, 'services')] } }),
      sync: { resyncSeconds: opts.resyncSeconds ?? 30, ...(opts.ctGcMaxSeconds ? { conntrackGcMaxSeconds: opts.ctGcMaxSeconds } : {}) },
      listen: { address: '127.0.0.1', port: 9890 },
      log: { level: 'info' },
      ...opts.extra,
    };
    writeFileSync(this.configPath, stringify(cfg));
  }

  async start(timeoutMs = 20_000): Promise<Proc> {
    const argv = this.opts.nodeArgs?.length ? [NODE_BIN, ...this.opts.nodeArgs, CLI, 'agent', '--config', this.configPath] : [this.opts.bin ?? HYPHA_BIN, 'agent', '--config', this.configPath];
    this.proc = await this.topo.spawnReady(this.node, argv, {
      timeoutMs, context: `agent on ${this.node.name}`, ...(this.opts.env ? { env: { ...process.env, ...this.opts.env } } : {}),
    });
    // From now on the harness's pods on this node come from the agent, through the plugin.
    if (this.opts.cni ?? true) this.topo.setPodWiring(this.node, cniWiring(this.plugin));
    return this.proc;
  }

  /** The endpoints the agent reports (GET /endpoints). */
  async endpointList(): Promise<{ containerId: string; ifname: string; ip: string; hostIfname: string; hostIfindex: number; pod?: { namespace: string; name: string }; datapath: { attached: boolean; mapped: boolean } }[]> {
    return JSON.parse((await this.http('/endpoints')).body) as Awaited<ReturnType<TestAgent['endpointList']>>;
  }

  /** kill -9: the datapath must keep working without its owner. */
  async kill9(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill('SIGKILL');
    await this.proc.exited;
    this.proc = undefined;
  }

  async stop(): Promise<void> {
    await this.proc?.stop({ graceMs: 3000 });
    this.proc = undefined;
  }

  /** GET a path of the agent's HTTP endpoint (it listens on 127.0.0.1 inside the node). */
  async http(pathname: string): Promise<{ status: number; body: string }> {
    const script = `fetch('http://127.0.0.1:9890${pathname}').then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), (e) => process.stdout.write(JSON.stringify({ status: 0, body: String(e) })))`;
    const r = await this.topo.exec(this.node, [NODE_BIN, '-e', script]);
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  /** A counter or gauge from /metrics, summed over the label sets matching `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { body } = await this.http('/metrics');
    let sum = 0;
    for (const line of body.split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = /^(\w+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const ls = m[2] ?? '';
      if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
    }
    return sum;
  }

  /** Log lines the agent printed (pino JSON). */
  logs(): Record<string, unknown>[] {
    return this.proc?.jsonLines() ?? [];
  }


  /** The frontends as programmed in the pinned maps (read directly; bpffs is shared). */
  frontends(): FrontendView[] {
    const maps = openPinnedMaps(this.opts.pinRoot);
    try {
      return describeLbMaps(maps.get('hypha_lb4_services_v1')!, maps.get('hypha_lb4_backends_v1')!, maps.get('hypha_lb4_names_v1'));
    } finally {
      for (const h of maps.values()) native.close(h);
    }
  }

  /** Wait until every frontend ('10.96.0.10:80/TCP') is programmed with at
   *  least `backends` active backends in the internal scope. */
  async waitForFrontends(frontends: readonly string[], backends = 0, timeoutMs = 15_000): Promise<void> {
    await eventually(`frontends ${frontends.join(', ')} programmed`, () => frontends.every((f) => (this.backendsOf(f)?.length ?? -1) >= backends), timeoutMs);
  }

  /** Active backends of a frontend in the internal scope, sorted. */
  backendsOf(frontend: string, scope: 'internal' | 'external' = 'internal'): string[] | undefined {
    const f = this.frontends().find((x) => x.frontend === frontend);
    return f?.scopes.find((s) => s.scope === scope)?.backends.map((b) => b.address).sort();
  }

  /** Conntrack entries, read from the pinned map. */
  conntrack(): { key: Ct4Key; entry: Ct4Entry }[] {
    const keyC = codec<Ct4Key>(layouts.hypha_ct4_key);
    const valC = codec<Ct4Entry>(layouts.hypha_ct4_entry);
    const h = native.openPinnedMap(path.join(this.opts.pinRoot, 'hypha_ct4_v1'));
    try {
      const { keys, values, count } = native.mapDump(h);
      return Array.from({ length: count }, (_, i) => ({ key: keyC.decode(keys, i * keyC.layout.size), entry: valC.decode(values, i * valC.layout.size) }));
    } finally {
      native.close(h);
    }
  }

  /** The local pods the datapath delivers to directly: address -> host-side ifindex. */
  endpoints(): Map<string, number> {
    const keyC = codec<{ value: string }>(scalarLayouts.ip4);
    const valC = codec<{ ifindex: number }>(layouts.hypha_endpoint);
    const h = native.openPinnedMap(path.join(this.opts.pinRoot, 'hypha_endpoints_v1'));
    try {
      const { keys, values, count } = native.mapDump(h);
      return new Map(Array.from({ length: count }, (_, i) => [keyC.decode(keys, i * keyC.layout.size).value, valC.decode(values, i * valC.layout.size).ifindex]));
    } finally {
      native.close(h);
    }
  }

  /** The ipcache as pinned: 'a.b.c.d/n' -> identity, node address, flags. */
  ipcache(): Map<string, { identity: number; nodeAddr: string; flags: number }> {
    const h = native.openPinnedMap(path.join(this.opts.pinRoot, 'hypha_ipcache_v1'));
    try {
      const { keys, values, count } = native.mapDump(h);
      const out = new Map<string, { identity: number; nodeAddr: string; flags: number }>();
      for (let i = 0; i < count; i++) {
        const k = ipcacheKeyCodec.decode(keys, i * ipcacheKeyCodec.layout.size);
        const v = ipcacheValCodec.decode(values, i * ipcacheValCodec.layout.size);
        out.set(`${k.addr}/${k.prefixlen}`, { identity: v.identity, nodeAddr: v.node_addr, flags: v.flags });
      }
      return out;
    } finally {
      native.close(h);
    }
  }

  cleanupPins(): void {
    rmSync(this.opts.pinRoot, { recursive: true, force: true });
  }
}

/** Poll until check() returns a truthy value, or fail with what it last saw. */
export async function eventually<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
