// `make bench-lb`: Service translation cost and new-connection rate against
// the number of Services (10 backends each), Hypha next to kube-proxy's
// rulesets in the same run. Writes bench/results/lb-scaling.json and .png.
//
// Every dataplane gets the same topology (one node netns, a client pod, ten
// backend pods running acceptd), the same client (connrate, random Service
// per connection), the same servers. Peers: kube-proxy v1.36's iptables
// layout through iptables-nft and iptables-legacy, and its nftables layout,
// up to 10 000 Services. "direct" connects to the backends' own addresses
// with nothing in between: the ceiling of this client on this machine, through
// the node's routing. "hypha" is the agent as shipped (host routing on: pod to
// pod on the node skips the node's stack); "hypha-stack" is the same agent
// with bpf.hostRouting off, routed by the stack like the peers, which shows
// what the translation alone is worth.
//
// The kube-proxy peers are the real binary (peer "kube-proxy-binary", v1.36.3
// built from the same Kubernetes module; bench/peers/kube-proxy-binary.ts) in
// the bed's node namespace, watching a real kube-apiserver that holds the same
// Services (10.96.0.2 onwards: 10.96.0.1 is the API server's own "kubernetes"
// Service) with the same ten backends; the connections are timed once its
// first sync is done. Past --binary-max for a dataplane (iptables-nft: a full
// sync of kube-proxy is one iptables-nft-restore, quadratic in iptables 1.8.9)
// kube-proxy's ruleset as bench/peers generates it stands in (peer
// "generated-ruleset", with the reason in ruleset_reason). The API server runs
// in a topology of its own for the whole run, so every series has it as
// background; a bed's node reaches it through bench/tools/tcp-to-unix.ts.
//
//   node bench/lb-scaling.ts [--services 1,1000,10000,100000] [--seconds 5] [--runs 3]
//     [--binary-max iptables-nft=1000,iptables-legacy=10000,nftables=10000]
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { iptablesRestoreChunks, iptablesRestoreInput, IPTABLES_RESTORE_ARGS, xtablesLockEnv } from './peers/kube-proxy-iptables.ts';
import { nftInput, NFT_RUN_ARGS } from './peers/kube-proxy-nftables.ts';
import type { PeerService } from './peers/peer-service.ts';
import { BACKEND_IPS, measurePacketCost, vipOf } from './lb-ns-per-packet.ts';
import { BACKEND_PORT, BENCH_BIN as BIN, bed, connRate as rateOf, type Bed, type Rate } from './conn-bed.ts';
import { TestAgent } from '../test/e2e/lib/agent.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { Topology } from '../test/e2e/lib/topology.ts';
import { type ControlPlane, k8sBinaries, startControlPlane } from '../test/e2e/lib/apiserver.ts';
import { NODE_BIN } from '../test/e2e/lib/agent.ts';
import { writeKubeconfig } from '../test/e2e/lib/pki.ts';
import { BINARY_DATAPLANES, BINARY_PEER, type BinaryDataplane, generatedReason, parseBinaryMax, coldStart, KubeProxyBinary } from './peers/kube-proxy-binary.ts';
import * as k8s from '@kubernetes/client-node';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    services: { type: 'string', default: '1,1000,10000,100000' },
    'peer-max': { type: 'string', default: '10000' },
    'binary-max': { type: 'string', default: 'iptables-nft=1000,iptables-legacy=10000,nftables=10000' },
    'binary-timeout': { type: 'string', default: '1800' },
    seconds: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    out: { type: 'string', default: path.join(REPO, 'bench/results/lb-scaling.json') },
    // Plot the rows of --out again (after a change to the plot) without measuring.
    replot: { type: 'boolean', default: false },
  },
});
const COUNTS = values.services.split(',').map(Number);
const PEER_MAX = Number(values['peer-max']);
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);

