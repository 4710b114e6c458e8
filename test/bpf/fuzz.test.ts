// Packet fuzz test: random and mutated frames through every datapath program
// with BPF_PROG_TEST_RUN, against a realistic map state (Services of every
// kind, endpoints, ipcache, masquerade and NetworkPolicy on). For each run, whatever the
// program does must be one of:
//   - a drop (TC_ACT_SHOT / XDP_DROP), counted once under one drop reason;
//   - the input, byte for byte;
//   - a translation: same length, only addresses, ports, identifiers and
//     checksums changed (MACs and TTL - 1 only when the program forwards it
//     itself), checksums valid where the input's were, a zero UDP checksum
//     left zero, addresses and ports consistent with the Services;
//   - an ICMP destination-unreachable answer to the input, counted once under
//     its reason, sent back where the input came from, quoting it, and never
//     about an ICMP error or a later fragment, nor to a source no ICMP error
//     may go to (0/8, 127/8, multicast, 240/4 and broadcast: RFC 1812 4.3.2.7).
// A run never errors and never returns more bytes than one of these.
//
// Limits: the kernel refuses to test-run skb programs on IPv4 frames shorter
// than Ethernet + 20 bytes (EINVAL), so those cut frames reach only XDP here;
// frames tc forwards to another node end in a FIB_FAILED drop in the test's
// namespace (no route to the other node's pods), so their rewrite is judged
// as a drop.
//
// The seed is printed in the test name; HYPHA_FUZZ_SEED=<n> replays a run,
// HYPHA_FUZZ_N=<n> sets the number of random packets. A failure prints the
// seed, iteration, program, and the frame in and out as hex.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import * as native from '../../native/index.ts';
import { type Config, ConfigFlags, type PolicyKey, PolicyDir, PolicyEpFlags, PolicyFlags, layouts } from '../../src/abi/abi.gen.ts';
import { codec, ip4ToUint, uintToIp4 } from '../../src/abi/codec.ts';
import { endpointKeyCodec, endpointValueCodec } from '../../src/datapath/endpoints-reconciler.ts';
import { IpcacheReconciler } from '../../src/datapath/ipcache-reconciler.ts';
import type { ProgramName } from '../../src/datapath/loader.ts';
import { compileNodes } from '../../src/nodes/compile.ts';
import { compileService } from '../../src/services/compile.ts';
import { slice, svc } from '../../src/services/fixtures.ts';
import type { EndpointSlice, Service } from '../../src/services/model.ts';
import { ICMP_ERROR_TYPES, type PacketSpec, type TcpFlag, buildPacket, onesSum, parsePacket } from '../lib/packet.ts';
import { BpfHarness, NODE, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX } from './harness.ts';

// ---------------------------------------------------------------- knobs

function envInt(name: string, dflt: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`${name} "${raw}" is not an integer in 0..${max}`);
  return v;
}

const SEED = envInt('HYPHA_FUZZ_SEED', randomInt(0, 2 ** 32 - 1), 2 ** 32 - 1);
const ITERATIONS = envInt('HYPHA_FUZZ_N', 8000, 10_000_000);
/** Every program that takes packets (ctGc does not). */
const PROGRAMS: readonly ProgramName[] = ['fromPod', 'toPod', 'fromNetdev', 'toNetdev', 'xdpNodeport'];
const XDP_REDIRECT = 4;

// ---------------------------------------------------------------- PRNG (sfc32, seeded through splitmix32)

class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** [0, n) */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** [lo, hi] */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from an empty list');
    return xs[this.int(xs.length)]!;
  }

  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  /** One of the weighted choices. */
  weighted<T>(choices: readonly [number, T][]): T {
    const total = choices.reduce((a, [w]) => a + w, 0);
    let x = this.u32() / 2 ** 32 * total;
    for (const [w, v] of choices) {
      if (x < w) return v;
      x -= w;
    }
    return choices[choices.length - 1]![1];
  }
}

// ---------------------------------------------------------------- the node and its Services

const NODE_IP = NODE.addresses[0]!;
const OTHER_NODE = '192.168.77.11';
const LOOPBACK = '169.254.42.1';
const CLIENT = '10.244.0.5';
const CLIENT2 = '10.244.0.6';
const WEB = ['10.244.0.11', '10.244.0.12', '10.244.0.13'];
const DNS = '10.244.0.21';
const NP_BE = '10.244.0.31';
const EXT_BE = '10.244.0.33';
const LOCAL_PODS = [CLIENT, CLIENT2, ...WEB, DNS, NP_BE, EXT_BE];
const REMOTE_PODS = ['10.244.1.7', '10.244.1.32', '10.244.1.34'];
const OUTSIDE = ['192.168.77.200', '203.0.113.9', '198.51.100.20', '8.8.8.8'];
/** Sources no ICMP error may be sent to (RFC 1812 4.3.2.7), and other odd addresses. */
const ODD = ['0.0.0.0', '255.255.255.255', '224.0.0.5', '127.0.0.1', '240.0.0.1', '10.244.0.255'];
const NODEPORT_RANGE: [number, number] = [30000, 32767];
const EPHEMERAL_RANGE: [number, number] = [32768, 60999];

const CONFIG: import('../../src/datapath/loader.ts').DatapathConfig = {
  flags: ConfigFlags.MASQUERADE | ConfigFlags.POLICY, loopback_addr: LOOPBACK, snat_addr: NODE_IP, snat_port_min: 61000, snat_port_max: 65535,
  nodeport_min: NODEPORT_RANGE[0], nodeport_max: NODEPORT_RANGE[1], seen_mark: 0,
};

const tcpPort = (port: number, targetPort: number, nodePort = 0, name = 'http') => ({ name, protocol: 'TCP' as const, port, targetPort, nodePort });
const udpPort = (port: number, targetPort: number, nodePort = 0, name = 'dns') => ({ name, protocol: 'UDP' as const, port, targetPort, nodePort });
const dnsSlicePorts = { ports: [{ name: 'dns', protocol: 'UDP' as const, port: 5353 }, { name: 'dnstcp', protocol: 'TCP' as const, port: 5353 }] };

const SERVICES: [Service, EndpointSlice[]][] = [
  [svc('web'), [slice('web', WEB)]],
  [svc('dns', { clusterIPs: ['10.96.0.53'], ports: [udpPort(53, 5353), tcpPort(53, 5353, 0, 'dnstcp')] }), [slice('dns', [DNS], dnsSlicePorts)]],
  [svc('empty', { clusterIPs: ['10.96.0.20'] }), []],
  [svc('emptyudp', { clusterIPs: ['10.96.0.21'], ports: [udpPort(53, 53)] }), []],
  [svc('np', { type: 'NodePort', clusterIPs: ['10.96.0.31'], ports: [tcpPort(80, 8080, 30080)] }), [slice('np', [NP_BE])]],
  [svc('npudp', { type: 'NodePort', clusterIPs: ['10.96.0.35'], ports: [udpPort(53, 5353, 30053)] }), [slice('npudp', [DNS], dnsSlicePorts)]],
  [svc('nplocal', { type: 'NodePort', clusterIPs: ['10.96.0.32'], externalTrafficPolicy: 'Local', ports: [tcpPort(80, 8080, 30081)] }),
    [slice('nplocal', [{ ip: '10.244.1.32', node: 'node-b' }])]],
  [svc('remote', { type: 'NodePort', clusterIPs: ['10.96.0.34'], ports: [tcpPort(80, 8080, 30084)] }), [slice('remote', [{ ip: '10.244.1.34', node: 'node-b' }])]],
  [svc('npempty', { type: 'NodePort', clusterIPs: ['10.96.0.36'], ports: [tcpPort(80, 8080, 30090)] }), []],
  [svc('ext', { clusterIPs: ['10.96.0.33'], externalIPs: ['198.51.100.7'] }), [slice('ext', [EXT_BE])]],
  [svc('self', { clusterIPs: ['10.96.0.40'] }), [slice('self', [CLIENT])]],
  [svc('aff', { clusterIPs: ['10.96.0.50'], sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 60 }), [slice('aff', WEB)]],
];

const PROTO_NUM = { TCP: 6, UDP: 17, SCTP: 132 } as const;

interface Frontend {
  key: string;
  addr: string;
  port: number;
  proto: number;
  /** 'addr:port' of every backend a flow of this frontend may reach */
  backends: Set<string>;
}

/** What the Services say, for telling a translation from garbage. */
const world = (() => {
  const frontends = new Map<string, Frontend>();
  const vips = new Set<string>();
  const backendAddrsOfVip = new Map<string, Set<string>>();
  for (const [s, slices] of SERVICES) {
    const c = compileService(s, slices, NODE);
    for (const v of c.vips) vips.add(v);
    for (const f of c.frontends) {
      const proto = PROTO_NUM[f.protocol];
      const fe: Frontend = { key: `${f.addr}:${f.port}/${proto}`, addr: f.addr, port: f.port, proto, backends: new Set(f.backends.map((b) => `${b.addr}:${b.port}`)) };
      frontends.set(fe.key, fe);
      const set = backendAddrsOfVip.get(f.addr) ?? new Set<string>();
      for (const b of f.backends) set.add(b.addr);
      backendAddrsOfVip.set(f.addr, set);
    }
  }
  const known = new Set<string>([NODE_IP, OTHER_NODE, LOOPBACK, ...LOCAL_PODS, ...REMOTE_PODS, ...OUTSIDE, ...ODD, ...vips]);
  return { frontends: [...frontends.values()], byKey: frontends, vips, backendAddrsOfVip, known };
})();

