// Per-packet cost of NetworkPolicy in hypha_from_pod (egress of the source
// pod) and hypha_to_pod (ingress of the destination pod) through
// BPF_PROG_TEST_RUN, against the number of entries in the pod's policy.
//
// Each point is a datapath of its own (test/bpf/harness.ts, a scratch pin
// root) holding one pod on this node, 10.244.0.10, and a peer on another
// node, 10.244.1.20, whose identity the ipcache gives. The pod's policy is a
// NetworkPolicy compiled by src/policy and written by the agent's
// PolicyMapsReconciler (src/datapath/policy-maps.ts): both directions allow
// `peers` identities of namespace "peers" (a namespaceSelector; identities
// spread over the 24-bit range) on 443/TCP and the range 8000-8099/TCP, which
// is three LPM prefixes: four keys per identity, so 2 500 identities are
// 10 000 entries in the pod's trie in each direction. The measured flow is
// the peer identity two thirds of the way through, to 8090 (inside the
// /11 prefix 8064-8095): the lookup lands deep in the trie, on a range entry.
// The 1-entry point allows the one peer on 8090 alone. The host's implicit
// ingress entry is left out (allowHostIngress: false) so the counts are
// exact. "off" is the same packets with the POLICY flag clear: the cost of
// everything but policy.
//
// Test-run repeats the program on one buffer. A new flow sends SYN|FIN: the
// policy conntrack entry it leaves is closing, so the next repeat finds a
// reopened tuple and judges it afresh (two conntrack lookups, the endpoint
// lookups, the peer's identity and CIDR identity, the policy LPM, a
// conntrack write), as bench-lb does for Services. An established flow sends
// ACKs on a tracked, allowed flow (one conntrack lookup). Every measurement
// first checks the verdicts: the flow passes, the same flow to 9091 (no
// entry) is dropped by policy.
import * as native from '../native/index.ts';
import { ConfigFlags } from '../src/abi/abi.gen.ts';
import { ipcacheKeyCodec, ipcacheValCodec } from '../src/datapath/ipcache-reconciler.ts';
import { POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, PolicyMapsReconciler, decodePolicyKey, encodePolicyMaps } from '../src/datapath/policy-maps.ts';
import { compilePolicies } from '../src/policy/compile.ts';
import { policy } from '../src/policy/fixtures.ts';
import type { Identity } from '../src/policy/model.ts';
import { BpfHarness, TC_ACT_SHOT } from '../test/bpf/harness.ts';
import { buildPacket } from '../test/lib/packet.ts';

export const POD = '10.244.0.10';
export const PEER = '10.244.1.20';
const POD_IDENTITY = 5000;
const PORT = 8090;
const DENIED_PORT = 9091; // no entry covers it

export type Hook = 'from_pod' | 'to_pod';
export type Flow = 'new' | 'established';

export interface PacketPoint {
  /** Keys in the pod's policy trie for the measured direction; 0 with policy off. */
  entries: number;
  policy: boolean;
  hook: Hook | 'floor';
  direction?: 'egress' | 'ingress';
  flow?: Flow;
  ns: number;
  /** Every run's ns (median taken). */
  runs_ns: number[];
  /** The identity matched: its position among the peers. */
  match?: string;
}

const identityOf = (i: number): number => 10_000 + i * 6_007; // spread over the id space

