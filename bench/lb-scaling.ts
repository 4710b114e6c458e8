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
//   node bench/lb-scaling.ts [--services 1,1000,10000,100000] [--seconds 5] [--runs 3]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { iptablesRestoreChunks, iptablesRestoreInput, IPTABLES_RESTORE_ARGS, xtablesLockEnv } from './peers/kube-proxy-iptables.ts';
import { nftInput, NFT_RUN_ARGS } from './peers/kube-proxy-nftables.ts';
import type { PeerService } from './peers/peer-service.ts';
import { BACKEND_IPS, BENCH_MAP_SIZES, measurePacketCost, vipOf } from './lb-ns-per-packet.ts';
import { BACKEND_PORT, BENCH_BIN as BIN, bed, connRate as rateOf, type Bed, type Rate } from './conn-bed.ts';
import { TestAgent } from '../test/e2e/lib/agent.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { Topology } from '../test/e2e/lib/topology.ts';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    services: { type: 'string', default: '1,1000,10000,100000' },
    'peer-max': { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    out: { type: 'string', default: path.join(REPO, 'bench/results/lb-scaling.json') },
  },
});
const COUNTS = values.services.split(',').map(Number);
const PEER_MAX = Number(values['peer-max']);
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);

type Dataplane = 'hypha' | 'hypha-stack' | 'iptables-nft' | 'iptables-legacy' | 'nftables' | 'direct' | 'floor';
interface Row {
  dataplane: Dataplane; services: number; ns_per_packet?: number; ns_per_packet_established?: number; conns_per_s?: number;
  /** connections attempted in the measured seconds of all runs, and those that failed (3 s timeout, refused, reset) */
  conns?: number; failed?: number;
}

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

async function measure(dp: Exclude<Dataplane, 'floor'>, n: number): Promise<Rate> {
  const hypha = dp === 'hypha' || dp === 'hypha-stack';
  let t0 = performance.now();
  const b = await bed(`bench-${dp.replace('iptables-', 'ipt')}`, hypha ? async (topo, work) => {
    const dir = path.join(work, 'services');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'services.json'), manifests(n));
    // Steady state: no full resync inside the measurement.
    const a = new TestAgent(topo, topo.nodes[0]!, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: dir, workDir: work, mapSizes: BENCH_MAP_SIZES, resyncSeconds: 3600, hostRouting: dp === 'hypha' });
    t0 = performance.now();
    await a.start(600_000);
    log(`  ${dp}: ${n} Services programmed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
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
    return await connRate(b, dp === 'direct' ? BACKEND_IPS.map((ip) => `${ip}:${BACKEND_PORT}`) : vips);
  } finally {
    await agent?.stop();
    await b.topo.destroy();
    agent?.cleanupPins();
    rmSync(b.work, { recursive: true, force: true });
  }
}

async function plot(rows: Row[], json: string): Promise<void> {
  const png = json.replace(/\.json$/, '.png');
  const dat = (dp: Dataplane, field: keyof Row): string =>
    rows.filter((r) => r.dataplane === dp && r[field] !== undefined).map((r) => `${Math.max(r.services, 1)} ${r[field]}`).join('\n') + '\ne\n';
  const conn: Dataplane[] = ['direct', 'hypha', 'hypha-stack', 'nftables', 'iptables-legacy', 'iptables-nft'];
  const script = [
    `set terminal pngcairo size 1400,560 font ",11"`,
    `set output "${png}"`,
    'set multiplot layout 1,2 title "Service load balancing: Hypha (BPF) vs kube-proxy rulesets, 10 backends per Service"',
    'set logscale x', 'set grid', 'set key top left', 'set xlabel "Services"',
    'set ylabel "ns per packet (BPF_PROG_TEST_RUN)" noenhanced', 'set yrange [0:*]', 'set key center right',
    `plot '-' with linespoints lw 2 title "hypha: new flow", '-' with linespoints lw 2 title "hypha: established flow", '-' with linespoints lw 2 title "floor (program that only returns)"`,
    dat('hypha', 'ns_per_packet') + dat('hypha', 'ns_per_packet_established') + dat('floor', 'ns_per_packet'),
    'set ylabel "new TCP connections per second"', 'set key bottom left',
    `plot ${conn.map((d) => `'-' with linespoints lw 2 title "${d}"`).join(', ')}`,
    conn.map((d) => dat(d, 'conns_per_s')).join(''),
    'unset multiplot',
  ].join('\n');
  const gp = path.join(tmpdir(), `hypha-bench-${process.pid}.gp`);
  writeFileSync(gp, script);
  await run(['gnuplot', gp]);
  rmSync(gp, { force: true });
  log(`wrote ${png}`);
}

Topology.sweepStale();
const rows: Row[] = [];
const write = (): void => {
  mkdirSync(path.dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(rows, null, 2)}\n`);
};
for (const n of COUNTS) {
  log(`${n} Services: packet cost through BPF_PROG_TEST_RUN (repeat 1 000 000, median of 5)`);
  const cost = await measurePacketCost(n, { repeat: 1_000_000, runs: 5, floorObject: path.join(BIN, 'floor.o'), log });
  log(`  new flow ${cost.newFlowNs} ns, established ${cost.establishedNs} ns, floor ${cost.floorNs} ns`);
  rows.push({ dataplane: 'floor', services: n, ns_per_packet: cost.floorNs });
  const hypha: Row = { dataplane: 'hypha', services: n, ns_per_packet: cost.newFlowNs, ns_per_packet_established: cost.establishedNs };
  rows.push(hypha);
  for (const dp of ['hypha', 'hypha-stack', 'direct', 'nftables', 'iptables-legacy', 'iptables-nft'] as const) {
    if (!dp.startsWith('hypha') && dp !== 'direct' && n > PEER_MAX) continue;
    log(`${n} Services: new connections per second through ${dp}`);
    const rate = await measure(dp, n);
    if (dp === 'hypha') Object.assign(hypha, rate);
    else rows.push({ dataplane: dp, services: n, ...rate });
    write();
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
    + `vs nftables ${ratio(at('hypha-stack', 10000)?.conns_per_s, at('nftables', 10000)?.conns_per_s)}x\n`);
}
const failedOf = (dp: Dataplane): string => {
  const rs = rows.filter((r) => r.dataplane === dp && r.conns !== undefined);
  return `${dp} ${rs.reduce((n, r) => n + (r.failed ?? 0), 0)}/${rs.reduce((n, r) => n + (r.conns ?? 0), 0)}`;
};
process.stdout.write(`failed connections (all runs): ${(['hypha', 'hypha-stack', 'direct', 'nftables', 'iptables-legacy', 'iptables-nft'] as const).map(failedOf).join(', ')}\n`);