/** NetworkPolicy on some local pods: every other one enforces ingress, every
 *  third egress; entries allow TCP 8080 from any peer and everything to the
 *  DNS pod, so random traffic meets both verdicts. */
function policySetUp(h: BpfHarness): void {
  const ep = codec<{ identity: number; flags: number }>(layouts.hypha_policy_ep);
  const key = codec<PolicyKey>(layouts.hypha_policy_key);
  const val = codec<{ flags: number; proxy_port: number }>(layouts.hypha_policy_val);
  LOCAL_PODS.forEach((ip, i) => {
    const flags = (i % 2 === 0 ? PolicyEpFlags.INGRESS : 0) | (i % 3 === 0 ? PolicyEpFlags.EGRESS : 0);
    native.mapUpdate(h.dp.map('hypha_policy_eps_v1'), endpointKeyCodec.encode({ value: ip }), ep.encode({ identity: 1000 + i, flags }));
    const entries: PolicyKey[] = [
      { prefixlen: 96, ep_addr: ip, identity: 0, dir: PolicyDir.INGRESS, proto: 6, dport: 8080 },
      { prefixlen: 72, ep_addr: ip, identity: 0, dir: PolicyDir.EGRESS, proto: 0, dport: 0 },
    ];
    for (const k of entries) if (k.dir === PolicyDir.INGRESS || ip === DNS) native.mapUpdate(h.dp.map('hypha_policy_v1'), key.encode(k), val.encode({ flags: PolicyFlags.ALLOW, proxy_port: 0 }));
  });
}

function setUp(h: BpfHarness): Promise<void> {
  for (const [s, slices] of SERVICES) h.service(s, slices);
  LOCAL_PODS.forEach((ip, i) => native.mapUpdate(h.dp.map('hypha_endpoints_v1'), endpointKeyCodec.encode({ value: ip }), endpointValueCodec.encode({ ifindex: 4242 + i, flags: 0 })));
  h.config(CONFIG);
  policySetUp(h);
  const nodes = compileNodes([
    { name: 'node-a', addresses: [NODE_IP], podCIDRs: ['10.244.0.0/24'] },
    { name: 'node-b', addresses: [OTHER_NODE], podCIDRs: ['10.244.1.0/24'] },
  ], { mode: 'native', self: 'node-a', clusterCIDRs: ['10.96.0.0/12'] });
  return new IpcacheReconciler(h.dp.mapIO('hypha_ipcache_v1')).sync(nodes.ipcache).then(() => undefined);
}

// ---------------------------------------------------------------- reading frames (never throws)

const u16 = (b: Uint8Array, o: number): number => ((b[o] ?? 0) << 8) | (b[o + 1] ?? 0);
const u32 = (b: Uint8Array, o: number): number => (((b[o] ?? 0) << 24) | ((b[o + 1] ?? 0) << 16) | ((b[o + 2] ?? 0) << 8) | (b[o + 3] ?? 0)) >>> 0;
const put16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
};
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const inRange = (v: number, [lo, hi]: [number, number]): boolean => v >= lo && v <= hi;

/** Offset of an IPv4 header: after Ethernet, or after one VLAN tag. */
function l3Offset(b: Uint8Array): number | undefined {
  if (b.length < 14) return undefined;
  const et = u16(b, 12);
  if (et === 0x0800) return 14;
  if ((et === 0x8100 || et === 0x88a8) && b.length >= 18 && u16(b, 16) === 0x0800) return 18;
  return undefined;
}

interface Ip4 {
  l3: number;
  ihl: number;
  totLen: number;
  proto: number;
  ttl: number;
  src: string;
  dst: string;
  /** 'later': fragment offset > 0, no L4 header */
  frag: 'none' | 'first' | 'later';
  /** version 4, IHL >= 5, the whole header in the frame */
  sane: boolean;
  csumOk: boolean;
  l4: number;
}

function ip4At(b: Uint8Array, l3: number): Ip4 | undefined {
  if (b.length < l3 + 20) return undefined;
  const ihl = (b[l3]! & 15) * 4;
  const fo = u16(b, l3 + 6);
  const sane = b[l3]! >> 4 === 4 && ihl >= 20 && l3 + ihl <= b.length;
  return {
    l3, ihl, totLen: u16(b, l3 + 2), proto: b[l3 + 9]!, ttl: b[l3 + 8]!, src: uintToIp4(u32(b, l3 + 12)), dst: uintToIp4(u32(b, l3 + 16)),
    frag: fo & 0x1fff ? 'later' : fo & 0x2000 ? 'first' : 'none', sane, csumOk: sane && onesSum(b, l3, l3 + ihl) === 0xffff, l4: l3 + ihl,
  };
}

function ip4(b: Uint8Array): Ip4 | undefined {
  const l3 = l3Offset(b);
  return l3 === undefined ? undefined : ip4At(b, l3);
}

function pseudoSum(b: Uint8Array, ip: Ip4, len: number): number {
  const ph = new Uint8Array(12);
  ph.set(b.subarray(ip.l3 + 12, ip.l3 + 20), 0);
  ph[9] = ip.proto;
  put16(ph, 10, len);
  return onesSum(ph);
}

/** The L4 checksum as the input has it: 'na' when it cannot be checked from the frame. */
function l4Csum(b: Uint8Array, ip: Ip4 | undefined): 'ok' | 'bad' | 'zero' | 'na' {
  if (!ip || !ip.sane || ip.frag === 'later') return 'na';
  const end = ip.l3 + ip.totLen;
  const len = ip.totLen - ip.ihl;
  if (len < 0 || end > b.length) return 'na';
  if (ip.proto === 6) {
    if (len < 20) return 'na';
    return onesSum(b, ip.l4, end, pseudoSum(b, ip, len)) === 0xffff ? 'ok' : 'bad';
  }
  if (ip.proto === 17) {
    if (len < 8) return 'na';
    if (u16(b, ip.l4 + 6) === 0) return 'zero';
    return onesSum(b, ip.l4, end, pseudoSum(b, ip, len)) === 0xffff ? 'ok' : 'bad';
  }
  if (ip.proto === 1) {
    if (len < 8) return 'na';
    return onesSum(b, ip.l4, end) === 0xffff ? 'ok' : 'bad';
  }
  return 'na';
}

/** Ports (TCP, UDP) or the echo identifier (as sport for requests, dport for replies). */
function portsOf(b: Uint8Array, ip: Ip4 | undefined): { sport: number; dport: number; echo?: boolean } | undefined {
  if (!ip || !ip.sane || ip.frag === 'later') return undefined;
  if ((ip.proto === 6 || ip.proto === 17) && ip.l4 + 4 <= b.length) return { sport: u16(b, ip.l4), dport: u16(b, ip.l4 + 2) };
  if (ip.proto === 1 && ip.l4 + 8 <= b.length && (b[ip.l4] === 8 || b[ip.l4] === 0)) {
    const id = u16(b, ip.l4 + 4);
    return b[ip.l4] === 8 ? { sport: id, dport: 0, echo: true } : { sport: 0, dport: id, echo: true };
  }
  return undefined;
}

/** The IP header an ICMP error quotes. */
function innerOf(b: Uint8Array, ip: Ip4 | undefined): Ip4 | undefined {
  if (!ip || !ip.sane || ip.frag !== 'none' || ip.proto !== 1 || ip.l4 + 8 > b.length) return undefined;
  if (!ICMP_ERROR_TYPES.includes(b[ip.l4]!)) return undefined;
  return ip4At(b, ip.l4 + 8);
}

// What a translation may change, per byte of the input.
const M_FIXED = 0;
const M_NAT = 1; // addresses, ports, identifiers, checksums
const M_MAC = 2; // only when the program forwards the frame itself
const M_TTL = 3; // likewise, and only by one

function markL4(m: Uint8Array, b: Uint8Array, ip: Ip4, depth: number): void {
  const set = (from: number, n: number): void => {
    for (let i = from; i < from + n && i < m.length; i++) m[i] = M_NAT;
  };
  const l4 = ip.l4;
  if (ip.proto === 6) {
    set(l4, 4);
    set(l4 + 16, 2);
  } else if (ip.proto === 17) {
    set(l4, 4);
    set(l4 + 6, 2);
  } else if (ip.proto === 1 && l4 < b.length) {
    set(l4 + 2, 2);
    const type = b[l4]!;
    if (type === 0 || type === 8) set(l4 + 4, 2);
    if (depth === 0 && ICMP_ERROR_TYPES.includes(type)) {
      const inner = ip4At(b, l4 + 8);
      if (inner) {
        set(inner.l3 + 10, 10);
        if (inner.sane && inner.frag !== 'later') markL4(m, b, inner, 1);
      }
    }
  }
}

