// `make bench-ct` (run by `make bench-lb` too): conntrack capacity for one
// busy CPU. Writes bench/results/ct-capacity.json and .png.
//
// N TCP flows are opened on ONE CPU (the script pins itself with taskset):
// one SYN each through hypha_from_pod (BPF_PROG_TEST_RUN, which runs the
// program on the calling CPU) to a ClusterIP with 8 backends, from distinct
// client tuples (flowTuple), into a conntrack map of the default size
// (262 144 entries). A flow survives when BOTH its entries are still there
// and live: the SERVICE entry (client -> ClusterIP, which backend) and the
// REPLY entry (backend -> client, the reverse translation; keyed from the
// rewritten packet, not from the program's internals). Side by side:
//  - shared-lru: Hypha now, one LRU list for all CPUs (bpf/include/hypha/maps.h);
//  - percpu-lru: the layout before issue 11, per-CPU LRU lists
//    (BPF_F_NO_COMMON_LRU), from objects built with -DHYPHA_CT_PERCPU_LRU
//    (bench/build/ct-percpu-lru, bench/bench.mk). The kernel gives each
//    possible CPU max_entries / CPUs of the map and a CPU only ever evicts
//    from its own share. Measured with this machine's CPUs, and with the map
//    sized so that one CPU's share is a 64-CPU node's (262 144 / 64 = 4 096);
//  - nf_conntrack: netfilter conntrack, which kube-proxy relies on, in a
//    network namespace of our own behind kube-proxy's nftables ruleset
//    (bench/peers/kube-proxy-nftables.ts) for the same Service: the same
//    tuples as SYNs from a raw socket (bench/tools/synflows.c) through the
//    namespace's OUTPUT DNAT, counted from that namespace. Its limit,
//    nf_conntrack_max, is global (only the root namespace can set it): read
//    and reported, never changed. One conntrack entry holds both directions.
//
// Every variant gets a fresh pin root (or namespace) per N, so nothing of one
// run is left for the next, and the loader never meets a pinned map of the
// other layout (its carry-over of an old per-CPU map only runs when one is
// pinned already).
//
//   node bench/ct-capacity.ts [--flows 10000,50000,100000,120000,150000] [--cpu 0] [--no-peer]
//                             [--plot-only]
//
// Root (loads programs, pins under /sys/fs/bpf/hypha-bench-ct-*, makes namespaces).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as native from '../native/index.ts';
import { CtDir, type Ct4Entry, type Ct4Key, CtFlags, layouts } from '../src/abi/abi.gen.ts';
import { codec } from '../src/abi/codec.ts';
import { BACKENDS_MAP, LbReconciler, NAMES_MAP, SERVICES_MAP } from '../src/datapath/lb-reconciler.ts';
import { Datapath, DEFAULT_MAP_SIZES } from '../src/datapath/loader.ts';
import { compileService } from '../src/services/compile.ts';
import { slice, svc } from '../src/services/fixtures.ts';
import { LbTable } from '../src/services/lb-table.ts';
import { buildPacket, parsePacket } from '../test/lib/packet.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { Topology } from '../test/e2e/lib/topology.ts';
import { nftInput, NFT_RUN_ARGS } from './peers/kube-proxy-nftables.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PERCPU_OBJECT_DIR = path.join(REPO, 'bench/build/ct-percpu-lru');
const SYNFLOWS = path.join(REPO, 'bench/build/synflows');

export const VIP = '10.96.0.1';
export const BACKENDS = Array.from({ length: 8 }, (_, i) => `10.244.1.${i + 2}`);
export const BACKEND_PORT = 8080;
const NODE = { name: 'bench-node', addresses: ['192.168.77.11'] };
/** Client tuples: PORTS_PER_CLIENT ports per address, addresses from FIRST_CLIENT on. */
export const FIRST_CLIENT = '10.244.2.1';
export const PORTS_PER_CLIENT = 10000;
export const FIRST_PORT = 40000;
/** The node a per-CPU share is simulated for. */
export const SIMULATED_CPUS = 64;

