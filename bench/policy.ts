// `make bench-policy`: NetworkPolicy at scale. Writes bench/results/policy.json
// and policy.png. Three parts, each measured on this machine in one run:
//
// 1. compile: src/policy's compilePolicies over cluster-scale tables
//    (src/policy/fixtures.ts scaleTables: 50 namespaces x 100 pods, each its
//    own identity; policies with pod, namespace and pod-AND-namespace
//    selectors, named ports, ranges, ipBlocks with except, both directions),
//    10 / 100 / 1 000 of its policies: for every one of the 5 000 pods
//    (scope "cluster") and for one node's share of them (112 pods, scope
//    "node", also encoded into policy map keys as the agent writes them).
// 2. ns_per_packet: bench/policy-ns-per-packet.ts (BPF_PROG_TEST_RUN on
//    hypha_from_pod / hypha_to_pod, 1 to 10 000 entries in the pod's policy).
// 3. conns_per_s: new TCP connections per second from a client pod to ten
//    server pods (bench/conn-bed.ts, the bed of bench-lb) through 1, 100 and
//    1 000 NetworkPolicies that all select the servers, the client allowed by
//    the last one (so an iptables engine walks every earlier policy's chain):
//    Hypha's datapath (the agent as shipped, host routing on, its policy maps
//    programmed through PolicyMapsReconciler and the POLICY flag on; also as
//    "hypha-stack", bpf.hostRouting off, routed by the node's stack as the
//    peers are: the policy alone), next to
//    the same policies as Calico lays them out in iptables
//    (bench/peers/calico-policy-iptables.ts, ipsets for peers), through
//    iptables-nft and iptables-legacy. Each bed first checks that the client
//    connects and a pod no policy allows does not, and checks the latter again
//    after the runs.
//
//   node bench/policy.ts [--compile 10,100,1000] [--entries 1,100,1000,10000]
//     [--policies 1,100,1000] [--seconds 3] [--runs 3] [--repeat 500000]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as native from '../native/index.ts';
import { ConfigFlags } from '../src/abi/abi.gen.ts';
import { BpfMapIO, configCodec, openPinnedMaps } from '../src/datapath/loader.ts';
import { POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, PolicyMapsReconciler, encodePolicyMaps } from '../src/datapath/policy-maps.ts';
import { compilePolicies } from '../src/policy/compile.ts';
import { policy, scaleTables } from '../src/policy/fixtures.ts';
import type { Endpoint, Identity, NetworkPolicy } from '../src/policy/model.ts';
import { BACKEND_PORT, BENCH_BIN, bed, connRate, type Bed } from './conn-bed.ts';
import { measurePolicyPacketCost, type PacketPoint } from './policy-ns-per-packet.ts';
import { calicoPolicyRuleset, type PolicyPeerPod } from './peers/calico-policy-iptables.ts';
import { IPTABLES_RESTORE_ARGS, xtablesLockEnv } from './peers/kube-proxy-iptables.ts';
import { TestAgent } from '../test/e2e/lib/agent.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { type Pod, Topology } from '../test/e2e/lib/topology.ts';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    compile: { type: 'string', default: '10,100,1000' },
    entries: { type: 'string', default: '1,100,1000,10000' },
    policies: { type: 'string', default: '1,100,1000' },
    seconds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    repeat: { type: 'string', default: '500000' },
    concurrency: { type: 'string', default: '64' },
    out: { type: 'string', default: path.join(REPO, 'bench/results/policy.json') },
  },
});
const nums = (s: string): number[] => s.split(',').filter(Boolean).map(Number);

const log = (s: string): void => {
  process.stderr.write(`[bench-policy ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

type Row = Record<string, unknown> & { what: 'compile' | 'ns_per_packet' | 'conns_per_s' };
const rows: Row[] = [];
const write = (): void => {
  mkdirSync(path.dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(rows, null, 2)}\n`);
};

// ---- 1. compile ----

/** `n` of the fixture's 1 000 policies, spread over its namespaces (a fixed permutation). */
function someOf<T>(all: readonly T[], n: number): T[] {
  const idx = all.map((_, i) => i).sort((a, b) => ((a * 7919) % all.length) - ((b * 7919) % all.length));
  return idx.slice(0, n).sort((a, b) => a - b).map((i) => all[i]!);
}

