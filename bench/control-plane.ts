// `make bench-control`: the agent as a control plane, against a real
// kube-apiserver. Writes bench/results/control-plane.json and .png.
//  (a) change_to_datapath_ms: an EndpointSlice is replaced through the API
//      (its one backend swapped); the clock stops when the datapath answers a
//      packet for the Service with the new backend (hypha_from_pod run through
//      BPF_PROG_TEST_RUN on the node's pinned maps, polled every millisecond).
//  (b) cold_sync: N Services x 10 endpoints exist in the API server; a fresh
//      agent (empty pin root) starts; the time to its first programmed sync
//      ("agent ready") and its peak RSS (VmHWM) at that moment.
//  (c) the real kube-proxy (peer "kube-proxy-binary", v1.36.3 from the same
//      Kubernetes module, bench/peers/kube-proxy-binary.ts) against the same
//      API server, in a node namespace of its own per start, in iptables mode
//      through iptables-nft and iptables-legacy and in nftables mode: cold
//      sync (process start to its first IPv4 sync, which holds every listed
//      Service) and peak RSS; change to rules (an EndpointSlice replaced until
//      a sync's rules send the Service to the new endpoint), with the latency
//      Service alone and with N Services; Hypha's change latency with N
//      Services beside it (the cold-sync agent).
//  (d) ruleset_load / ruleset_one_change: kube-proxy's rulesets as generated
//      by bench/peers, loaded with iptables-nft-restore and nft -f into a
//      scratch netns, and the partial sync kube-proxy does for one endpoint
//      change: only for sizes past --binary-max, where the binary is not run
//      (each row says why in ruleset_reason).
//
//   node bench/control-plane.ts [--changes 200] [--services 1000,10000,25000,50000,100000] [--peer-max 25000]
//     [--binary-max iptables-nft=1000,iptables-legacy=25000,nftables=25000] [--binary-changes 20] [--changes-at-n 10]
//     [--create-only] [--create-parallel 32]
//
// The Services and slices are POSTed as JSON over kept-alive connections
// (bench/api-seed.ts) to an apiserver with the bitmap ClusterIP allocator
// (clusterIpAllocator in test/e2e/lib/apiserver.ts): 100 000 of each in 410 s
// here, where 1.36's own allocator fell below 20 a second past 40 000.
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import * as native from '../native/index.ts';
import { Datapath } from '../src/datapath/loader.ts';
import { uintToIp4 } from '../src/abi/codec.ts';
import { buildPacket, parsePacket } from '../test/lib/packet.ts';
import { TestAgent } from '../test/e2e/lib/agent.ts';
import { Cluster } from '../test/e2e/lib/cluster.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { k8sBinaries } from '../test/e2e/lib/apiserver.ts';
import { serviceObject, sliceObject } from '../test/e2e/lib/manifests.ts';
import { seedClient } from './api-seed.ts';
import { IPTABLES_RESTORE_ARGS, iptablesOneChange, iptablesRestoreChunks, iptablesRestoreInput, xtablesLockEnv } from './peers/kube-proxy-iptables.ts';
import { NFT_RUN_ARGS, nftInput, nftOneChange } from './peers/kube-proxy-nftables.ts';
import type { PeerService } from './peers/peer-service.ts';
import { BINARY_DATAPLANES, BINARY_PEER, type BinaryDataplane, generatedReason, parseBinaryMax, changeToRules, coldStart, KubeProxyBinary, wallMs } from './peers/kube-proxy-binary.ts';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    changes: { type: 'string', default: '200' },
    services: { type: 'string', default: '1000,10000,25000,50000,100000' },
    // kube-proxy's rulesets past this many Services take hours to load (nft -f
    // is quadratic here: 228 s at 25 000): not measured, and said so in a row.
    'peer-max': { type: 'string', default: '25000' },
    'single-restore-max': { type: 'string', default: '1000' },
    // The largest count the real kube-proxy is started with, per dataplane.
    // iptables-nft: its one iptables-nft-restore of the whole ruleset per full
    // sync is quadratic in iptables 1.8.9 (5.9 s at 1 000 Services, over 18
    // minutes at 10 000); the generated ruleset, restored in chunks, stands in
    // past it.
    'binary-max': { type: 'string', default: 'iptables-nft=1000,iptables-legacy=25000,nftables=25000' },
    'binary-changes': { type: 'string', default: '20' },
    'changes-at-n': { type: 'string', default: '10' },
    'binary-timeout': { type: 'string', default: '1800' },
    out: { type: 'string', default: path.join(REPO, 'bench/results/control-plane.json') },
    // Plot the rows of --out again (after a change to the plot) without measuring.
    replot: { type: 'boolean', default: false },
    // Only create the largest --services count in the API server, log the
    // creation rate per 2 000 and exit (no agent, no kube-proxy, --out untouched).
    'create-only': { type: 'boolean', default: false },
    'create-parallel': { type: 'string', default: '32' },
  },
});
const COUNTS = values.services.split(',').map(Number);
const binaryMax = parseBinaryMax(values['binary-max']);
const BINARY_TIMEOUT_MS = Number(values['binary-timeout']) * 1000;
const KUBE_PROXY = (await k8sBinaries()).kubeProxy;
const BINARY_CONFIG = 'kube-proxy v1.36.3 defaults (min sync period 1 s, sync period 30 s), conntrack sysctls left alone, JSON log at -v=2';