type Dataplane = 'hypha' | 'hypha-stack' | 'iptables-nft' | 'iptables-legacy' | 'nftables' | 'direct' | 'floor';
type Peer = typeof BINARY_PEER | 'generated-ruleset';
interface Row {
  dataplane: Dataplane; services: number; ns_per_packet?: number; ns_per_packet_established?: number; conns_per_s?: number;
  /** connections attempted in the measured seconds of all runs, and those that failed (3 s timeout, refused, reset) */
  conns?: number; failed?: number;
  /** kube-proxy rows: the real binary or the generated ruleset (and why that one). */
  peer?: Peer; ruleset_reason?: string;
  /** The binary: process start to its first sync done, that sync alone, peak RSS. */
  start_to_sync_s?: number; sync_s?: number; rss_mb?: number;
  /** Hypha's agent, default config (no map size set): start to programmed,
   *  its log lines at info and above until then, its maps' capacities after. */
  programmed_s?: number; log_lines?: number; map_sizes?: Record<string, number>;
}
type AgentFacts = Pick<Row, 'programmed_s' | 'rss_mb' | 'log_lines' | 'map_sizes'>;
const binaryMax = parseBinaryMax(values['binary-max']);
const TCP_TO_UNIX = path.join(REPO, 'bench/tools/tcp-to-unix.ts');