function compileBench(): void {
  const full = scaleTables();
  const node = full.endpoints.filter((_, i) => i % 45 === 0);
  for (const n of nums(values.compile)) {
    const tables = { ...full, policies: someOf(full.policies, n) };
    const count = (c: ReturnType<typeof compilePolicies>): number => c.endpoints.reduce((s, e) => s + e.ingress.entries.length + e.egress.entries.length, 0);
    const time = <T>(f: () => T): { ms: number; out: T } => {
      f(); // warm
      const ms: number[] = [];
      let out!: T;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        out = f();
        ms.push(performance.now() - t0);
      }
      return { ms: +median(ms).toFixed(1), out };
    };
    const all = time(() => compilePolicies(tables));
    if (all.out.problems.length) throw new Error(`compile of ${n} policies: ${all.out.problems[0]!.message}`);
    rows.push({ what: 'compile', scope: 'cluster', policies: n, pods: full.endpoints.length, identities: full.identities.length, ms: all.ms, entries: count(all.out), cidr_identities: all.out.cidrs.length });
    const local = time(() => compilePolicies({ ...tables, endpoints: node }));
    const enc = time(() => encodePolicyMaps(local.out, { policy: 1 << 22, cidrs: 1 << 16 }));
    rows.push({
      what: 'compile', scope: 'node', policies: n, pods: node.length, identities: full.identities.length, ms: local.ms, entries: count(local.out),
      encode_ms: enc.ms, map_keys: enc.out.maps.get(POLICY_MAP)!.size,
    });
    log(`compile ${n} policies: all ${full.endpoints.length} pods ${all.ms} ms, ${count(all.out)} entries; one node's ${node.length} pods ${local.ms} ms + encode ${enc.ms} ms, ${enc.out.maps.get(POLICY_MAP)!.size} map keys`);
  }
}

// ---- 3. connections per second ----

interface World {
  policies: NetworkPolicy[];
  /** Pods elsewhere that earlier policies allow (addresses only: no traffic from them). */
  remote: PolicyPeerPod[];
  namespaceLabels: Record<string, Record<string, string>>;
}

const SERVER_PORTS = [{ port: BACKEND_PORT }, { port: 9000, endPort: 9099 }];

/** n policies selecting the servers (app=server in namespace bench), each
 *  allowing 8080 and 9000-9099/TCP from its own peers: even ones a pod
 *  selector in bench, odd ones a namespace selector AND a pod selector; two
 *  pods each. The last (in name order) allows the client. */
function world(n: number): World {
  const policies: NetworkPolicy[] = [];
  const remote: PolicyPeerPod[] = [];
  const namespaceLabels: Record<string, Record<string, string>> = { bench: { team: 'bench' } };
  let ip = 0;
  const fakeIp = (): string => `10.250.${ip >> 8}.${ip++ & 255}`;
  for (let k = 0; k < n; k++) {
    let from: unknown;
    if (k === n - 1) from = { podSelector: { matchLabels: { app: 'client' } } };
    else if (k % 2 === 0) {
      from = { podSelector: { matchLabels: { app: `client-${k}` } } };
      for (let j = 0; j < 2; j++) remote.push({ namespace: 'bench', name: `client-${k}-${j}`, labels: { app: `client-${k}` }, ip: fakeIp() });
    } else {
      from = { namespaceSelector: { matchLabels: { team: `t-${k}` } }, podSelector: { matchLabels: { app: 'api' } } };
      namespaceLabels[`team-${k}`] = { team: `t-${k}` };
      for (let j = 0; j < 2; j++) remote.push({ namespace: `team-${k}`, name: `api-${j}`, labels: { app: 'api' }, ip: fakeIp() });
    }
    policies.push(policy('bench', `allow-${String(k).padStart(4, '0')}`, {
      podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress'], ingress: [{ from: [from], ports: SERVER_PORTS }],
    }));
  }
  return { policies, remote, namespaceLabels };
}

const labelsOf = (name: string): Record<string, string> => (name === 'client' ? { app: 'client' } : name === 'intruder' ? { app: 'intruder' } : { app: 'server' });
const localPods = (b: Bed, intruder: Pod): PolicyPeerPod[] =>
  [b.client, intruder, ...b.backends].map((p) => ({ namespace: 'bench', name: p.name, labels: labelsOf(p.name), ip: p.ip, iface: p.hostIfname }));

