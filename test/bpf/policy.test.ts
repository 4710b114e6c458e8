// Packet tests of NetworkPolicy in the datapath (bpf/lib/policy.h): the
// policy maps set up as the agent writes them, packets through from_pod and
// to_pod, verdict, drop reason, conntrack and events checked. The maps'
// contents here are written by hand on purpose: these tests pin down the
// datapath's side of the contract in bpf/include/hypha/policy.h (keys are
// made by the agent's own entryKeys).
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as native from '../../native/index.ts';
import { ConfigFlags, CtDir, DropReason, Hook, type DropEvent, type PolicyKey, layouts, PolicyEpFlags, PolicyFlags } from '../../src/abi/abi.gen.ts';
import { codec, scalarLayouts } from '../../src/abi/codec.ts';
import { ipcacheKeyCodec, ipcacheValCodec } from '../../src/datapath/ipcache-reconciler.ts';
import { entryKeys } from '../../src/datapath/policy-maps.ts';
import { slice, svc } from '../../src/services/fixtures.ts';
import { buildPacket, icmpError, onesSum, type PacketSpec, parsePacket } from '../lib/packet.ts';
import { BpfHarness, ctEntry, ctKey, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT } from './harness.ts';

const keyCodec = codec<PolicyKey>(layouts.hypha_policy_key);
const valCodec = codec<{ flags: number; proxy_port: number }>(layouts.hypha_policy_val);
const epCodec = codec<{ identity: number; flags: number }>(layouts.hypha_policy_ep);
const cidrValCodec = codec<{ identity: number }>(layouts.hypha_policy_cidr_val);
const addrCodec = codec<{ value: string }>(scalarLayouts.ip4);
const eventCodec = codec<DropEvent>(layouts.hypha_drop_event);

// This node's pods A (client) and B (server), a pod C on node-b, a backend
// of a ClusterIP on this node, and their identities.
const A = '10.244.0.5';
const B = '10.244.0.11';
const C = '10.244.1.7';
const ID_A = 1000;
const ID_B = 1001;
const ID_C = 1002;
const CIDR_ID = 1 << 24;
const baseConfig = {
  flags: ConfigFlags.POLICY, loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10',
  snat_port_min: 61000, snat_port_max: 65535, nodeport_min: 30000, nodeport_max: 32767, seen_mark: 0,
};

type Proto = 'TCP' | 'UDP' | 'SCTP' | 'any';

