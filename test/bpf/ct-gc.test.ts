// Conntrack garbage collection (bpf/tc/ct_gc.c through Datapath.collectConntrack):
// a pass in bounded batches deletes exactly the timed-out entries of a map
// that needs many of them; the delete program re-checks every nominee in the
// kernel, so an entry refreshed or a flow reopened after its entry was read
// keeps it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import * as native from '../../native/index.ts';
import { slice, svc } from '../../src/services/fixtures.ts';
import { CtDir, CtFlags, type Ct4Entry, type Ct4Key } from '../../src/abi/abi.gen.ts';
import { CT_GC_KEYS_MAP, Datapath } from '../../src/datapath/loader.ts';
import { abiModel, readBtf } from '../../scripts/gen-abi.ts';
import { type PacketSpec, buildPacket, parsePacket } from '../lib/packet.ts';
import { BpfHarness, ctEntry, ctKey } from './harness.ts';

/** CLOCK_MONOTONIC seconds, what the programs' coarse clock reads (a tick apart at most). */
const nowSeconds = (): number => Number(process.hrtime.bigint() / 1_000_000_000n);

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);

/** Run hypha_ct_gc on these keys, as a pass that nominated them would. */
function runGc(dp: Datapath, keys: Ct4Key[], count = keys.length): number {
  const scratch = native.openPinnedMap(path.join(dp.pinRoot, CT_GC_KEYS_MAP));
  try {
    keys.forEach((k, i) => native.mapUpdate(scratch, u32(i), ctKey.encode(k)));
    const data = new Uint8Array(64);
    data.set(u32(count));
    return native.progTestRun(dp.programs.ctGc, { data }).retval;
  } finally {
    native.close(scratch);
  }
}

function dumpCt(dp: Datapath): Map<string, Ct4Entry> {
  const { keys, values, count } = native.mapDump(dp.map('hypha_ct4_v1'));
  const out = new Map<string, Ct4Entry>();
  for (let i = 0; i < count; i++) {
    const k = ctKey.decode(keys, i * ctKey.layout.size);
    out.set(`${k.saddr}:${k.sport}`, ctEntry.decode(values, i * ctEntry.layout.size));
  }
  return out;
}

test('the GC scratch map the loader opens by name is the one ct_gc.o defines (an array of conntrack keys, pinned)', () => {
  const maps = abiModel(readBtf(path.resolve('bpf/build/tc/ct_gc.o'))).maps;
  const m = maps.find((x) => x.name === CT_GC_KEYS_MAP);
  assert.ok(m, `ct_gc.o defines ${CT_GC_KEYS_MAP}: ${maps.map((x) => x.name).join(', ')}`);
  assert.deepEqual({ type: m.type, key: m.key, value: m.value, pinned: m.pinned }, { type: 'array', key: 'u32', value: 'hypha_ct4_key', pinned: true });
  assert.ok(m.maxEntries >= 1024 && m.maxEntries <= 16384, `a run handles ${m.maxEntries} keys`);
});