/** Hypha: the world compiled by src/policy for this node's pods and written into the agent's pinned maps; POLICY on. */
async function programHypha(pinRoot: string, w: World, local: PolicyPeerPod[]): Promise<{ keys: number; ms: number }> {
  const t0 = performance.now();
  const ids = new Map<string, number>();
  const identities: Identity[] = [];
  const idOf = (p: PolicyPeerPod): number => {
    const k = JSON.stringify([p.namespace, p.labels]);
    let id = ids.get(k);
    if (id === undefined) {
      id = 1000 + ids.size;
      ids.set(k, id);
      identities.push({ id, namespace: p.namespace, podLabels: p.labels, namespaceLabels: w.namespaceLabels[p.namespace] ?? {} });
    }
    return id;
  };
  for (const p of w.remote) idOf(p);
  const endpoints: Endpoint[] = local.map((p) => ({ name: p.name, namespace: p.namespace, identity: idOf(p), ports: [], addresses: [p.ip] }));
  const compiled = compilePolicies({ identities, endpoints, policies: w.policies });
  const maps = openPinnedMaps(pinRoot);
  try {
    const io = (name: typeof POLICY_MAP | typeof POLICY_EPS_MAP | typeof POLICY_CIDR_MAP): BpfMapIO => new BpfMapIO(name, maps.get(name)!);
    const rec = new PolicyMapsReconciler({ policy: io(POLICY_MAP), eps: io(POLICY_EPS_MAP), cidrs: io(POLICY_CIDR_MAP) });
    const enc = encodePolicyMaps(compiled, rec.capacity);
    if (enc.problems.length || compiled.problems.length) throw new Error(`policy: ${[...compiled.problems, ...enc.problems].map((p) => p.message).join('; ')}`);
    await rec.sync(enc.maps);
    const cfgMap = maps.get('hypha_config_v4')!;
    const zero = new Uint8Array(4);
    const cfg = configCodec.decode(native.mapLookup(cfgMap, zero)!);
    native.mapUpdate(cfgMap, zero, configCodec.encode({ ...cfg, flags: cfg.flags | ConfigFlags.POLICY, policy_generation: (cfg.policy_generation + 1) >>> 0 }));
    return { keys: enc.maps.get(POLICY_MAP)!.size, ms: performance.now() - t0 };
  } finally {
    for (const h of maps.values()) native.close(h);
  }
}

/** The agent must not have rewritten what the bench programmed (it runs with policy.enabled false). */
function policyStillOn(pinRoot: string, keys: number): void {
  const maps = openPinnedMaps(pinRoot);
  try {
    const cfg = configCodec.decode(native.mapLookup(maps.get('hypha_config_v4')!, new Uint8Array(4))!);
    const held = native.mapDump(maps.get(POLICY_MAP)!).count;
    if (!(cfg.flags & ConfigFlags.POLICY) || held !== keys) throw new Error(`policy state changed under the bench: flags ${cfg.flags}, ${held} of ${keys} keys`);
  } finally {
    for (const h of maps.values()) native.close(h);
  }
}

async function connects(b: Bed, from: Pod, to: Pod): Promise<boolean> {
  const r = await b.topo.exec(from, ['nc', '-z', '-w', '1', to.ip, String(BACKEND_PORT)], { allowFail: true });
  return r.code === 0;
}

async function checkVerdicts(b: Bed, intruder: Pod, what: string): Promise<void> {
  for (const server of [b.backends[0]!, b.backends[9]!]) {
    if (!(await connects(b, b.client, server))) throw new Error(`${what}: the client cannot connect to ${server.name}`);
    if (await connects(b, intruder, server)) throw new Error(`${what}: a pod no policy allows connected to ${server.name}: policy is not enforced`);
  }
}

type Dataplane = 'hypha' | 'hypha-stack' | 'iptables-nft' | 'iptables-legacy';

