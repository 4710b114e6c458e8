// Packet tests of the Service translation programs through BPF_PROG_TEST_RUN.
// Each case: maps set up (through the real compiler, table and reconciler),
// a packet in, and the verdict, drop reason and rewritten packet out.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as native from '../../native/index.ts';
import { slice, svc } from '../../src/services/fixtures.ts';
import type { ProgramName } from '../../src/datapath/loader.ts';
import { CtDir, CtFlags } from '../../src/abi/abi.gen.ts';
import { type PacketSpec, type ParsedPacket, buildPacket, parsePacket } from '../lib/packet.ts';
import { BpfHarness, ctEntry, ctKey, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX } from './harness.ts';

const CLIENT = '10.244.0.5';
const WEB = ['10.244.0.11', '10.244.0.12', '10.244.0.13'];
const np = (nodePort: number) => [{ name: 'http', protocol: 'TCP' as const, port: 80, targetPort: 8080, nodePort }];

function programAll(h: BpfHarness): void {
  h.service(svc('web'), [slice('web', WEB)]);
  h.service(
    svc('dns', { clusterIPs: ['10.96.0.53'], ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 0 }] }),
    [slice('dns', ['10.244.0.21'], { ports: [{ name: 'dns', protocol: 'UDP', port: 5353 }] })],
  );
  h.service(svc('empty', { clusterIPs: ['10.96.0.20'] }), []);
  h.service(svc('emptyudp', { clusterIPs: ['10.96.0.21'], ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 }] }), []);
  h.service(svc('np', { type: 'NodePort', clusterIPs: ['10.96.0.31'], ports: np(30080) }), [slice('np', ['10.244.0.31'])]);
  h.service(
    svc('nplocal', { type: 'NodePort', clusterIPs: ['10.96.0.32'], externalTrafficPolicy: 'Local', ports: np(30081) }),
    [slice('nplocal', [{ ip: '10.244.1.32', node: 'node-b' }])],
  );
  h.service(svc('ext', { clusterIPs: ['10.96.0.33'], externalIPs: ['198.51.100.7'] }), [slice('ext', ['10.244.0.33'])]);
  h.service(svc('self', { clusterIPs: ['10.96.0.40'] }), [slice('self', [CLIENT])]);
  h.service(svc('remote', { type: 'NodePort', clusterIPs: ['10.96.0.34'], ports: np(30084) }), [slice('remote', [{ ip: '10.244.1.34', node: 'node-b' }])]);
}

interface Case {
  name: string;
  prog: ProgramName;
  packet: PacketSpec;
  verdict: number;
  drop?: string;
  out?: Partial<ParsedPacket> | ((p: ParsedPacket) => void);
  /** CT entries created (SERVICE + REPLY = 2 per translated new flow). */
  ctAdded?: number;
}

const tcp = (over: Partial<PacketSpec>): PacketSpec => ({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40001, dport: 80, ...over });

