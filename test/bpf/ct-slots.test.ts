// Conntrack through its slots (hypha_ct4_maps_v1) while the agent grows it:
// with a new, empty map in slot 0 and the old one in slot 1, a flow the old
// map holds keeps its backend, its replies are translated back, a FIN closes
// it, a new flow goes into the new map; once slot 1 is emptied without a
// carry-over the old flow's reply is no longer known (the lookup did come
// from slot 1). Packets through BPF_PROG_TEST_RUN.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as native from '../../native/index.ts';
import { CtDir, CtFlags } from '../../src/abi/abi.gen.ts';
import { slice, svc } from '../../src/services/fixtures.ts';
import { type PacketSpec, buildPacket, parsePacket } from '../lib/packet.ts';
import { BpfHarness, ctEntry, ctKey } from './harness.ts';

const CLIENT = '10.244.0.5';
const WEB = ['10.244.0.11', '10.244.0.12', '10.244.0.13'];
let h: BpfHarness;

before(async () => {
  h = await BpfHarness.create();
  h.service(svc('web'), [slice('web', WEB)]);
});
after(() => h?.close());

const send = (prog: 'fromPod' | 'toPod', p: PacketSpec) => parsePacket(h.run(prog, buildPacket(p)).dataOut);
const tcp = (sport: number, flags: PacketSpec['flags']): PacketSpec => ({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport, dport: 80, flags });
const slotKey = (i: number) => Buffer.from(new Uint32Array([i]).buffer);

test('during a conntrack growth a flow of the old map (slot 1) keeps its backend, replies and closing; new flows go to the new map', () => {
  const backend = send('fromPod', tcp(43000, ['SYN'])).dst;
  assert.ok(WEB.includes(backend));
  const old = h.dp.map('hypha_ct4_v1');
  const info = native.mapInfo(old);
  const fresh = native.mapCreate(info.type, info.keySize, info.valueSize, info.maxEntries * 2, { name: 'ct_next' });
  const slots = h.dp.map('hypha_ct4_maps_v1');
  try {
    native.mapSetInner(slots, 1, old);
    native.mapSetInner(slots, 0, fresh);
    // The reply, both ways the harness runs it: the Service address back as its source.
    const reply: PacketSpec = { src: backend, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 43000, flags: ['SYN', 'ACK'] };
    for (const prog of ['toPod', 'fromPod'] as const) {
      const p = send(prog, reply);
      assert.deepEqual([p.src, p.sport, p.dst, p.dport], ['10.96.0.10', 80, CLIENT, 43000], `${prog}: reply found in slot 1`);
    }
    // Later packets keep the backend; a FIN closes the entry where it is.
    for (let i = 0; i < 5; i++) assert.equal(send('fromPod', tcp(43000, ['ACK'])).dst, backend);
    send('fromPod', tcp(43000, ['FIN', 'ACK']));
    const key = ctKey.encode({ saddr: CLIENT, daddr: '10.96.0.10', sport: 43000, dport: 80, proto: 6, dir: CtDir.SERVICE });
    const inOld = native.mapLookup(old, key);
    const inNew = native.mapLookup(fresh, key);
    const entry = ctEntry.decode((inNew ?? inOld)!);
    assert.ok(entry.flags & CtFlags.CLOSING, 'closing after the FIN');
    // A new flow is recorded in the map in use.
    const b2 = send('fromPod', tcp(43001, ['SYN'])).dst;
    assert.ok(WEB.includes(b2));
    assert.ok(native.mapLookup(fresh, ctKey.encode({ saddr: CLIENT, daddr: '10.96.0.10', sport: 43001, dport: 80, proto: 6, dir: CtDir.SERVICE })), 'new flow in slot 0');
    assert.equal(native.mapLookup(old, ctKey.encode({ saddr: CLIENT, daddr: '10.96.0.10', sport: 43001, dport: 80, proto: 6, dir: CtDir.SERVICE })), undefined);
    // Slot 1 emptied without carrying the old reply entry over: no longer known.
    native.mapSetInner(slots, 1, null);
    const stray = send('toPod', { ...reply, flags: ['ACK'] });
    assert.equal(stray.src, backend, 'the old flow\'s reply, its entry gone with slot 1, is not rewritten');
  } finally {
    native.mapSetInner(slots, 0, old);
    native.mapSetInner(slots, 1, null);
    native.close(fresh);
  }
  assert.equal(native.mapLookup(slots, slotKey(1)), undefined);
});