type Peer = typeof BINARY_PEER | 'generated-ruleset';
type Row =
  | { metric: 'change_to_datapath_ms'; p50: number; p99: number; changes: number; services?: number; peer?: Peer; dataplane?: BinaryDataplane; sync_p50_s?: number; gap_ms?: number }
  | { metric: 'cold_sync'; services: number; seconds: number; rss_mb: number; log_lines: number; frontends: number; map_sizes: Record<string, number>; config: string }
  | { metric: 'cold_sync'; services: number; seconds: number; rss_mb: number; peer: typeof BINARY_PEER; dataplane: BinaryDataplane; sync_s: number; service_chains: number; config: string }
  | { metric: 'ruleset_skipped'; services: number; reason: string }
  | { metric: 'api_seed'; from: number; to: number; seconds: number; per_second: number; config: string }
  | { metric: 'ruleset_load' | 'ruleset_one_change'; dataplane: 'iptables-nft' | 'nftables'; services: number; seconds: number; method?: string; peer: 'generated-ruleset'; ruleset_reason: string };

const rows: Row[] = [];
const log = (s: string): void => {
  process.stderr.write(`[bench-control ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};
const write = (): void => {
  mkdirSync(path.dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(rows, null, 2)}\n`);
};
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const vip = (i: number): string => uintToIp4(0x0a600000 + 1000 + i); // 10.96.3.233 onwards: clear of the latency Service
const epIp = (i: number): string => uintToIp4(0x0ac80000 + i + 1); // 10.200.0.1 onwards, one address per endpoint

// How the API server allocates ClusterIPs here: Kubernetes 1.36's own allocator
// makes creating a Service O(Services) (ControlPlaneOptions.clusterIpAllocator).
const SEED_CONFIG = 'kube-apiserver v1.36.3 with --emulated-version=1.33 --feature-gates=MultiCIDRServiceAllocator=false (bitmap ClusterIP allocator); JSON POSTs over kept-alive connections';

/** Create Services s<from>..s<to - 1>, 10 endpoints each (a Service, then its
 *  slice), `parallel` at a time; the rate is logged per 2 000 Services. */