describe('NetworkPolicy in the datapath (BPF_PROG_TEST_RUN)', () => {
  let h: BpfHarness;

  const mapOf = (name: 'hypha_policy_v1' | 'hypha_policy_eps_v1' | 'hypha_policy_cidr_v1' | 'hypha_ipcache_v1') => h.dp.map(name);
  const clear = (name: 'hypha_policy_v1' | 'hypha_policy_eps_v1' | 'hypha_policy_cidr_v1' | 'hypha_ipcache_v1' | 'hypha_ct4_v1'): void => {
    const m = h.dp.map(name);
    // An LPM trie has no batch delete: one key at a time.
    const { keys, count, keySize } = { ...native.mapDump(m), keySize: native.mapInfo(m).keySize };
    for (let i = 0; i < count; i++) native.mapDelete(m, keys.subarray(i * keySize, (i + 1) * keySize));
  };
  /** A pod of this node: its identity and which directions are enforced. */
  const endpoint = (ip: string, identity: number, dirs: { ingress?: boolean; egress?: boolean } = {}): void => {
    const flags = (dirs.ingress ? PolicyEpFlags.INGRESS : 0) | (dirs.egress ? PolicyEpFlags.EGRESS : 0);
    native.mapUpdate(mapOf('hypha_policy_eps_v1'), addrCodec.encode({ value: ip }), epCodec.encode({ identity, flags }));
  };
  /** Allow entries of ep's direction: a peer identity ('any': 0), protocol and port range, keyed as the agent keys them. */
  const allow = (ep: string, dir: 'ingress' | 'egress', peer: number | 'any', proto: Proto, ports: { from: number; to: number } | 'any' = 'any'): PolicyKey[] => {
    const keys = entryKeys(ep, dir, { identity: peer, proto, ports: proto === 'any' ? 'any' : ports });
    for (const k of keys) native.mapUpdate(mapOf('hypha_policy_v1'), keyCodec.encode(k), valCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: 0 }));
    return keys;
  };
  const revoke = (keys: PolicyKey[]): void => {
    for (const k of keys) native.mapDelete(mapOf('hypha_policy_v1'), keyCodec.encode(k));
  };
  const ipcache = (cidr: string, identity: number): void => {
    const [addr, len] = cidr.split('/');
    native.mapUpdate(mapOf('hypha_ipcache_v1'), ipcacheKeyCodec.encode({ prefixlen: Number(len), addr: addr! }), ipcacheValCodec.encode({ identity, node_addr: '0.0.0.0', flags: 1 }));
  };
  const cidrIdentity = (cidr: string, identity: number): void => {
    const [addr, len] = cidr.split('/');
    native.mapUpdate(mapOf('hypha_policy_cidr_v1'), ipcacheKeyCodec.encode({ prefixlen: Number(len), addr: addr! }), cidrValCodec.encode({ identity }));
  };
  const policyCt = () => h.ct().filter((e) => e.key.dir === CtDir.POLICY);
  const verdict = (prog: 'fromPod' | 'toPod' | 'fromNetdev', spec: PacketSpec): number => h.run(prog, buildPacket(spec)).retval;
  const syn = (src: string, dst: string, dport: number, sport = 40000): PacketSpec => ({ src, dst, proto: 'tcp', sport, dport, flags: ['SYN'] });
  const ack = (src: string, dst: string, dport: number, sport = 40000): PacketSpec => ({ src, dst, proto: 'tcp', sport, dport, flags: ['ACK'] });
  const bumpGeneration = (): void => h.dp.bumpPolicyGeneration();

  before(async () => {
    h = await BpfHarness.create();
    h.config(baseConfig);
    h.service(svc('web', { clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }] }), [slice('web', [B], { ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] })]);
  });
  after(() => h?.close());
  beforeEach(() => {
    for (const m of ['hypha_policy_v1', 'hypha_policy_eps_v1', 'hypha_policy_cidr_v1', 'hypha_ipcache_v1', 'hypha_ct4_v1'] as const) clear(m);
    h.config(baseConfig);
    ipcache(`${A}/32`, ID_A);
    ipcache(`${B}/32`, ID_B);
    ipcache(`${C}/32`, ID_C);
    endpoint(A, ID_A);
    endpoint(B, ID_B);
  });

  test('a pod selected by no policy is open both ways; with the POLICY flag off nothing is tracked', () => {
    assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_OK);
    assert.equal(verdict('toPod', syn(C, A, 80)), TC_ACT_OK);
    assert.equal(policyCt().length, 2, 'open flows are tracked too (their replies pass once a policy selects the pod)');
    clear('hypha_ct4_v1');
    h.config({ ...baseConfig, flags: 0 });
    endpoint(B, ID_B, { ingress: true });
    assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_OK, 'enforcement off: passes');
    assert.equal(policyCt().length, 0);
  });

  test('ingress on this node: default deny, an entry for the peer identity, protocol and port allows, replies pass both ways', () => {
    endpoint(B, ID_B, { ingress: true, egress: true });
    const before = h.drops().POLICY_INGRESS ?? 0;
    assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_SHOT, 'default deny');
    assert.equal((h.drops().POLICY_INGRESS ?? 0) - before, 1, 'counted as POLICY_INGRESS');
    allow(B, 'ingress', ID_A, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('fromPod', syn(A, B, 81)), TC_ACT_SHOT, 'another port');
    assert.equal(verdict('fromPod', { src: A, dst: B, proto: 'udp', sport: 40000, dport: 80 }), TC_ACT_SHOT, 'another protocol');
    assert.equal(verdict('fromPod', syn(C, B, 80)), TC_ACT_SHOT, 'another peer (an address of node-b) at from_pod');
    assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_OK, 'the allowed flow');
    const e = policyCt().find((x) => x.key.saddr === A && x.key.daddr === B && x.key.dport === 80);
    assert.ok(e, 'the allowed flow is remembered, keyed as judged');
    // B's egress is enforced and allows nothing: its answer is a reply, not a new flow.
    assert.equal(verdict('fromPod', { src: B, dst: A, proto: 'tcp', sport: 80, dport: 40000, flags: ['SYN', 'ACK'] }), TC_ACT_OK, 'reply from the server');
    assert.equal(verdict('fromPod', ack(A, B, 80)), TC_ACT_OK, 'the client goes on');
    // But B opening a flow to A is judged by B's egress.
    assert.equal(verdict('fromPod', syn(B, A, 5000, 80)), TC_ACT_SHOT, 'B opening a flow of its own');
    assert.ok((h.drops().POLICY_EGRESS ?? 0) >= 1);
  });

  test('ingress from another node at to_pod: the source identity comes from the ipcache; unknown addresses are world', () => {
    endpoint(A, ID_A, { ingress: true });
    assert.equal(verdict('toPod', syn(C, A, 80)), TC_ACT_SHOT);
    allow(A, 'ingress', ID_C, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('toPod', syn(C, A, 80)), TC_ACT_OK);
    assert.equal(verdict('toPod', syn('203.0.113.9', A, 80)), TC_ACT_SHOT, 'world is not ID_C');
    allow(A, 'ingress', 2, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('toPod', syn('203.0.113.9', A, 80)), TC_ACT_OK, 'an entry for world allows the outside');
    // A's answer leaves through from_pod: a reply.
    assert.equal(verdict('fromPod', { src: A, dst: C, proto: 'tcp', sport: 80, dport: 40000, flags: ['SYN', 'ACK'] }), TC_ACT_OK);
  });

  test('egress: port ranges as prefixes, any peer, any protocol', () => {
    endpoint(A, ID_A, { egress: true });
    allow(A, 'egress', ID_C, 'TCP', { from: 80, to: 83 });
    for (const [port, want] of [[79, TC_ACT_SHOT], [80, TC_ACT_OK], [83, TC_ACT_OK], [84, TC_ACT_SHOT]] as const) {
      assert.equal(verdict('fromPod', syn(A, C, port, 41000 + port)), want, `port ${port}`);
    }
    assert.equal(verdict('fromPod', { src: A, dst: C, proto: 'icmp', icmpId: 7 }), TC_ACT_SHOT, 'ICMP needs an entry for every protocol');
    allow(A, 'egress', 'any', 'UDP', { from: 53, to: 53 });
    assert.equal(verdict('fromPod', { src: A, dst: '203.0.113.9', proto: 'udp', sport: 5000, dport: 53 }), TC_ACT_OK, 'any peer, UDP 53');
    assert.equal(verdict('fromPod', { src: A, dst: '203.0.113.9', proto: 'udp', sport: 5000, dport: 54 }), TC_ACT_SHOT);
    allow(A, 'egress', ID_C, 'any');
    assert.equal(verdict('fromPod', { src: A, dst: C, proto: 'icmp', icmpId: 7 }), TC_ACT_OK, 'every protocol: an echo');
    assert.equal(verdict('fromPod', syn(A, C, 9999)), TC_ACT_OK, 'every protocol: any port');
    // The echo reply passes at A's to_pod even with ingress denying all.
    endpoint(A, ID_A, { egress: true, ingress: true });
    assert.equal(verdict('toPod', { src: C, dst: A, proto: 'icmp', icmpType: 0, icmpId: 7 }), TC_ACT_OK, 'echo reply');
    assert.equal(verdict('toPod', { src: C, dst: A, proto: 'icmp', icmpType: 8, icmpId: 8 }), TC_ACT_SHOT, 'an echo request of its own');
  });

  test('a flow to a ClusterIP is judged as the flow to its backend (after translation)', () => {
    endpoint(B, ID_B, { ingress: true });
    allow(B, 'ingress', ID_A, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('fromPod', syn(A, '10.96.0.10', 80)), TC_ACT_SHOT, 'port 80 is the Service port, not the backend port 8080');
    allow(B, 'ingress', ID_A, 'TCP', { from: 8080, to: 8080 });
    const out = h.run('fromPod', buildPacket(syn(A, '10.96.0.10', 80, 40001)));
    assert.ok(out.retval === TC_ACT_OK || out.retval === TC_ACT_REDIRECT, `allowed (${out.retval})`);
    const p = parsePacket(out.dataOut);
    assert.deepEqual([p.dst, p.dport], [B, 8080], 'translated to the backend');
    assert.ok(policyCt().some((e) => e.key.saddr === A && e.key.daddr === B && e.key.dport === 8080), 'remembered as the flow to the backend');
    // The backend's answer is translated back at its from_pod and passes as a reply.
    const reply = h.run('fromPod', buildPacket({ src: B, dst: A, proto: 'tcp', sport: 8080, dport: 40001, flags: ['SYN', 'ACK'] }));
    assert.ok(reply.retval === TC_ACT_OK || reply.retval === TC_ACT_REDIRECT);
    assert.deepEqual([parsePacket(reply.dataOut).src, parsePacket(reply.dataOut).sport], ['10.96.0.10', 80]);
    // Egress to a Service: an egress entry for the backend's identity and port.
    endpoint(A, ID_A, { egress: true });
    assert.equal(verdict('fromPod', syn(A, '10.96.0.10', 80, 40002)), TC_ACT_SHOT, 'egress judged against the backend');
    allow(A, 'egress', ID_B, 'TCP', { from: 8080, to: 8080 });
    assert.notEqual(verdict('fromPod', syn(A, '10.96.0.10', 80, 40003)), TC_ACT_SHOT);
  });

  test('ipBlocks: the CIDR identity of the peer address allows, an except prefix has its own identity', () => {
    endpoint(A, ID_A, { egress: true });
    // 10.244.1.0/24 except 10.244.1.7/32, as the compiler gives them.
    cidrIdentity('10.244.1.0/24', CIDR_ID);
    cidrIdentity('10.244.1.7/32', CIDR_ID + 1);
    allow(A, 'egress', CIDR_ID, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('fromPod', syn(A, '10.244.1.8', 80)), TC_ACT_OK, 'inside the block');
    assert.equal(verdict('fromPod', syn(A, C, 80)), TC_ACT_SHOT, 'the except: a pod address, judged by its CIDR identity too');
    assert.equal(verdict('fromPod', syn(A, '10.244.2.1', 80)), TC_ACT_SHOT, 'outside the block');
    // Ingress: the source's CIDR identity.
    endpoint(B, ID_B, { ingress: true });
    allow(B, 'ingress', CIDR_ID, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('toPod', syn('10.244.1.9', B, 80)), TC_ACT_OK);
    assert.equal(verdict('toPod', syn(C, B, 80)), TC_ACT_SHOT);
  });

  test('a verdict carries the policy generation: a policy change re-judges open flows at their next packet', () => {
    endpoint(B, ID_B, { ingress: true });
    const keys = allow(B, 'ingress', ID_A, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_OK);
    assert.equal(verdict('fromPod', ack(A, B, 80)), TC_ACT_OK);
    revoke(keys);
    assert.equal(verdict('fromPod', ack(A, B, 80)), TC_ACT_OK, 'same generation: the stored verdict holds');
    bumpGeneration();
    assert.equal(verdict('fromPod', ack(A, B, 80)), TC_ACT_SHOT, 'the next packet after the change is judged again: denied');
    assert.equal(policyCt().filter((e) => e.key.saddr === A && e.key.daddr === B).length, 0, 'its entry is gone');
    assert.equal(verdict('fromPod', { src: B, dst: A, proto: 'tcp', sport: 80, dport: 40000, flags: ['ACK'] }), TC_ACT_OK,
      'B has no policy of its own: its packets pass');
    // Still allowed after a change: the entry takes the new generation.
    allow(B, 'ingress', ID_A, 'TCP', { from: 80, to: 80 });
    assert.equal(verdict('fromPod', syn(A, B, 80, 40100)), TC_ACT_OK);
    bumpGeneration();
    assert.equal(verdict('fromPod', ack(A, B, 80, 40100)), TC_ACT_OK);
    const e = policyCt().find((x) => x.key.sport === 40100);
    assert.equal(e?.entry.pol_gen, h.configValue().policy_generation & 255);
  });

  test('SCTP is its own protocol: an SCTP entry does not open TCP, nor a TCP entry SCTP', () => {
    endpoint(B, ID_B, { ingress: true });
    allow(B, 'ingress', ID_A, 'SCTP', { from: 80, to: 80 });
    assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_SHOT, 'TCP 80');
    assert.equal(h.run('fromPod', sctp(A, B, 40000, 80)).retval, TC_ACT_OK, 'SCTP 80');
    assert.equal(h.run('fromPod', sctp(A, B, 40000, 81)).retval, TC_ACT_SHOT, 'SCTP 81');
    clear('hypha_policy_v1');
    allow(B, 'ingress', ID_A, 'TCP', { from: 80, to: 80 });
    assert.equal(h.run('fromPod', sctp(A, B, 40001, 80)).retval, TC_ACT_SHOT, 'SCTP 80 with only TCP 80 allowed');
  });

  test('policy is enforced before any redirect that skips the stack (host routing, masquerade replies)', () => {
    h.localPods([A, B]);
    try {
      h.config({ ...baseConfig, flags: ConfigFlags.POLICY | ConfigFlags.HOST_ROUTING | ConfigFlags.MASQUERADE });
      endpoint(B, ID_B, { ingress: true });
      assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_SHOT, 'denied: dropped, not handed to B past its to_pod');
      allow(B, 'ingress', ID_A, 'TCP', { from: 80, to: 80 });
      assert.equal(verdict('fromPod', syn(A, B, 80)), TC_ACT_REDIRECT, 'allowed: straight into B');
      // A reaches the outside (masqueraded at to_netdev); the reply comes back
      // on the external device and is redirected into A.
      endpoint(A, ID_A, { ingress: true });
      const out = syn(A, '203.0.113.9', 443, 42000);
      assert.equal(verdict('fromPod', out), TC_ACT_OK);
      const masq = h.run('toNetdev', buildPacket(out));
      const m = parsePacket(masq.dataOut);
      assert.equal(m.src, '192.168.77.10', 'masqueraded');
      const back = { src: '203.0.113.9', dst: m.src, proto: 'tcp' as const, sport: 443, dport: m.sport!, flags: ['SYN', 'ACK'] as const };
      assert.equal(verdict('fromNetdev', { ...back, flags: [...back.flags] }), TC_ACT_REDIRECT, 'the reply of an allowed flow');
      // The same reply without the policy's record of the flow (as if A had
      // never been allowed out) is judged by A's ingress before the redirect.
      for (const e of policyCt()) native.mapDelete(h.dp.map('hypha_ct4_v1'), ctKey.encode(e.key));
      const before = h.drops().POLICY_INGRESS ?? 0;
      assert.equal(verdict('fromNetdev', { ...back, flags: ['ACK'] }), TC_ACT_SHOT);
      assert.equal((h.drops().POLICY_INGRESS ?? 0) - before, 1);
    } finally {
      for (const ip of [A, B]) native.mapDelete(h.dp.map('hypha_endpoints_v1'), addrCodec.encode({ value: ip }));
    }
  });

  test('ICMP errors about a flow policy let through pass as related traffic; others are judged as ICMP', () => {
    endpoint(A, ID_A, { ingress: true, egress: true });
    allow(A, 'egress', ID_C, 'TCP', { from: 80, to: 80 });
    const out = buildPacket(syn(A, C, 80, 43000));
    assert.equal(h.run('fromPod', out).retval, TC_ACT_OK);
    // A router on the way says the packet is too big: into A, whose ingress allows nothing.
    assert.equal(h.run('toPod', icmpError('10.244.1.1', A, 3, 4, out, { mtu: 1400 })).retval, TC_ACT_OK, 'about the allowed flow');
    const other = buildPacket(syn(A, C, 81, 43001));
    assert.equal(h.run('toPod', icmpError('10.244.1.1', A, 3, 4, other, { mtu: 1400 })).retval, TC_ACT_SHOT, 'about a flow policy never let through');
    // A answers an unsolicited packet with port unreachable: judged by A's egress as ICMP (denied), unless every protocol is allowed.
    const unsolicited = buildPacket({ src: C, dst: A, proto: 'udp', sport: 5000, dport: 9 });
    assert.equal(h.run('fromPod', icmpError(A, C, 3, 3, unsolicited)).retval, TC_ACT_SHOT);
    allow(A, 'egress', ID_C, 'any');
    assert.equal(h.run('fromPod', icmpError(A, C, 3, 3, unsolicited)).retval, TC_ACT_OK);
  });

  test('a drop event names both identities and the tuple judged (the backend, after translation)', async () => {
    endpoint(B, ID_B, { ingress: true });
    const got: DropEvent[] = [];
    const rb = native.ringbufOpen(h.dp.map('hypha_events_v1'), (d) => got.push(eventCodec.decode(d)));
    try {
      h.config({ ...baseConfig, flags: ConfigFlags.POLICY | ConfigFlags.DROP_EVENTS });
      h.run('fromPod', buildPacket(syn(A, '10.96.0.10', 80, 40200)));
      h.config(baseConfig);
      for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      native.close(rb);
    }
    assert.equal(got.length, 1);
    const e = got[0]!;
    assert.deepEqual(
      [e.reason, e.hook, e.saddr, e.daddr, e.sport, e.dport, e.proto, e.src_identity, e.dst_identity],
      [DropReason.POLICY_INGRESS, Hook.FROM_POD, A, B, 40200, 8080, 6, ID_A, ID_B],
    );
  });
  describe('L7: flows an HTTP rule covers go to the node\'s proxy', () => {
    const PROXY_PORT = 15001;
    const TO_PROXY = 0x00200000;
    const FROM_PROXY = 0x00100000;
    const SKB_SIZE = 192; // struct __sk_buff
    /** A run with skb->mark set going in; the verdict and the mark coming out. */
    const runMarked = (prog: 'fromPod' | 'toPod' | 'fromNetdev' | 'toNetdev', spec: PacketSpec, mark = 0): { retval: number; mark: number } => {
      const ctx = new Uint8Array(SKB_SIZE);
      new DataView(ctx.buffer).setUint32(8, mark, true);
      const r = native.progTestRun(h.dp.programs[prog], { data: buildPacket(spec), ctxIn: ctx, ctxOutSize: SKB_SIZE });
      return { retval: r.retval, mark: new DataView(r.ctxOut!.buffer).getUint32(8, true) };
    };
    const allowL7 = (ep: string, dir: 'ingress' | 'egress', peer: number, port: number): void => {
      for (const k of entryKeys(ep, dir, { identity: peer, proto: 'TCP', ports: { from: port, to: port } })) {
        native.mapUpdate(mapOf('hypha_policy_v1'), keyCodec.encode(k), valCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: PROXY_PORT }));
      }
    };
    const CT_F_PROXY = 1 << 6;
    const CT_F_PROXY_UPSTREAM = 1 << 7;
    /** A and B local pods with host routing, B's ingress allowing A on 80 through the proxy; run, then forgotten. */
    const withProxiedB = (run: () => void): void => {
      h.localPods([A, B]);
      try {
        h.config({ ...baseConfig, flags: ConfigFlags.POLICY | ConfigFlags.HOST_ROUTING });
        endpoint(B, ID_B, { ingress: true });
        allowL7(B, 'ingress', ID_A, 80);
        run();
      } finally {
        for (const ip of [A, B]) native.mapDelete(h.dp.map('hypha_endpoints_v1'), addrCodec.encode({ value: ip }));
      }
    };
    /** A -> B:80 from 40000 remembered at the proxy, as a SYN the listener took leaves it. */
    const flowAtProxy = (): void => {
      const key = ctKey.encode({ saddr: A, daddr: B, sport: 40000, dport: 80, proto: 6, dir: CtDir.POLICY });
      native.mapUpdate(h.dp.map('hypha_ct4_v1'), key, ctEntry.encode({ nat_addr: '0.0.0.0', nat_addr2: '0.0.0.0', nat_port: PROXY_PORT, nat_port2: 0, flags: CT_F_PROXY | (1 << 3), lb_gen: 0, pol_gen: h.configValue().policy_generation & 0xff, svc_id: 0, backend_id: 0, expires: 0x7fffffff }));
    };
    /** B's ingress entry for A on 80 made a plain allow (the http rules gone). */
    const plainAllowA = (): void => {
      for (const k of entryKeys(B, 'ingress', { identity: ID_A, proto: 'TCP', ports: { from: 80, to: 80 } })) {
        native.mapUpdate(mapOf('hypha_policy_v1'), keyCodec.encode(k), valCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: 0 }));
      }
    };

    test('no proxy listening: the SYN is refused and counted (fail closed), never let through', () => {
      endpoint(B, ID_B, { ingress: true });
      allowL7(B, 'ingress', ID_A, 80);
      const before = h.drops().PROXY_UNAVAILABLE ?? 0;
      const r = runMarked('fromPod', syn(A, B, 80));
      assert.notEqual(r.retval, TC_ACT_OK, 'not passed on to B');
      assert.equal((h.drops().PROXY_UNAVAILABLE ?? 0) - before, 1);
    });

    test('a packet of a flow at the proxy is marked for it and handed to the stack, not redirected into the pod', () => {
      withProxiedB(() => {
        runMarked('fromPod', syn(A, B, 80));
        // A SYN refused for want of a proxy leaves the flow's record: its
        // retransmission is steered again, and reaches a proxy that is back.
        const refused = policyCt().find((x) => x.key.saddr === A && x.key.dport === 80);
        assert.ok(refused && (refused.entry.flags & CT_F_PROXY) && refused.entry.nat_port === PROXY_PORT);
        // Entry as a successful SYN leaves it (the SYN itself needs a listener: above, and in e2e):
        flowAtProxy();
        const r = runMarked('fromPod', ack(A, B, 80));
        assert.equal(r.retval, TC_ACT_OK, 'to the stack (host routing would have redirected it into B)');
        assert.equal(r.mark & TO_PROXY, TO_PROXY);
        // The proxy's answer to A (from B's address) is a reply of the flow.
        assert.equal(runMarked('toPod', { src: B, dst: A, proto: 'tcp', sport: 80, dport: 40000, flags: ['SYN', 'ACK'] }).retval, TC_ACT_OK);
      });
    });

    test('a policy change re-judges a flow at the proxy: still allowed (with or without http rules) it stays there; denied, it is dropped', () => {
      withProxiedB(() => {
        flowAtProxy();
        const atProxy = (what: string): void => {
          const r = runMarked('fromPod', ack(A, B, 80));
          assert.equal(r.retval, TC_ACT_OK, what);
          assert.equal(r.mark & TO_PROXY, TO_PROXY, `${what}: still marked for the proxy (its TCP peer), not redirected into B`);
        };
        atProxy('before any change');
        bumpGeneration();
        atProxy('same entry, new generation');
        // The entry becomes a plain allow (the http rules are gone): the
        // connection's other end is the proxy, so it stays there (the proxy
        // now passes every request).
        plainAllowA();
        bumpGeneration();
        atProxy('now a plain allow');
        // Revoked: the next packet is dropped as a policy drop, its entry gone.
        for (const k of entryKeys(B, 'ingress', { identity: ID_A, proto: 'TCP', ports: { from: 80, to: 80 } })) native.mapDelete(mapOf('hypha_policy_v1'), keyCodec.encode(k));
        bumpGeneration();
        assert.equal(runMarked('fromPod', ack(A, B, 80)).retval, TC_ACT_SHOT, 'denied after the change');
        assert.equal(policyCt().filter((e) => e.key.saddr === A && e.key.daddr === B && e.key.sport === 40000).length, 0, 'its entry is gone');
      });
    });

    test('a flow at the proxy that never got past its SYN goes direct once no http rule covers it', () => {
      withProxiedB(() => {
        runMarked('fromPod', syn(A, B, 80, 40200)); // refused (no listener) but remembered for the proxy
        const e = policyCt().find((x) => x.key.sport === 40200);
        assert.ok(e && (e.entry.flags & CT_F_PROXY), 'remembered for the proxy');
        // The http rules go: a plain allow now.
        plainAllowA();
        bumpGeneration();
        const r = runMarked('fromPod', syn(A, B, 80, 40200));
        assert.equal(r.mark & TO_PROXY, 0, 'the retried SYN is not sent to the proxy');
        assert.notEqual(r.retval, TC_ACT_SHOT);
        const after = policyCt().find((x) => x.key.sport === 40200);
        assert.equal((after?.entry.flags ?? 0) & CT_F_PROXY, 0, 'the entry no longer names the proxy');
      });
    });

    test("the proxy's upstream (marked) passes an HTTP entry as a plain allow; its replies go to the stack for the proxy", () => {
      endpoint(B, ID_B, { ingress: true });
      allowL7(B, 'ingress', ID_A, 80);
      const up = runMarked('toPod', syn(A, B, 80, 50000), FROM_PROXY);
      assert.equal(up.retval, TC_ACT_OK, 'judged with the client pod\'s identity, not redirected again');
      const e = policyCt().find((x) => x.key.sport === 50000);
      assert.ok(e && (e.entry.flags & CT_F_PROXY_UPSTREAM), 'remembered as the proxy\'s own');
      assert.equal(e.entry.flags & CT_F_PROXY, 0);
      const reply = runMarked('fromPod', { src: B, dst: A, proto: 'tcp', sport: 80, dport: 50000, flags: ['SYN', 'ACK'] });
      assert.equal(reply.retval, TC_ACT_OK);
      assert.equal(reply.mark & TO_PROXY, TO_PROXY, 'to the upstream socket, not to A');
    });

    test('at to_pod, a covered flow that was not redirected where it entered is dropped with its reason', () => {
      endpoint(B, ID_B, { ingress: true });
      allowL7(B, 'ingress', ID_C, 80);
      const before = h.drops().PROXY_NOT_REDIRECTED ?? 0;
      assert.equal(runMarked('toPod', syn(C, B, 80)).retval, TC_ACT_SHOT);
      assert.equal((h.drops().PROXY_NOT_REDIRECTED ?? 0) - before, 1);
    });

    test('at the external device (L7 flag): a client on another node is steered to the proxy; without the flag, to_pod judges as before', () => {
      endpoint(B, ID_B, { ingress: true });
      allowL7(B, 'ingress', ID_C, 80);
      assert.equal(runMarked('fromNetdev', syn(C, B, 80)).retval, TC_ACT_OK, 'no L7 flag: the usual path');
      assert.equal(policyCt().length, 0);
      h.config({ ...baseConfig, flags: ConfigFlags.POLICY | ConfigFlags.L7 });
      const before = h.drops().PROXY_UNAVAILABLE ?? 0;
      assert.notEqual(runMarked('fromNetdev', syn(C, B, 80)).retval, TC_ACT_OK, 'no proxy listening: refused');
      assert.equal((h.drops().PROXY_UNAVAILABLE ?? 0) - before, 1);
      const e = policyCt().find((x) => x.key.saddr === C && x.key.daddr === B);
      assert.ok(e && (e.entry.flags & CT_F_PROXY), 'the flow is remembered as the proxy\'s');
      const r = runMarked('fromNetdev', ack(C, B, 80));
      assert.equal(r.retval, TC_ACT_OK);
      assert.equal(r.mark & TO_PROXY, TO_PROXY, 'later packets are marked for the proxy');
      // Not covered (another port, a plain allow): no mark, to_pod's business.
      allow(B, 'ingress', ID_C, 'TCP', { from: 81, to: 81 });
      const plain = runMarked('fromNetdev', syn(C, B, 81));
      assert.equal(plain.retval, TC_ACT_OK);
      assert.equal(plain.mark & TO_PROXY, 0);
    });

    test("the proxy's upstream to a server on another node: noted at to_netdev, its replies go to the proxy at from_netdev", () => {
      h.config({ ...baseConfig, flags: ConfigFlags.POLICY | ConfigFlags.L7 });
      assert.equal(runMarked('toNetdev', syn(A, C, 80, 50001), FROM_PROXY).retval, TC_ACT_OK);
      const e = policyCt().find((x) => x.key.sport === 50001);
      assert.ok(e && (e.entry.flags & CT_F_PROXY_UPSTREAM));
      const reply = runMarked('fromNetdev', { src: C, dst: A, proto: 'tcp', sport: 80, dport: 50001, flags: ['SYN', 'ACK'] });
      assert.equal(reply.retval, TC_ACT_OK);
      assert.equal(reply.mark & TO_PROXY, TO_PROXY);
      // An unmarked connection of the node is not noted.
      runMarked('toNetdev', syn(A, C, 80, 50002));
      assert.equal(policyCt().find((x) => x.key.sport === 50002), undefined);
    });

    test('UDP on a port with a proxy entry is not proxied (HTTP is TCP only)', () => {
      endpoint(B, ID_B, { ingress: true });
      for (const k of entryKeys(B, 'ingress', { identity: ID_A, proto: 'UDP', ports: { from: 80, to: 80 } })) {
        native.mapUpdate(mapOf('hypha_policy_v1'), keyCodec.encode(k), valCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: PROXY_PORT }));
      }
      assert.equal(runMarked('fromPod', { src: A, dst: B, proto: 'udp', sport: 40000, dport: 80 }).retval, TC_ACT_OK);
    });
  });
});

/** An SCTP packet (common header + one INIT-sized chunk of zeros): a UDP frame of the same size with the protocol changed. */
function sctp(src: string, dst: string, sport: number, dport: number): Uint8Array {
  const f = buildPacket({ src, dst, proto: 'udp', sport, dport, payload: new Uint8Array(16) });
  f[14 + 9] = 132;
  const dv = new DataView(f.buffer);
  dv.setUint16(24, 0);
  dv.setUint16(24, ~onesSum(f, 14, 34) & 0xffff);
  return f;
}
