// Maps: element operations, sizes and flags, batches, dumps (sync, async, with and
// without kernel batch support, under concurrent change), per-CPU values.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { MapHandle, ObjectHandle } from './index.ts';
import { fixture, makePinDir, readU32, readU64, rejectsNative, removePinDir, throwsNative, u32, u64 } from './test/helpers.ts';

const { mapTypes, mapFlags, updateFlags } = bpf.constants;

/** count little-endian u64 keys start.. and u32 values key*3, side by side. */
function entries(count: number, start = 0): { keys: Uint8Array; values: Uint8Array } {
  const keys = new Uint8Array(count * 8);
  const values = new Uint8Array(count * 4);
  const kv = new DataView(keys.buffer);
  const vv = new DataView(values.buffer);
  for (let i = 0; i < count; i++) {
    kv.setBigUint64(i * 8, BigInt(start + i), true);
    vv.setUint32(i * 4, (start + i) * 3, true);
  }
  return { keys, values };
}

/** Dumped entries as a key -> value Map (u64 keys, u32 values). */
function decode(dump: bpf.MapDump): Map<bigint, number> {
  const out = new Map<bigint, number>();
  for (let i = 0; i < dump.count; i++) out.set(readU64(dump.keys, i * 8), readU32(dump.values, i * 4));
  return out;
}

describe('element operations', () => {
  test('update, lookup, flags, delete; missing keys are undefined/false', () => {
    const m = bpf.mapCreate(mapTypes.HASH, 4, 8, 8, { name: 'elem_ops' });
    try {
      assert.equal(bpf.mapLookup(m, u32(1)), undefined);
      bpf.mapUpdate(m, u32(1), u64(10));
      assert.equal(readU64(bpf.mapLookup(m, u32(1)) ?? u64(0)), 10n);
      throwsNative(() => bpf.mapUpdate(m, u32(1), u64(11), 'noexist'), { code: 'EEXIST', op: 'bpf_map_update_elem' });
      throwsNative(() => bpf.mapUpdate(m, u32(2), u64(11), updateFlags.EXIST), { code: 'ENOENT' });
      bpf.mapUpdate(m, u32(1), u64(12), 'exist');
      assert.equal(readU64(bpf.mapLookup(m, u32(1)) ?? u64(0)), 12n);
      assert.equal(bpf.mapDelete(m, u32(1)), true);
      assert.equal(bpf.mapDelete(m, u32(1)), false);
      assert.equal(bpf.mapLookup(m, u32(1)), undefined);
    } finally {
      bpf.close(m);
    }
  });

  test('a full hash map refuses new keys with E2BIG', () => {
    const m = bpf.mapCreate(mapTypes.HASH, 4, 8, 4, { name: 'full' });
    try {
      for (let i = 0; i < 4; i++) bpf.mapUpdate(m, u32(i), u64(i));
      throwsNative(() => bpf.mapUpdate(m, u32(99), u64(0)), {
        code: 'E2BIG',
        errno: 7,
        op: 'bpf_map_update_elem',
        message: /map "full"/,
      });
      bpf.mapUpdate(m, u32(3), u64(33)); // replacing still works
    } finally {
      bpf.close(m);
    }
  });

  test('wrong key and value sizes are EINVALARG with expected and actual sizes', () => {
    const m = bpf.mapCreate(mapTypes.HASH, 4, 8, 4, { name: 'sized' });
    try {
      throwsNative(() => bpf.mapLookup(m, new Uint8Array(8)), {
        code: 'EINVALARG',
        op: 'mapLookup',
        errno: 0,
        message: /key for map "sized" must be 4 bytes .* got 8 bytes/,
        name: 'TypeError',
      });
      throwsNative(() => bpf.mapUpdate(m, u32(1), new Uint8Array(4)), {
        code: 'EINVALARG',
        message: /value for map "sized" must be 8 bytes .* got 4 bytes/,
      });
      throwsNative(() => bpf.mapDelete(m, new Uint8Array(0)), { code: 'EINVALARG', message: /got 0 bytes/ });
      throwsNative(() => bpf.mapUpdateBatch(m, new Uint8Array(8), new Uint8Array(8), 2), {
        code: 'EINVALARG',
        message: /values must be count \* valueSize = 2 \* 8 = 16 bytes, got 8 bytes/,
      });
      // not bytes at all
      throwsNative(() => bpf.native.mapLookup(m, [1, 2, 3, 4] as unknown as Uint8Array), {
        code: 'EINVALARG',
        message: /key must be a Uint8Array, got array/,
      });
      throwsNative(() => bpf.native.mapLookup(m, new Uint32Array(1) as unknown as Uint8Array), {
        code: 'EINVALARG',
        message: /Uint8Array/,
      });
    } finally {
      bpf.close(m);
    }
  });

  test('mapGetNextKey walks all keys', () => {
    const m = bpf.mapCreate(mapTypes.HASH, 4, 4, 16);
    try {
      assert.equal(bpf.mapGetNextKey(m, null), undefined);
      for (let i = 0; i < 5; i++) bpf.mapUpdate(m, u32(i), u32(i));
      const seen: number[] = [];
      for (let k = bpf.mapGetNextKey(m, null); k; k = bpf.mapGetNextKey(m, k)) seen.push(readU32(k));
      assert.deepEqual(seen.sort(), [0, 1, 2, 3, 4]);
    } finally {
      bpf.close(m);
    }
  });

  test('mapInfo describes the map', () => {
    const m = bpf.mapCreate(mapTypes.LPM_TRIE, 8, 4, 32, { name: 'lpm_info', flags: mapFlags.NO_PREALLOC });
    try {
      const info = bpf.mapInfo(m);
      assert.ok(info.id > 0);
      assert.deepEqual({ ...info, id: 0 }, {
        id: 0,
        type: mapTypes.LPM_TRIE,
        name: 'lpm_info',
        keySize: 8,
        valueSize: 4,
        maxEntries: 32,
        flags: mapFlags.NO_PREALLOC,
        perCpu: false,
        possibleCpus: info.possibleCpus,
      });
      assert.ok(info.possibleCpus >= 1);
    } finally {
      bpf.close(m);
    }
  });

  test('mapCreate errors carry the kernel errno', () => {
    throwsNative(() => bpf.mapCreate(mapTypes.HASH, 0, 4, 4), { code: 'EINVAL', op: 'bpf_map_create' });
    throwsNative(() => bpf.mapCreate(mapTypes.HASH, 4.5, 4, 4), { code: 'EINVALARG', message: /keySize/ });
  });
});