/** A datapath with the pod's policy of `entries` keys a direction (0: policy off). */
async function setup(entries: number): Promise<{ h: BpfHarness; keys: { ingress: number; egress: number }; match: number; peers: number }> {
  const h = await BpfHarness.create();
  try {
    h.config({ flags: entries ? ConfigFlags.POLICY : 0, loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10', snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 });
    h.localPods([POD]);
    const one = entries <= 1;
    if (!one && entries % 4 !== 0) throw new Error(`entries ${entries}: other than 1, a multiple of 4 (four keys an identity)`);
    const peers = one ? 1 : entries / 4;
    const match = one ? 0 : Math.floor((peers * 2) / 3);
    native.mapUpdate(h.dp.map('hypha_ipcache_v1'), ipcacheKeyCodec.encode({ prefixlen: 32, addr: PEER }), ipcacheValCodec.encode({ identity: identityOf(match), node_addr: '192.168.77.11', flags: 1 }));
    const identities: Identity[] = [{ id: POD_IDENTITY, namespace: 'bench', podLabels: { app: 'server' }, namespaceLabels: {} }];
    for (let i = 0; i < peers; i++) identities.push({ id: identityOf(i), namespace: 'peers', podLabels: { app: `peer-${i}` }, namespaceLabels: {} });
    const ports = one ? [{ port: PORT }] : [{ port: 443 }, { port: 8000, endPort: 8099 }];
    const peer = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'peers' } } }];
    const policies = entries ? [policy('bench', 'server', {
      podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: peer, ports }], egress: [{ to: peer, ports }],
    })] : [];
    const compiled = compilePolicies({ identities, endpoints: [{ name: 'server', namespace: 'bench', identity: POD_IDENTITY, ports: [], addresses: [POD] }], policies }, { allowHostIngress: false });
    const rec = new PolicyMapsReconciler({ policy: h.dp.mapIO(POLICY_MAP), eps: h.dp.mapIO(POLICY_EPS_MAP), cidrs: h.dp.mapIO(POLICY_CIDR_MAP) });
    const enc = encodePolicyMaps(compiled, rec.capacity);
    if (enc.problems.length) throw new Error(`policy maps: ${enc.problems.map((p) => p.message).join('; ')}`);
    await rec.sync(enc.maps);
    const { keys: raw, count } = native.mapDump(h.dp.map(POLICY_MAP));
    const keys = { ingress: 0, egress: 0 };
    for (let i = 0; i < count; i++) keys[decodePolicyKey(raw, i * 16).dir]++;
    if (entries && (keys.ingress !== entries || keys.egress !== entries)) throw new Error(`programmed ${JSON.stringify(keys)} keys, wanted ${entries} a direction`);
    return { h, keys, match, peers };
  } catch (err) {
    h.close();
    throw err;
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

function packet(hook: Hook, flow: Flow, dport = PORT, sport = 40_000): Uint8Array {
  const [src, dst] = hook === 'from_pod' ? [POD, PEER] : [PEER, POD];
  return buildPacket({ src, dst, proto: 'tcp', sport: flow === 'new' ? sport : sport + 1, dport, flags: flow === 'new' ? ['SYN', 'FIN'] : ['ACK'] });
}

const PROG = { from_pod: 'fromPod', to_pod: 'toPod' } as const;

export interface PacketCostOptions {
  entries: number[];
  repeat: number;
  runs: number;
  floorObject: string;
  log: (s: string) => void;
}

/** Every point, runs interleaved (run i of every point, then run i + 1) so drift hits them alike. */
export async function measurePolicyPacketCost(opts: PacketCostOptions): Promise<PacketPoint[]> {
  const beds: { entries: number; h: BpfHarness; match: string }[] = [];
  const floorObj = native.openObject(opts.floorObject);
  try {
    await native.loadObject(floorObj);
    const floor = native.objectProgram(floorObj, 'bench_floor');
    for (const n of [0, ...opts.entries]) {
      const t0 = performance.now();
      const s = await setup(n);
      beds.push({ entries: n, h: s.h, match: `${s.match + 1} of ${s.peers}` });
      opts.log(`  ${n ? `${n} entries a direction (${s.peers} peer identities)` : 'policy off'}: programmed in ${(performance.now() - t0).toFixed(0)} ms`);
    }
    // Verdicts first: allowed flows pass, the same flow to another port is dropped by policy.
    for (const b of beds) {
      for (const hook of ['from_pod', 'to_pod'] as const) {
        for (const flow of ['new', 'established'] as const) {
          const r = b.h.run(PROG[hook], packet(hook, flow));
          if (r.retval === TC_ACT_SHOT) throw new Error(`${b.entries} entries: ${hook} ${flow} flow dropped (drops ${JSON.stringify(b.h.drops())})`);
        }
        const denied = b.h.run(PROG[hook], packet(hook, 'new', DENIED_PORT, 45_000)).retval;
        if (b.entries && denied !== TC_ACT_SHOT) throw new Error(`${b.entries} entries: ${hook} to ${DENIED_PORT} passed (${denied}); policy is not enforced`);
        if (!b.entries && denied === TC_ACT_SHOT) throw new Error(`policy off: ${hook} to ${DENIED_PORT} dropped`);
      }
      const d = b.h.drops();
      if (b.entries && ((d['POLICY_EGRESS'] ?? 0) !== 1 || (d['POLICY_INGRESS'] ?? 0) !== 1)) throw new Error(`${b.entries} entries: drops ${JSON.stringify(d)}, wanted one of each policy reason`);
    }
    const samples = new Map<string, number[]>();
    const add = (k: string, ns: number): void => {
      samples.set(k, [...(samples.get(k) ?? []), ns]);
    };
    for (let r = 0; r < opts.runs; r++) {
      for (const b of beds) {
        for (const hook of ['from_pod', 'to_pod'] as const) {
          for (const flow of ['new', 'established'] as const) {
            const res = b.h.run(PROG[hook], packet(hook, flow), opts.repeat);
            if (res.retval === TC_ACT_SHOT) throw new Error(`${b.entries} entries: ${hook} ${flow} dropped while measuring`);
            add(`${b.entries} ${hook} ${flow}`, res.durationNs);
          }
        }
      }
      add('floor', native.progTestRun(floor, { data: packet('from_pod', 'new'), repeat: opts.repeat }).durationNs);
    }
    native.close(floor);
    const out: PacketPoint[] = [];
    for (const b of beds) {
      for (const hook of ['from_pod', 'to_pod'] as const) {
        for (const flow of ['new', 'established'] as const) {
          const xs = samples.get(`${b.entries} ${hook} ${flow}`)!;
          out.push({
            entries: b.entries, policy: b.entries > 0, hook, direction: hook === 'from_pod' ? 'egress' : 'ingress', flow, ns: median(xs), runs_ns: xs,
            ...(b.entries ? { match: b.match } : {}),
          });
        }
      }
    }
    const f = samples.get('floor')!;
    out.push({ entries: 0, policy: false, hook: 'floor', ns: median(f), runs_ns: f });
    return out;
  } finally {
    native.close(floorObj);
    for (const b of beds) b.h.close();
  }
}