export type Variant = 'shared-lru' | 'percpu-lru' | 'nf_conntrack';

export interface Row {
  variant: Variant;
  /** CPUs the flows were opened on */
  cpus: 1;
  opened: number;
  /** flows with both entries live (nf_conntrack: entries, each holds both directions) */
  kept: number;
  kept_ratio: number;
  /** flows with one of their two entries left: broken (Hypha variants) */
  half?: number;
  /** the first flow (0: the oldest) that kept both entries: opened - kept when eviction went oldest first */
  oldest_kept?: number;
  /** entries in the map after the run */
  entries: number;
  /** max_entries of the map loaded (nf_conntrack: nf_conntrack_max, global) */
  map_entries: number;
  /** possible CPUs of the node the row stands for (simulated: the map is
   *  sized so one CPU's share is that node's) */
  node_cpus: number;
  /** entries one CPU may use: max_entries / node_cpus with per-CPU lists */
  per_cpu_share?: number;
  simulated?: true;
  /** time to open the flows (BPF_PROG_TEST_RUN calls from JS, or the raw socket's sends) */
  open_s: number;
}

const ctKey = codec<Ct4Key>(layouts.hypha_ct4_key);
const ctEntry = codec<Ct4Entry>(layouts.hypha_ct4_entry);

function ip4(s: string): number {
  return s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function ip4Str(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Client address and port of flow i (bench/tools/synflows.c makes the same). */
export function flowTuple(i: number): { saddr: string; sport: number } {
  return { saddr: ip4Str(ip4(FIRST_CLIENT) + Math.floor(i / PORTS_PER_CLIENT)), sport: FIRST_PORT + (i % PORTS_PER_CLIENT) };
}

/** CPUs in a kernel CPU list ("0-3,8"). */
export function cpuListCount(list: string): number {
  let n = 0;
  for (const part of list.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`CPU list "${list}" has a part "${part}" that is not N or N-M`);
    n += (m[2] === undefined ? 0 : Number(m[2]) - Number(m[1])) + 1;
  }
  return n;
}

export function possibleCpus(): number {
  return cpuListCount(readFileSync('/sys/devices/system/cpu/possible', 'utf8'));
}

/** The CPUs this process may run on (its affinity), as the kernel lists them. */
export function allowedCpus(): string {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m?.[1]) throw new Error('no Cpus_allowed_list in /proc/self/status');
  return m[1];
}

/** A per-CPU LRU map's share of one CPU: the kernel rounds max_entries to a
 *  multiple of the possible CPUs (kernel/bpf/hashtab.c) and splits it evenly. */