describe('batches and dumps', () => {
  const N = 10_000;
  let m: MapHandle;
  before(() => {
    m = bpf.mapCreate(mapTypes.HASH, 8, 4, 16384, { name: 'batch' });
  });
  after(() => bpf.close(m));

  test(`batch update ${N}, dump sync and async, batch delete`, async () => {
    const { keys, values } = entries(N);
    bpf.mapUpdateBatch(m, keys, values, N);

    const dump = bpf.mapDump(m);
    assert.equal(dump.count, N);
    assert.equal(dump.keys.length, N * 8);
    assert.equal(dump.values.length, N * 4);
    const got = decode(dump);
    assert.equal(got.size, N);
    for (let i = 0; i < N; i += 997) assert.equal(got.get(BigInt(i)), i * 3);

    const asyncDump = await bpf.mapDumpAsync(m);
    assert.deepEqual(decode(asyncDump), got);

    // NOEXIST (which the kernel's batch call lacks) goes key by key and says how far it got
    const fresh = entries(1, 5 * N);
    const twoKeys = new Uint8Array(16);
    twoKeys.set(fresh.keys, 0);
    twoKeys.set(keys.subarray(0, 8), 8);
    let caught: unknown;
    try {
      bpf.mapUpdateBatch(m, twoKeys, values.subarray(0, 8), 2, 'noexist');
    } catch (err) {
      caught = err;
    }
    assert.ok(bpf.hasNativeCode(caught, 'EEXIST'), String(caught));
    assert.equal(caught.op, 'bpf_map_update_elem');
    assert.equal(caught.processed, 1);
    assert.equal(bpf.mapDelete(m, fresh.keys), true);

    // delete the first half plus 100 keys that are not there: missing ones are skipped
    const half = entries(N / 2 + 100, N / 2 - 100 + N); // keys N*1.5-100 .. : none present
    assert.equal(bpf.mapDeleteBatch(m, half.keys, N / 2 + 100), 0);
    const mixed = new Uint8Array((N / 2 + 2) * 8);
    mixed.set(entries(1, 10 * N).keys, 0); // missing
    mixed.set(keys.subarray(0, (N / 2) * 8), 8);
    mixed.set(entries(1, 20 * N).keys, (N / 2 + 1) * 8); // missing
    assert.equal(bpf.mapDeleteBatch(m, mixed, N / 2 + 2), N / 2);
    assert.equal(bpf.mapDump(m).count, N / 2);
    assert.equal(bpf.mapDeleteBatch(m, keys, N), N / 2);
    assert.equal(bpf.mapDump(m).count, 0);
  });

  test('an empty map dumps to zero entries', async () => {
    const e = bpf.mapCreate(mapTypes.HASH, 8, 4, 4);
    try {
      assert.deepEqual(bpf.mapDump(e), { keys: new Uint8Array(0), values: new Uint8Array(0), count: 0 });
      assert.equal((await bpf.mapDumpAsync(e)).count, 0);
    } finally {
      bpf.close(e);
    }
  });

  test('dumps cope with entries added and removed concurrently', async () => {
    const c = bpf.mapCreate(mapTypes.HASH, 8, 4, 65536, { name: 'churn' });
    try {
      const stable = entries(20_000);
      bpf.mapUpdateBatch(c, stable.keys, stable.values, 20_000);
      const churn = entries(20_000, 1_000_000);
      const dumping = bpf.mapDumpAsync(c);
      // churn on the JS thread while the worker dumps
      for (let round = 0; round < 5; round++) {
        bpf.mapUpdateBatch(c, churn.keys, churn.values, 20_000);
        bpf.mapDeleteBatch(c, churn.keys, 20_000);
      }
      const got = decode(await dumping);
      for (let i = 0; i < 20_000; i++) assert.equal(got.get(BigInt(i)), i * 3, `stable key ${i}`);
      for (const [k, v] of got) assert.equal(v, Number(k) * 3);
    } finally {
      bpf.close(c);
    }
  });

  test('close(map) during mapDumpAsync is safe (the dump has its own fd)', async () => {
    const c = bpf.mapCreate(mapTypes.HASH, 8, 4, 4096);
    const { keys, values } = entries(4000);
    bpf.mapUpdateBatch(c, keys, values, 4000);
    const dumping = bpf.mapDumpAsync(c);
    bpf.close(c);
    assert.equal((await dumping).count, 4000);
    await rejectsNative(bpf.mapDumpAsync(c), { code: 'ECLOSED' });
  });

  test('LRU maps dump and evict instead of failing when full', () => {
    const lru = bpf.mapCreate(mapTypes.LRU_HASH, 8, 4, 1024);
    try {
      const { keys, values } = entries(3000);
      for (let i = 0; i < 3000; i++) bpf.mapUpdate(lru, keys.subarray(i * 8, i * 8 + 8), values.subarray(i * 4, i * 4 + 4));
      const dump = bpf.mapDump(lru);
      assert.ok(dump.count > 0 && dump.count <= 1024, `count ${dump.count}`);
      for (const [k, v] of decode(dump)) assert.equal(v, Number(k) * 3);
    } finally {
      bpf.close(lru);
    }
  });

  test('LPM tries (no batch lookup in the kernel) dump by iteration', () => {
    const lpm = bpf.mapCreate(mapTypes.LPM_TRIE, 8, 4, 64, { flags: mapFlags.NO_PREALLOC });
    try {
      const key = (prefix: number, a: number, b: number) => {
        const k = new Uint8Array(8);
        new DataView(k.buffer).setUint32(0, prefix, true);
        k.set([10, a, b, 0], 4);
        return k;
      };
      bpf.mapUpdate(lpm, key(8, 0, 0), u32(1));
      bpf.mapUpdate(lpm, key(16, 1, 0), u32(2));
      bpf.mapUpdate(lpm, key(24, 1, 2), u32(3));
      const dump = bpf.mapDump(lpm);
      assert.equal(dump.count, 3);
      const values = [0, 1, 2].map((i) => readU32(dump.values, i * 4)).sort();
      assert.deepEqual(values, [1, 2, 3]);
      assert.equal(bpf.mapDeleteBatch(lpm, key(16, 1, 0), 1), 1);
      assert.equal(bpf.mapDump(lpm).count, 2);
    } finally {
      bpf.close(lpm);
    }
  });
});