async function measureRate(dp: Dataplane, n: number): Promise<void> {
  const w = world(n);
  let pinRoot = '';
  const hypha = dp === 'hypha' || dp === 'hypha-stack';
  const b = await bed(`bpol-${dp === 'hypha' ? 'hy' : dp === 'hypha-stack' ? 'hs' : dp.slice(9, 12)}`, hypha ? async (topo, work) => {
    const dir = path.join(work, 'services');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'services.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [] }));
    pinRoot = `/sys/fs/bpf/${topo.prefix}hypha`;
    // policy.enabled false: the agent leaves the policy maps (and the flag) to the bench.
    const a = new TestAgent(topo, topo.nodes[0]!, { pinRoot, servicesDir: dir, workDir: work, resyncSeconds: 3600, hostRouting: dp === 'hypha', extra: { policy: { enabled: false } } });
    await a.start(60_000);
    return a;
  } : undefined);
  try {
    const node = b.topo.nodes[0]!;
    const intruder = await b.topo.addPod(node, 'intruder', b.agent ? {} : { ip: '10.244.1.12' });
    const local = localPods(b, intruder);
    let load: Record<string, unknown>;
    let keys = 0;
    if (hypha) {
      const r = await programHypha(pinRoot, w, local);
      keys = r.keys;
      load = { map_keys: r.keys, load_ms: Math.round(r.ms) };
    } else {
      const rs = calicoPolicyRuleset({ pods: [...local, ...w.remote], namespaceLabels: w.namespaceLabels, policies: w.policies });
      const t0 = performance.now();
      await b.topo.exec(node, ['ipset', 'restore'], { input: rs.ipsets });
      await b.topo.exec(node, [`${dp}-restore`, ...IPTABLES_RESTORE_ARGS], { input: rs.iptables, env: { ...process.env, ...xtablesLockEnv(b.work, node.netns) }, timeoutMs: 600_000 });
      load = { ...rs.stats, load_ms: Math.round(performance.now() - t0) };
    }
    log(`  ${dp}, ${n} policies: loaded ${JSON.stringify(load)}`);
    await checkVerdicts(b, intruder, `${dp} at ${n} policies`);
    const rate = await connRate(b, b.backends.map((p) => `${p.ip}:${BACKEND_PORT}`), { runs: Number(values.runs), seconds: Number(values.seconds), concurrency: values.concurrency, log });
    if (hypha) policyStillOn(pinRoot, keys);
    await checkVerdicts(b, intruder, `${dp} at ${n} policies, after the runs`);
    rows.push({ what: 'conns_per_s', dataplane: hypha ? dp : 'iptables', ...(hypha ? {} : { iptables: dp.slice(9) }), policies: n, ...rate, ...load });
    write();
  } finally {
    await b.agent?.stop();
    await b.topo.destroy();
    b.agent?.cleanupPins();
    rmSync(b.work, { recursive: true, force: true });
  }
}

// ---- plot ----

async function plot(json: string): Promise<void> {
  const png = json.replace(/\.json$/, '.png');
  const lines = (xs: { x: number; y: number }[]): string => `${xs.map((p) => `${p.x} ${p.y}`).join('\n')}\ne\n`;
  const compile = (scope: string) => lines(rows.filter((r) => r.what === 'compile' && r['scope'] === scope).map((r) => ({ x: r['policies'] as number, y: r['ms'] as number })));
  const pkt = rows.filter((r) => r.what === 'ns_per_packet') as unknown as PacketPoint[];
  const maxE = Math.max(...pkt.map((p) => p.entries));
  const series: { title: string; data: string; dash?: boolean }[] = [];
  for (const hook of ['from_pod', 'to_pod'] as const) {
    for (const flow of ['new', 'established'] as const) {
      const on = pkt.filter((p) => p.hook === hook && p.flow === flow && p.policy);
      const off = pkt.find((p) => p.hook === hook && p.flow === flow && !p.policy);
      series.push({ title: `${hook} (${hook === 'from_pod' ? 'egress' : 'ingress'}), ${flow} flow`, data: lines(on.map((p) => ({ x: p.entries, y: p.ns }))) });
      if (off) series.push({ title: `  same, policy off`, data: lines([{ x: 1, y: off.ns }, { x: maxE, y: off.ns }]), dash: true });
    }
  }
  const conn = (dp: string, ipt?: string) => lines(rows.filter((r) => r.what === 'conns_per_s' && r['dataplane'] === dp && (ipt === undefined || r['iptables'] === ipt)).map((r) => ({ x: r['policies'] as number, y: r['conns_per_s'] as number })));
  const script = [
    `set terminal pngcairo size 1800,560 font ",11"`,
    `set output "${png}"`, 'set termoption noenhanced',
    'set multiplot layout 1,3 title "NetworkPolicy: compile, per-packet cost (BPF_PROG_TEST_RUN), new connections per second vs Calico-style iptables"',
    'set logscale x', 'set grid', 'set yrange [0:*]',
    'set xlabel "NetworkPolicies (of 5 000 pods)"', 'set ylabel "compile ms"', 'set key top left',
    `plot '-' with linespoints lw 2 title "all 5 000 pods", '-' with linespoints lw 2 title "one node's 112 pods"`,
    compile('cluster') + compile('node'),
    'set xlabel "entries in the pod\'s policy (one direction)"', 'set ylabel "ns per packet"', 'set key top left font ",9"',
    `plot ${series.map((s, i) => `'-' with ${s.dash ? 'lines dt 2' : 'linespoints'} lw 2 lc ${Math.floor(i / 2) + 1} title "${s.title}"`).join(', ')}, '-' with lines dt 3 lw 1 lc rgb "gray" title "floor (program that only returns)"`,
    series.map((s) => s.data).join('') + lines([{ x: 1, y: pkt.find((p) => p.hook === 'floor')?.ns ?? 0 }, { x: maxE, y: pkt.find((p) => p.hook === 'floor')?.ns ?? 0 }]),
    'set xlabel "NetworkPolicies selecting the server pods"', 'set ylabel "new TCP connections per second"', 'set key bottom left font ",11"',
    `plot '-' with linespoints lw 2 title "hypha", '-' with linespoints lw 2 title "hypha-stack (host routing off)", '-' with linespoints lw 2 title "iptables-nft (Calico layout)", '-' with linespoints lw 2 title "iptables-legacy (Calico layout)"`,
    conn('hypha') + conn('hypha-stack') + conn('iptables', 'nft') + conn('iptables', 'legacy'),
    'unset multiplot',
  ].join('\n');
  const gp = path.join(tmpdir(), `hypha-bench-policy-${process.pid}.gp`);
  writeFileSync(gp, script);
  await run(['gnuplot', gp]);
  rmSync(gp, { force: true });
  log(`wrote ${png}`);
}