function allowedMask(b: Uint8Array): Uint8Array {
  const m = new Uint8Array(b.length);
  m.fill(M_MAC, 0, Math.min(12, b.length));
  // The fixed IPv4 header is rewritable whenever it is there and names
  // itself IPv4 (a later fragment is translated from its first 20 bytes
  // alone); L4 fields only when the whole IP header is in the frame.
  const ip = ip4(b);
  if (!ip || b[ip.l3]! >> 4 !== 4 || ip.ihl < 20) return m;
  m[ip.l3 + 8] = M_TTL;
  m.fill(M_NAT, ip.l3 + 10, ip.l3 + 20);
  if (ip.sane && ip.frag !== 'later') markL4(m, b, ip, 0);
  return m;
}

/** A name for byte i of a frame, for failure messages. */
function fieldAt(b: Uint8Array, i: number): string {
  if (i < 6) return 'eth dst';
  if (i < 12) return 'eth src';
  const ip = ip4(b);
  if (!ip) return i < 14 ? 'ethertype' : `byte ${i} (not IPv4)`;
  if (i < ip.l3) return 'ethertype/VLAN';
  const o = i - ip.l3;
  if (o < 20) return ['version/IHL', 'TOS', 'total length', 'total length', 'IP id', 'IP id', 'flags/fragment', 'fragment', 'TTL', 'protocol', 'IP checksum', 'IP checksum', 'saddr', 'saddr', 'saddr', 'saddr', 'daddr', 'daddr', 'daddr', 'daddr'][o]!;
  if (i < ip.l4) return 'IP options';
  return `L4 byte ${i - ip.l4}`;
}

const isForbiddenIcmpTarget = (a: string): boolean => {
  const first = ip4ToUint(a) >>> 24;
  return first === 0 || first === 127 || first >= 224;
};

// ---------------------------------------------------------------- the rules

interface Problem {
  rule: string;
  message: string;
}

type DropDelta = Record<string, number>;

function dropDelta(before: Record<string, number>, after: Record<string, number>): DropDelta {
  const d: DropDelta = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) d[k] = v - (before[k] ?? 0);
  return d;
}

const fmtDelta = (d: DropDelta): string => (Object.keys(d).length ? Object.entries(d).map(([k, v]) => `${k} +${v}`).join(', ') : 'nothing');

function checkRun(prog: ProgramName, input: Uint8Array, verdict: number, out: Uint8Array, delta: DropDelta, sent: Set<string>): Problem[] {
  const xdp = prog.startsWith('xdp');
  const problems: Problem[] = [];
  const p = (rule: string, message: string): void => {
    problems.push({ rule, message });
  };
  const legal = xdp ? [XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT] : [TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT];
  if (!legal.includes(verdict)) {
    p('verdict', `verdict ${verdict} is none of ${legal.join(', ')}`);
    return problems;
  }
  // An ICMP answer (at most 576 bytes of IP, RFC 1812) or the input's own length.
  const maxLen = Math.max(input.length, 18 + 576);
  if (out.length > maxLen) p('length', `output is ${out.length} bytes, more than any legal result (${maxLen})`);
  const counted = Object.values(delta).reduce((a, v) => a + v, 0);
  const forwards = xdp ? verdict === XDP_TX || verdict === XDP_REDIRECT : verdict === TC_ACT_REDIRECT;
  if (verdict === (xdp ? XDP_DROP : TC_ACT_SHOT)) {
    if (counted !== 1 || Object.keys(delta).length !== 1) p('drop-count', `dropped, and the drop counters counted ${fmtDelta(delta)} (want one packet under one reason)`);
    return problems;
  }
  if (counted !== 0) {
    // Counted but not dropped: only an ICMP answer (a reject) may do that.
    if (counted !== 1 || Object.keys(delta).length !== 1) p('drop-count', `answered, and the drop counters counted ${fmtDelta(delta)} (want one packet under one reason)`);
    checkAnswer(input, out, forwards, p);
    return problems;
  }
  if (out.length === input.length && out.every((v, i) => v === input[i])) return problems;
  checkTranslation(input, out, forwards, sent, p);
  return problems;
}

function checkAnswer(input: Uint8Array, out: Uint8Array, forwards: boolean, p: (rule: string, message: string) => void): void {
  const a = (m: string): void => p('answer', m);
  if (!forwards) a('an ICMP answer must be sent back (redirect / XDP_TX)');
  const inIp = ip4(input);
  if (!inIp || !inIp.sane) {
    a('answered a frame that is not a well-formed IPv4 packet');
    return;
  }
  if (inIp.frag === 'later') p('answer-forbidden', 'an ICMP error about a non-first fragment (RFC 1122 3.2.2)');
  if (innerOf(input, inIp)) p('answer-forbidden', 'an ICMP error about an ICMP error (RFC 1122 3.2.2)');
  if (isForbiddenIcmpTarget(inIp.src)) p('answer-forbidden', `an ICMP error to ${inIp.src} (RFC 1812 4.3.2.7)`);
  if (isForbiddenIcmpTarget(inIp.dst)) p('answer-forbidden', `an ICMP error about a packet to ${inIp.dst} (RFC 1812 4.3.2.7)`);
  const ip = ip4(out);
  if (!ip || !ip.sane) {
    a('the answer is not IPv4');
    return;
  }
  if (ip.l3 !== inIp.l3 || hex(out.subarray(12, ip.l3)) !== hex(input.subarray(12, inIp.l3))) a('the answer does not carry the input\'s ethertype / VLAN tag');
  if (hex(out.subarray(0, 6)) !== hex(input.subarray(6, 12)) || hex(out.subarray(6, 12)) !== hex(input.subarray(0, 6))) a('the answer\'s MACs are not the input\'s swapped');
  if (ip.ihl !== 20 || ip.totLen !== out.length - ip.l3) a(`IHL ${ip.ihl}, total length ${ip.totLen} for a ${out.length - ip.l3}-byte packet`);
  if (!ip.csumOk) a('bad IP checksum');
  if (ip.proto !== 1) a(`protocol ${ip.proto}, not ICMP`);
  if (u16(out, ip.l3 + 6) & 0x3fff) a('the answer is a fragment');
  if (ip.ttl === 0) a('TTL 0');
  if (ip.src !== inIp.dst || ip.dst !== inIp.src) a(`${ip.src} -> ${ip.dst} does not answer ${inIp.src} -> ${inIp.dst}`);
  if (out[ip.l4] !== 3) a(`ICMP type ${out[ip.l4]}, not destination unreachable`);
  if (l4Csum(out, ip) !== 'ok') a('bad ICMP checksum');
  const quote = out.subarray(ip.l4 + 8);
  const want = Math.min(inIp.ihl + 8, input.length - inIp.l3);
  if (quote.length < want) a(`quotes ${quote.length} bytes, less than the header + 8 (${want})`);
  if (inIp.l3 + quote.length > input.length || hex(quote) !== hex(input.subarray(inIp.l3, inIp.l3 + quote.length))) a('the quote is not the start of the input\'s IP packet');
}

function checkTranslation(input: Uint8Array, out: Uint8Array, forwards: boolean, sent: Set<string>, p: (rule: string, message: string) => void): void {
  if (out.length !== input.length) {
    p('length', `rewritten from ${input.length} to ${out.length} bytes (only an ICMP answer may change the length)`);
    return;
  }
  const mask = allowedMask(input);
  for (let i = 0; i < input.length; i++) {
    if (input[i] === out[i]) continue;
    const what = `${fieldAt(input, i)} (byte ${i}) ${input[i]} -> ${out[i]}`;
    if (mask[i] === M_FIXED) p('bytes', `changed ${what}, which no translation touches`);
    else if (mask[i] === M_MAC && !forwards) p('bytes', `changed ${what} without forwarding the frame`);
    else if (mask[i] === M_TTL && (!forwards || out[i] !== input[i]! - 1)) p('ttl', `${what}: only a frame the program forwards itself loses one`);
  }
  try {
    const pp = parsePacket(out);
    if (!pp.src && ip4(input)) p('parse', 'parsePacket finds no IPv4 header in the rewritten frame');
  } catch (e) {
    p('parse', `parsePacket: ${(e as Error).message}`);
    return;
  }
  const inIp = ip4(input);
  const ip = ip4(out);
  if (!inIp || !ip) return;
  if (inIp.csumOk && !ip.csumOk) p('ip-csum', 'the IP checksum was valid and is not after the rewrite');
  const c0 = l4Csum(input, inIp);
  const c1 = l4Csum(out, ip);
  if (c0 === 'ok' && c1 !== 'ok') p('l4-csum', `the L4 checksum was valid and is ${c1} after the rewrite`);
  if (c0 === 'zero' && c1 !== 'zero') p('udp-zero', 'a zero UDP checksum ("none") was filled in');
  const q0 = innerOf(input, inIp);
  const q1 = innerOf(out, ip);
  if (q0 && q1) {
    if (q0.csumOk && !q1.csumOk) p('inner-csum', 'the quoted IP header\'s checksum was valid and is not after the rewrite');
    if (q0.src === inIp.dst && q1.src !== ip.dst) p('inner-consistency', `outer destination ${ip.dst} but quoted source ${q1.src} (they were the same)`);
    if (q0.dst === inIp.src && q1.dst !== ip.src) p('inner-consistency', `outer source ${ip.src} but quoted destination ${q1.dst} (they were the same)`);
  }
  for (const [name, before, now] of [['source', inIp.src, ip.src], ['destination', inIp.dst, ip.dst], ['quoted source', q0?.src, q1?.src], ['quoted destination', q0?.dst, q1?.dst]] as const) {
    if (now !== undefined && now !== before && !world.known.has(now) && !sent.has(now)) p('address', `${name} rewritten to ${now}, an address nothing in the maps or the traffic has`);
  }
  checkSemantics(input, inIp, out, ip, p);
}