describe('conntrack GC over a map that needs many batches', () => {
  const N = 100_000;
  const BATCH = 4096;
  let dp: Datapath;
  let pinRoot: string;
  before(async () => {
    pinRoot = `/sys/fs/bpf/hypha-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    // 262 144 entries: with per-CPU LRU lists each CPU's share still holds all N.
    dp = await Datapath.load({ pinRoot, mapSizes: { services: 64, backends: 64, affinity: 64, ct: 262144 } });
  });
  after(() => {
    dp?.close();
    rmSync(pinRoot, { recursive: true, force: true });
  });

  test('100 000 entries, batches of 4 096: exactly the timed-out ones go, live and closing ones stay', async () => {
    // i % 5: 0, 1 timed out (5 s ago; closing and 20 s ago); 2 live; 3 closing, not yet timed out; 4 live REPLY.
    const now = nowSeconds();
    const timedOut = (i: number): boolean => i % 5 < 2;
    const keys = new Uint8Array(N * ctKey.layout.size);
    const values = new Uint8Array(N * ctEntry.layout.size);
    const base: Ct4Entry = { nat_addr: '10.244.0.11', nat_addr2: '0.0.0.0', nat_port: 8080, nat_port2: 0, flags: CtFlags.SEEN_NON_SYN, lb_gen: 0, pol_gen: 0, svc_id: 1, backend_id: 1, expires: 0 };
    for (let i = 0; i < N; i++) {
      const kind = i % 5;
      const key: Ct4Key = { saddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, daddr: '10.96.0.10', sport: 1024 + (i % 60000), dport: 80, proto: 6, dir: kind === 4 ? CtDir.REPLY : CtDir.SERVICE };
      const closing = kind === 1 || kind === 3 ? CtFlags.CLOSING : 0;
      const expires = [now - 5, now - 20, now + 21600, now + 10, now + 60][kind] ?? 0;
      keys.set(ctKey.encode(key), i * ctKey.layout.size);
      values.set(ctEntry.encode({ ...base, flags: base.flags | closing, expires }), i * ctEntry.layout.size);
    }
    native.mapUpdateBatch(dp.map('hypha_ct4_v1'), keys, values, N);
    assert.equal(native.mapDump(dp.map('hypha_ct4_v1')).count, N, 'setup: every entry in the map');

    const dead = Array.from({ length: N }, (_, i) => i).filter(timedOut).length;
    const r = await dp.collectConntrack({ batch: BATCH });
    assert.deepEqual([r.deleted, r.entries, r.visited], [dead, N - dead, N]);
    assert.ok(r.batches >= Math.ceil(N / BATCH), `${r.batches} lookup batches of at most ${BATCH}`);
    assert.equal(r.runs, Math.ceil(dead / BATCH), 'delete runs of at most 4 096 keys');
    assert.ok(r.maxCallMs > 0 && r.maxCallMs <= r.cpuMs, `longest call ${r.maxCallMs} ms of ${r.cpuMs} ms CPU`);

    const left = native.mapDump(dp.map('hypha_ct4_v1'));
    assert.equal(left.count, N - dead);
    const kept = new Set<string>();
    for (let i = 0; i < left.count; i++) kept.add(Buffer.from(left.keys.subarray(i * 16, i * 16 + 16)).toString('hex'));
    for (let i = 0; i < N; i++) {
      const present = kept.has(Buffer.from(keys.subarray(i * 16, i * 16 + 16)).toString('hex'));
      if (present === timedOut(i)) assert.fail(`entry ${i} (kind ${i % 5}) ${present ? 'kept' : 'deleted'}`);
    }
    const again = await dp.collectConntrack({ batch: BATCH });
    assert.deepEqual([again.deleted, again.entries, again.runs], [0, N - dead, 0], 'a second pass finds nothing');
    await assert.rejects(dp.collectConntrack({ batch: 0 }), /conntrack GC batch 0 is not an integer in 1\.\.1048576/);
  });
});

describe('conntrack GC re-checks every nominee in the kernel', () => {
  const CLIENT = '10.244.0.5';
  const WEB = ['10.244.0.11', '10.244.0.12', '10.244.0.13'];
  const SOLO = '10.244.0.21'; // one backend: a reopened flow lands on the same one
  const tcp = (over: Partial<PacketSpec>): PacketSpec => ({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 41000, dport: 80, ...over });
  let h: BpfHarness;
  before(async () => {
    h = await BpfHarness.create();
    h.service(svc('web'), [slice('web', WEB)]);
    h.service(svc('solo', { clusterIPs: ['10.96.0.70'] }), [slice('solo', [SOLO])]);
  });
  after(() => h?.close());

  const send = (p: PacketSpec) => parsePacket(h.run('fromPod', buildPacket(p)).dataOut);
  const entry = (sport: number, dir = CtDir.SERVICE): Ct4Key => ({ saddr: CLIENT, daddr: '10.96.0.10', sport, dport: 80, proto: 6, dir });
  const age = (key: Ct4Key, expires: number): void => {
    const m = h.dp.map('hypha_ct4_v1');
    const v = native.mapLookup(m, ctKey.encode(key));
    assert.ok(v, `entry ${key.sport} exists`);
    native.mapUpdate(m, ctKey.encode(key), ctEntry.encode({ ...ctEntry.decode(v), expires }));
  };

  test('a nominee refreshed before the run, one gone meanwhile, and a closing one not yet timed out are kept; the timed-out ones go', () => {
    h.clearMap('hypha_ct4_v1');
    for (const port of [41001, 41002, 41003, 41004, 41005]) send(tcp({ sport: port }));
    const now = nowSeconds();
    for (const port of [41001, 41002, 41003, 41005]) age(entry(port), now - 5); // all read as timed out
    age(entry(41002), now + 21600); // ...then 41002's flow sent a packet
    native.mapDelete(h.dp.map('hypha_ct4_v1'), ctKey.encode(entry(41003))); // ...41003's entry went (evicted)
    send(tcp({ sport: 41004, flags: ['FIN', 'ACK'] })); // closing, 10 s left
    const nominated = [41001, 41002, 41003, 41004, 41005].map((p) => entry(p));
    assert.equal(runGc(h.dp, nominated), 2);
    const ct = dumpCt(h.dp);
    assert.deepEqual([41001, 41002, 41003, 41004, 41005].map((port) => ct.has(`${CLIENT}:${port}`)), [false, true, false, true, false]);
    assert.equal(runGc(h.dp, [], 0), 0, 'an empty run');
    assert.equal(runGc(h.dp, [entry(41002)], 1_000_000), 0, 'a count past the scratch map is clamped');
  });

  test('a flow reopened over its timed-out entries after they were read keeps them', () => {
    h.clearMap('hypha_ct4_v1');
    const solo = (over: Partial<PacketSpec>): PacketSpec => tcp({ dst: '10.96.0.70', sport: 41100, ...over });
    assert.equal(send(solo({})).dst, SOLO);
    const service: Ct4Key = { ...entry(41100), daddr: '10.96.0.70' };
    const reply: Ct4Key = { saddr: SOLO, daddr: CLIENT, sport: 8080, dport: 41100, proto: 6, dir: CtDir.REPLY };
    const now = nowSeconds();
    age(service, now - 5);
    age(reply, now - 5);
    // A pass has read both as timed out; then a new SYN on the same tuple opens the flow again.
    assert.equal(send(solo({})).dst, SOLO);
    assert.equal(runGc(h.dp, [service, reply]), 0);
    assert.equal(h.ct().length, 2, 'both entries of the reopened flow kept');
    assert.ok(h.ct().every((c) => c.entry.expires > now), 'with fresh lifetimes');
    assert.equal(send(solo({ flags: ['ACK'] })).dst, SOLO);
    const answer = parsePacket(h.run('toPod', buildPacket({ src: SOLO, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 41100, flags: ['SYN', 'ACK'] })).dataOut);
    assert.deepEqual([answer.src, answer.sport], ['10.96.0.70', 80], 'its reply is still translated');
  });
});