const log = (s: string): void => {
  process.stderr.write(`[bench-lb ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};
const connRate = (b: Bed, targets: string[]): Promise<Rate> => rateOf(b, targets, { runs: RUNS, seconds: SECONDS, concurrency: values.concurrency, log });

function peerServices(n: number): PeerService[] {
  return Array.from({ length: n }, (_, i) => ({
    namespace: 'default', name: `s${i}`, portName: 'http', protocol: 'TCP' as const, clusterIP: vipOf(i), port: 80,
    endpoints: BACKEND_IPS.map((ip) => ({ ip, port: BACKEND_PORT })),
  }));
}

/** Services and slices as one Kubernetes List (JSON: fast to parse at 100 000). */
function manifests(n: number): string {
  const items: unknown[] = [];
  for (let i = 0; i < n; i++) {
    items.push({
      apiVersion: 'v1', kind: 'Service', metadata: { name: `s${i}`, namespace: 'default' },
      spec: { clusterIP: vipOf(i), ports: [{ name: 'http', port: 80, targetPort: BACKEND_PORT, protocol: 'TCP' }] },
    }, {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
      metadata: { name: `s${i}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s${i}` } },
      ports: [{ name: 'http', port: BACKEND_PORT, protocol: 'TCP' }],
      endpoints: BACKEND_IPS.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: 'n1' })),
    });
  }
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

/** The API server the kube-proxy binary watches, in a topology of its own, with the Node "n1" of every bed. */
interface Api { topo: Topology; cp: ControlPlane; core: k8s.CoreV1Api; discovery: k8s.DiscoveryV1Api; work: string; services: number; kubeProxy: string }
const BED_NODE_IP = '192.168.77.11'; // the first node of a fresh Topology
const binaryVip = (i: number): string => vipOf(i + 1);

async function startApi(): Promise<Api> {
  const work = mkdtempSync(path.join(tmpdir(), 'hypha-bench-lb-api-'));
  const topo = await Topology.create({ name: 'blb-api' });
  try {
    const host = await topo.addControlPlaneHost();
    log(`starting kube-apiserver and etcd for the kube-proxy binary on ${host.ip}`);
    const cp = await startControlPlane({ netns: host.netns, listenIp: host.ip, workDir: path.join(work, 'cp') });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.hostKubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNode({ body: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.1.0/24' } } });
    const node = await core.readNode({ name: 'n1' });
    node.status = { addresses: [{ type: 'InternalIP', address: BED_NODE_IP }, { type: 'Hostname', address: 'n1' }] };
    await core.replaceNodeStatus({ name: 'n1', body: node });
    return { topo, cp, core, discovery: kc.makeApiClient(k8s.DiscoveryV1Api), work, services: 0, kubeProxy: (await k8sBinaries()).kubeProxy };
  } catch (err) {
    await topo.destroy();
    throw err;
  }
}

/** Services s0..s(n-1) through the API, each with the bed's ten backends on n1. */
async function apiServices(api: Api, n: number): Promise<void> {
  const t0 = performance.now();
  let next = api.services;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await api.core.createNamespacedService({ namespace: 'default', body: {
        metadata: { name: `s${i}` }, spec: { clusterIP: binaryVip(i), ports: [{ name: 'http', port: 80, targetPort: BACKEND_PORT, protocol: 'TCP' }] },
      } });
      await api.discovery.createNamespacedEndpointSlice({ namespace: 'default', body: {
        addressType: 'IPv4', metadata: { name: `s${i}-1`, labels: { 'kubernetes.io/service-name': `s${i}` } },
        ports: [{ name: 'http', port: BACKEND_PORT, protocol: 'TCP' }],
        endpoints: BACKEND_IPS.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: 'n1' })),
      } });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  if (n > api.services) log(`  created Services ${api.services}..${n - 1} in the API server in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  api.services = n;
}

/** The real kube-proxy for `n` Services in a fresh bed. */
async function measureBinary(api: Api, dp: BinaryDataplane, n: number): Promise<Row> {
  await apiServices(api, n);
  const b = await bed(`bench-kp${dp.replace('iptables-', 'ipt')}`);
  try {
    const node = b.topo.nodes[0]!;
    if (node.ip !== BED_NODE_IP) throw new Error(`the bed's node has ${node.ip}, the Node object says ${BED_NODE_IP}`);
    await b.topo.spawnReady(node, [NODE_BIN, TCP_TO_UNIX, '6443', path.join(api.work, 'cp', 'apiserver.sock')]);
    const kubeconfig = await writeKubeconfig({
      path: path.join(b.work, 'kube-proxy.kubeconfig'), server: 'https://127.0.0.1:6443',
      caCert: api.cp.pki.caCert, clientCert: api.cp.pki.adminCert, clientKey: api.cp.pki.adminKey,
    });
    const kp = new KubeProxyBinary(b.topo, node, { binary: api.kubeProxy, kubeconfig, nodeName: 'n1', dataplane: dp, clusterCIDR: '10.244.0.0/16', workDir: path.join(b.work, 'kube-proxy') });
    try {
      // Our n Services and the API server's own.
      const cold = await coldStart(kp, n + 1, Number(values['binary-timeout']) * 1000);
      log(`  kube-proxy ${dp}: first sync of ${n} Services done ${cold.seconds.toFixed(1)} s after its start (the sync ${cold.syncSeconds.toFixed(1)} s), peak RSS ${Math.round(cold.rssMb)} MB`);
      const rate = await connRate(b, Array.from({ length: n }, (_, i) => `${binaryVip(i)}:80`));
      return {
        dataplane: dp, services: n, ...rate, peer: BINARY_PEER,
        start_to_sync_s: +cold.seconds.toFixed(2), sync_s: +cold.syncSeconds.toFixed(2), rss_mb: Math.round(cold.rssMb),
      };
    } finally {
      await kp.stop();
    }
  } finally {
    await b.topo.destroy();
    rmSync(b.work, { recursive: true, force: true });
  }
}

async function measure(dp: Exclude<Dataplane, 'floor'>, n: number): Promise<Rate & AgentFacts> {
  const hypha = dp === 'hypha' || dp === 'hypha-stack';
  let t0 = performance.now();
  let facts: AgentFacts = {};
  const b = await bed(`bench-${dp.replace('iptables-', 'ipt')}`, hypha ? async (topo, work) => {
    const dir = path.join(work, 'services');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'services.json'), manifests(n));
    // Steady state: no full resync inside the measurement. Default config:
    // no map size is set, the agent sizes its maps and grows them online.
    const a = new TestAgent(topo, topo.nodes[0]!, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: dir, workDir: work, mapSizes: {}, resyncSeconds: 3600, hostRouting: dp === 'hypha' });
    t0 = performance.now();
    await a.start(600_000);
    const programmed = (performance.now() - t0) / 1000;
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${a.proc!.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
    const st = JSON.parse((await a.http('/status')).body) as { maps: { map: string; capacity: number }[] };
    facts = {
      programmed_s: +programmed.toFixed(1), rss_mb: Math.round(hwm), log_lines: a.logs().filter((l) => Number(l.level) >= 30).length,
      map_sizes: Object.fromEntries(st.maps.map((m) => [m.map, m.capacity])),
    };
    log(`  ${dp}: ${n} Services programmed in ${programmed.toFixed(1)} s (default config), peak RSS ${facts.rss_mb} MB, ${facts.log_lines} log lines at info and above, maps ${JSON.stringify(facts.map_sizes)}`);
    return a;
  } : undefined);
  const agent = b.agent;
  try {
    const node = b.topo.nodes[0]!;
    const vips = Array.from({ length: n }, (_, i) => `${vipOf(i)}:80`);
    const opts = { clusterCIDR: '10.244.0.0/16', nodeIPs: [node.ip] };
    if (!hypha) t0 = performance.now();
    if (hypha) {
      // A moment for the garbage collection that follows programming everything.
      await new Promise((r) => setTimeout(r, 3000));
    } else if (dp === 'iptables-nft' || dp === 'iptables-legacy') {
      // iptables 1.8.9's restore is quadratic in the size of one input; in
      // chunks it leaves the same ruleset (bench/peers/iptables-chunks.test.ts).
      for (const input of iptablesRestoreChunks(iptablesRestoreInput(peerServices(n), opts), 250)) {
        await b.topo.exec(node, [`${dp}-restore`, ...IPTABLES_RESTORE_ARGS], {
          input, env: { ...process.env, ...xtablesLockEnv(b.work, node.netns) }, timeoutMs: 600_000,
        });
      }
    } else if (dp === 'nftables') {
      await b.topo.exec(node, ['nft', ...NFT_RUN_ARGS], { input: nftInput(peerServices(n), opts), timeoutMs: 3_600_000 });
    }
    if (!hypha) log(`  ${dp}: ${n} Services programmed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { ...await connRate(b, dp === 'direct' ? BACKEND_IPS.map((ip) => `${ip}:${BACKEND_PORT}`) : vips), ...facts };
  } finally {
    await agent?.stop();
    await b.topo.destroy();
    agent?.cleanupPins();
    rmSync(b.work, { recursive: true, force: true });
  }
}

async function plot(rows: Row[], json: string): Promise<void> {
  const png = json.replace(/\.json$/, '.png');
  const dat = (dp: Dataplane, field: keyof Row, peer?: Peer): string =>
    rows.filter((r) => r.dataplane === dp && r.peer === peer && r[field] !== undefined).map((r) => `${Math.max(r.services, 1)} ${r[field]}`).join('\n') + '\ne\n';
  const conn: Dataplane[] = ['direct', 'hypha', 'hypha-stack'];
  const script = [
    `set terminal pngcairo size 1400,560 font ",11"`,
    `set output "${png}"`,
    'set multiplot layout 1,2 title "Service load balancing: Hypha (BPF) vs the kube-proxy v1.36.3 binary, 10 backends per Service"',
    'set logscale x', 'set grid', 'set key top left', 'set xlabel "Services"',
    'set ylabel "ns per packet (BPF_PROG_TEST_RUN)" noenhanced', 'set yrange [0:*]', 'set key center right',
    `plot '-' with linespoints lw 2 title "hypha: new flow", '-' with linespoints lw 2 title "hypha: established flow", '-' with linespoints lw 2 title "floor (program that only returns)"`,
    dat('hypha', 'ns_per_packet') + dat('hypha', 'ns_per_packet_established') + dat('floor', 'ns_per_packet'),
    'set ylabel "new TCP connections per second"', 'set key bottom left',
    `plot ${[
      ...conn.map((d) => `'-' with linespoints lw 2 title "${d}"`),
      ...BINARY_DATAPLANES.map((d) => `'-' with linespoints lw 2 title "kube-proxy binary: ${d}"`),
      ...BINARY_DATAPLANES.map((d, i) => `'-' with points pt ${[6, 4, 8][i]} ps 1.5 lc rgb "black" title "generated ruleset: ${d}"`),
    ].join(', ')}`,
    conn.map((d) => dat(d, 'conns_per_s')).join('') + BINARY_DATAPLANES.map((d) => dat(d, 'conns_per_s', BINARY_PEER)).join('')
      + BINARY_DATAPLANES.map((d) => dat(d, 'conns_per_s', 'generated-ruleset')).join(''),
    'unset multiplot',
  ].join('\n');
  const gp = path.join(tmpdir(), `hypha-bench-${process.pid}.gp`);
  writeFileSync(gp, script);
  await run(['gnuplot', gp]);
  rmSync(gp, { force: true });
  log(`wrote ${png}`);
}

if (values.replot) {
  await plot(JSON.parse(readFileSync(values.out, 'utf8')) as Row[], values.out);
  process.exit(0);
}
Topology.sweepStale();
const rows: Row[] = [];
const api = COUNTS.some((n) => BINARY_DATAPLANES.some((dp) => n <= binaryMax(dp))) ? await startApi() : undefined;
const write = (): void => {
  mkdirSync(path.dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(rows, null, 2)}\n`);
};
try {
  for (const n of COUNTS) {
    log(`${n} Services: packet cost through BPF_PROG_TEST_RUN (repeat 1 000 000, median of 5)`);
    const cost = await measurePacketCost(n, { repeat: 1_000_000, runs: 5, floorObject: path.join(BIN, 'floor.o'), log });
    log(`  new flow ${cost.newFlowNs} ns, established ${cost.establishedNs} ns, floor ${cost.floorNs} ns`);
    rows.push({ dataplane: 'floor', services: n, ns_per_packet: cost.floorNs });
    const hypha: Row = { dataplane: 'hypha', services: n, ns_per_packet: cost.newFlowNs, ns_per_packet_established: cost.establishedNs };
    rows.push(hypha);
    for (const dp of ['hypha', 'hypha-stack', 'direct', 'nftables', 'iptables-legacy', 'iptables-nft'] as const) {
      const kubeProxy = dp !== 'hypha' && dp !== 'hypha-stack' && dp !== 'direct';
      if (kubeProxy && n <= binaryMax(dp)) {
        log(`${n} Services: new connections per second through the kube-proxy binary, ${dp}`);
        rows.push(await measureBinary(api!, dp, n));
        write();
        continue;
      }
      if (kubeProxy && n > PEER_MAX) continue;
      log(`${n} Services: new connections per second through ${kubeProxy ? `the generated ${dp} ruleset` : dp}`);
      const rate = await measure(dp, n);
      if (dp === 'hypha') Object.assign(hypha, rate);
      else if (kubeProxy) {
        rows.push({
          dataplane: dp, services: n, ...rate, peer: 'generated-ruleset',
          ruleset_reason: generatedReason(dp, binaryMax(dp)),
        });
      } else rows.push({ dataplane: dp, services: n, ...rate });
      write();
    }
  }
} finally {
  if (api) {
    await api.cp.stop();
    await api.topo.destroy();
    rmSync(api.work, { recursive: true, force: true });
  }
}
write();
await plot(rows, values.out);
const at = (dp: Dataplane, n: number): Row | undefined => rows.find((r) => r.dataplane === dp && r.services === n);
const lo = Math.min(...COUNTS);
const hi = Math.max(...COUNTS);
const ratio = (a?: number, b?: number): string => (a && b ? (a / b).toFixed(2) : 'n/a');
process.stdout.write(`${JSON.stringify(rows)}\n`);
process.stdout.write(`hypha ns/packet ${hi} vs ${lo} Services: ${ratio(at('hypha', hi)?.ns_per_packet, at('hypha', lo)?.ns_per_packet)}x; `
  + `conns/s ${hi} vs ${lo}: ${ratio(at('hypha', hi)?.conns_per_s, at('hypha', lo)?.conns_per_s)}x\n`);
