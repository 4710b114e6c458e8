// `make bench-cni`: how long a pod's network takes to set up and tear down,
// Hypha's CNI plugin next to the reference plugins (bridge + host-local from
// Debian's containernetworking-plugins, /usr/lib/cni) in the same run, on the
// same kind of node. Writes bench/results/cni.json and cni.png.
//
//   direct      each plugin's binary exec'd in its node's netns (nsenter from
//               this process) with the CNI environment and the network
//               configuration on stdin, as a runtime execs it; the pods' netns
//               are made before the clock starts. ADD and DEL (DEL with the
//               ADD's prevResult, as libcni sends it) for N pods one after
//               another (all ADDs, then all DELs), and for C pods at once
//               (rounds of C). The same launcher running /usr/bin/true is
//               the floor every sample includes; VERSION (the plugin binary
//               alone) is its start-up cost.
//   containerd  containerd 2.4 + runc on the node with that plugin as its
//               network (test/e2e/lib/containerd.ts): RunPodSandbox until
//               the sandbox is ready (crictl runp), StopPodSandbox +
//               RemovePodSandbox (crictl stopp, rmp), N in a row and C at once.
//
// Node n1 runs the Hypha agent (standalone, static IPAM 10.244.1.0/24); node
// n2 the bridge plugin (cni0, host-local 10.244.2.0/24, its store in the run's
// directory). Samples of the two plugins are interleaved (pod i of one, then
// pod i of the other; bursts alternate which goes first), so a busy machine
// slows both alike. Where Hypha's ADD time goes is read from the agent's own
// per-request log line (time inside the agent) and the plugin's debug log
// (a separate pass), and timed step by step in-process on node n3 (the
// agent's endpoint manager with its real ports; see "step profile" below,
// in a process with the agent's thread pool).
//
//   node bench/cni.ts [--pods 100] [--concurrent 30] [--rounds 3] [--ctrd-pods 100] [--ctrd-rounds 2]
//                     [--no-containerd] [--no-steps] [--plot-only]
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ENDPOINTS_MAP, EndpointsMap } from '../src/datapath/endpoints-reconciler.ts';
import { Devices } from '../src/datapath/devices.ts';
import { Datapath } from '../src/datapath/loader.ts';
import { Rtnl } from '../src/datapath/rtnl.ts';
import { PodIpam } from '../src/endpoints/ipam.ts';
import { EndpointManager } from '../src/endpoints/manager.ts';
import { RtnlPodNetwork } from '../src/endpoints/pod-network.ts';
import type { EndpointDatapath, PodNetwork } from '../src/endpoints/ports.ts';
import { EndpointStore } from '../src/endpoints/store.ts';
import { NODE_BIN, TestAgent } from '../test/e2e/lib/agent.ts';
import { containerdBinaries, startContainerd, sweepStaleContainerd, type Runtime } from '../test/e2e/lib/containerd.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { type Node, type Scratch, Topology } from '../test/e2e/lib/topology.ts';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '100' },
    concurrent: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '5' },
    'ctrd-pods': { type: 'string', default: '100' },
    'ctrd-rounds': { type: 'string', default: '2' },
    'no-containerd': { type: 'boolean', default: false },
    'no-steps': { type: 'boolean', default: false },
    /** Redraw the PNG from the JSON of an earlier run. */
    'plot-only': { type: 'boolean', default: false },
    /** Internal: run the step profile in this process (started inside a node's netns); the value is its arguments file. */
    'steps-child': { type: 'string' },
    out: { type: 'string', default: path.join(REPO, 'bench/results/cni.json') },
  },
});
const PODS = Number(values.pods);
const CONC = Number(values.concurrent);
const ROUNDS = Number(values.rounds);
const WARMUP = Number(values.warmup);
const CTRD_PODS = Number(values['ctrd-pods']);
const CTRD_ROUNDS = Number(values['ctrd-rounds']);
const REFERENCE_BIN = '/usr/lib/cni';

type PluginName = 'hypha' | 'bridge+host-local';
type Mode = 'sequential' | 'concurrent';
type Op = 'ADD' | 'DEL' | 'VERSION' | 'EXEC';
interface Row {
  plugin: PluginName | 'exec-floor';
  via: 'direct' | 'containerd' | 'in-process';
  mode: Mode;
  op: Op;
  /** via in-process: one step of the agent's endpoint manager (or `total`). */
  step?: string;
  p50_ms: number;
  p99_ms: number;
  mean_ms: number;
  max_ms: number;
  samples: number;
}

