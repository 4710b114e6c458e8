// Packet tests of masquerade (pod traffic leaving the cluster) through
// BPF_PROG_TEST_RUN: to_netdev (tc egress of the external device) rewrites the
// source to the node, from_netdev restores replies to the pod.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as native from '../../native/index.ts';
import { ConfigFlags, CtDir, CtFlags, DropReason } from '../../src/abi/abi.gen.ts';
import { endpointKeyCodec, endpointValueCodec } from '../../src/datapath/endpoints-reconciler.ts';
import type { ProgramName } from '../../src/datapath/loader.ts';
import { type PacketSpec, type ParsedPacket, buildPacket, parsePacket } from '../lib/packet.ts';
import { BpfHarness, TC_ACT_OK, TC_ACT_SHOT, ctKey } from './harness.ts';

const NODE_IP = '192.168.77.10';
const POD = '10.244.0.5';
const OUTSIDE = '203.0.113.9';
const cfg = (over: { flags?: number; snat_addr?: string; snat_port_min?: number; snat_port_max?: number } = {}) => ({
  flags: ConfigFlags.MASQUERADE, loopback_addr: '169.254.42.1', snat_addr: NODE_IP, snat_port_min: 61000, snat_port_max: 65535, nodeport_min: 0, nodeport_max: 0, seen_mark: 0, ...over,
});