/** Rewrites must agree with the Services: a frontend goes to one of its backends, a frontend source comes from one of them, a source NAT to the node keeps out of the NodePort and ephemeral ranges. */
function checkSemantics(input: Uint8Array, inIp: Ip4, out: Uint8Array, ip: Ip4, p: (rule: string, message: string) => void): void {
  const a = portsOf(input, inIp);
  const b = portsOf(out, ip);
  const dstChanged = ip.dst !== inIp.dst || (a && b && a.dport !== b.dport);
  const srcChanged = ip.src !== inIp.src || (a && b && a.sport !== b.sport);
  if (dstChanged) {
    if (a && b && !a.echo) {
      const fe = world.byKey.get(`${inIp.dst}:${a.dport}/${inIp.proto}`);
      if (fe && !fe.backends.has(`${ip.dst}:${b.dport}`)) p('translation', `to frontend ${fe.key}, rewritten to ${ip.dst}:${b.dport}, not one of its backends [${[...fe.backends].join(' ')}]`);
    } else if (!a && world.vips.has(inIp.dst) && ip.dst !== inIp.dst && !world.backendAddrsOfVip.get(inIp.dst)?.has(ip.dst)) {
      p('translation', `to Service address ${inIp.dst} (no ports), rewritten to ${ip.dst}, not one of its backends`);
    }
  }
  if (srcChanged) {
    const reverseOf = b && !b.echo ? world.byKey.get(`${ip.src}:${b.sport}/${ip.proto}`) : undefined;
    if (world.vips.has(ip.src) && ip.src !== inIp.src) {
      if (a && b && !a.echo) {
        if (!reverseOf) p('translation', `source rewritten to ${ip.src}:${b.sport}, a Service address on a port that is no frontend`);
        else if (!reverseOf.backends.has(`${inIp.src}:${a.sport}`)) p('translation', `source rewritten to frontend ${reverseOf.key}, but ${inIp.src}:${a.sport} is none of its backends`);
      } else if (!world.backendAddrsOfVip.get(ip.src)?.has(inIp.src)) {
        p('translation', `source rewritten to Service address ${ip.src}, but ${inIp.src} is none of its backends`);
      }
    }
    const isReverse = reverseOf !== undefined && a !== undefined && reverseOf.backends.has(`${inIp.src}:${a.sport}`);
    if (ip.src === NODE_IP && b && !isReverse && (a?.sport !== b.sport || inIp.src !== ip.src)) {
      const port = b.sport;
      if (inRange(port, NODEPORT_RANGE) || inRange(port, EPHEMERAL_RANGE)) {
        p('snat-port', `source NAT to ${NODE_IP} with ${b.echo ? 'identifier' : 'port'} ${port}, inside the NodePort (${NODEPORT_RANGE.join('-')}) or ephemeral (${EPHEMERAL_RANGE.join('-')}) range`);
      }
    }
  }
}

// ---------------------------------------------------------------- building frames

function fixIpCsum(b: Uint8Array, l3 = l3Offset(b) ?? 14): void {
  if (b.length < l3 + 20) return;
  const ihl = Math.max(20, (b[l3]! & 15) * 4);
  if (l3 + ihl > b.length) return;
  put16(b, l3 + 10, 0);
  put16(b, l3 + 10, ~onesSum(b, l3, l3 + ihl) & 0xffff);
}

/** Recompute the L4 checksum when the whole segment is in the frame (a zero UDP checksum stays zero). */
function fixL4Csum(b: Uint8Array): void {
  const ip = ip4(b);
  if (!ip || !ip.sane || ip.frag === 'later') return;
  const end = ip.l3 + ip.totLen;
  const len = ip.totLen - ip.ihl;
  if (len < 0 || end > b.length) return;
  if (ip.proto === 6 && len >= 20) {
    put16(b, ip.l4 + 16, 0);
    put16(b, ip.l4 + 16, ~onesSum(b, ip.l4, end, pseudoSum(b, ip, len)) & 0xffff);
  } else if (ip.proto === 17 && len >= 8 && u16(b, ip.l4 + 6) !== 0) {
    put16(b, ip.l4 + 6, 0);
    const c = ~onesSum(b, ip.l4, end, pseudoSum(b, ip, len)) & 0xffff;
    put16(b, ip.l4 + 6, c === 0 ? 0xffff : c);
  } else if (ip.proto === 1 && len >= 8) {
    put16(b, ip.l4 + 2, 0);
    put16(b, ip.l4 + 2, ~onesSum(b, ip.l4, end) & 0xffff);
  }
}

/** The frame with VLAN tags ([TPID, TCI]) pushed after the MACs. */
function vlanTag(frame: Uint8Array, tags: [number, number][]): Uint8Array {
  const f = new Uint8Array(frame.length + 4 * tags.length);
  f.set(frame.subarray(0, 12));
  let o = 12;
  for (const [tpid, tci] of tags) {
    put16(f, o, tpid);
    put16(f, o + 2, tci);
    o += 4;
  }
  f.set(frame.subarray(12), o);
  return f;
}

/** A flow the programs saw: its frame before and after, as the next packets of it are made from. */
interface Seen {
  input: Uint8Array;
  output: Uint8Array;
}

class Generator {
  readonly r: Rng;
  /** recent frames the programs passed or translated */
  seen: Seen[] = [];

  constructor(r: Rng) {
    this.r = r;
  }

  remember(input: Uint8Array, output: Uint8Array): void {
    if (this.seen.length >= 64) this.seen.splice(this.r.int(64), 1);
    this.seen.push({ input, output });
  }

  private port(): number {
    const r = this.r;
    return r.weighted([
      [4, () => r.range(40000, 40015)],
      [3, () => r.range(1024, 65535)],
      [1, () => r.pick([30080, 30081, 30084, 30053, 30090, 53, 80, 8080, 5353, 61000, 65535, 32768, 60999, 0])],
    ])();
  }

  private flags(): TcpFlag[] {
    return this.r.weighted<TcpFlag[]>([
      [5, ['SYN']], [4, ['ACK']], [2, ['PSH', 'ACK']], [1, ['SYN', 'ACK']], [1, ['FIN', 'ACK']], [1, ['RST']], [1, ['RST', 'ACK']], [1, ['SYN', 'FIN']], [1, []],
    ]);
  }

  private payload(): Uint8Array {
    return this.r.bytes(this.r.weighted([[6, 0], [3, this.r.range(1, 64)], [1, this.r.range(65, 1400)]]));
  }

  private l4(spec: Omit<PacketSpec, 'proto'>, proto: number): PacketSpec {
    const r = this.r;
    if (proto === 6) return { ...spec, proto: 'tcp', flags: this.flags(), seq: r.u32(), payload: this.payload() };
    if (proto === 17) return { ...spec, proto: 'udp', payload: this.payload(), noUdpChecksum: r.chance(0.15) };
    return { ...spec, proto: 'icmp', icmpType: r.pick([8, 8, 8, 0, 13]), icmpId: this.port(), payload: this.payload() };
  }

  /** A valid frame of one of the kinds a node sees. */
  base(): { frame: Uint8Array; what: string } {
    const r = this.r;
    const kind = r.weighted<string>([[25, 'pod-to-service'], [15, 'outside-to-node'], [12, 'pod-to-outside'], [18, 'reply'], [8, 'again'], [12, 'icmp-error'], [5, 'direct'], [5, 'other-l3']]);
    const proto = (): number => r.weighted([[6, 6], [3, 17], [1, 1]]);
    switch (kind) {
      case 'pod-to-service': {
        const fe = r.pick(world.frontends);
        const dport = r.chance(0.1) ? this.port() : fe.port;
        const p = r.chance(0.9) ? fe.proto : proto();
        const src = r.pick([CLIENT, CLIENT, CLIENT2, ...WEB, '10.244.1.7', NODE_IP]);
        return { frame: buildPacket(this.l4({ src, dst: fe.addr, sport: this.port(), dport, ttl: r.pick([64, 64, 1, 2]) }, p)), what: `${kind} ${fe.key}` };
      }
      case 'outside-to-node': {
        const fe = r.pick(world.frontends.filter((f) => f.addr === NODE_IP || f.addr === '198.51.100.7'));
        const dport = r.chance(0.15) ? r.pick([22, 10250, this.port()]) : fe.port;
        const p = r.chance(0.9) ? fe.proto : proto();
        const src = r.chance(0.05) ? r.pick(ODD) : r.pick([...OUTSIDE, OTHER_NODE]);
        return { frame: buildPacket(this.l4({ src, dst: fe.addr, sport: this.port(), dport }, p)), what: `${kind} ${fe.key}` };
      }
      case 'pod-to-outside': {
        const src = r.pick([CLIENT, CLIENT2, ...WEB]);
        const dst = r.pick([...OUTSIDE, ...REMOTE_PODS, OTHER_NODE, NODE_IP]);
        return { frame: buildPacket(this.l4({ src, dst, sport: this.port(), dport: r.pick([443, 80, 53, this.port()]) }, proto())), what: kind };
      }
      case 'reply':
      case 'again': {
        if (this.seen.length === 0) return this.base();
        const s = r.pick(this.seen);
        const from = kind === 'again' ? s.input : s.output;
        const ip = ip4(from);
        const ports = portsOf(from, ip);
        if (!ip || !ip.sane) return this.base();
        const spec = kind === 'again'
          ? { src: ip.src, dst: ip.dst, sport: ports?.sport ?? this.port(), dport: ports?.dport ?? this.port() }
          : { src: ip.dst, dst: ip.src, sport: ports?.dport ?? this.port(), dport: ports?.sport ?? this.port() };
        const p = ip.proto === 6 || ip.proto === 17 ? ip.proto : 1;
        const built = this.l4(spec, p);
        if (p === 1 && ports?.echo) {
          built.icmpType = kind === 'again' ? 8 : 0;
          built.icmpId = ports.sport || ports.dport;
        }
        if (p === 6 && kind === 'reply') built.flags = r.pick<TcpFlag[]>([['SYN', 'ACK'], ['ACK'], ['PSH', 'ACK'], ['FIN', 'ACK'], ['RST']]);
        return { frame: buildPacket(built), what: `${kind} of ${ip.src}:${ports?.sport} > ${ip.dst}:${ports?.dport}/${ip.proto}` };
      }
      case 'icmp-error':
        return this.icmpError();
      case 'direct': {
        const pool = [...LOCAL_PODS, ...REMOTE_PODS, NODE_IP, OTHER_NODE, LOOPBACK, ...OUTSIDE, ...world.vips];
        return { frame: buildPacket(this.l4({ src: r.pick(pool), dst: r.pick(pool), sport: this.port(), dport: this.port() }, proto())), what: kind };
      }
      default:
        return this.otherL3();
    }
  }