// ---- run ----

Topology.sweepStale();
const t0 = performance.now();
log('compile: src/policy over 5 000 pods (median of 3 after a warm-up)');
compileBench();
write();
log(`packet cost: BPF_PROG_TEST_RUN, repeat ${values.repeat}, median of 5`);
for (const p of await measurePolicyPacketCost({ entries: nums(values.entries), repeat: Number(values.repeat), runs: 5, floorObject: path.join(BENCH_BIN, 'floor.o'), log })) {
  rows.push({ what: 'ns_per_packet', ...p });
  log(`  ${p.hook}${p.flow ? ` ${p.flow}` : ''}, ${p.policy ? `${p.entries} entries` : 'policy off'}: ${p.ns} ns`);
}
write();
for (const n of nums(values.policies)) {
  for (const dp of ['hypha', 'hypha-stack', 'iptables-nft', 'iptables-legacy'] as const) {
    log(`${n} policies: new connections per second through ${dp}`);
    await measureRate(dp, n);
  }
}
write();
await plot(values.out);

// ---- summary ----
const pk = (hook: string, flow: string, entries: number) => rows.find((r) => r.what === 'ns_per_packet' && r['hook'] === hook && r['flow'] === flow && r['entries'] === entries && r['policy'] === (entries > 0))?.['ns'] as number | undefined;
const ratio = (a?: number, b?: number): string => (a && b ? (a / b).toFixed(2) : 'n/a');
const es = nums(values.entries);
const lo = Math.min(...es);
const hi = Math.max(...es);
for (const hook of ['from_pod', 'to_pod']) {
  for (const flow of ['new', 'established']) {
    const off = pk(hook, flow, 0);
    const a = pk(hook, flow, lo);
    const z = pk(hook, flow, hi);
    process.stdout.write(`${hook} ${flow}: ${hi} vs ${lo} entries ${z} / ${a} ns = ${ratio(z, a)}x; policy's own share (minus policy off, ${off} ns): ${ratio(z && off !== undefined ? z - off : undefined, a && off !== undefined ? a - off : undefined)}x\n`);
  }
}
const cr = (dp: string, n: number, ipt?: string) => rows.find((r) => r.what === 'conns_per_s' && r['dataplane'] === dp && r['policies'] === n && (ipt === undefined || r['iptables'] === ipt))?.['conns_per_s'] as number | undefined;
for (const n of nums(values.policies)) {
  process.stdout.write(`conns/s at ${n} policies: hypha ${cr('hypha', n)}, hypha-stack ${cr('hypha-stack', n)} (${ratio(cr('hypha-stack', n), cr('iptables', n, 'nft'))}x nft), iptables-nft ${cr('iptables', n, 'nft')} (${ratio(cr('hypha', n), cr('iptables', n, 'nft'))}x), iptables-legacy ${cr('iptables', n, 'legacy')} (${ratio(cr('hypha', n), cr('iptables', n, 'legacy'))}x)\n`);
}
process.stdout.write(`bench-policy took ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