export function perCpuShare(maxEntries: number, cpus: number): number {
  const rounded = Math.ceil(maxEntries / cpus) * cpus;
  return (rounded <= 1 << 30 ? rounded : Math.floor(maxEntries / cpus) * cpus) / cpus;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

export interface HyphaRun {
  opened: number;
  kept: number;
  half: number;
  lost: number;
  /** the lowest flow index (order of opening) that kept both entries; -1: none */
  oldestKept: number;
  entries: number;
  mapEntries: number;
  perCpuLru: boolean;
  openSeconds: number;
}

/**
 * Open `flows` flows on the calling CPU through hypha_from_pod of the objects
 * in `objectDir` (default: the shipped build), into a conntrack map of
 * `ctEntries`, in a pin root of its own, and count the flows that keep both
 * entries. The pin root is removed at the end, also on failure.
 */
export async function openHyphaFlows(opts: {
  flows: number; ctEntries: number; objectDir?: string; pinRoot: string;
  /** called with the conntrack map after the flows are opened, before they are counted (tests) */
  beforeCount?: (ct: native.MapHandle) => void;
}): Promise<HyphaRun> {
  const { flows, ctEntries, pinRoot } = opts;
  rmSync(pinRoot, { recursive: true, force: true });
  const dp = await Datapath.load({
    pinRoot, ...(opts.objectDir ? { objectDir: opts.objectDir } : {}),
    mapSizes: { services: 1024, backends: 1024, affinity: 1024, ct: ctEntries },
  });
  try {
    dp.writeConfig({ flags: 0, loopback_addr: '169.254.42.1', snat_addr: NODE.addresses[0]!, snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 });
    const table = new LbTable({ services: 1024, backends: 1024 });
    const lb = new LbReconciler({ services: dp.mapIO(SERVICES_MAP), backends: dp.mapIO(BACKENDS_MAP), names: dp.mapIO(NAMES_MAP) });
    table.set('default/ct', compileService(svc('ct', { clusterIPs: [VIP] }), [slice('ct', BACKENDS)], NODE));
    await lb.resync(table);
    const ct = dp.map('hypha_ct4_v1');
    const info = native.mapInfo(ct);
    const perCpuLru = (info.flags & native.constants.mapFlags.NO_COMMON_LRU) !== 0;
    if (perCpuLru !== (opts.objectDir !== undefined)) {
      throw new Error(`conntrack map under ${pinRoot} has flags ${info.flags}: expected ${opts.objectDir ? 'per-CPU' : 'shared'} LRU lists`);
    }

    // The keys each flow must keep: SERVICE from the client's tuple, REPLY
    // from the packet as the program rewrote it, reversed.
    const want: [string, string][] = [];
    const prog = dp.programs.fromPod;
    const t0 = performance.now();
    for (let i = 0; i < flows; i++) {
      const { saddr, sport } = flowTuple(i);
      const r = native.progTestRun(prog, { data: buildPacket({ src: saddr, dst: VIP, proto: 'tcp', sport, dport: 80, flags: ['SYN'] }) });
      const out = parsePacket(r.dataOut);
      if (out.dst === VIP || out.dport !== BACKEND_PORT || out.src !== saddr || out.sport !== sport) {
        throw new Error(`flow ${i} (${saddr}:${sport}) left hypha_from_pod as ${out.src}:${out.sport} -> ${out.dst}:${out.dport} (retval ${r.retval}), not translated to a backend`);
      }
      want.push([
        hex(ctKey.encode({ saddr, daddr: VIP, sport, dport: 80, proto: 6, dir: CtDir.SERVICE })),
        hex(ctKey.encode({ saddr: out.dst, daddr: out.src, sport: out.dport, dport: out.sport, proto: 6, dir: CtDir.REPLY })),
      ]);
    }
    const openSeconds = (performance.now() - t0) / 1000;

    // What the map holds now, live (not timed out, not closing), read in
    // batches (userspace reads do not touch the LRU's reference bits).
    opts.beforeCount?.(ct);
    const now = Number(process.hrtime.bigint() / 1_000_000_000n);
    const dump = await native.mapDumpAsync(ct);
    const live = new Set<string>();
    const ks = ctKey.layout.size;
    const vs = ctEntry.layout.size;
    for (let i = 0; i < dump.count; i++) {
      const e = ctEntry.decode(dump.values, i * vs);
      if ((e.expires | 0) - (now | 0) >= 0 && !(e.flags & CtFlags.CLOSING)) live.add(hex(dump.keys.subarray(i * ks, (i + 1) * ks)));
    }
    let kept = 0;
    let half = 0;
    let oldestKept = -1;
    for (const [i, [s, r]] of want.entries()) {
      const n = (live.has(s) ? 1 : 0) + (live.has(r) ? 1 : 0);
      if (n === 2) {
        kept++;
        if (oldestKept < 0) oldestKept = i;
      } else if (n === 1) half++;
    }
    return { opened: flows, kept, half, lost: flows - kept - half, oldestKept, entries: dump.count, mapEntries: info.maxEntries, perCpuLru, openSeconds };
  } finally {
    dp.close();
    rmSync(pinRoot, { recursive: true, force: true });
  }
}

export interface NfRun {
  opened: number;
  /** entries in the namespace's table whose reply comes from a backend (DNAT applied) */
  kept: number;
  /** nf_conntrack_count of the namespace */
  count: number;
  openSeconds: number;
  sendFailed: number;
}

/** The namespace's conntrack table, one line per entry (CONFIG_NF_CONNTRACK_PROCFS). */
function dnatEntries(table: string): number {
  let n = 0;
  const vip = `dst=${VIP} `;
  for (const line of table.split('\n')) {
    const first = line.indexOf(vip);
    if (first < 0) continue;
    const reply = /src=(\S+) dst=\S+ sport=(\d+)/g;
    reply.lastIndex = first;
    const m = reply.exec(line);
    if (m && BACKENDS.includes(m[1]!) && Number(m[2]) === BACKEND_PORT) n++;
  }
  return n;
}

/**
 * The same flows through netfilter conntrack: a scratch namespace of `topo`
 * with a device that drops everything behind routes to the Service and pod ranges, kube-proxy's
 * nftables ruleset for the Service, and synflows sending one SYN per flow.
 * The namespace is removed at the end.
 */
export async function openNfFlows(topo: Topology, flows: number): Promise<NfRun> {
  const sc = await topo.addScratch(`ct${flows}`);
  try {
    // Where the SYNs go: a veth whose peer stays down, so every packet is
    // dropped by the device after POSTROUTING has confirmed its conntrack
    // entry (no dummy driver on every kernel; no ARP, nothing comes back).
    await topo.exec(sc, ['ip', 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
    await topo.exec(sc, ['ip', 'link', 'set', 'v0', 'arp', 'off', 'up']);
    await topo.exec(sc, ['ip', 'route', 'add', '10.96.0.0/16', 'dev', 'v0']);
    await topo.exec(sc, ['ip', 'route', 'add', '10.244.0.0/16', 'dev', 'v0']);
    await topo.exec(sc, ['nft', ...NFT_RUN_ARGS], {
      input: nftInput([{
        namespace: 'default', name: 'ct', portName: 'http', protocol: 'TCP', clusterIP: VIP, port: 80,
        endpoints: BACKENDS.map((ip) => ({ ip, port: BACKEND_PORT })),
      }], { clusterCIDR: '10.244.0.0/16' }),
    });
    const r = await topo.execJson<{ sent: number; failed: number; errors: Record<string, number>; seconds: number }>(sc, [
      SYNFLOWS, '--dst', VIP, '--dport', '80', '--count', String(flows), '--src', FIRST_CLIENT,
      '--ports-per-src', String(PORTS_PER_CLIENT), '--port-base', String(FIRST_PORT),
    ]);
    if (r.failed > 0) throw new Error(`synflows: ${r.failed} of ${flows} SYNs not sent ${JSON.stringify(r.errors)}`);
    const count = Number((await topo.exec(sc, ['cat', '/proc/sys/net/netfilter/nf_conntrack_count'])).stdout.trim());
    const table = (await topo.exec(sc, ['cat', '/proc/net/nf_conntrack'])).stdout;
    return { opened: flows, kept: dnatEntries(table), count, openSeconds: r.seconds, sendFailed: r.failed };
  } finally {
    await topo.removeScratch(sc);
  }
}

const log = (s: string): void => {
  process.stderr.write(`[bench-ct ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

interface Result {
  at: string;
  kernel: string;
  cpu: number;
  possible_cpus: number;
  map_entries: number;
  per_cpu_share: number;
  simulated_node: { cpus: number; map_entries: number; per_cpu_share: number; bench_map_entries: number };
  nf_conntrack_max?: number;
  seconds: number;
  rows: Row[];
}

const plotTitle = (r: Result): string =>
  `Conntrack capacity of one busy CPU: ${r.map_entries}-entry map, ${r.possible_cpus} possible CPUs here, flows opened on CPU ${r.cpu}`;

async function plot(rows: Row[], json: string, title: string): Promise<void> {
  const png = json.replace(/\.json$/, '.png');
  const series: [string, (r: Row) => boolean][] = [
    ['hypha: shared LRU (now)', (r) => r.variant === 'shared-lru'],
    ['per-CPU LRU lists (before), this machine', (r) => r.variant === 'percpu-lru' && !r.simulated],
    [`per-CPU LRU lists (before), share of a ${SIMULATED_CPUS}-CPU node`, (r) => r.variant === 'percpu-lru' && r.simulated === true],
    ['nf_conntrack (kube-proxy nftables, netns)', (r) => r.variant === 'nf_conntrack'],
  ];
  const present = series.filter(([, f]) => rows.some(f));
  const opened = [...new Set(rows.map((r) => r.opened))].sort((a, b) => a - b);
  const plots = (field: 'kept' | 'kept_ratio', ideal: (n: number) => number): string[] => [
    `plot '-' with lines dt 2 lc rgb "gray" title "every flow kept", ${present.map(([t], i) => `'-' with linespoints lw 2 pt ${i + 5} title "${t}"`).join(', ')}`,
    opened.map((n) => `${n} ${ideal(n)}`).join('\n') + '\ne\n'
      + present.map(([, f]) => rows.filter(f).map((r) => `${r.opened} ${r[field]}`).join('\n') + '\ne\n').join(''),
  ];
  const script = [
    'set terminal pngcairo size 1400,600 font ",11" noenhanced',
    `set output "${png}"`,
    `set multiplot layout 1,2 title "${title}"`,
    'set grid', 'set key top left', 'set xlabel "flows opened on one CPU"', 'set xrange [0:*]', 'set format x "%.0s%c"',
    'set ylabel "flows that keep both conntrack entries"', 'set yrange [0:*]', 'set format y "%.0s%c"',
    ...plots('kept', (n) => n),
    'set ylabel "share of the flows kept"', 'set yrange [0:1.05]', 'set format y "%.1f"', 'unset key',
    ...plots('kept_ratio', () => 1),
    'unset multiplot',
  ].join('\n');
  const gp = path.join(tmpdir(), `hypha-bench-ct-${process.pid}.gp`);
  writeFileSync(gp, script);
  try {
    await run(['gnuplot', gp]);
  } finally {
    rmSync(gp, { force: true });
  }
  log(`wrote ${png}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      flows: { type: 'string', default: '10000,50000,100000,120000,150000' },
      cpu: { type: 'string', default: '0' },
      'no-peer': { type: 'boolean', default: false },
      'plot-only': { type: 'boolean', default: false },
      out: { type: 'string', default: path.join(REPO, 'bench/results/ct-capacity.json') },
    },
  });
  const counts = values.flows.split(',').map(Number);
  for (const n of counts) {
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error(`--flows: "${String(n)}" is not an integer in 1..1000000`);
  }
  if (!/^\d+$/.test(values.cpu)) throw new Error(`--cpu: "${values.cpu}" is not a CPU number`);
  if (values['plot-only']) {
    const r = JSON.parse(readFileSync(values.out, 'utf8')) as Result;
    await plot(r.rows, values.out, plotTitle(r));
    return;
  }

  // One CPU: re-run this script under taskset unless already pinned to it.
  if (allowedCpus() !== values.cpu) {
    const r = spawnSync('taskset', ['-c', values.cpu, process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
    if (r.error) throw new Error(`taskset -c ${values.cpu}: ${r.error.message}`);
    process.exit(r.status ?? 1);
  }
  const cpus = possibleCpus();
  const mapEntries = DEFAULT_MAP_SIZES.ct;
  const simEntries = perCpuShare(mapEntries, SIMULATED_CPUS) * cpus;
  const share = perCpuShare(mapEntries, cpus);
  log(`pinned to CPU ${allowedCpus()}; ${cpus} possible CPUs: a per-CPU LRU map of ${mapEntries} gives each ${share} entries (${share / 2} flows); `
    + `a ${SIMULATED_CPUS}-CPU node ${perCpuShare(mapEntries, SIMULATED_CPUS)} (simulated with a ${simEntries}-entry map here)`);

  const rows: Row[] = [];
  const pinBase = `/sys/fs/bpf/hypha-bench-ct-${process.pid}`;
  const hyphaRow = (variant: Variant, r: HyphaRun, nodeCpus: number, simulated: boolean): Row => ({
    variant, cpus: 1, opened: r.opened, kept: r.kept, kept_ratio: +(r.kept / r.opened).toFixed(4), half: r.half, oldest_kept: r.oldestKept, entries: r.entries,
    map_entries: r.mapEntries, node_cpus: nodeCpus,
    ...(variant === 'percpu-lru' ? { per_cpu_share: perCpuShare(r.mapEntries, cpus) } : {}),
    ...(simulated ? { simulated: true as const } : {}), open_s: +r.openSeconds.toFixed(2),
  });
  const t0 = performance.now();
  for (const n of counts) {
    const shared = await openHyphaFlows({ flows: n, ctEntries: mapEntries, pinRoot: `${pinBase}-shared` });
    rows.push(hyphaRow('shared-lru', shared, cpus, false));
    const percpu = await openHyphaFlows({ flows: n, ctEntries: mapEntries, objectDir: PERCPU_OBJECT_DIR, pinRoot: `${pinBase}-percpu` });
    rows.push(hyphaRow('percpu-lru', percpu, cpus, false));
    const sim = await openHyphaFlows({ flows: n, ctEntries: simEntries, objectDir: PERCPU_OBJECT_DIR, pinRoot: `${pinBase}-percpu64` });
    rows.push(hyphaRow('percpu-lru', sim, SIMULATED_CPUS, true));
    log(`${n} flows: shared LRU keeps ${shared.kept} (${shared.half} half), per-CPU lists ${percpu.kept} (${percpu.half} half), `
      + `at a ${SIMULATED_CPUS}-CPU share ${sim.kept} (${sim.half} half)`);
  }
  let nfMax: number | undefined;
  if (!values['no-peer']) {
    nfMax = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim());
    const topo = await Topology.create({ name: 'bench-ct' });
    try {
      for (const n of counts) {
        const r = await openNfFlows(topo, n);
        rows.push({ variant: 'nf_conntrack', cpus: 1, opened: n, kept: r.kept, kept_ratio: +(r.kept / n).toFixed(4), entries: r.count, map_entries: nfMax, node_cpus: cpus, open_s: +r.openSeconds.toFixed(2) });
        log(`${n} flows: nf_conntrack keeps ${r.kept} (namespace count ${r.count}, nf_conntrack_max ${nfMax})`);
      }
    } finally {
      await topo.destroy();
    }
  }
  const result: Result = {
    at: new Date().toISOString(),
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cpu: Number(values.cpu),
    possible_cpus: cpus,
    map_entries: mapEntries,
    per_cpu_share: share,
    simulated_node: { cpus: SIMULATED_CPUS, map_entries: mapEntries, per_cpu_share: perCpuShare(mapEntries, SIMULATED_CPUS), bench_map_entries: simEntries },
    ...(nfMax !== undefined ? { nf_conntrack_max: nfMax } : {}),
    seconds: +((performance.now() - t0) / 1000).toFixed(1),
    rows,
  };
  mkdirSync(path.dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
  log(`wrote ${values.out}`);
  await plot(rows, values.out, plotTitle(result));
  const at = (v: Variant, n: number, sim = false): Row | undefined => rows.find((r) => r.variant === v && r.opened === n && (r.simulated === true) === sim);
  const big = counts.includes(100000) ? 100000 : Math.max(...counts);
  process.stdout.write(`${big} flows on one CPU: shared LRU keeps ${at('shared-lru', big)?.kept}, per-CPU lists ${at('percpu-lru', big)?.kept} `
    + `(share ${share} entries here), at a ${SIMULATED_CPUS}-CPU share ${at('percpu-lru', big, true)?.kept}, nf_conntrack ${at('nf_conntrack', big)?.kept ?? 'not run'}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