  /** An ICMP error (destination unreachable, time exceeded, ...) about a frame seen before, or about anything. */
  icmpError(): { frame: Uint8Array; what: string } {
    const r = this.r;
    let inner: Uint8Array;
    let outerSrc: string;
    let outerDst: string;
    let what: string;
    const s = this.seen.length > 0 && r.chance(0.75) ? r.pick(this.seen) : undefined;
    const quoted = s ? (r.chance(0.7) ? s.output : s.input) : undefined;
    const qip = quoted ? ip4(quoted) : undefined;
    if (quoted && qip && qip.sane) {
      inner = quoted.slice(qip.l3, Math.min(quoted.length, qip.l3 + qip.ihl + r.pick([8, 8, 8, 20, 40, 200])));
      // From the far end, or from a router on the way, back to the sender.
      outerSrc = r.chance(0.6) ? qip.dst : r.pick([...OUTSIDE, OTHER_NODE, NODE_IP]);
      outerDst = qip.src;
      what = `icmp-error about ${qip.src} > ${qip.dst}/${qip.proto}`;
    } else {
      const p = r.weighted([[5, 6], [3, 17], [1, 1], [1, r.range(0, 255)]]);
      const pool = [...LOCAL_PODS, NODE_IP, LOOPBACK, ...OUTSIDE, ...world.vips];
      const f = buildPacket(p === 6 || p === 17 || p === 1 ? this.l4({ src: r.pick(pool), dst: r.pick(pool), sport: this.port(), dport: this.port() }, p) : { src: r.pick(pool), dst: r.pick(pool), proto: 'udp' });
      if (p !== 6 && p !== 17 && p !== 1) {
        f[14 + 9] = p;
        fixIpCsum(f);
      }
      inner = r.chance(0.2) ? r.bytes(r.range(0, 60)) : f.slice(14, Math.min(f.length, 14 + 20 + r.pick([8, 8, 20, 40])));
      const iip = ip4At(f, 14)!;
      outerSrc = r.chance(0.5) ? iip.dst : r.pick(OUTSIDE);
      outerDst = iip.src;
      what = 'icmp-error about anything';
    }
    const type = r.weighted([[6, 3], [3, 11], [1, r.pick([4, 5, 12])]]);
    const code = type === 3 ? r.pick([0, 1, 3, 4, 4, 13, r.range(0, 15)]) : type === 11 ? r.range(0, 1) : 0;
    const frame = buildPacket({ src: outerSrc, dst: outerDst, proto: 'icmp', icmpType: type, icmpId: 0, payload: inner, ttl: r.pick([64, 64, 1]) });
    const l4 = 14 + 20;
    frame[l4 + 1] = code;
    put16(frame, l4 + 4, 0);
    put16(frame, l4 + 6, type === 3 && code === 4 ? r.pick([1400, 1280, 576, 68, 0]) : 0);
    fixL4Csum(frame);
    return { frame, what: `${what} (type ${type} code ${code}, ${inner.length}-byte quote)` };
  }

  /** Not IPv4 over plain Ethernet: ARP, IPv6, VLAN-tagged IPv4, other ethertypes, random bytes. */
  otherL3(): { frame: Uint8Array; what: string } {
    const r = this.r;
    const kind = r.pick(['arp', 'ipv6', 'vlan', 'qinq', 'ethertype', 'random', 'random-ipv4']);
    const eth = (type: number, body: Uint8Array): Uint8Array => {
      const f = new Uint8Array(14 + body.length);
      f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
      put16(f, 12, type);
      f.set(body, 14);
      return f;
    };
    switch (kind) {
      case 'arp': {
        const body = new Uint8Array(28);
        body.set([0, 1, 8, 0, 6, 4, 0, r.pick([1, 2])]);
        body.set([2, 0, 0, 0, 0, 1], 8);
        put16(body, 14, ip4ToUint(CLIENT) >>> 16);
        put16(body, 16, ip4ToUint(CLIENT) & 0xffff);
        put16(body, 24, ip4ToUint(NODE_IP) >>> 16);
        put16(body, 26, ip4ToUint(NODE_IP) & 0xffff);
        return { frame: eth(0x0806, body), what: 'ARP' };
      }
      case 'ipv6': {
        const body = new Uint8Array(40 + 20);
        body[0] = 0x60;
        put16(body, 4, 20);
        body[6] = 6;
        body[7] = 64;
        body.set(r.bytes(32), 8);
        body.set(r.bytes(20), 40);
        return { frame: eth(0x86dd, body), what: 'IPv6' };
      }
      case 'vlan':
      case 'qinq': {
        const { frame, what } = this.base();
        const tags = kind === 'vlan' ? [0x8100] : [0x88a8, 0x8100];
        return { frame: vlanTag(frame, tags.map((t) => [t, r.range(1, 4094)])), what: `${kind} tag around: ${what}` };
      }
      case 'ethertype': {
        const { frame, what } = this.base();
        put16(frame, 12, r.pick([0x86dd, 0x0806, 0x8847, 0x88cc, 0x0842, r.range(0, 0xffff)]));
        return { frame, what: `ethertype ${u16(frame, 12).toString(16)} on: ${what}` };
      }
      case 'random':
        return { frame: r.bytes(r.range(14, 200)), what: 'random bytes' };
      default: {
        const f = r.bytes(r.range(34, 120));
        put16(f, 12, 0x0800);
        f[14] = 0x45;
        put16(f, 16, f.length - 14);
        f[14 + 6] = f[14 + 6]! & 0x40;
        f[14 + 7] = 0;
        f[14 + 9] = r.pick([6, 17, 1, r.range(0, 255)]);
        if (r.chance(0.5)) f.set(Uint8Array.from(r.pick([...world.vips, NODE_IP, CLIENT]).split('.').map(Number)), 14 + 16);
        fixIpCsum(f);
        return { frame: f, what: 'random IPv4 body' };
      }
    }
  }

  /** Header boundaries of a frame, and one byte either side, to cut at. */
  boundaries(f: Uint8Array): number[] {
    const cuts = new Set<number>([14, 15, 18, 22, 33, 34]);
    const ip = ip4(f);
    if (ip) {
      for (const o of [ip.l4, ip.l4 + 1, ip.l4 + 2, ip.l4 + 4, ip.l4 + 6, ip.l4 + 8, ip.l4 + 13, ip.l4 + 14, ip.l4 + 16, ip.l4 + 18, ip.l4 + 20]) cuts.add(o);
      const q = innerOf(f, ip) ?? (ip.proto === 1 ? ip4At(f, ip.l4 + 8) : undefined);
      if (q) for (const o of [q.l3 + 1, q.l3 + 12, q.l3 + 20, q.l4, q.l4 + 2, q.l4 + 4, q.l4 + 8]) cuts.add(o);
    }
    return [...cuts].filter((c) => c >= 14 && c < f.length).sort((a, b) => a - b);
  }