async function createServices(c: Cluster, from: number, to: number): Promise<void> {
  const parallel = Number(values['create-parallel']);
  const api = seedClient(c.cp, parallel);
  const t0 = performance.now();
  let tLast = t0;
  let next = from;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < to) {
      const i = next++;
      const spec = { name: `s${i}`, clusterIP: vip(i), ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
      const endpoints = Array.from({ length: 10 }, (_, k) => ({ ip: epIp(i * 10 + k), node: 'elsewhere' }));
      const ports = [{ name: 'http', port: 8080 }];
      await api.create('/api/v1/namespaces/default/services', serviceObject(spec), () => c.applyService(spec));
      await api.create('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', sliceObject(spec, endpoints, ports), () => c.applySlice(spec, endpoints, ports));
      if (++done % 2000 === 0) {
        const now = performance.now();
        log(`  created ${from + done}/${to} Services in the API server: ${(2000 / ((now - tLast) / 1000)).toFixed(0)} Services (+ slices) a second over the last 2000, ${((now - t0) / 1000).toFixed(0)} s so far`);
        tLast = now;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    api.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  rows.push({ metric: 'api_seed', from, to, seconds: +seconds.toFixed(1), per_second: Math.round((to - from) / seconds), config: SEED_CONFIG });
  log(`  created ${to - from} Services and their EndpointSlices in ${seconds.toFixed(1)} s (${((to - from) / seconds).toFixed(0)} a second)`);
}

const LATENCY_SVC = { namespace: 'default', name: 'latency', portName: 'http' };
const latencySpec = { name: 'latency', clusterIP: '10.96.0.200', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
/** The i-th address the latency Service's one endpoint is moved to. */
const latencyIp = (i: number): string => `10.244.250.${(i % 200) + 2}`;
let latencyMoves = 0;

/** Replace the latency Service's slice so that its one endpoint is `ip`:
 *  the wall clock (ms) just before the one request that changes it. */
async function moveLatencyEndpoint(c: Cluster, ip: string): Promise<number> {
  const slice = await c.discovery.readNamespacedEndpointSlice({ name: 'latency-1', namespace: 'default' });
  slice.endpoints = [{ addresses: [ip], conditions: { ready: true }, nodeName: 'n1' }];
  const t0 = wallMs();
  await c.discovery.replaceNamespacedEndpointSlice({ name: 'latency-1', namespace: 'default', body: slice });
  return t0;
}

/** Hypha: `n` changes, each timed from the API request to the datapath
 *  (agent's pinned maps at pinRoot) answering with the new backend. */
async function changeLatency(c: Cluster, agent: TestAgent, n: number, services?: number): Promise<void> {
  // Our own program instances over the agent's pinned maps: the datapath as it is.
  const dp = await Datapath.load({ pinRoot: agent.opts.pinRoot, ...(agent.opts.mapSizes ? { mapSizes: agent.opts.mapSizes } : {}) });
  const answer = (sport: number): string => parsePacket(native.progTestRun(dp.programs.fromPod, {
    data: buildPacket({ src: '10.244.1.250', dst: '10.96.0.200', proto: 'tcp', sport, dport: 80, flags: ['SYN', 'FIN'] }),
  }).dataOut).dst;
  try {
    const until = async (ip: string): Promise<void> => {
      for (let sport = 1024; ; sport = sport >= 65000 ? 1024 : sport + 1) {
        if (answer(sport) === ip) return;
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    // Wherever the endpoint is now (a fresh agent starts with the slice as it was left).
    let slice = await c.discovery.readNamespacedEndpointSlice({ name: 'latency-1', namespace: 'default' });
    await until(slice.endpoints?.[0]?.addresses[0] ?? '10.244.250.1');
    // The clock runs from the one request that changes the slice (a replace
    // carrying the resourceVersion we hold) to the datapath's answer.
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const ip = latencyIp(latencyMoves++);
      slice.endpoints = [{ addresses: [ip], conditions: { ready: true }, nodeName: 'n1' }];
      const t0 = performance.now();
      slice = await c.discovery.replaceNamespacedEndpointSlice({ name: 'latency-1', namespace: 'default', body: slice });
      const t1 = performance.now();
      await until(ip);
      ms.push(performance.now() - t0);
      if (process.env.DEBUG_LATENCY) log(`    api ${(t1 - t0).toFixed(1)} ms, then datapath ${(performance.now() - t1).toFixed(1)} ms`);
    }
    const row = { metric: 'change_to_datapath_ms' as const, p50: +pct(ms, 50).toFixed(1), p99: +pct(ms, 99).toFixed(1), changes: n, services: services ?? 0 };
    log(`  hypha change to datapath${services ? ` with ${services} Services` : ''}: p50 ${row.p50} ms, p99 ${row.p99} ms over ${n} changes`);
    rows.push(row);
  } finally {
    dp.close();
  }
}

async function coldSync(c: Cluster, services: number): Promise<void> {
  const node = c.nodes[0]!;
  const agent = new TestAgent(c.topo, node, {
    pinRoot: `/sys/fs/bpf/${c.topo.prefix}cold${services}`, kubeconfig: c.cp.kubeconfigPath,
    workDir: path.join(c.work, `cold-${services}`),
    // The load balancer's cold sync alone: no pods on this agent. Default
    // settings: no map size fixed, the agent sizes and grows its maps.
    cni: false,
    mapSizes: {},
  });
  const t0 = performance.now();
  await agent.start(600_000);
  const seconds = (performance.now() - t0) / 1000;
  const status = readFileSync(`/proc/${agent.proc!.pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  const programmed = agent.frontends().length;
  const st = JSON.parse((await agent.http('/status')).body) as { maps: { map: string; capacity: number }[] };
  // Lines at info and above from the start to the first programmed sync (no storm of one per Service).
  const infoLines = agent.logs().filter((l) => Number(l.level) >= 30);
  const lines = infoLines.length;
  // BENCH_SHOW_LOG=1: the lines themselves, to see what a storm is made of.
  if (process.env.BENCH_SHOW_LOG) for (const l of infoLines) log(`    agent: ${JSON.stringify(l).slice(0, 300)}`);
  const row = {
    metric: 'cold_sync' as const, services, seconds: +seconds.toFixed(2), rss_mb: Math.round(hwm), log_lines: lines, frontends: programmed,
    map_sizes: Object.fromEntries(st.maps.map((m) => [m.map, m.capacity])), config: 'default (no map size set)',
  };
  log(`  cold start with ${services} Services: ready in ${row.seconds} s (process start to first sync), peak RSS ${row.rss_mb} MB, ${programmed} frontends, ${lines} log lines, maps ${JSON.stringify(row.map_sizes)}`);
  rows.push(row);
  try {
    await changeLatency(c, agent, Number(values['changes-at-n']), services);
  } finally {
    await agent.stop();
    agent.cleanupPins();
  }
}

/** The real kube-proxy in a fresh node namespace: cold sync with `services`
 *  (plus the latency and kubernetes Services) and `changes` moves of the
 *  latency Service's endpoint, each timed to the sync whose rules hold it. */
async function binary(c: Cluster, dp: BinaryDataplane, services: number, changes: number): Promise<void> {
  const node = await c.topo.addNode(`kp${c.topo.nodes.length}`);
  await c.registerNode(node);
  const kp = new KubeProxyBinary(c.topo, node, {
    binary: KUBE_PROXY, kubeconfig: c.cp.kubeconfigPath, nodeName: node.name, dataplane: dp, clusterCIDR: '10.244.0.0/16',
    workDir: path.join(c.work, `${node.name}-${dp}`),
  });
  try {
    const cold = await coldStart(kp, services + 1, BINARY_TIMEOUT_MS);
    if (services > 0) {
      rows.push({
        metric: 'cold_sync', services, seconds: +cold.seconds.toFixed(2), rss_mb: Math.round(cold.rssMb), peer: BINARY_PEER, dataplane: dp,
        sync_s: +cold.syncSeconds.toFixed(2), service_chains: cold.chains, config: BINARY_CONFIG,
      });
      log(`  kube-proxy ${dp} cold start with ${services} Services: first sync done ${cold.seconds.toFixed(2)} s after process start (the sync itself ${cold.syncSeconds.toFixed(2)} s), peak RSS ${Math.round(cold.rssMb)} MB, ${cold.chains} Service chains`);
    }
    // kube-proxy syncs at most once a second (min sync period): each change
    // waits until a second after the last sync began, so it is timed alone.
    const gapMs = 1100;
    const ms: number[] = [];
    const sync: number[] = [];
    for (let i = 0; i < changes; i++) {
      const last = kp.syncs().at(-1);
      const wait = (last ? last.ts - last.elapsedSeconds * 1000 + gapMs : 0) - wallMs();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const ip = latencyIp(latencyMoves++);
      const t0 = await moveLatencyEndpoint(c, ip);
      const r = await changeToRules(kp, t0, LATENCY_SVC, ip, 8080);
      ms.push(r.seconds * 1000);
      sync.push(r.syncSeconds);
      if (process.env.DEBUG_LATENCY) log(`    ${dp}: ${(r.seconds * 1000).toFixed(1)} ms (its sync ${(r.syncSeconds * 1000).toFixed(1)} ms)`);
    }
    const row: Extract<Row, { metric: 'change_to_datapath_ms' }> = {
      metric: 'change_to_datapath_ms', p50: +pct(ms, 50).toFixed(1), p99: +pct(ms, 99).toFixed(1), changes, services,
      peer: BINARY_PEER, dataplane: dp, sync_p50_s: +pct(sync, 50).toFixed(3), gap_ms: gapMs,
    };
    rows.push(row);
    log(`  kube-proxy ${dp} change to rules${services ? ` with ${services} Services` : ''}: p50 ${row.p50} ms, p99 ${row.p99} ms over ${changes} changes (its sync p50 ${row.sync_p50_s} s)`);
  } finally {
    await kp.stop();
    await kp.flushRules();
  }
  write();
}

function peers(n: number): PeerService[] {
  return Array.from({ length: n }, (_, i) => ({
    namespace: 'default', name: `s${i}`, portName: 'http', protocol: 'TCP' as const, clusterIP: vip(i), port: 80,
    endpoints: Array.from({ length: 10 }, (_, k) => ({ ip: epIp(i * 10 + k), port: 8080 })),
  }));
}

async function rulesets(c: Cluster, n: number, dataplanes: readonly ('iptables-nft' | 'nftables')[]): Promise<void> {
  const opts = { clusterCIDR: '10.244.0.0/16', nodeIPs: ['192.168.77.11'] };
  const svcs = peers(n);
  const change = { service: 0, endpoint: 0, to: { ip: '10.199.0.1', port: 8080 } };
  for (const dp of dataplanes) {
    const generated = { peer: 'generated-ruleset' as const, ruleset_reason: generatedReason(dp, binaryMax(dp)) };
    // A fresh scratch namespace per load: empty tables, as on a node kube-proxy starts on.
    const ns = await c.topo.addScratch(`rules-${dp}-${n}`);
    try {
      const inNs = (argv: string[], input: string) => c.topo.exec(ns, argv, { input, timeoutMs: 3_600_000, env: { ...process.env, ...xtablesLockEnv(c.work, ns.netns) } });
      let t = performance.now();
      let method: string | undefined;
      if (dp === 'nftables') {
        await inNs(['nft', ...NFT_RUN_ARGS], nftInput(svcs, opts));
      } else if (n <= Number(values['single-restore-max'])) {
        await inNs(['iptables-nft-restore', ...IPTABLES_RESTORE_ARGS], iptablesRestoreInput(svcs, opts));
      } else {
        // One restore of this size runs for tens of minutes (iptables 1.8.9 is
        // quadratic in one input); chunks leave the same ruleset.
        method = 'chunked restore of 250 Services per call (one call is quadratic in iptables 1.8.9)';
        for (const input of iptablesRestoreChunks(iptablesRestoreInput(svcs, opts), 250)) await inNs(['iptables-nft-restore', ...IPTABLES_RESTORE_ARGS], input);
      }
      const load = (performance.now() - t) / 1000;
      rows.push({ metric: 'ruleset_load', dataplane: dp, services: n, seconds: +load.toFixed(2), ...(method ? { method } : {}), ...generated });
      t = performance.now();
      if (dp === 'nftables') await inNs(['nft', ...NFT_RUN_ARGS], nftOneChange(svcs, opts, change));
      else await inNs(['iptables-nft-restore', ...IPTABLES_RESTORE_ARGS], iptablesOneChange(svcs, opts, change));
      const one = (performance.now() - t) / 1000;
      rows.push({ metric: 'ruleset_one_change', dataplane: dp, services: n, seconds: +one.toFixed(3), ...generated });
      log(`  ${dp} with ${n} Services: load ${load.toFixed(2)} s${method ? ' (chunked)' : ''}, one endpoint change ${one.toFixed(3)} s`);
    } finally {
      await c.topo.removeScratch(ns);
    }
    write();
  }
}

async function plot(json: string): Promise<void> {
  const png = json.replace(/\.json$/, '.png');
  type Cold = Extract<Row, { metric: 'cold_sync' }>;
  type Change = Extract<Row, { metric: 'change_to_datapath_ms' }>;
  const cold = (dp?: BinaryDataplane): Cold[] => rows.filter((r): r is Cold => r.metric === 'cold_sync' && ('dataplane' in r ? r.dataplane : undefined) === dp);
  const load = (dp: string) => rows.filter((r): r is Extract<Row, { metric: 'ruleset_load' }> => r.metric === 'ruleset_load' && r.dataplane === dp);
  const change = (dp?: BinaryDataplane): Change[] => rows.filter((r): r is Change => r.metric === 'change_to_datapath_ms' && r.dataplane === dp);
  const lat = change().find((r) => !r.services);
  const series = (xs: { services: number; seconds: number }[]): string => `${xs.map((r) => `${r.services} ${r.seconds}`).join('\n')}\ne\n`;
  const rss = (xs: Cold[]): string => `${xs.map((r) => `${r.services} ${r.rss_mb}`).join('\n')}\ne\n`;
  const p50 = (xs: Change[]): string => `${xs.map((r) => `${Math.max(r.services ?? 0, 1)} ${r.p50}`).join('\n')}\ne\n`;
  const kp = BINARY_DATAPLANES;
  const script = [
    'set terminal pngcairo size 1800,560 font ",11"', `set output "${png}"`,
    `set multiplot layout 1,3 title "Control plane: Hypha agent vs the kube-proxy v1.36.3 binary against the same kube-apiserver${lat ? ` (Hypha EndpointSlice change to datapath: p50 ${lat.p50} ms, p99 ${lat.p99} ms)` : ''}" noenhanced`,
    'set logscale x', 'set logscale y', 'set grid', 'set key top left Left reverse', 'set offsets graph 0.08, graph 0.08, 0, 0',
    'set xlabel "Services (10 endpoints each)"', 'set ylabel "seconds"',
    `plot '-' with linespoints lw 2 title "hypha: cold start to programmed", ${kp.map((d) => `'-' with linespoints lw 2 title "kube-proxy ${d}: start to first sync"`).join(', ')}, '-' with points pt 6 ps 1.5 lc rgb "black" title "generated iptables-nft ruleset: chunked load", '-' with points pt 4 ps 1.5 lc rgb "gray40" title "generated nftables ruleset: nft -f"`,
    series(cold()) + kp.map((d) => series(cold(d))).join('') + series(load('iptables-nft')) + series(load('nftables')),
    'unset logscale y', 'set ylabel "peak RSS (MB)"', `plot '-' with linespoints lw 2 title "hypha agent", ${kp.map((d) => `'-' with linespoints lw 2 title "kube-proxy ${d} (without its restore children)"`).join(', ')}`,
    rss(cold()) + kp.map((d) => rss(cold(d))).join(''),
    'set logscale y', 'set ylabel "change to datapath p50 (ms)"', 'set xlabel "Services besides the changed one (1 = it alone)"',
    `plot '-' with linespoints lw 2 title "hypha", ${kp.map((d) => `'-' with linespoints lw 2 title "kube-proxy ${d}"`).join(', ')}`,
    p50(change()) + kp.map((d) => p50(change(d))).join(''),
    'unset multiplot',
  ].join('\n');
  const gp = path.join(tmpdir(), `hypha-bench-control-${process.pid}.gp`);
  writeFileSync(gp, script);
  await run(['gnuplot', gp]);
  rmSync(gp, { force: true });
  log(`wrote ${png}`);
}

if (values.replot) {
  rows.push(...(JSON.parse(readFileSync(values.out, 'utf8')) as Row[]));
  await plot(values.out);
  process.exit(0);
}
const cluster = await Cluster.create({
  name: 'bcp', nodes: 1, log, mapSizes: { services: 1 << 19, backends: 1 << 19, affinity: 1 << 16, ct: 1 << 18 },
  // 100 000 Services in minutes rather than hours (SEED_CONFIG).
  clusterIpAllocator: 'bitmap', noAgents: values['create-only'],
});
if (values['create-only']) {
  try {
    await createServices(cluster, 0, Math.max(...COUNTS));
  } finally {
    await cluster.destroy();
  }
  process.exit(0);
}
try {
  await cluster.applyService(latencySpec);
  await cluster.applySlice(latencySpec, [{ ip: '10.244.250.1', node: 'n1' }], [{ name: 'http', port: 8080 }]);
  log(`(a) EndpointSlice change to datapath, ${values.changes} changes`);
  await changeLatency(cluster, cluster.agents[0]!, Number(values.changes));
  write();
  await cluster.agents[0]!.stop();
  for (const dp of BINARY_DATAPLANES) {
    log(`(c) kube-proxy ${dp}: EndpointSlice change to rules, ${values['binary-changes']} changes`);
    await binary(cluster, dp, 0, Number(values['binary-changes']));
  }
  let have = 0;
  for (const n of COUNTS) {
    log(`(b) cold start with ${n} Services x 10 endpoints`);
    await createServices(cluster, have, n);
    have = n;
    await coldSync(cluster, n);
    write();
    for (const dp of BINARY_DATAPLANES) {
      if (n > binaryMax(dp)) continue;
      log(`(c) kube-proxy ${dp}: cold start with ${n} Services, then ${values['changes-at-n']} changes`);
      await binary(cluster, dp, n, Number(values['changes-at-n']));
    }
    const generated = (['iptables-nft', 'nftables'] as const).filter((dp) => n > binaryMax(dp));
    if (generated.length === 0) continue;
    if (n > Number(values['peer-max'])) {
      rows.push({ metric: 'ruleset_skipped', services: n, reason: `past --binary-max and --peer-max ${values['peer-max']}: nft -f and chunked iptables-nft-restore take hours at this size here (228 s and 63 s at 25 000)` });
      continue;
    }
    log(`(d) generated kube-proxy rulesets for ${n} Services (${generated.join(', ')}: past --binary-max)`);
    await rulesets(cluster, n, generated);
  }
} finally {
  await cluster.destroy();
}
write();
await plot(values.out);
process.stdout.write(`${JSON.stringify(rows)}\n`);
// Hypha next to the binary, per size: how many times longer the binary takes.
for (const n of [0, ...COUNTS]) {
  type Cold = Extract<Row, { metric: 'cold_sync' }>;
  const hypha = rows.find((r): r is Cold => r.metric === 'cold_sync' && r.services === n && !('peer' in r));
  const hc = rows.find((r): r is Extract<Row, { metric: 'change_to_datapath_ms' }> => r.metric === 'change_to_datapath_ms' && (r.services ?? 0) === n && !r.peer);
  const parts: string[] = [];
  for (const dp of BINARY_DATAPLANES) {
    const kc = rows.find((r): r is Cold => r.metric === 'cold_sync' && r.services === n && 'dataplane' in r && r.dataplane === dp);
    const kl = rows.find((r): r is Extract<Row, { metric: 'change_to_datapath_ms' }> => r.metric === 'change_to_datapath_ms' && (r.services ?? 0) === n && r.dataplane === dp);
    const cs = hypha && kc ? `cold ${(kc.seconds / hypha.seconds).toFixed(2)}x, RSS ${(kc.rss_mb / hypha.rss_mb).toFixed(2)}x, ` : '';
    if (kc || kl) parts.push(`${dp} ${cs}change p50 ${hc && kl ? (kl.p50 / hc.p50).toFixed(2) : 'n/a'}x`);
  }
  if (parts.length) process.stdout.write(`${n} Services, kube-proxy binary vs hypha: ${parts.join('; ')}\n`);
}
void k8s;