const log = (s: string): void => {
  process.stderr.write(`[bench-cni ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};
/** Nearest-rank percentile. */
const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};
const r2 = (x: number): number => Math.round(x * 100) / 100;
const stats = (xs: readonly number[]): Pick<Row, 'p50_ms' | 'p99_ms' | 'mean_ms' | 'max_ms' | 'samples'> => ({
  p50_ms: r2(pct(xs, 50)), p99_ms: r2(pct(xs, 99)), mean_ms: r2(xs.reduce((a, b) => a + b, 0) / xs.length), max_ms: r2(Math.max(...xs)), samples: xs.length,
});

interface Plugin {
  name: PluginName;
  node: Node;
  binary: string;
  cniPath: string;
  /** The network configuration a runtime passes (the conflist's one plugin, with name and cniVersion). */
  conf: Record<string, unknown>;
}

interface Exec {
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The launcher every sample goes through: argv exec'd inside the node's netns with env and stdin. */
async function launch(topo: Topology, node: Node, argv: string[], env: NodeJS.ProcessEnv, stdin: string): Promise<Exec> {
  const t0 = performance.now();
  const r = await topo.exec(node, argv, { input: stdin, env, allowFail: true, timeoutMs: 120_000 });
  return { ms: performance.now() - t0, code: r.code, stdout: r.stdout, stderr: r.stderr };
}

function cniEnv(p: Plugin, command: string, containerId: string, netns: string, args: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: 'eth0',
    CNI_ARGS: Object.entries(args).map(([k, v]) => `${k}=${v}`).join(';'), CNI_PATH: p.cniPath,
  };
}

interface Attachment {
  plugin: Plugin;
  containerId: string;
  netns: string;
  name: string;
  result?: Record<string, unknown>;
}

async function add(topo: Topology, a: Attachment, extraEnv: NodeJS.ProcessEnv = {}): Promise<Exec> {
  const args = { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'bench', K8S_POD_NAME: a.name, K8S_POD_INFRA_CONTAINER_ID: a.containerId };
  const r = await launch(topo, a.plugin.node, [a.plugin.binary], { ...cniEnv(a.plugin, 'ADD', a.containerId, a.netns, args), ...extraEnv }, JSON.stringify(a.plugin.conf));
  if (r.code !== 0) throw new Error(`${a.plugin.name} ADD of ${a.name}: exit ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 2000)}`);
  a.result = JSON.parse(r.stdout) as Record<string, unknown>;
  return r;
}

async function del(topo: Topology, a: Attachment): Promise<number> {
  const args = { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'bench', K8S_POD_NAME: a.name, K8S_POD_INFRA_CONTAINER_ID: a.containerId };
  const stdin = JSON.stringify({ ...a.plugin.conf, ...(a.result ? { prevResult: a.result } : {}) });
  const r = await launch(topo, a.plugin.node, [a.plugin.binary], cniEnv(a.plugin, 'DEL', a.containerId, a.netns, args), stdin);
  if (r.code !== 0) throw new Error(`${a.plugin.name} DEL of ${a.name}: exit ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 2000)}`);
  return r.ms;
}

const idOf = (tag: string, i: number): string => `${tag}x${String(i).padStart(6, '0')}`.padEnd(64, '0');

/** Scratch netns for the pods of one phase (outside the timed part). */
async function scratches(topo: Topology, tag: string, n: number): Promise<Scratch[]> {
  const out: Scratch[] = [];
  for (let i = 0; i < n; i++) out.push(await topo.addScratch(`${tag}${i}`));
  return out;
}

async function removeScratches(topo: Topology, ss: Scratch[]): Promise<void> {
  for (const s of ss) await topo.removeScratch(s);
}

type Samples = Map<string, number[]>;
const key = (plugin: string, via: string, mode: Mode, op: Op): string => `${plugin}|${via}|${mode}|${op}`;
function push(s: Samples, k: string, ms: number): void {
  const xs = s.get(k) ?? [];
  xs.push(ms);
  s.set(k, xs);
}

async function direct(topo: Topology, plugins: Plugin[], samples: Samples): Promise<void> {
  const node = plugins[0]!.node;
  const floorEnv = cniEnv(plugins[0]!, 'ADD', idOf('f', 0), '/run/netns/none', {});
  // The launcher alone: /usr/bin/true with the same environment and stdin.
  for (let i = 0; i < WARMUP; i++) await launch(topo, node, ['/usr/bin/true'], floorEnv, JSON.stringify(plugins[0]!.conf));
  for (let i = 0; i < PODS; i++) push(samples, key('exec-floor', 'direct', 'sequential', 'EXEC'), (await launch(topo, node, ['/usr/bin/true'], floorEnv, JSON.stringify(plugins[0]!.conf))).ms);
  for (let r = 0; r < ROUNDS; r++) {
    const ms = await Promise.all(Array.from({ length: CONC }, () => launch(topo, node, ['/usr/bin/true'], floorEnv, JSON.stringify(plugins[0]!.conf))));
    for (const m of ms) push(samples, key('exec-floor', 'direct', 'concurrent', 'EXEC'), m.ms);
  }
  // VERSION: the plugin binary's own start, nothing else.
  for (let i = 0; i < PODS; i++) {
    for (const p of i % 2 === 0 ? plugins : [...plugins].reverse()) {
      const r = await launch(topo, p.node, [p.binary], cniEnv(p, 'VERSION', '', '', {}), JSON.stringify(p.conf));
      if (r.code !== 0) throw new Error(`${p.name} VERSION: ${r.stdout}${r.stderr}`);
      push(samples, key(p.name, 'direct', 'sequential', 'VERSION'), r.ms);
    }
  }
  log(`  floor (true through the launcher) p50 ${pct(samples.get(key('exec-floor', 'direct', 'sequential', 'EXEC'))!, 50).toFixed(2)} ms; `
    + plugins.map((p) => `${p.name} VERSION p50 ${pct(samples.get(key(p.name, 'direct', 'sequential', 'VERSION'))!, 50).toFixed(2)} ms`).join(', '));

  // Warm-up pods (page cache, first-use allocations), not counted.
  const warm = await scratches(topo, 'w', WARMUP * plugins.length);
  const wa = warm.map((s, i): Attachment => ({ plugin: plugins[i % plugins.length]!, containerId: idOf('w', i), netns: topo.netnsPath(s), name: `warm-${i}` }));
  for (const a of wa) await add(topo, a);
  for (const a of wa) await del(topo, a);
  await removeScratches(topo, warm);

  log(`  ${PODS} pods one after another, per plugin`);
  const seq = await scratches(topo, 's', PODS * plugins.length);
  const sa = seq.map((s, i): Attachment => ({ plugin: plugins[i % plugins.length]!, containerId: idOf('s', i), netns: topo.netnsPath(s), name: `seq-${i}` }));
  // sa[2i] is pod i of plugin 0, sa[2i+1] pod i of plugin 1; odd pods go the other way round.
  const order = (i: number): Attachment[] => {
    const pair = sa.slice(i * plugins.length, (i + 1) * plugins.length);
    return i % 2 === 0 ? pair : pair.reverse();
  };
  for (let i = 0; i < PODS; i++) for (const a of order(i)) push(samples, key(a.plugin.name, 'direct', 'sequential', 'ADD'), (await add(topo, a)).ms);
  for (let i = 0; i < PODS; i++) for (const a of order(i)) push(samples, key(a.plugin.name, 'direct', 'sequential', 'DEL'), await del(topo, a));
  await removeScratches(topo, seq);

  log(`  ${CONC} pods at once, ${ROUNDS} rounds per plugin`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of r % 2 === 0 ? plugins : [...plugins].reverse()) {
      const ss = await scratches(topo, `c${r}`, CONC);
      const as = ss.map((s, i): Attachment => ({ plugin: p, containerId: idOf(`c${r}`, i), netns: topo.netnsPath(s), name: `conc-${r}-${i}` }));
      for (const r of await Promise.all(as.map((a) => add(topo, a)))) push(samples, key(p.name, 'direct', 'concurrent', 'ADD'), r.ms);
      for (const ms of await Promise.all(as.map((a) => del(topo, a)))) push(samples, key(p.name, 'direct', 'concurrent', 'DEL'), ms);
      await removeScratches(topo, ss);
    }
  }
}

/**
 * Hypha's ADD once more with the plugin's debug log on (not part of the
 * figures above): its "done" line gives the time from the plugin's main() to
 * its answer, the agent's log line the time inside the agent, so each sample
 * splits into launcher + exec + dynamic loading (total - plugin), the plugin's
 * own work and its socket round trip (plugin - agent), and the agent.
 */
async function shimProfile(topo: Topology, hypha: Plugin, agent: TestAgent): Promise<Record<string, number[]>> {
  const ss = await scratches(topo, 'd', PODS);
  const as = ss.map((s, i): Attachment => ({ plugin: hypha, containerId: idOf('d', i), netns: topo.netnsPath(s), name: `dbg-${i}` }));
  const out: Record<string, number[]> = { total: [], plugin: [] };
  for (const a of as) {
    const r = await add(topo, a, { HYPHA_CNI_LOG: 'debug' });
    const done = r.stderr.split('\n').map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } }).find((l) => l['msg'] === 'done');
    out.total!.push(r.ms);
    out.plugin!.push(typeof done?.['ms'] === 'number' ? done['ms'] : NaN);
  }
  for (const a of as) await del(topo, a);
  await removeScratches(topo, ss);
  const times = agentTimes(agent);
  out['agent'] = as.map((a) => times.get(`ADD ${a.containerId}`) ?? NaN);
  return out;
}

async function viaContainerd(runtimes: Map<PluginName, Runtime>, plugins: Plugin[], samples: Samples): Promise<void> {
  const runFor = (p: Plugin): Runtime => runtimes.get(p.name)!;
  for (const p of plugins) {
    const rt = runFor(p);
    for (let i = 0; i < WARMUP; i++) await rt.removePod((await rt.runPod(`warm-${i}`, 'bench')).podId);
  }
  log(`  containerd: ${CTRD_PODS} sandboxes one after another, per plugin`);
  const ids = new Map<PluginName, string[]>(plugins.map((p) => [p.name, []]));
  for (let i = 0; i < CTRD_PODS; i++) {
    for (const p of i % 2 === 0 ? plugins : [...plugins].reverse()) {
      const pod = await runFor(p).runPod(`seq-${i}`, 'bench');
      push(samples, key(p.name, 'containerd', 'sequential', 'ADD'), pod.ms);
      ids.get(p.name)!.push(pod.podId);
    }
  }
  for (let i = 0; i < CTRD_PODS; i++) {
    for (const p of i % 2 === 0 ? plugins : [...plugins].reverse()) {
      const t0 = performance.now();
      await runFor(p).removePod(ids.get(p.name)![i]!);
      push(samples, key(p.name, 'containerd', 'sequential', 'DEL'), performance.now() - t0);
    }
  }
  log(`  containerd: ${CONC} sandboxes at once, ${CTRD_ROUNDS} rounds per plugin`);
  for (let r = 0; r < CTRD_ROUNDS; r++) {
    for (const p of r % 2 === 0 ? plugins : [...plugins].reverse()) {
      const rt = runFor(p);
      const pods = await Promise.all(Array.from({ length: CONC }, (_, i) => rt.runPod(`conc-${r}-${i}`, 'bench')));
      for (const pod of pods) push(samples, key(p.name, 'containerd', 'concurrent', 'ADD'), pod.ms);
      const ms = await Promise.all(pods.map(async (pod) => {
        const t0 = performance.now();
        await rt.removePod(pod.podId);
        return performance.now() - t0;
      }));
      for (const m of ms) push(samples, key(p.name, 'containerd', 'concurrent', 'DEL'), m);
    }
  }
}

/** Time inside the agent per ADD/DEL (its `cni request` log line), by container id. */
function agentTimes(agent: TestAgent): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of agent.logs()) {
    if (l['msg'] !== 'cni request' || typeof l['containerId'] !== 'string' || typeof l['ms'] !== 'number') continue;
    out.set(`${String(l['command'])} ${l['containerId']}`, l['ms']);
  }
  return out;
}

async function plot(rows: Row[], json: string): Promise<void> {
  const png = json.replace(/\.json$/, '.png');
  const dat = (via: 'direct' | 'containerd'): string => {
    const lines: string[] = [];
    for (const mode of ['sequential', 'concurrent'] as const) {
      for (const op of ['ADD', 'DEL'] as const) {
        const v = (plugin: PluginName, f: 'p50_ms' | 'p99_ms'): number => rows.find((r) => r.plugin === plugin && r.via === via && r.mode === mode && r.op === op && r.step === undefined)?.[f] ?? NaN;
        lines.push(`"${op} ${mode === 'sequential' ? 'seq' : `x${CONC}`}" ${v('hypha', 'p50_ms')} ${v('hypha', 'p99_ms')} ${v('bridge+host-local', 'p50_ms')} ${v('bridge+host-local', 'p99_ms')}`);
      }
    }
    return `${lines.join('\n')}\ne\n`;
  };
  const floor = rows.find((r) => r.plugin === 'exec-floor' && r.mode === 'sequential' && r.step === undefined);
  const series = `using 2:xtic(1) title "hypha p50" lc rgb "#1b9e77", '' using 3 title "hypha p99" lc rgb "#66c2a5", '' using 4 title "bridge+host-local p50" lc rgb "#d95f02", '' using 5 title "bridge+host-local p99" lc rgb "#fc8d62"`;
  const hasCtrd = rows.some((r) => r.via === 'containerd');
  const panel = (via: 'direct' | 'containerd', title: string): string[] => [
    `set title "${title}" noenhanced`,
    `plot '-' ${series.replace(/''/g, "'-'")}`,
    ...Array.from({ length: 4 }, () => dat(via)),
  ];
  const script = [
    `set terminal pngcairo size ${hasCtrd ? 1400 : 760},560 font ",11"`,
    `set output "${png}"`,
    `set multiplot layout 1,${hasCtrd ? 2 : 1} title "CNI ADD / DEL latency: Hypha vs the reference bridge + host-local plugins (same node, same run)" noenhanced`,
    'set style data histograms', 'set style histogram clustered gap 1', 'set style fill solid 0.9 border -1', 'set boxwidth 0.9',
    'set grid ytics', 'set key top left', 'set ylabel "ms (log scale)"', `set xlabel "seq: ${PODS} pods one after another; x${CONC}: ${CONC} pods at once" noenhanced`, 'set logscale y', 'set yrange [1:*]', 'set xtics noenhanced',
    ...panel('direct', `plugin exec'd in the node netns (launcher floor: true p50 ${floor?.p50_ms ?? '?'} ms)`),
    ...(hasCtrd ? panel('containerd', 'through containerd: RunPodSandbox / StopPodSandbox + RemovePodSandbox') : []),
    'unset multiplot',
  ].join('\n');
  const gp = path.join(tmpdir(), `hypha-bench-cni-${process.pid}.gp`);
  writeFileSync(gp, script);
  await run(['gnuplot', gp]);
  rmSync(gp, { force: true });
  log(`wrote ${png}`);
}