  /** One mutation of an IPv4 frame; returns its name. Checksums are refreshed unless the mutation is about them. */
  mutate(f: Uint8Array): { frame: Uint8Array; what: string } {
    const r = this.r;
    const ip = ip4(f);
    const l3 = ip?.l3 ?? 14;
    const kind = r.pick(['trunc-boundary', 'trunc-boundary', 'trunc-random', 'ihl-small', 'ihl-big', 'options', 'version', 'totlen', 'frag-first', 'frag-later',
      'frag-flags', 'tcp-flags', 'tcp-doff', 'udp-zero', 'udp-len', 'ports', 'proto', 'ttl', 'flip', 'bad-ip-csum', 'bad-l4-csum', 'pad', 'inner']);
    const done = (frame: Uint8Array, detail = ''): { frame: Uint8Array; what: string } => ({ frame, what: detail ? `${kind} ${detail}` : kind });
    if (!ip) return done(f.slice(0, r.range(14, f.length)), '(not IPv4: truncated)');
    switch (kind) {
      case 'trunc-boundary': {
        const cuts = this.boundaries(f);
        const at = cuts.length ? r.pick(cuts) : 14;
        return done(f.slice(0, at), `at ${at}`);
      }
      case 'trunc-random': {
        const at = r.range(14, f.length);
        return done(f.slice(0, at), `at ${at}`);
      }
      case 'ihl-small':
      case 'ihl-big': {
        const ihl = kind === 'ihl-small' ? r.range(0, 4) : r.range(6, 15);
        f[l3] = (f[l3]! & 0xf0) | ihl;
        fixIpCsum(f, l3);
        return done(f, `to ${ihl}`);
      }
      case 'options': {
        const ihl0 = ip.sane ? ip.ihl : 20;
        if (ihl0 >= 60) return this.mutate(f);
        const n = 4 * r.range(1, (60 - ihl0) / 4);
        const opts = r.weighted([[2, new Uint8Array(n).fill(1)], [1, new Uint8Array(n)], [1, Uint8Array.from([148, 4, 0, 0, ...new Uint8Array(n - 4).fill(1)])],
          [1, Uint8Array.from([7, n - 1, 4, ...new Uint8Array(n - 3)])], [1, Uint8Array.from([131, Math.min(n - 1, 7), 4, ...new Uint8Array(n - 3)])], [2, r.bytes(n)]]);
        const g = new Uint8Array(f.length + n);
        g.set(f.subarray(0, l3 + ihl0));
        g.set(opts.subarray(0, n), l3 + ihl0);
        g.set(f.subarray(l3 + ihl0), l3 + ihl0 + n);
        const ihl = (ihl0 + n) / 4;
        g[l3] = (g[l3]! & 0xf0) | ihl;
        put16(g, l3 + 2, (u16(f, l3 + 2) + n) & 0xffff);
        fixIpCsum(g, l3);
        return done(g, `${n} bytes`);
      }
      case 'version': {
        const v = r.pick([0, 1, 5, 6, 6, 7, 15]);
        f[l3] = (v << 4) | (f[l3]! & 15);
        fixIpCsum(f, l3);
        return done(f, `${v}`);
      }
      case 'totlen': {
        const len = f.length - l3;
        const v = r.pick([0, 1, 19, 20, ip.ihl, len - 1, len + 1, len + 100, 65535, r.range(0, 65535)]) & 0xffff;
        put16(f, l3 + 2, v);
        fixIpCsum(f, l3);
        return done(f, `${v} for ${len}`);
      }
      case 'frag-first':
      case 'frag-later':
      case 'frag-flags': {
        const v = kind === 'frag-first' ? 0x2000 | (r.chance(0.2) ? 0x8000 : 0)
          : kind === 'frag-later' ? (r.chance(0.5) ? 0x2000 : 0) | r.pick([1, 2, 3, 185, 0x1fff, r.range(1, 0x1fff)])
            : r.pick([0x4000, 0x8000, 0xc000, 0x6000, 0xe000 | r.range(0, 0x1fff)]);
        put16(f, l3 + 6, v);
        fixIpCsum(f, l3);
        return done(f, `frag_off ${v.toString(16)}`);
      }
      case 'tcp-flags':
      case 'tcp-doff': {
        if (ip.proto !== 6 || ip.l4 + 14 > f.length) return this.mutate(f);
        if (kind === 'tcp-flags') f[ip.l4 + 13] = r.pick([0, 0x03, 0x06, 0x05, 0x07, 0x3f, 0xff, 0x29, 0x12, 0x14, 0x11, r.range(0, 255)]);
        else f[ip.l4 + 12] = (r.range(0, 15) << 4) | (f[ip.l4 + 12]! & 15);
        fixL4Csum(f);
        return done(f, `${hex(f.subarray(ip.l4 + 12, ip.l4 + 14))}`);
      }
      case 'udp-zero':
      case 'udp-len': {
        if (ip.proto !== 17 || ip.l4 + 8 > f.length) return this.mutate(f);
        if (kind === 'udp-zero') put16(f, ip.l4 + 6, 0);
        else {
          put16(f, ip.l4 + 4, r.pick([0, 7, 8, 65535, r.range(0, 65535)]));
          fixL4Csum(f);
        }
        return done(f);
      }
      case 'ports': {
        if (!(ip.proto === 6 || ip.proto === 17) || ip.l4 + 4 > f.length) return this.mutate(f);
        put16(f, ip.l4 + r.pick([0, 2]), r.pick([0, 65535, 30080, 30084, 53, 80, 61000]));
        fixL4Csum(f);
        return done(f);
      }
      case 'proto': {
        f[l3 + 9] = r.pick([0, 1, 2, 6, 17, 47, 50, 58, 132, 255]);
        fixIpCsum(f, l3);
        return done(f, `${f[l3 + 9]}`);
      }
      case 'ttl': {
        f[l3 + 8] = r.pick([0, 1, 2, 255]);
        fixIpCsum(f, l3);
        return done(f, `${f[l3 + 8]}`);
      }
      case 'flip': {
        const n = r.range(1, 4);
        for (let i = 0; i < n; i++) {
          const at = r.range(12, f.length - 1);
          f[at] = f[at]! ^ (1 << r.int(8));
        }
        return done(f, `${n} bits`);
      }
      case 'bad-ip-csum':
        f[l3 + 10] = f[l3 + 10]! ^ r.range(1, 255);
        return done(f);
      case 'bad-l4-csum': {
        const off = ip.proto === 6 ? 16 : ip.proto === 17 ? 6 : 2;
        if (ip.l4 + off + 1 >= f.length) return this.mutate(f);
        f[ip.l4 + off] = f[ip.l4 + off]! ^ r.range(1, 255);
        return done(f);
      }
      case 'pad': {
        const g = new Uint8Array(f.length + r.range(1, 40));
        g.set(f);
        return done(g, `${g.length - f.length} bytes`);
      }
      default: {
        // inner: mess with the quoted header of an ICMP error
        const q = innerOf(f, ip);
        if (!q) return this.mutate(f);
        const what = r.pick(['ihl', 'version', 'proto', 'frag', 'addr', 'random']);
        if (what === 'ihl') f[q.l3] = (f[q.l3]! & 0xf0) | r.pick([0, 4, 6, 15]);
        else if (what === 'version') f[q.l3] = (r.pick([0, 6, 15]) << 4) | (f[q.l3]! & 15);
        else if (what === 'proto') f[q.l3 + 9] = r.pick([0, 1, 6, 17, 47, 132]);
        else if (what === 'frag') put16(f, q.l3 + 6, r.pick([0x2000, 0x0001, 0x20b9]));
        else if (what === 'addr') f.set(r.bytes(4), q.l3 + r.pick([12, 16]));
        else f.set(r.bytes(Math.max(0, f.length - q.l3 - 20)), q.l3 + 20);
        if (what !== 'random') fixIpCsum(f, q.l3);
        fixL4Csum(f);
        return done(f, what);
      }
    }
  }

  /** A frame: mostly valid, often mutated once or more. */
  next(): { frame: Uint8Array; what: string } {
    let { frame, what } = this.base();
    const n = this.r.weighted([[35, 0], [40, 1], [18, 2], [7, 3]]);
    for (let i = 0; i < n; i++) {
      const m = this.mutate(frame);
      frame = m.frame;
      what += `; ${m.what}`;
    }
    if (frame.length < 14) frame = Uint8Array.from([...frame, ...new Uint8Array(14 - frame.length)]);
    if (frame.length > 1514) frame = frame.slice(0, 1514);
    return { frame, what };
  }
}

// ---------------------------------------------------------------- running and reporting

interface Failure extends Problem {
  prog: ProgramName;
  iteration: number;
  what: string;
  verdict: number;
  delta: DropDelta;
  input: Uint8Array;
  output: Uint8Array;
  count: number;
}

function summary(b: Uint8Array): string {
  const ip = ip4(b);
  if (!ip) return `ethertype 0x${u16(b, 12).toString(16)}`;
  const ports = portsOf(b, ip);
  const q = innerOf(b, ip);
  const flags = ip.proto === 6 && ip.sane && ip.l4 + 14 <= b.length ? ` flags 0x${b[ip.l4 + 13]!.toString(16)}` : '';
  return `${ip.src}${ports ? `:${ports.sport}` : ''} > ${ip.dst}${ports ? `:${ports.dport}` : ''} proto ${ip.proto} ihl ${ip.ihl} len ${ip.totLen} frag ${ip.frag}${flags}` +
    (q ? ` [quoting ${q.src} > ${q.dst} proto ${q.proto}]` : '');
}

/** BPF_PROG_TEST_RUN refuses (EINVAL) skb frames whose ethertype is IPv4 or
 * IPv6 but that are too short for the fixed IP header: tc programs cannot be
 * run on those here (XDP can, and is). */