describe('per-CPU maps', () => {
  let pinDir: string;
  let obj: ObjectHandle;
  before(async () => {
    pinDir = makePinDir();
    obj = bpf.openObject(fixture('maps'), { pinRoot: pinDir });
    await bpf.loadObject(obj);
  });
  after(() => {
    bpf.close(obj);
    removePinDir(pinDir);
  });

  test('values hold one 8-byte slot per possible CPU', () => {
    const m = bpf.objectMap(obj, 'percpu_counts');
    try {
      const info = bpf.mapInfo(m);
      assert.equal(info.perCpu, true);
      const len = bpf.valueLength(info);
      assert.equal(len, 8 * info.possibleCpus);

      const value = new Uint8Array(len);
      const dv = new DataView(value.buffer);
      for (let cpu = 0; cpu < info.possibleCpus; cpu++) dv.setBigUint64(cpu * 8, BigInt(100 + cpu), true);
      bpf.mapUpdate(m, u32(1), value);
      assert.deepEqual(bpf.mapLookup(m, u32(1)), value);
      throwsNative(() => bpf.mapUpdate(m, u32(1), u64(1)), { code: 'EINVALARG', message: /possible CPUs/ });

      const dump = bpf.mapDump(m);
      assert.equal(dump.count, 4); // arrays always hold max_entries entries
      assert.equal(dump.values.length, 4 * len);
      assert.deepEqual(dump.values.subarray(len, 2 * len), value);

      // a program run increments its CPU's slot; the sum over CPUs counts every run
      const prog = bpf.objectProgram(obj, 'count_packets');
      bpf.progTestRun(prog, { data: new Uint8Array(64), repeat: 1000 });
      const counts = bpf.mapLookup(m, u32(0)) ?? new Uint8Array(len);
      let sum = 0n;
      for (let cpu = 0; cpu < info.possibleCpus; cpu++) sum += readU64(counts, cpu * 8);
      assert.equal(sum, 1000n);
      bpf.close(prog);
    } finally {
      bpf.close(m);
    }
  });

  test('per-CPU hash maps batch and dump with the same layout', () => {
    const m = bpf.mapCreate(mapTypes.PERCPU_HASH, 4, 4, 64);
    try {
      const info = bpf.mapInfo(m);
      const len = bpf.valueLength(info); // 4-byte values take 8-byte slots
      assert.equal(len, 8 * info.possibleCpus);
      const keys = new Uint8Array(3 * 4);
      const values = new Uint8Array(3 * len);
      for (let i = 0; i < 3; i++) {
        keys.set(u32(i), i * 4);
        for (let cpu = 0; cpu < info.possibleCpus; cpu++) values.set(u32(i * 10 + cpu), i * len + cpu * 8);
      }
      bpf.mapUpdateBatch(m, keys, values, 3);
      const dump = bpf.mapDump(m);
      assert.equal(dump.count, 3);
      for (let i = 0; i < 3; i++) {
        const k = readU32(dump.keys, i * 4);
        for (let cpu = 0; cpu < info.possibleCpus; cpu++) {
          assert.equal(readU32(dump.values, i * len + cpu * 8), k * 10 + cpu);
        }
      }
    } finally {
      bpf.close(m);
    }
  });
});