// ---------------------------------------------------------------- step profile
//
// The agent's endpoint manager (src/endpoints) with its real ports (rtnetlink
// pod network, BPF datapath loaded under a scratch pin root, endpoints map,
// record store, IPAM) built in a process inside a node's netns, every port
// call timed: where an ADD's time goes inside the agent, without the socket.

interface StepsArgs { pinRoot: string; stateDir: string; cidr: string; seq: string[]; conc: string[][] }
type StepSamples = Record<string, number[]>;

function timedPorts<T extends object>(target: T, methods: Record<string, string>, sink: StepSamples): T {
  const rec = target as Record<string, unknown>;
  for (const [m, step] of Object.entries(methods)) {
    const orig = rec[m] as (...a: unknown[]) => unknown;
    rec[m] = (...a: unknown[]): unknown => {
      const t0 = performance.now();
      const out = orig.apply(target, a);
      const done = (): void => void (sink[step] ??= []).push(performance.now() - t0);
      if (out instanceof Promise) return out.finally(done);
      done();
      return out;
    };
  }
  return target;
}

async function stepsChild(a: StepsArgs): Promise<void> {
  const silent = pino({ level: 'info' }, pino.destination('/dev/null'));
  const add: StepSamples = {};
  const del: StepSamples = {};
  let sink = add;
  const proxy: StepSamples = new Proxy({}, { get: (_t, k: string) => sink[k], set: (_t, k: string, v: number[]) => ((sink[k] = v), true) });
  const dp = await Datapath.load({ pinRoot: a.pinRoot, mapSizes: { services: 8192, backends: 8192, affinity: 8192, ct: 65536 } });
  const devices = new Devices(dp);
  const endpoints = new EndpointsMap(dp.mapIO(ENDPOINTS_MAP));
  const host = Rtnl.open();
  const net = timedPorts<PodNetwork>(new RtnlPodNetwork(host), {
    createVeth: 'veth create (peer in the pod netns)', configurePod: 'pod-side batch (open netns, addr, up, neigh, 2 routes)',
    configureHost: 'host-side batch (up, /32 route)', deleteVeth: 'veth delete',
  }, proxy);
  const datapath = timedPorts<EndpointDatapath>({
    attach: (n) => devices.attachPod(n), attached: (i) => devices.podAttached(i),
    upsert: (ip, i) => endpoints.upsert(ip, i), remove: (ip) => endpoints.remove(ip), lookup: (ip) => endpoints.lookup(ip),
    sync: async (e) => void (await endpoints.sync(e)),
  }, { attach: 'datapath attach (2 tc filters + 2 sysctls)', upsert: 'endpoints map write', remove: 'endpoints map delete' }, proxy);
  const store = timedPorts(new EndpointStore(a.stateDir), { put: 'endpoint record write', remove: 'endpoint record delete' }, proxy);
  const ipam = timedPorts(new PodIpam([a.cidr]), { allocate: 'IPAM allocate' }, proxy);
  const manager = new EndpointManager({ ipam, store, net, datapath, mtu: () => 1500, log: silent, notReady: () => undefined });
  await manager.reconcile();
  const conf = { cniVersion: '1.1.0', name: 'hypha', type: 'hypha' };
  const req = (netns: string, i: string) => ({ containerId: idOf(`steps${i}`, 0), netns, ifname: 'eth0', args: { K8S_POD_NAMESPACE: 'bench', K8S_POD_NAME: `p${i}` }, path: [], config: conf });

  const out: Record<string, StepSamples> = {};
  const timedAdd = async (netns: string, i: string, total: StepSamples, m = manager): Promise<string> => {
    const t0 = performance.now();
    const r = await m.add(req(netns, i));
    (total['total (EndpointManager.add)'] ??= []).push(performance.now() - t0);
    return r.interfaces[0]!.name;
  };
  const timedDel = async (netns: string, i: string, total: StepSamples, m = manager): Promise<void> => {
    const t0 = performance.now();
    await m.del(req(netns, i));
    (total['total (EndpointManager.del)'] ??= []).push(performance.now() - t0);
  };
  {
    // Sequential.
    sink = add;
    for (const [i, ns] of a.seq.entries()) await timedAdd(ns, `s${i}`, add);
    sink = del;
    for (const [i, ns] of a.seq.entries()) await timedDel(ns, `s${i}`, del);
    out['sequential ADD'] = add;
    out['sequential DEL'] = del;
    // Concurrent rounds.
    const cadd: StepSamples = {};
    const cdel: StepSamples = {};
    for (const [r, round] of a.conc.entries()) {
      sink = cadd;
      await Promise.all(round.map((ns, i) => timedAdd(ns, `c${r}x${i}`, cadd)));
      sink = cdel;
      await Promise.all(round.map((ns, i) => timedDel(ns, `c${r}x${i}`, cdel)));
    }
    out['concurrent ADD'] = cadd;
    out['concurrent DEL'] = cdel;
  }
  host.close();
  dp.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Run the step profile inside `node`'s netns on fresh pod namespaces; rows via 'in-process'. */
async function stepProfile(topo: Topology, node: Node, work: string): Promise<Row[]> {
  const seq = await scratches(topo, 'q', PODS);
  const conc = await Promise.all(Array.from({ length: ROUNDS }, (_, r) => scratches(topo, `k${r}x`, CONC)));
  const pinRoot = `/sys/fs/bpf/${topo.prefix}steps`;
  const rows: Row[] = [];
  // A process of its own, with the thread pool bin/hypha gives the agent.
  const runs = [{ env: { UV_THREADPOOL_SIZE: '16' } }];
  try {
    for (const [k, run_] of runs.entries()) {
      const args: StepsArgs = {
        pinRoot, stateDir: path.join(work, `steps-state-${k}`), cidr: node.podCidr,
        seq: seq.map((x) => topo.netnsPath(x)), conc: conc.map((c) => c.map((x) => topo.netnsPath(x))),
      };
      const argsFile = path.join(work, 'steps-args.json');
      writeFileSync(argsFile, JSON.stringify(args));
      const r = await topo.exec(node, [NODE_BIN, '--no-warnings', path.join(REPO, 'bench/cni.ts'), '--steps-child', argsFile], { timeoutMs: 600_000, env: { ...process.env, ...run_.env } });
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, StepSamples>;
      for (const [phase, steps] of Object.entries(out)) {
        const [mode, op] = phase.split(' ') as [Mode, Op];
        for (const [step, xs] of Object.entries(steps)) rows.push({ plugin: 'hypha', via: 'in-process', mode, op, step, ...stats(xs) });
      }
      rmSync(pinRoot, { recursive: true, force: true });
    }
    return rows;
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
    await removeScratches(topo, seq);
    for (const c of conc) await removeScratches(topo, c);
  }
}

if (values['plot-only']) {
  await plot(JSON.parse(readFileSync(values.out, 'utf8')) as Row[], values.out);
  process.exit(0);
}

if (values['steps-child'] !== undefined) {
  await stepsChild(JSON.parse(readFileSync(values['steps-child'], 'utf8')) as StepsArgs);
  process.exit(0);
}

// ---------------------------------------------------------------- main

Topology.sweepStale();
sweepStaleContainerd();
const work = mkdtempSync(path.join(tmpdir(), 'hypha-bench-cni-'));
const ctrdWork = mkdtempSync('/tmp/hybcni-');
const topo = await Topology.create({ name: 'bench-cni' });
let agent: TestAgent | undefined;
const runtimes = new Map<PluginName, Runtime>();
const samples: Samples = new Map();
let exitCode = 0;
try {
  const n1 = await topo.addNode('n1', { podCidr: '10.244.1.0/24' });
  const n2 = await topo.addNode('n2', { podCidr: '10.244.2.0/24' });
  const n3 = await topo.addNode('n3', { podCidr: '10.244.3.0/24' });
  mkdirSync(path.join(work, 'services'));
  agent = new TestAgent(topo, n1, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, workDir: work, servicesDir: path.join(work, 'services'), resyncSeconds: 3600 });
  await agent.start(60_000);
  const hyphaAgent = agent;
  const t0 = Date.now();
  while (!existsSync(path.join(agent.cniDirs.confDir, '05-hypha.conflist'))) {
    if (Date.now() - t0 > 30_000) throw new Error('the agent wrote no conflist in 30 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const hypha: Plugin = { name: 'hypha', node: n1, binary: agent.plugin.binary, cniPath: agent.cniDirs.binDir, conf: agent.plugin.netConf() };
  const bridgeConf = {
    cniVersion: '1.0.0', name: 'bench-bridge', type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet: n2.podCidr, gateway: '10.244.2.1' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(work, 'host-local') },
  };
  const bridge: Plugin = { name: 'bridge+host-local', node: n2, binary: path.join(REFERENCE_BIN, 'bridge'), cniPath: REFERENCE_BIN, conf: bridgeConf };
  const plugins = [hypha, bridge];

  log(`direct: plugin binaries exec'd in the node netns (${PODS} in a row, ${CONC} at once x ${ROUNDS})`);
  await direct(topo, plugins, samples);

  log(`  hypha ADD with the plugin's debug log (${PODS} in a row; the split of one ADD, not in the figures)`);
  const split = await shimProfile(topo, hypha, agent);

  let stepRows: Row[] = [];
  if (!values['no-steps']) {
    log(`in-process: the agent's endpoint manager with every step timed (${PODS} in a row, ${CONC} at once x ${ROUNDS}), on n3`);
    stepRows = await stepProfile(topo, n3, work);
  }

  if (!values['no-containerd']) {
    const bins = await containerdBinaries();
    runtimes.set('hypha', await startContainerd(topo, n1, { workDir: ctrdWork, cniBinDirs: [agent.cniDirs.binDir, REFERENCE_BIN], cniConfDir: agent.cniDirs.confDir, binaries: bins }));
    const bridgeConfDir = path.join(work, 'bridge-net.d');
    mkdirSync(bridgeConfDir);
    const { name: _n, cniVersion: _v, ...bridgePlugin } = bridgeConf;
    writeFileSync(path.join(bridgeConfDir, '10-bridge.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'bench-bridge', plugins: [bridgePlugin] }));
    runtimes.set('bridge+host-local', await startContainerd(topo, n2, { workDir: ctrdWork, cniBinDirs: [REFERENCE_BIN], cniConfDir: bridgeConfDir, binaries: bins }));
    log('containerd on both nodes');
    await viaContainerd(runtimes, plugins, samples);
  }

  const rows: Row[] = [];
  for (const [k, xs] of samples) {
    const [plugin, via, mode, op] = k.split('|') as [Row['plugin'], Row['via'], Mode, Op];
    rows.push({ plugin, via, mode, op, ...stats(xs) });
  }
  const rank = (r: Row): string => `${r.via === 'direct' ? 0 : 1}${r.op === 'EXEC' ? 0 : r.op === 'VERSION' ? 1 : r.op === 'ADD' ? 2 : 3}${r.mode === 'sequential' ? 0 : 1}${r.plugin}`;
  rows.sort((a, b) => rank(a).localeCompare(rank(b)));
  rows.push(...stepRows);
  // The split of Hypha's sequential direct ADD (its own pass with the plugin's debug log).
  {
    const ok = split['total']!.map((_, i) => i).filter((i) => Number.isFinite(split['plugin']![i]) && Number.isFinite(split['agent']![i]));
    const parts: [string, (i: number) => number][] = [
      ['total (plugin debug log on)', (i) => split['total']![i]!],
      ['launcher + exec + dynamic loading (total - plugin main to answer)', (i) => split['total']![i]! - split['plugin']![i]!],
      ['plugin work + socket round trip (plugin - agent)', (i) => split['plugin']![i]! - split['agent']![i]!],
      ['agent, debug pass (its cni request log line)', (i) => split['agent']![i]!],
    ];
    for (const [step, f] of parts) rows.push({ plugin: 'hypha', via: 'direct', mode: 'sequential', op: 'ADD', step, ...stats(ok.map(f)) });
  }
  // Time inside the agent (its per-request log line) for the direct passes above.
  const times = agentTimes(hyphaAgent);
  const agentMs = (op: 'ADD' | 'DEL', ids: string[]): number[] => ids.map((id) => times.get(`${op} ${id}`)).filter((x): x is number => x !== undefined);
  const seqIds = Array.from({ length: PODS * 2 }, (_, i) => idOf('s', i));
  const concIds = Array.from({ length: ROUNDS }, (_, r) => Array.from({ length: CONC }, (_, i) => idOf(`c${r}`, i))).flat();
  const seqAgent = agentMs('ADD', seqIds);
  const concAgent = agentMs('ADD', concIds);
  for (const [mode, op, xs] of [['sequential', 'ADD', seqAgent], ['concurrent', 'ADD', concAgent], ['sequential', 'DEL', agentMs('DEL', seqIds)], ['concurrent', 'DEL', agentMs('DEL', concIds)]] as const) {
    if (xs.length > 0) rows.push({ plugin: 'hypha', via: 'direct', mode, op, step: 'agent (its cni request log line)', ...stats(xs) });
  }
  mkdirSync(path.dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(rows, null, 2)}\n`);
  log(`wrote ${values.out}`);
  await plot(rows, values.out);

  const row = (plugin: Row['plugin'], via: Row['via'], mode: Mode, op: Op): Row | undefined => rows.find((r) => r.plugin === plugin && r.via === via && r.mode === mode && r.op === op && r.step === undefined);
  process.stdout.write(`${JSON.stringify(rows)}\n`);
  process.stdout.write('\nhypha / bridge+host-local, per row (p50, p99):\n');
  for (const via of ['direct', 'containerd'] as const) {
    for (const mode of ['sequential', 'concurrent'] as const) {
      for (const op of ['ADD', 'DEL'] as const) {
        const h = row('hypha', via, mode, op);
        const b = row('bridge+host-local', via, mode, op);
        if (!h || !b) continue;
        process.stdout.write(`  ${via.padEnd(10)} ${mode.padEnd(10)} ${op}  p50 ${h.p50_ms} / ${b.p50_ms} ms = ${(h.p50_ms / b.p50_ms).toFixed(2)}x   p99 ${h.p99_ms} / ${b.p99_ms} ms = ${(h.p99_ms / b.p99_ms).toFixed(2)}x\n`);
      }
    }
  }
  const floor = row('exec-floor', 'direct', 'sequential', 'EXEC');
  const ver = row('hypha', 'direct', 'sequential', 'VERSION');
  const bver = row('bridge+host-local', 'direct', 'sequential', 'VERSION');
  process.stdout.write(`\nlauncher floor (true): p50 ${floor?.p50_ms} ms sequential, p50 ${row('exec-floor', 'direct', 'concurrent', 'EXEC')?.p50_ms} / p99 ${row('exec-floor', 'direct', 'concurrent', 'EXEC')?.p99_ms} ms ${CONC} at once\n`);
  process.stdout.write(`plugin start (VERSION): hypha p50 ${ver?.p50_ms} ms, bridge p50 ${bver?.p50_ms} ms\n`);
  const agentRow = (mode: Mode, op: Op): string => {
    const r = rows.find((x) => x.plugin === 'hypha' && x.via === 'direct' && x.mode === mode && x.op === op && x.step === 'agent (its cni request log line)');
    return r ? `p50 ${r.p50_ms} / p99 ${r.p99_ms} ms (${r.samples})` : 'n/a';
  };
  process.stdout.write(`time inside the agent: ADD sequential ${agentRow('sequential', 'ADD')}, ${CONC} at once ${agentRow('concurrent', 'ADD')}; DEL sequential ${agentRow('sequential', 'DEL')}, ${CONC} at once ${agentRow('concurrent', 'DEL')}\n`);
  const ok = split['total']!.map((_, i) => i).filter((i) => Number.isFinite(split['plugin']![i]) && Number.isFinite(split['agent']![i]));
  const part = (f: (i: number) => number): string => { const xs = ok.map(f); return `p50 ${r2(pct(xs, 50))} / p99 ${r2(pct(xs, 99))}`; };
  process.stdout.write(`hypha ADD split (${ok.length} sequential, plugin debug log on): total ${part((i) => split['total']![i]!)} ms = `
    + `launcher+exec+loading ${part((i) => split['total']![i]! - split['plugin']![i]!)} + plugin work and socket round trip ${part((i) => split['plugin']![i]! - split['agent']![i]!)} + agent ${part((i) => split['agent']![i]!)}\n`);
  if (stepRows.length > 0) {
    process.stdout.write('\nhypha ADD / DEL inside the agent, step by step (in-process, ms):\n');
    for (const phase of ['sequential ADD', 'concurrent ADD', 'sequential DEL', 'concurrent DEL']) {
      process.stdout.write(`  ${phase}\n`);
      for (const r of stepRows.filter((x) => `${x.mode} ${x.op}` === phase)) {
        process.stdout.write(`    ${(r.step ?? '').padEnd(58)} p50 ${String(r.p50_ms).padStart(7)}  p99 ${String(r.p99_ms).padStart(7)}  mean ${String(r.mean_ms).padStart(7)}  (${r.samples})\n`);
      }
    }
  }
  const bar = (mode: Mode): string => {
    const h = row('hypha', 'direct', mode, 'ADD');
    const b = row('bridge+host-local', 'direct', mode, 'ADD');
    return h && b ? `${mode} ${(h.p99_ms / b.p99_ms).toFixed(2)}x ${h.p99_ms / b.p99_ms <= 1.5 ? 'ok' : 'OVER'}` : `${mode} n/a`;
  };
  process.stdout.write(`bar (hypha ADD p99 <= 1.5x reference, direct): ${bar('sequential')}, ${bar('concurrent')}\n`);
} catch (err) {
  exitCode = 1;
  log(`failed: ${(err as Error).stack ?? String(err)}`);
} finally {
  for (const rt of runtimes.values()) {
    const report = await rt.stop();
    if (report.problems.length > 0) log(`containerd stop problems on ${rt.node.name}: ${report.problems.join('; ')}`);
  }
  await agent?.stop();
  await topo.destroy();
  agent?.cleanupPins();
  rmSync(work, { recursive: true, force: true });
  rmSync(ctrdWork, { recursive: true, force: true });
}
process.exitCode = exitCode;