function tcRefuses(frame: Uint8Array): boolean {
  const et = u16(frame, 12);
  return (et === 0x0800 && frame.length < 14 + 20) || (et === 0x86dd && frame.length < 14 + 40);
}

/** What kind of frame, for the coverage lines. */
function kindOf(b: Uint8Array): string {
  const ip = ip4(b);
  if (!ip) return 'non-IPv4';
  const tag = ip.l3 === 18 ? 'VLAN ' : '';
  if (ip.frag === 'later') return `${tag}later fragment`;
  const name = ip.proto === 6 ? 'TCP' : ip.proto === 17 ? 'UDP' : ip.proto === 1 ? (innerOf(b, ip) ? 'ICMP error' : 'ICMP') : `proto ${ip.proto}`;
  return `${tag}${ip.frag === 'first' ? 'first fragment ' : ''}${name}`;
}

class Runner {
  readonly h: BpfHarness;
  readonly failures = new Map<string, Failure>();
  /** every address a frame was sent with: conntrack may hand any of them back */
  readonly sent = new Set<string>();
  runs = 0;
  /** per program: outcome -> count (passed, translated, answered, dropped REASON) */
  readonly outcomes = new Map<ProgramName, Map<string, number>>();
  /** frames BPF_PROG_TEST_RUN refuses for tc programs (see tcRefuses) */
  refused = 0;
  private drops: Record<string, number>;

  constructor(h: BpfHarness) {
    this.h = h;
    this.drops = h.drops();
  }

  /** Run one frame through one program and apply the rules; returns the output when it was a pass or translation. */
  run(prog: ProgramName, input: Uint8Array, iteration: number, what: string): Uint8Array | undefined {
    const ip = ip4(input);
    if (ip) {
      this.sent.add(ip.src).add(ip.dst);
      const q = innerOf(input, ip);
      if (q) this.sent.add(q.src).add(q.dst);
    }
    if (!prog.startsWith('xdp') && tcRefuses(input)) {
      this.refused++;
      return undefined;
    }
    this.runs++;
    let verdict = -1;
    let output = new Uint8Array();
    let problems: Problem[];
    let delta: DropDelta = {};
    try {
      const res = this.h.run(prog, input);
      verdict = res.retval;
      output = res.dataOut;
      const after = this.h.drops();
      delta = dropDelta(this.drops, after);
      this.drops = after;
      problems = checkRun(prog, input, verdict, output, delta, this.sent);
    } catch (e) {
      this.drops = this.h.drops();
      problems = [{ rule: 'run-error', message: `${(e as Error).message}${(e as { code?: string }).code ? ` (${(e as { code?: string }).code})` : ''}` }];
    }
    const outcome = verdict < 0 ? 'error'
      : Object.keys(delta).length ? `${verdict === (prog.startsWith('xdp') ? XDP_DROP : TC_ACT_SHOT) ? 'dropped' : 'answered'} ${Object.keys(delta).join('+')}`
        : output.length === input.length && output.every((v, i) => v === input[i]) ? 'passed' : `translated ${kindOf(input)}`;
    const per = this.outcomes.get(prog) ?? new Map<string, number>();
    per.set(outcome, (per.get(outcome) ?? 0) + 1);
    this.outcomes.set(prog, per);
    for (const pr of problems) {
      const key = `${prog}/${pr.rule}`;
      const f = this.failures.get(key);
      if (f) f.count++;
      else this.failures.set(key, { ...pr, prog, iteration, what, verdict, delta, input, output: output.slice(), count: 1 });
    }
    const xdp = prog.startsWith('xdp');
    const dropped = verdict === (xdp ? XDP_DROP : TC_ACT_SHOT);
    return problems.length === 0 && !dropped && Object.keys(delta).length === 0 ? output : undefined;
  }

  coverage(): string {
    return [...this.outcomes].map(([prog, per]) => `${prog}: ${[...per].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`).join('\n');
  }

  report(seedNote: (iteration: number) => string): string {
    const lines: string[] = [];
    for (const f of [...this.failures.values()].sort((a, b) => a.iteration - b.iteration)) {
      lines.push(
        `${f.prog}: ${f.rule} (${f.count}x), first at ${seedNote(f.iteration)}`,
        `  frame:   ${f.what}`,
        `  problem: ${f.message}`,
        `  verdict ${f.verdict}, drops counted: ${fmtDelta(f.delta)}`,
        `  in  (${f.input.length} B, ${summary(f.input)}): ${hex(f.input)}`,
        `  out (${f.output.length} B, ${f.output.length ? summary(f.output) : '-'}): ${hex(f.output)}`,
      );
    }
    return lines.join('\n');
  }
}

// ---------------------------------------------------------------- tests

/** The frame with some fields rewritten and every checksum it had made right again. */
function rewrite(frame: Uint8Array, to: { src?: string; dst?: string; sport?: number; dport?: number }, fixL4 = true): Uint8Array {
  const f = frame.slice();
  const ip = ip4(f)!;
  if (to.src) f.set(Uint8Array.from(to.src.split('.').map(Number)), ip.l3 + 12);
  if (to.dst) f.set(Uint8Array.from(to.dst.split('.').map(Number)), ip.l3 + 16);
  if (to.sport !== undefined) put16(f, ip.l4, to.sport);
  if (to.dport !== undefined) put16(f, ip.l4 + 2, to.dport);
  fixIpCsum(f, ip.l3);
  if (fixL4) fixL4Csum(f);
  return f;
}

describe('packet fuzz: the rules themselves (no BPF)', () => {
  const syn = buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40001, dport: 80, payload: 'hi' });
  const udp0 = buildPacket({ src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 40001, dport: 53, payload: 'q', noUdpChecksum: true });
  const sent = new Set<string>();
  const rules = (prog: ProgramName, input: Uint8Array, verdict: number, out: Uint8Array, delta: DropDelta = {}): string[] =>
    [...new Set(checkRun(prog, input, verdict, out, delta, sent).map((x) => x.rule))];
  const answer = (input: Uint8Array, quoteLen = 28): Uint8Array => {
    const a = buildPacket({ src: ip4(input)!.dst, dst: ip4(input)!.src, proto: 'icmp', icmpType: 3, icmpId: 0, payload: input.slice(14, 14 + quoteLen), srcMac: '02:00:00:00:00:02', dstMac: '02:00:00:00:00:01' });
    a[15] = 0xc0;
    put16(a, 14 + 20 + 6, 0);
    fixIpCsum(a);
    fixL4Csum(a);
    return a;
  };

  test('a correct translation, the input itself, a counted drop and a well-formed answer pass', () => {
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, rewrite(syn, { dst: WEB[1]!, dport: 8080 })), []);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, syn.slice()), []);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_SHOT, syn.slice(), { NO_BACKEND: 1 }), []);
    assert.deepEqual(rules('fromPod', udp0, TC_ACT_OK, rewrite(udp0, { dst: DNS, dport: 5353 })), []);
    const empty = buildPacket({ src: CLIENT, dst: '10.96.0.20', proto: 'tcp', sport: 40001, dport: 80 });
    assert.deepEqual(rules('fromPod', empty, TC_ACT_REDIRECT, answer(empty), { NO_BACKEND: 1 }), []);
    assert.deepEqual(rules('xdpNodeport', empty, XDP_TX, answer(empty), { NO_BACKEND: 1 }), []);
    // a reply: backend source back to the frontend; masquerade: node address and a port from the SNAT range
    const reply = buildPacket({ src: WEB[0]!, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 40001, flags: ['SYN', 'ACK'] });
    assert.deepEqual(rules('toPod', reply, TC_ACT_OK, rewrite(reply, { src: '10.96.0.10', sport: 80 })), []);
    const out = buildPacket({ src: CLIENT, dst: OUTSIDE[1]!, proto: 'tcp', sport: 40001, dport: 443 });
    assert.deepEqual(rules('toNetdev', out, TC_ACT_OK, rewrite(out, { src: NODE_IP, sport: 61234 })), []);
    // forwarded by the program: TTL down by one, MACs rewritten
    const fwd = rewrite(syn, { dst: WEB[1]!, dport: 8080 });
    fwd[22] = fwd[22]! - 1;
    fwd.set([2, 0, 0, 0, 0, 9], 0);
    fixIpCsum(fwd);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_REDIRECT, fwd), []);
  });

  test('each rule catches what it is about', () => {
    assert.deepEqual(rules('fromPod', syn, 1, syn.slice()), ['verdict']);
    assert.deepEqual(rules('xdpNodeport', syn, 0, syn.slice()), ['verdict']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_SHOT, syn.slice()), ['drop-count']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_SHOT, syn.slice(), { NO_BACKEND: 1, REJECT_FAILED: 1 }), ['drop-count']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, syn.slice(), { NO_BACKEND: 1 }), ['answer']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, rewrite(syn, { dst: '10.244.1.7', dport: 8080 })), ['translation']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, rewrite(syn, { dst: '10.9.9.9', dport: 8080 })), ['address', 'translation']);
    const payload = rewrite(syn, { dst: WEB[1]!, dport: 8080 });
    payload[payload.length - 1] = 0x21;
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, payload), ['bytes', 'l4-csum']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, rewrite(syn, { dst: WEB[1]!, dport: 8080 }, false)), ['l4-csum']);
    const noIpCsum = rewrite(syn, { dst: WEB[1]!, dport: 8080 });
    noIpCsum[24] = noIpCsum[24]! ^ 1;
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, noIpCsum), ['ip-csum']);
    const filled = rewrite(udp0, { dst: DNS, dport: 5353 });
    put16(filled, 14 + 20 + 6, 1);
    fixL4Csum(filled);
    assert.deepEqual(rules('fromPod', udp0, TC_ACT_OK, filled), ['udp-zero']);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, Uint8Array.from([...rewrite(syn, { dst: WEB[1]!, dport: 8080 }), 0])), ['length']);
    const ttl = syn.slice();
    ttl[22] = ttl[22]! - 1;
    fixIpCsum(ttl);
    assert.deepEqual(rules('fromPod', syn, TC_ACT_OK, ttl), ['ttl']);
    const out = buildPacket({ src: CLIENT, dst: OUTSIDE[1]!, proto: 'tcp', sport: 40001, dport: 443 });
    assert.deepEqual(rules('toNetdev', out, TC_ACT_OK, rewrite(out, { src: NODE_IP, sport: 31000 })), ['snat-port']);
    assert.deepEqual(rules('toNetdev', out, TC_ACT_OK, rewrite(out, { src: NODE_IP })), ['snat-port']);
    const reply = buildPacket({ src: '10.244.1.7', dst: CLIENT, proto: 'tcp', sport: 8080, dport: 40001, flags: ['SYN', 'ACK'] });
    assert.deepEqual(rules('toPod', reply, TC_ACT_OK, rewrite(reply, { src: '10.96.0.10', sport: 80 })), ['translation']);
    const empty = buildPacket({ src: CLIENT, dst: '10.96.0.20', proto: 'tcp', sport: 40001, dport: 80 });
    const badQuote = answer(empty);
    badQuote[badQuote.length - 1] = badQuote[badQuote.length - 1]! ^ 1;
    fixL4Csum(badQuote);
    assert.deepEqual(rules('fromPod', empty, TC_ACT_REDIRECT, badQuote, { NO_BACKEND: 1 }), ['answer']);
    assert.deepEqual(rules('fromPod', empty, TC_ACT_OK, answer(empty), { NO_BACKEND: 1 }), ['answer']);
    const broadcast = rewrite(empty, { src: '255.255.255.255' });
    assert.deepEqual(rules('fromPod', broadcast, TC_ACT_REDIRECT, answer(broadcast), { NO_BACKEND: 1 }), ['answer-forbidden']);
    // An ICMP error translated outside but not inside.
    const masq = rewrite(out, { src: NODE_IP, sport: 61234 });
    const err = buildPacket({ src: OUTSIDE[3]!, dst: NODE_IP, proto: 'icmp', icmpType: 11, icmpId: 0, payload: masq.slice(14, 14 + 28) });
    assert.deepEqual(rules('fromNetdev', err, TC_ACT_OK, rewrite(err, { dst: CLIENT })), ['inner-consistency']);
  });
});