const cases: Case[] = [
  {
    name: 'ClusterIP TCP SYN is translated to a backend, checksums fixed, flow recorded both ways',
    prog: 'fromPod', packet: tcp({}), verdict: TC_ACT_OK, ctAdded: 2,
    out: (p) => {
      assert.ok(WEB.includes(p.dst), `dst ${p.dst} is a web backend`);
      assert.deepEqual([p.src, p.sport, p.dport, p.ipChecksumOk, p.l4ChecksumOk], [CLIENT, 40001, 8080, true, true]);
    },
  },
  {
    name: 'ClusterIP with IP options: L4 found past the options and translated',
    prog: 'fromPod', packet: tcp({ ipOptions: new Uint8Array([1, 1, 1, 0]), sport: 40002 }), verdict: TC_ACT_OK, ctAdded: 2,
    out: (p) => assert.deepEqual([WEB.includes(p.dst), p.dport, p.ipChecksumOk, p.l4ChecksumOk], [true, 8080, true, true]),
  },
  {
    name: 'UDP ClusterIP is translated; a zero UDP checksum stays zero',
    prog: 'fromPod', packet: { src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 5000, dport: 53, noUdpChecksum: true, payload: 'q' },
    verdict: TC_ACT_OK, ctAdded: 2,
    out: { dst: '10.244.0.21', dport: 5353, udpChecksum: 0, ipChecksumOk: true },
  },
  {
    name: 'UDP with a checksum gets it fixed',
    prog: 'fromPod', packet: { src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 5001, dport: 53, payload: 'query' },
    verdict: TC_ACT_OK, out: { dst: '10.244.0.21', dport: 5353, l4ChecksumOk: true },
  },
  {
    name: 'no ready backend: rejected with ICMP port unreachable from the ClusterIP, quoting the SYN',
    prog: 'fromPod', packet: tcp({ dst: '10.96.0.20' }), verdict: TC_ACT_REDIRECT, drop: 'NO_BACKEND', ctAdded: 0,
    out: (p) => {
      assert.deepEqual([p.src, p.dst, p.proto, p.ipChecksumOk, p.length], ['10.96.0.20', CLIENT, 1, true, 70]);
      assert.deepEqual(p.icmp, { type: 3, code: 3, checksumOk: true, quoted: { src: CLIENT, dst: '10.96.0.20', proto: 6, sport: 40001, dport: 80 } });
      assert.deepEqual([p.srcMac, p.dstMac], ['02:00:00:00:00:02', '02:00:00:00:00:01']);
    },
  },
  {
    name: 'UDP to a Service without backends is rejected too',
    prog: 'fromPod', packet: { src: CLIENT, dst: '10.96.0.21', proto: 'udp', sport: 5002, dport: 53, payload: 'x' },
    verdict: TC_ACT_REDIRECT, drop: 'NO_BACKEND', out: (p) => assert.equal(p.icmp?.quoted?.proto, 17),
  },
  {
    name: 'a Service address on a port it does not serve is rejected',
    prog: 'fromPod', packet: tcp({ dport: 81 }), verdict: TC_ACT_REDIRECT, drop: 'UNKNOWN_SERVICE_PORT',
    out: (p) => assert.deepEqual([p.icmp?.type, p.icmp?.code], [3, 3]),
  },
  {
    name: 'ICMP echo to a Service address is dropped with its own reason',
    prog: 'fromPod', packet: { src: CLIENT, dst: '10.96.0.10', proto: 'icmp' }, verdict: TC_ACT_SHOT, drop: 'UNSUPPORTED_L4',
  },
  {
    name: 'a later fragment to a Service address whose first fragment was not seen cannot be translated: dropped',
    prog: 'fromPod', packet: tcp({ fragOffset: 185 }), verdict: TC_ACT_SHOT, drop: 'FRAG_NOT_FOUND',
  },
  {
    name: 'a fragment to anything else is not ours: passed untouched',
    prog: 'fromPod', packet: tcp({ dst: '10.244.0.99', fragOffset: 185 }), verdict: TC_ACT_OK, out: { dst: '10.244.0.99', dport: 80 },
  },
  {
    name: 'a truncated TCP header is dropped as invalid',
    prog: 'fromPod', packet: tcp({ truncate: 14 + 20 + 10 }), verdict: TC_ACT_SHOT, drop: 'INVALID_PACKET',
  },
  {
    name: 'pod-to-pod traffic passes untouched',
    prog: 'fromPod', packet: tcp({ dst: '10.244.0.11', dport: 8080 }), verdict: TC_ACT_OK, ctAdded: 0,
    out: { dst: '10.244.0.11', dport: 8080, l4ChecksumOk: true },
  },
  {
    name: 'ARP (not IPv4) passes untouched',
    prog: 'fromPod', packet: tcp({ ethType: 0x0806 }), verdict: TC_ACT_OK, out: { ethType: 0x0806 },
  },
  {
    name: 'a pod reaching itself through a Service: source becomes the loopback address',
    prog: 'fromPod', packet: tcp({ dst: '10.96.0.40', sport: 40003 }), verdict: TC_ACT_OK, ctAdded: 2,
    out: { src: '169.254.42.1', dst: CLIENT, dport: 8080, l4ChecksumOk: true, ipChecksumOk: true },
  },
  {
    name: 'XDP: NodePort from outside is translated and passed to the stack',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50000, dport: 30080 },
    verdict: XDP_PASS, ctAdded: 2, out: { src: '192.168.77.200', dst: '10.244.0.31', dport: 8080, ipChecksumOk: true, l4ChecksumOk: true },
  },
  {
    name: 'XDP: ExternalIP from outside is translated',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '198.51.100.7', proto: 'tcp', sport: 50001, dport: 80 },
    verdict: XDP_PASS, out: { dst: '10.244.0.33', dport: 8080, l4ChecksumOk: true },
  },
  {
    name: 'XDP: externalTrafficPolicy Local with no local backend answers ICMP straight back (XDP_TX)',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50002, dport: 30081 },
    verdict: XDP_TX, drop: 'NO_LOCAL_BACKEND',
    out: (p) => {
      assert.deepEqual([p.src, p.dst, p.length, p.ipChecksumOk], ['192.168.77.10', '192.168.77.200', 70, true]);
      assert.deepEqual(p.icmp?.quoted, { src: '192.168.77.200', dst: '192.168.77.10', proto: 6, sport: 50002, dport: 30081 });
      assert.equal(p.icmp?.checksumOk, true);
    },
  },
  {
    name: 'XDP: a large frame is shrunk to the ICMP answer',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50003, dport: 30081, payload: 'x'.repeat(1200) },
    verdict: XDP_TX, drop: 'NO_LOCAL_BACKEND', out: (p) => assert.deepEqual([p.length, p.icmp?.checksumOk], [70, true]),
  },
  {
    name: 'a pod reaching a NodePort on the node address uses every backend (internal scope)',
    prog: 'fromPod', packet: tcp({ dst: '192.168.77.10', dport: 30081, sport: 40004 }), verdict: TC_ACT_OK,
    out: { dst: '10.244.1.32', dport: 8080 },
  },
  {
    name: 'XDP: traffic to the node itself (not a NodePort) passes untouched',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50004, dport: 22 },
    verdict: XDP_PASS, ctAdded: 0, out: { dst: '192.168.77.10', dport: 22 },
  },
  {
    name: 'XDP: a truncated frame is dropped as invalid',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', truncate: 30 }, verdict: XDP_DROP, drop: 'INVALID_PACKET',
  },
  {
    name: 'XDP: a NodePort flow to a backend on another node is left to tc, untouched',
    prog: 'xdpNodeport', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50007, dport: 30084 },
    verdict: XDP_PASS, ctAdded: 0, out: { src: '192.168.77.200', dst: '192.168.77.10', dport: 30084 },
  },
  {
    name: 'tc fallback on the external device: NodePort translated like XDP does',
    prog: 'fromNetdev', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50005, dport: 30080 },
    verdict: TC_ACT_OK, out: { dst: '10.244.0.31', dport: 8080, l4ChecksumOk: true },
  },
  {
    name: 'tc fallback: no local backend is rejected back out of the device',
    prog: 'fromNetdev', packet: { src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 50006, dport: 30081 },
    verdict: TC_ACT_REDIRECT, drop: 'NO_LOCAL_BACKEND', out: (p) => assert.equal(p.icmp?.checksumOk, true),
  },
];