describe('masquerade (BPF_PROG_TEST_RUN)', () => {
  let h: BpfHarness;
  const send = (prog: ProgramName, spec: PacketSpec): { verdict: number; p: ParsedPacket } => {
    const r = h.run(prog, buildPacket(spec));
    return { verdict: r.retval, p: parsePacket(r.dataOut) };
  };
  const out = (over: Partial<PacketSpec> = {}): PacketSpec => ({ src: POD, dst: OUTSIDE, proto: 'tcp', sport: 40000, dport: 443, ...over });

  before(async () => {
    h = await BpfHarness.create();
    h.localPods([POD]);
    await h.twoNodeIpcache();
  });
  after(() => h?.close());
  beforeEach(() => {
    h.clearMap('hypha_ct4_v1');
    h.config(cfg());
  });

  test('a pod\'s TCP flow to the outside leaves with the node\'s address and a port from the SNAT range; the reply comes back to the pod', () => {
    const syn = send('toNetdev', out());
    assert.equal(syn.verdict, TC_ACT_OK);
    assert.equal(syn.p.src, NODE_IP);
    assert.ok((syn.p.sport ?? 0) >= 61000 && (syn.p.sport ?? 0) <= 65535, `source port ${syn.p.sport} in 61000-65535`);
    assert.deepEqual([syn.p.dst, syn.p.dport, syn.p.ipChecksumOk, syn.p.l4ChecksumOk], [OUTSIDE, 443, true, true]);
    // Every later packet of the flow keeps the same port.
    assert.equal(send('toNetdev', out({ flags: ['ACK'] })).p.sport, syn.p.sport);
    const reply = send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'tcp', sport: 443, dport: syn.p.sport!, flags: ['SYN', 'ACK'] });
    assert.equal(reply.verdict, TC_ACT_OK);
    assert.deepEqual([reply.p.src, reply.p.sport, reply.p.dst, reply.p.dport, reply.p.ipChecksumOk, reply.p.l4ChecksumOk], [OUTSIDE, 443, POD, 40000, true, true]);
    const dirs = h.ct().map((e) => e.key.dir).sort();
    assert.deepEqual(dirs, [CtDir.MASQ_OUT, CtDir.MASQ_IN]);
  });

  test('a FIN from outside closes both of the flow\'s entries; a lost port claim is taken again', () => {
    const syn = send('toNetdev', out({ sport: 40100 }));
    const port = syn.p.sport!;
    send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'tcp', sport: 443, dport: port, flags: ['FIN', 'ACK'] });
    const closing = h.ct().filter((e) => (e.key.dir === CtDir.MASQ_OUT || e.key.dir === CtDir.MASQ_IN) && (e.key.sport === 40100 || e.key.dport === port));
    assert.equal(closing.length, 2);
    for (const e of closing) assert.ok(e.entry.flags & CtFlags.CLOSING, `${e.key.dir} entry closing`);
    // The MASQ_IN claim disappears (evicted, say): the next packet claims the same port again.
    const ins = h.ct().filter((e) => e.key.dir === CtDir.MASQ_IN && e.key.dport === port);
    native.mapDelete(h.dp.map('hypha_ct4_v1'), ctKey.encode(ins[0]!.key));
    const again = send('toNetdev', out({ sport: 40100, flags: ['ACK'] }));
    assert.equal(again.p.sport, port);
    assert.equal(send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'tcp', sport: 443, dport: port, flags: ['ACK'] }).p.dst, POD);
  });

  test('the node\'s address changed: a flow\'s stored translation is not reused, the next packet gets the new address', () => {
    const first = send('toNetdev', out({ sport: 40200 }));
    assert.equal(first.p.src, NODE_IP);
    h.config(cfg({ snat_addr: '192.168.77.99' }));
    const next = send('toNetdev', out({ sport: 40200 }));
    assert.equal(next.p.src, '192.168.77.99');
    assert.equal(send('fromNetdev', { src: OUTSIDE, dst: '192.168.77.99', proto: 'tcp', sport: 443, dport: next.p.sport!, flags: ['SYN', 'ACK'] }).p.dst, POD);
  });

  test('UDP is masqueraded too, a zero checksum stays zero', () => {
    const r = send('toNetdev', { src: POD, dst: OUTSIDE, proto: 'udp', sport: 5353, dport: 53, noUdpChecksum: true, payload: 'q' });
    assert.deepEqual([r.p.src, r.p.udpChecksum, r.p.ipChecksumOk], [NODE_IP, 0, true]);
    const back = send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'udp', sport: 53, dport: r.p.sport!, payload: 'a' });
    assert.deepEqual([back.p.dst, back.p.dport, back.p.l4ChecksumOk], [POD, 5353, true]);
  });

  test('inside the cluster nothing is masqueraded: other nodes\' pods, node addresses, cluster CIDRs', () => {
    for (const dst of ['10.244.1.7', '192.168.77.11', NODE_IP, '10.96.0.10']) {
      const r = send('toNetdev', out({ dst }));
      assert.deepEqual([r.verdict, r.p.src, r.p.sport], [TC_ACT_OK, POD, 40000], `to ${dst}`);
    }
    assert.equal(h.ct().length, 0);
  });

  test('only this node\'s pods are masqueraded: the node\'s own traffic and forwarded traffic pass as they are', () => {
    for (const src of [NODE_IP, '10.244.0.99', '10.1.2.3']) {
      const r = send('toNetdev', out({ src }));
      assert.deepEqual([r.verdict, r.p.src], [TC_ACT_OK, src]);
    }
  });

  test('off, nothing is rewritten; without a node address, the packet is dropped with a reason', () => {
    h.config(cfg({ flags: 0 }));
    assert.equal(send('toNetdev', out()).p.src, POD);
    h.config(cfg({ snat_addr: '0.0.0.0' }));
    const before = h.drops().NO_SNAT_ADDR ?? 0;
    assert.equal(send('toNetdev', out()).verdict, TC_ACT_SHOT);
    assert.equal(h.drops().NO_SNAT_ADDR, before + 1);
  });

  test('two pods using one source port to one server get two node ports; each reply reaches its own pod', () => {
    const other = '10.244.0.6';
    native.mapUpdate(h.dp.map('hypha_endpoints_v1'), endpointKeyCodec.encode({ value: other }), endpointValueCodec.encode({ ifindex: 4243, flags: 0 }));
    try {
      const a = send('toNetdev', out());
      const b = send('toNetdev', out({ src: other }));
      assert.notEqual(a.p.sport, b.p.sport);
      assert.equal(send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'tcp', sport: 443, dport: a.p.sport!, flags: ['ACK'] }).p.dst, POD);
      assert.equal(send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'tcp', sport: 443, dport: b.p.sport!, flags: ['ACK'] }).p.dst, other);
    } finally {
      native.mapDelete(h.dp.map('hypha_endpoints_v1'), endpointKeyCodec.encode({ value: other }));
    }
  });

  test('two SNAT runs are one sequence: ports come from both, each claimed once, then NAT_NO_PORT', () => {
    h.config({ ...cfg({ snat_port_min: 62000, snat_port_max: 62001 }), snat_port_min2: 1100, snat_port_max2: 1101 });
    const ports = [2001, 2002, 2003, 2004].map((sport) => send('toNetdev', out({ sport })).p.sport);
    assert.deepEqual(ports.sort(), [1100, 1101, 62000, 62001]);
    const before = h.drops().NAT_NO_PORT ?? 0;
    assert.equal(send('toNetdev', out({ sport: 2005 })).verdict, TC_ACT_SHOT);
    assert.equal(h.drops().NAT_NO_PORT, before + 1);
  });

  test('a narrow SNAT range: ports are claimed once each, and when every try is taken the packet is dropped with NAT_NO_PORT', () => {
    h.config(cfg({ snat_port_min: 62000, snat_port_max: 62001 }));
    const a = send('toNetdev', out({ sport: 1001 }));
    const b = send('toNetdev', out({ sport: 1002 }));
    assert.deepEqual([a.p.sport, b.p.sport].sort(), [62000, 62001]);
    const before = h.drops().NAT_NO_PORT ?? 0;
    assert.equal(send('toNetdev', out({ sport: 1003 })).verdict, TC_ACT_SHOT);
    assert.equal(h.drops().NAT_NO_PORT, before + 1);
    assert.ok(DropReason.NAT_NO_PORT > 0);
  });

  test('ping: an echo request leaves with the node\'s address and another identifier; the reply comes back to the pod with its own', () => {
    const req = send('toNetdev', { src: POD, dst: OUTSIDE, proto: 'icmp', icmpId: 4242, payload: 'ping' });
    assert.equal(req.verdict, TC_ACT_OK);
    assert.deepEqual([req.p.src, req.p.dst, req.p.ipChecksumOk, req.p.icmp?.type, req.p.icmp?.checksumOk], [NODE_IP, OUTSIDE, true, 8, true]);
    const id = req.p.icmp?.id ?? 0;
    assert.ok(id >= 61000 && id <= 65535, `identifier ${id} from the SNAT range`);
    // The next request of the same ping keeps its identifier.
    assert.equal(send('toNetdev', { src: POD, dst: OUTSIDE, proto: 'icmp', icmpId: 4242, payload: 'ping' }).p.icmp?.id, id);
    const reply = send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'icmp', icmpType: 0, icmpId: id, payload: 'ping' });
    assert.deepEqual([reply.verdict, reply.p.dst, reply.p.ipChecksumOk, reply.p.icmp?.id, reply.p.icmp?.checksumOk], [TC_ACT_OK, POD, true, 4242, true]);
    // An echo reply for an identifier nobody holds is the node's own.
    const other = send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'icmp', icmpType: 0, icmpId: 7, payload: 'x' });
    assert.equal(other.p.dst, NODE_IP);
    // Other ICMP (here: a timestamp request) is not masqueraded.
    assert.equal(send('toNetdev', { src: POD, dst: OUTSIDE, proto: 'icmp', icmpType: 13, payload: 'x' }).p.src, POD);
  });

  test('a flow opened from outside straight to the pod: its answers keep the pod\'s address', () => {
    // A UDP query from the world arrives for the pod (its address routed here).
    assert.equal(send('toPod', { src: OUTSIDE, dst: POD, proto: 'udp', sport: 5000, dport: 53, payload: 'q' }).verdict, TC_ACT_OK);
    const answer = send('toNetdev', { src: POD, dst: OUTSIDE, proto: 'udp', sport: 53, dport: 5000, payload: 'a' });
    assert.deepEqual([answer.p.src, answer.p.sport], [POD, 53]);
    // TCP: a segment that is not a SYN and has no translation is part of a
    // connection the pod did not open; it is left alone too.
    const ack = send('toNetdev', out({ sport: 8080, dport: 51000, flags: ['SYN', 'ACK'] }));
    assert.deepEqual([ack.p.src, ack.p.sport], [POD, 8080]);
    // From inside the cluster nothing is noted.
    send('toPod', { src: '10.244.1.7', dst: POD, proto: 'udp', sport: 5001, dport: 53, payload: 'q' });
    assert.equal(h.ct().filter((e) => e.key.dir === CtDir.INBOUND).length, 1);
  });

  test('a later fragment of a pod\'s datagram to the outside whose first was not seen is refused with a reason, not sent with the pod\'s address', () => {
    const before = h.drops().FRAG_NOT_FOUND ?? 0;
    const r = send('toNetdev', { src: POD, dst: OUTSIDE, proto: 'udp', sport: 5400, dport: 53, payload: 'x'.repeat(64), fragOffset: 100 });
    assert.equal(r.verdict, TC_ACT_SHOT);
    assert.equal(h.drops().FRAG_NOT_FOUND, before + 1);
    // Inside the cluster fragments are none of masquerade's business.
    assert.equal(send('toNetdev', { src: POD, dst: '10.244.1.7', proto: 'udp', sport: 5400, dport: 53, payload: 'x', fragOffset: 100 }).verdict, TC_ACT_OK);
  });

  test('a packet to the node that is not a reply of a masqueraded flow is left alone', () => {
    const r = send('fromNetdev', { src: OUTSIDE, dst: NODE_IP, proto: 'tcp', sport: 443, dport: 61234, flags: ['SYN'] });
    assert.deepEqual([r.verdict, r.p.dst, r.p.dport], [TC_ACT_OK, NODE_IP, 61234]);
  });
});