describe('packet fuzz (BPF_PROG_TEST_RUN)', () => {
  let h: BpfHarness;
  before(async () => {
    h = await BpfHarness.create();
    await setUp(h);
  });
  after(() => h?.close());

  test('every truncation of each kind of frame, through every program', (t) => {
    h.clearMap('hypha_ct4_v1');
    h.clearMap('hypha_lb4_affinity_v1');
    const run = new Runner(h);
    const udpNp = world.frontends.find((f) => f.proto === 17 && f.addr === NODE_IP)!;
    const frames: [string, Uint8Array][] = [
      ['TCP SYN to a ClusterIP', buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40001, dport: 80, payload: 'hello' })],
      ['TCP SYN with IP options to a Service without backends', buildPacket({ src: CLIENT, dst: '10.96.0.20', proto: 'tcp', sport: 40002, dport: 80, ipOptions: new Uint8Array([1, 1, 1, 0]) })],
      ['UDP to a ClusterIP, no checksum', buildPacket({ src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 40003, dport: 53, noUdpChecksum: true, payload: 'q' })],
      ['UDP to a Service without backends', buildPacket({ src: CLIENT, dst: '10.96.0.21', proto: 'udp', sport: 40004, dport: 53, payload: 'q' })],
      ['TCP SYN from outside to a NodePort', buildPacket({ src: OUTSIDE[0]!, dst: NODE_IP, proto: 'tcp', sport: 50000, dport: 30080 })],
      ['TCP SYN from outside to a Local NodePort without local backends', buildPacket({ src: OUTSIDE[0]!, dst: NODE_IP, proto: 'tcp', sport: 50001, dport: 30081 })],
      ['UDP from outside to a NodePort', buildPacket({ src: OUTSIDE[1]!, dst: NODE_IP, proto: 'udp', sport: 50002, dport: udpNp.port, payload: 'q' })],
      ['TCP SYN from a pod to the outside', buildPacket({ src: CLIENT, dst: OUTSIDE[1]!, proto: 'tcp', sport: 40005, dport: 443 })],
      ['TCP SYN from the broadcast address to a NodePort without backends', buildPacket({ src: '255.255.255.255', dst: NODE_IP, proto: 'tcp', sport: 50003, dport: 30090 })],
      ['ICMP echo from a pod to the outside', buildPacket({ src: CLIENT, dst: OUTSIDE[1]!, proto: 'icmp', icmpId: 777, payload: 'ping' })],
      ['first fragment to a ClusterIP', buildPacket({ src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 40006, dport: 53, moreFragments: true, payload: 'x'.repeat(40) })],
      ['later fragment to a ClusterIP', buildPacket({ src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 40006, dport: 53, fragOffset: 6, payload: 'x'.repeat(40) })],
    ];
    // ICMP errors about a Service flow and a masqueraded one, as their far ends send them.
    const syn = frames[0]![1];
    const translated = run.run('fromPod', syn, 0, 'TCP SYN to a ClusterIP');
    const masq = run.run('toNetdev', frames[7]![1], 0, 'TCP SYN from a pod to the outside');
    const quoteOf = (f: Uint8Array): Uint8Array => f.slice(14, 14 + 20 + 20);
    if (translated) {
      const ip = ip4(translated)!;
      frames.push(['ICMP port unreachable from a backend', buildPacket({ src: ip.dst, dst: ip.src, proto: 'icmp', icmpType: 3, icmpId: 0, payload: quoteOf(translated) })]);
    }
    if (masq) {
      const ip = ip4(masq)!;
      frames.push(['ICMP time exceeded about a masqueraded flow', buildPacket({ src: OUTSIDE[3]!, dst: ip.src, proto: 'icmp', icmpType: 11, icmpId: 0, payload: quoteOf(masq) })]);
    }
    frames.push(['TCP SYN to a ClusterIP in a VLAN tag', vlanTag(syn, [[0x8100, 100]])]);
    let n = 0;
    for (const [name, frame] of frames) {
      for (let len = 14; len <= frame.length; len++) {
        for (const prog of PROGRAMS) run.run(prog, frame.slice(0, len), n, `${name}, cut to ${len} bytes`);
        n++;
      }
    }
    t.diagnostic(`${frames.length} frames, ${run.runs} runs (${run.refused} too short for a tc test run)`);
    assert.equal(run.failures.size, 0, `\n${run.report(() => 'the truncation sweep (deterministic, no seed)')}`);
  });

  test(`${ITERATIONS} random and mutated frames through every program (seed ${SEED})`, (t) => {
    t.diagnostic(`seed ${SEED}: replay with HYPHA_FUZZ_SEED=${SEED} HYPHA_FUZZ_N=${ITERATIONS}`);
    h.clearMap('hypha_ct4_v1');
    h.clearMap('hypha_lb4_affinity_v1');
    h.config(CONFIG);
    const r = new Rng(SEED);
    const g = new Generator(r);
    const run = new Runner(h);
    const started = Date.now();
    for (let i = 0; i < ITERATIONS; i++) {
      // Now and then forget every flow, so new flows and established ones both come up.
      if (r.chance(1 / 64)) {
        h.clearMap('hypha_ct4_v1');
        h.clearMap('hypha_lb4_affinity_v1');
      }
      if (r.chance(1 / 256)) h.config({ ...CONFIG, flags: (CONFIG.flags & ~(r.chance(0.25) ? ConfigFlags.POLICY : 0)) | (r.chance(0.5) ? ConfigFlags.HOST_ROUTING : 0) });
      if (r.chance(1 / 128)) h.dp.bumpPolicyGeneration();
      const { frame, what } = g.next();
      const order = [...PROGRAMS];
      for (let k = order.length - 1; k > 0; k--) {
        const j = r.int(k + 1);
        [order[k], order[j]] = [order[j]!, order[k]!];
      }
      for (const prog of order) {
        const out = run.run(prog, frame, i, what);
        const keep = r.chance(0.5);
        if (out && keep) g.remember(frame, out);
      }
    }
    h.config(CONFIG);
    t.diagnostic(`${run.runs} runs in ${Date.now() - started} ms (${run.refused} too short for a tc test run)`);
    for (const line of run.coverage().split('\n')) t.diagnostic(line);
    assert.equal(run.failures.size, 0, `\n${run.report((i) => `iteration ${i} of seed ${SEED} (HYPHA_FUZZ_SEED=${SEED} HYPHA_FUZZ_N=${i + 1})`)}`);
  });
});