describe('Service translation (BPF_PROG_TEST_RUN)', () => {
  let h: BpfHarness;
  before(async () => {
    h = await BpfHarness.create();
    programAll(h);
  });
  after(() => h?.close());
  beforeEach(() => h.clearMap('hypha_ct4_v1'));

  for (const c of cases) {
    test(c.name, () => {
      const dropsBefore = h.drops();
      const ctBefore = h.ct().length;
      const res = h.run(c.prog, buildPacket(c.packet));
      assert.equal(res.retval, c.verdict, 'verdict');
      const dropsAfter = h.drops();
      const counted = Object.keys(dropsAfter).filter((r) => (dropsAfter[r] ?? 0) > (dropsBefore[r] ?? 0));
      assert.deepEqual(counted, c.drop ? [c.drop] : [], 'drop reasons counted');
      if (c.ctAdded !== undefined) assert.equal(h.ct().length - ctBefore, c.ctAdded, 'conntrack entries added');
      if (c.out) {
        const p = parsePacket(res.dataOut);
        if (typeof c.out === 'function') c.out(p);
        else for (const [k, v] of Object.entries(c.out)) assert.deepEqual(p[k as keyof ParsedPacket], v, `packet out: ${k}`);
      }
    });
  }
});

describe('Service translation: flows over time', () => {
  let h: BpfHarness;
  before(async () => {
    h = await BpfHarness.create();
    programAll(h);
  });
  after(() => h?.close());
  beforeEach(() => {
    h.clearMap('hypha_ct4_v1');
    h.clearMap('hypha_lb4_affinity_v1');
    h.service(svc('web'), [slice('web', WEB)]);
  });

  const send = (prog: ProgramName, spec: PacketSpec): ParsedPacket => parsePacket(h.run(prog, buildPacket(spec)).dataOut);

  test('every packet of a flow goes to the same backend; flows spread over all backends', () => {
    const seen = new Set<string>();
    for (let port = 41000; port < 41060; port++) {
      const first = send('fromPod', tcp({ sport: port })).dst;
      for (const flags of [['ACK'], ['PSH', 'ACK'], ['ACK']] as const) {
        assert.equal(send('fromPod', tcp({ sport: port, flags: [...flags] })).dst, first);
      }
      seen.add(first);
    }
    assert.deepEqual([...seen].sort(), WEB);
  });

  test('a reply gets the Service address back as its source, on the way to the pod and out of a backend', () => {
    const backend = send('fromPod', tcp({ sport: 42000 })).dst;
    const reply: PacketSpec = { src: backend, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 42000, flags: ['SYN', 'ACK'] };
    for (const prog of ['toPod', 'fromPod'] as const) {
      const p = send(prog, reply);
      assert.deepEqual([p.src, p.sport, p.dst, p.dport, p.ipChecksumOk, p.l4ChecksumOk], ['10.96.0.10', 80, CLIENT, 42000, true, true], prog);
    }
  });

  test('hairpin reply: source back to the Service, destination back to the pod', () => {
    send('fromPod', tcp({ dst: '10.96.0.40', sport: 42100 }));
    const p = send('fromPod', { src: CLIENT, dst: '169.254.42.1', proto: 'tcp', sport: 8080, dport: 42100, flags: ['SYN', 'ACK'] });
    assert.deepEqual([p.src, p.sport, p.dst, p.dport, p.l4ChecksumOk], ['10.96.0.40', 80, CLIENT, 42100, true]);
  });

  test('a removed backend takes no new flows, and its open flows move to the backends left', () => {
    const flows = new Map<number, string>();
    for (let port = 43000; port < 43030; port++) flows.set(port, send('fromPod', tcp({ sport: port })).dst);
    const [gone, kept1, kept2] = WEB as [string, string, string];
    h.service(svc('web'), [slice('web', [kept1, kept2])]);
    assert.ok([...flows.values()].includes(gone), 'some flow was on the removed backend');
    for (const [port, dst] of flows) {
      const now = send('fromPod', tcp({ sport: port, flags: ['ACK'] })).dst;
      if (dst === gone) assert.ok(now === kept1 || now === kept2, `flow ${port} moved off ${gone} to ${now}`);
      else assert.equal(now, dst, `flow ${port} stays on ${dst}`);
    }
    // The moved flows' old reply entries are gone: a reply from the removed pod is not restored.
    assert.equal(h.ct().filter((c) => c.key.dir === CtDir.REPLY && c.key.saddr === gone).length, 0);
    for (let port = 44000; port < 44100; port++) assert.notEqual(send('fromPod', tcp({ sport: port })).dst, gone);
  });

  test('a terminating backend takes no new flows but keeps its open ones', () => {
    const port = [...Array(50).keys()].map((i) => 45000 + i).find((p) => send('fromPod', tcp({ sport: p })).dst === WEB[0]);
    assert.ok(port, 'some flow landed on the first backend');
    h.service(svc('web'), [slice('web', [{ ip: WEB[0]!, ready: false, serving: true, terminating: true }, WEB[1]!, WEB[2]!])]);
    assert.equal(send('fromPod', tcp({ sport: port, flags: ['ACK'] })).dst, WEB[0]);
    for (let p = 46000; p < 46100; p++) assert.notEqual(send('fromPod', tcp({ sport: p })).dst, WEB[0]);
  });

  test('after FIN or RST the tuple may open a new connection, which is balanced afresh', () => {
    send('fromPod', tcp({ sport: 47000 }));
    send('fromPod', tcp({ sport: 47000, flags: ['RST'] }));
    const e = h.ctService(CLIENT, 47000, '10.96.0.10', 80);
    assert.ok(e && e.flags & CtFlags.CLOSING, 'RST marks the flow closing');
    h.service(svc('web'), [slice('web', ['10.244.0.99'])]);
    assert.equal(send('fromPod', tcp({ sport: 47000 })).dst, '10.244.0.99');
  });

  test('a closed Service flow\'s port reused to dial the backend directly: the new connection\'s replies are left alone', () => {
    const backend = send('fromPod', tcp({ sport: 47100 })).dst;
    const reply: PacketSpec = { src: backend, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 47100, flags: ['FIN', 'ACK'] };
    send('fromPod', tcp({ sport: 47100, flags: ['FIN', 'ACK'] }));
    assert.equal(send('fromPod', reply).src, '10.96.0.10', 'the Service flow closes normally');
    // Same client port, now straight to the backend: its SYN-ACK keeps the backend as source.
    for (const prog of ['fromPod', 'toPod'] as const) {
      const p = send(prog, { ...reply, flags: ['SYN', 'ACK'] });
      assert.deepEqual([p.src, p.sport, p.dst, p.dport], [backend, 8080, CLIENT, 47100], prog);
    }
    assert.equal(h.ct().some((c) => c.key.dir === CtDir.REPLY && c.key.saddr === backend && c.key.dport === 47100), false, 'stale reply entry removed');
  });

  test('conntrack GC: one pass deletes every timed-out entry and keeps the live and closing ones', async () => {
    const flows = new Map<number, string>();
    for (let port = 47200; port < 47210; port++) flows.set(port, send('fromPod', tcp({ sport: port })).dst);
    send('fromPod', tcp({ sport: 47200, flags: ['FIN', 'ACK'] }));
    // Timed-out entries, as dead flows leave them (CLOCK_MONOTONIC seconds, like the programs).
    const now = Number(process.hrtime.bigint() / 1_000_000_000n);
    const ct = h.dp.map('hypha_ct4_v1');
    const live = h.ct()[0]!.entry;
    for (let i = 0; i < 300; i++) {
      const key = ctKey.encode({ saddr: `10.244.9.${i % 250}`, daddr: '10.96.0.10', sport: 30000 + i, dport: 80, proto: 6, dir: CtDir.SERVICE });
      native.mapUpdate(ct, key, ctEntry.encode({ ...live, expires: now - 5 - (i % 3) }));
    }
    assert.equal(h.ct().length, 320);
    const r = await h.dp.collectConntrack();
    assert.deepEqual([r.deleted, r.entries], [300, 20]);
    assert.equal(h.ct().length, 20);
    for (const [port, dst] of flows) assert.equal(send('fromPod', tcp({ sport: port, flags: ['ACK'] })).dst, dst, `flow ${port} kept its backend`);
    const again = await h.dp.collectConntrack();
    assert.deepEqual([again.deleted, again.entries], [0, 20], 'a second pass finds nothing');
  });

  test('one client port to two Services that pick the same backend: the second flow gets another source port', () => {
    // Linux lets a client use one port towards two destinations at once; after
    // translation both would be the same tuple at the backend.
    h.service(svc('one', { clusterIPs: ['10.96.0.61'] }), [slice('one', ['10.244.0.11'])]);
    h.service(svc('two', { clusterIPs: ['10.96.0.62'] }), [slice('two', ['10.244.0.11'])]);
    const a = send('fromPod', tcp({ dst: '10.96.0.61', sport: 48500 }));
    const b = send('fromPod', tcp({ dst: '10.96.0.62', sport: 48500 }));
    assert.deepEqual([a.dst, a.sport], ['10.244.0.11', 48500]);
    assert.equal(b.dst, '10.244.0.11');
    assert.ok(b.sport !== 48500 && (b.sport ?? 0) >= 61000, `remapped source port ${b.sport} is in the SNAT range, above the NodePort and ephemeral ranges`);
    assert.equal(b.l4ChecksumOk, true);
    // Each reply goes back to its own Service and the client's own port.
    const replyA = send('toPod', { src: '10.244.0.11', dst: CLIENT, proto: 'tcp', sport: 8080, dport: 48500, flags: ['SYN', 'ACK'] });
    const replyB = send('toPod', { src: '10.244.0.11', dst: CLIENT, proto: 'tcp', sport: 8080, dport: b.sport, flags: ['SYN', 'ACK'] });
    assert.deepEqual([replyA.src, replyA.dport], ['10.96.0.61', 48500]);
    assert.deepEqual([replyB.src, replyB.sport, replyB.dport, replyB.l4ChecksumOk], ['10.96.0.62', 80, 48500, true]);
    // Later packets of the second flow keep the remapped port.
    assert.equal(send('fromPod', tcp({ dst: '10.96.0.62', sport: 48500, flags: ['ACK'] })).sport, b.sport);
    h.service(svc('one', { clusterIPs: ['10.96.0.61'] }), undefined);
    h.service(svc('two', { clusterIPs: ['10.96.0.62'] }), undefined);
  });

  test('tc on the external device: a flow to a backend on another node is source-NATed to the node and forwarded', () => {
    const res = h.run('fromNetdev', buildPacket({ src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 51000, dport: 30084 }));
    const p = parsePacket(res.dataOut);
    // The verdict is the FIB's, looked up before the rewrite: a redirect of the rewritten packet where this
    // test's namespace forwards to 10.244.1.34, a counted drop of the packet as it came where it does not.
    if (res.retval === TC_ACT_REDIRECT) {
      assert.deepEqual([p.src, p.dst, p.dport, p.ipChecksumOk, p.l4ChecksumOk], ['192.168.77.10', '10.244.1.34', 8080, true, true]);
    } else {
      assert.ok(res.retval === TC_ACT_SHOT && (h.drops().FIB_FAILED ?? 0) > 0, `verdict ${res.retval}`);
    }
    const entries = h.ct().filter((c) => c.entry.flags & CtFlags.REMOTE);
    assert.equal(entries.length, 2, 'both conntrack entries are marked remote');
    // The source port comes from the SNAT range (default 61000-65535), never the client's own.
    const replyKey = entries.find((c) => c.key.dir === CtDir.REPLY)!.key;
    assert.deepEqual([replyKey.saddr, replyKey.daddr, replyKey.sport], ['10.244.1.34', '192.168.77.10', 8080]);
    assert.ok(replyKey.dport >= 61000, `port ${replyKey.dport}`);
    // The reply from the other node comes back to the node address and is restored (then forwarded) to the client.
    const rr = h.run('fromNetdev', buildPacket({ src: '10.244.1.34', dst: '192.168.77.10', proto: 'tcp', sport: 8080, dport: replyKey.dport, flags: ['SYN', 'ACK'] }));
    if (rr.retval === TC_ACT_REDIRECT) {
      const reply = parsePacket(rr.dataOut);
      assert.deepEqual([reply.src, reply.sport, reply.dst, reply.dport, reply.l4ChecksumOk], ['192.168.77.10', 30084, '192.168.77.200', 51000, true]);
    }
    // XDP leaves the rest of the flow to tc as well.
    const later = h.run('xdpNodeport', buildPacket({ src: '192.168.77.200', dst: '192.168.77.10', proto: 'tcp', sport: 51000, dport: 30084, flags: ['ACK'] }));
    assert.deepEqual([later.retval, parsePacket(later.dataOut).dst], [XDP_PASS, '192.168.77.10']);
  });

  test('session affinity: every new connection from a client goes to the same backend', () => {
    h.service(svc('aff', { clusterIPs: ['10.96.0.50'], sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 60 }), [slice('aff', WEB)]);
    const first = send('fromPod', tcp({ dst: '10.96.0.50', sport: 48000 })).dst;
    for (let port = 48001; port < 48040; port++) assert.equal(send('fromPod', tcp({ dst: '10.96.0.50', sport: port })).dst, first);
    // another client may land elsewhere: affinity is per client
    const others = new Set<string>();
    for (let i = 1; i < 40; i++) others.add(send('fromPod', tcp({ src: `10.244.3.${i}`, dst: '10.96.0.50', sport: 48000 })).dst);
    assert.ok(others.size > 1);
  });

  test('session affinity ends when the backend leaves the Service', () => {
    h.service(svc('aff', { clusterIPs: ['10.96.0.50'], sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 60 }), [slice('aff', WEB)]);
    const first = send('fromPod', tcp({ dst: '10.96.0.50', sport: 48100 })).dst;
    h.service(svc('aff', { clusterIPs: ['10.96.0.50'], sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 60 }), [slice('aff', WEB.filter((w) => w !== first))]);
    assert.notEqual(send('fromPod', tcp({ dst: '10.96.0.50', sport: 48101 })).dst, first);
  });

  test('a Service removed entirely: its address is no longer translated, and its open flows end (rejected, entries gone)', () => {
    send('fromPod', tcp({ sport: 49000 }));
    h.service(svc('web'), undefined);
    const open = h.run('fromPod', buildPacket(tcp({ sport: 49000, flags: ['ACK'] })));
    assert.equal(parsePacket(open.dataOut).dst, '10.96.0.10', 'not sent to the old backend');
    assert.equal(send('fromPod', tcp({ sport: 49001 })).dst, '10.96.0.10');
    assert.equal(h.ct().filter((x) => x.key.sport === 49000 || x.key.dport === 49000).length, 0, 'the flow\'s entries went with it');
  });

  test('a ClusterIP given to another Service: open flows of the old one are balanced over the new one\'s backends', () => {
    const dst = send('fromPod', { src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 49100, dport: 53 }).dst;
    assert.equal(dst, '10.244.0.21');
    h.service(svc('dns', { clusterIPs: ['10.96.0.53'], ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 0 }] }), undefined);
    h.service(
      svc('dns2', { clusterIPs: ['10.96.0.53'], ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 0 }] }),
      [slice('dns2', ['10.244.0.22'], { ports: [{ name: 'dns', protocol: 'UDP', port: 5353 }] })],
    );
    assert.equal(send('fromPod', { src: CLIENT, dst: '10.96.0.53', proto: 'udp', sport: 49100, dport: 53 }).dst, '10.244.0.22');
  });

  test('host routing: a packet for a pod on this node goes straight to its veth peer, TTL decremented', async () => {
    const { mapUpdate, mapDelete } = await import('../../native/index.ts');
    const { codec, scalarLayouts } = await import('../../src/abi/codec.ts');
    const { layouts, ConfigFlags } = await import('../../src/abi/abi.gen.ts');
    const key = codec<{ value: string }>(scalarLayouts.ip4);
    const value = codec<{ ifindex: number; flags: number }>(layouts.hypha_endpoint);
    const endpoints = h.dp.map('hypha_endpoints_v1');
    const cfg = { loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10', snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 };
    h.service(svc('web'), [slice('web', [WEB[0]!])]);
    for (const ip of [WEB[0]!, CLIENT]) mapUpdate(endpoints, key.encode({ value: ip }), value.encode({ ifindex: 4242, flags: 0 }));
    try {
      h.config({ flags: ConfigFlags.HOST_ROUTING, ...cfg });
      // To a Service: translated first, then delivered to the backend's device.
      const viaService = h.run('fromPod', buildPacket(tcp({ sport: 49600, ttl: 64 })));
      const p = parsePacket(viaService.dataOut);
      assert.deepEqual([viaService.retval, p.dst, p.ttl, p.ipChecksumOk, p.l4ChecksumOk], [TC_ACT_REDIRECT, WEB[0], 63, true, true]);
      // The reply from the backend goes straight back to the client pod, with the Service as source.
      const reply = h.run('fromPod', buildPacket({ src: WEB[0]!, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 49600, flags: ['SYN', 'ACK'], ttl: 64 }));
      const r = parsePacket(reply.dataOut);
      assert.deepEqual([reply.retval, r.src, r.sport, r.ttl, r.ipChecksumOk], [TC_ACT_REDIRECT, '10.96.0.10', 80, 63, true]);
      // A pod address that is not local, and a TTL that would expire, go to the stack.
      assert.equal(h.run('fromPod', buildPacket({ src: CLIENT, dst: '10.244.9.9', proto: 'udp', sport: 1, dport: 2, ttl: 64 })).retval, TC_ACT_OK);
      assert.equal(h.run('fromPod', buildPacket({ src: CLIENT, dst: WEB[0]!, proto: 'udp', sport: 1, dport: 2, ttl: 1 })).retval, TC_ACT_OK);
      // Disabled: the stack routes every packet.
      h.config({ flags: 0, ...cfg });
      assert.equal(h.run('fromPod', buildPacket({ src: CLIENT, dst: WEB[0]!, proto: 'udp', sport: 1, dport: 2, ttl: 64 })).retval, TC_ACT_OK);
    } finally {
      h.config({ flags: 0, ...cfg });
      for (const ip of [WEB[0]!, CLIENT]) mapDelete(endpoints, key.encode({ value: ip }));
    }
  });

  test('drop events reach the ring buffer when enabled', async () => {
    const { ringbufOpen, close } = await import('../../native/index.ts');
    const { codec } = await import('../../src/abi/codec.ts');
    const { layouts, DropReason, Hook } = await import('../../src/abi/abi.gen.ts');
    const ev = codec<import('../../src/abi/abi.gen.ts').DropEvent>(layouts.hypha_drop_event);
    const got: ReturnType<typeof ev.decode>[] = [];
    const rb = ringbufOpen(h.dp.map('hypha_events_v1'), (d) => got.push(ev.decode(d)));
    try {
      h.config({ flags: 1, loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10', snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 });
      h.run('fromPod', buildPacket(tcp({ dst: '10.96.0.20', sport: 49500 })));
      h.config({ flags: 0, loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10', snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 });
      for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      close(rb);
    }
    assert.equal(got.length, 1);
    assert.deepEqual([got[0]?.reason, got[0]?.hook, got[0]?.saddr, got[0]?.daddr, got[0]?.dport], [DropReason.NO_BACKEND, Hook.FROM_POD, CLIENT, '10.96.0.20', 80]);
  });
});