if (COUNTS.includes(10000)) {
  process.stdout.write(`at 10000 Services, hypha conns/s vs iptables-nft ${ratio(at('hypha', 10000)?.conns_per_s, at('iptables-nft', 10000)?.conns_per_s)}x, `
    + `vs iptables-legacy ${ratio(at('hypha', 10000)?.conns_per_s, at('iptables-legacy', 10000)?.conns_per_s)}x, `
    + `vs nftables ${ratio(at('hypha', 10000)?.conns_per_s, at('nftables', 10000)?.conns_per_s)}x; `
    + `with stack routing (hypha-stack) vs iptables-nft ${ratio(at('hypha-stack', 10000)?.conns_per_s, at('iptables-nft', 10000)?.conns_per_s)}x, `
    + `vs nftables ${ratio(at('hypha-stack', 10000)?.conns_per_s, at('nftables', 10000)?.conns_per_s)}x `
    + `(${(['iptables-nft', 'iptables-legacy', 'nftables'] as const).map((d) => `${d}: ${at(d, 10000)?.peer ?? 'n/a'}`).join(', ')})\n`);
}
for (const n of COUNTS) {
  const bins = rows.filter((r) => r.services === n && r.peer === BINARY_PEER);
  if (bins.length) process.stdout.write(`${n} Services, hypha conns/s vs the kube-proxy binary: ${bins.map((r) => `${r.dataplane} ${ratio(at('hypha', n)?.conns_per_s, r.conns_per_s)}x`).join(', ')}\n`);
}
const failedOf = (dp: Dataplane): string => {
  const rs = rows.filter((r) => r.dataplane === dp && r.conns !== undefined);
  return `${dp} ${rs.reduce((n, r) => n + (r.failed ?? 0), 0)}/${rs.reduce((n, r) => n + (r.conns ?? 0), 0)}`;
};
process.stdout.write(`failed connections (all runs): ${(['hypha', 'hypha-stack', 'direct', 'nftables', 'iptables-legacy', 'iptables-nft'] as const).map(failedOf).join(', ')}\n`);
