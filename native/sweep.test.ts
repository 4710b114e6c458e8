// mapSweepAsync: expired entries nominated in bounded lookups, handed to a
// program in bounded runs; what the program deletes is the result. Argument
// checks, wrong and closed handles, maps without batch lookups.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { MapHandle, ObjectHandle, ProgHandle } from './index.ts';
import { fixture, openFdCount, readU32, readU64, rejectsNative } from './test/helpers.ts';

const { mapTypes } = bpf.constants;

const N = 20_000;
const PER_RUN = 64; // the fixture's sweep_keys size
const EXPIRES = 4; // offset of `expires` in the fixture's struct entry

/** CLOCK_MONOTONIC seconds; the kernel's coarse clock is at most a tick behind. */
function nowSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}

/** Deadline of entry i, relative to now, as the u32 the map holds. Entries with
 * i % 5 < 2 are expired: 5 s ago, or 2^31 - 100 s ago (the compare wraps). */
function deadline(i: number, now: number): number {
  const offsets = [-5, 2 ** 31 + 100, 100, 2 ** 31 - 100, 3600];
  return (now + (offsets[i % 5] ?? 0)) >>> 0;
}
const expired = (i: number): boolean => i % 5 < 2;

function fill(map: MapHandle, count: number): void {
  const now = nowSeconds();
  const keys = new Uint8Array(count * 8);
  const values = new Uint8Array(count * 8);
  const kv = new DataView(keys.buffer);
  const vv = new DataView(values.buffer);
  for (let i = 0; i < count; i++) {
    kv.setBigUint64(i * 8, BigInt(i), true);
    vv.setUint32(i * 8, i, true);
    vv.setUint32(i * 8 + EXPIRES, deadline(i, now), true);
  }
  bpf.mapUpdateBatch(map, keys, values, count);
}

function keysOf(map: MapHandle): Map<number, number> {
  const d = bpf.mapDump(map);
  const out = new Map<number, number>();
  for (let i = 0; i < d.count; i++) out.set(Number(readU64(d.keys, i * 8)), readU32(d.values, i * d.values.length / d.count));
  return out;
}

describe('mapSweepAsync', () => {
  let obj: ObjectHandle;
  let timed: MapHandle;
  let keys: MapHandle;
  let nominated: MapHandle;
  let del: ProgHandle;
  let record: ProgHandle;

  before(async () => {
    obj = bpf.openObject(fixture('sweep'));
    await bpf.loadObject(obj);
    timed = bpf.objectMap(obj, 'timed');
    keys = bpf.objectMap(obj, 'sweep_keys');
    nominated = bpf.objectMap(obj, 'nominated');
    del = bpf.objectProgram(obj, 'sweep_delete');
    record = bpf.objectProgram(obj, 'sweep_record');
  });
  after(() => {
    for (const h of [timed, keys, nominated, del, record, obj]) bpf.close(h);
  });
  beforeEach(() => {
    for (const m of [timed, nominated]) {
      const d = bpf.mapDump(m);
      bpf.mapDeleteBatch(m, d.keys, d.count);
    }
    fill(timed, N);
  });

  test('deletes exactly the expired entries, in lookups of `batch` and runs of at most perRun keys', async () => {
    const r = await bpf.mapSweepAsync(timed, keys, del, { expiresOffset: EXPIRES, batch: 1000 });
    const dead = Array.from({ length: N }, (_, i) => i).filter(expired).length;
    assert.deepEqual([r.visited, r.nominated, r.deleted], [N, dead, dead]);
    assert.equal(r.runs, Math.ceil(dead / PER_RUN), 'runs are full but for the last');
    assert.ok(r.lookups >= N / 1000 && r.lookups <= N / 1000 + 10, `lookups: ${r.lookups}`);
    assert.ok(r.maxCallNs > 0 && r.maxCallNs <= r.durationNs && r.maxRunNs > 0, JSON.stringify(r));
    assert.ok(r.maxCallCpuNs > 0 && r.maxCallCpuNs <= r.cpuNs && r.cpuNs <= r.durationNs + 1e6, JSON.stringify(r));
    const left = keysOf(timed);
    assert.equal(left.size, N - dead);
    for (let i = 0; i < N; i++) assert.equal(left.has(i), !expired(i), `entry ${i}`);

    const again = await bpf.mapSweepAsync(timed, keys, del, { expiresOffset: EXPIRES, batch: 1000, perRun: 7 });
    assert.deepEqual([again.visited, again.nominated, again.deleted, again.runs], [N - dead, 0, 0, 0]);
  });

  test('nominates every expired entry once and no live one; the program decides what goes', async () => {
    const r = await bpf.mapSweepAsync(timed, keys, record, { expiresOffset: EXPIRES, batch: 333, perRun: 50 });
    const seen = keysOf(nominated);
    const dead = Array.from({ length: N }, (_, i) => i).filter(expired);
    assert.deepEqual([r.visited, r.nominated, r.deleted, r.runs], [N, dead.length, 0, Math.ceil(dead.length / 50)]);
    assert.deepEqual([...seen.keys()].sort((a, b) => a - b), dead);
    assert.ok([...seen.values()].every((n) => n === 1), 'each once');
    assert.equal(keysOf(timed).size, N, 'nothing deleted: sweep_record keeps everything');
  });

  test('a batch smaller than a hash bucket grows instead of failing', async () => {
    const r = await bpf.mapSweepAsync(timed, keys, del, { expiresOffset: EXPIRES, batch: 1 });
    assert.equal(r.visited, N);
    assert.equal(keysOf(timed).size, N - r.deleted);
    assert.equal(r.deleted, Array.from({ length: N }, (_, i) => i).filter(expired).length);
  });

  test('an empty map: one lookup, no run', async () => {
    const e = bpf.mapCreate(mapTypes.HASH, 8, 8, 16);
    try {
      const r = await bpf.mapSweepAsync(e, keys, del, { expiresOffset: EXPIRES });
      assert.deepEqual([r.visited, r.nominated, r.deleted, r.lookups, r.runs], [0, 0, 0, 1, 0]);
    } finally {
      bpf.close(e);
    }
  });

  test('wrong shapes and options are refused with the field named; the promise rejects', async () => {
    const percpu = bpf.mapCreate(mapTypes.PERCPU_HASH, 8, 8, 16);
    const wrongKeys = bpf.mapCreate(mapTypes.ARRAY, 4, 4, 16);
    const hashKeys = bpf.mapCreate(mapTypes.HASH, 4, 8, 16);
    try {
      await rejectsNative(bpf.mapSweepAsync(percpu, keys, del, { expiresOffset: EXPIRES }), { code: 'EINVALARG', message: /per-CPU/ });
      await rejectsNative(bpf.mapSweepAsync(timed, keys, del, { expiresOffset: 5 }), { code: 'EINVALARG', message: /expiresOffset 5/ });
      await rejectsNative(bpf.mapSweepAsync(timed, wrongKeys, del, { expiresOffset: EXPIRES }), { code: 'EINVALARG', message: /array of 8-byte values/ });
      await rejectsNative(bpf.mapSweepAsync(timed, hashKeys, del, { expiresOffset: EXPIRES }), { code: 'EINVALARG', message: /keys map/ });
      await rejectsNative(bpf.mapSweepAsync(timed, keys, del, { expiresOffset: EXPIRES, batch: 0 }), { code: 'EINVALARG', message: /opts.batch/ });
      await rejectsNative(bpf.mapSweepAsync(timed, keys, del, { expiresOffset: EXPIRES, perRun: PER_RUN + 1 }), { code: 'EINVALARG', message: /opts.perRun must be in 1..64/ });
      await rejectsNative(bpf.mapSweepAsync(timed, keys, del, {} as never), { code: 'EINVALARG', message: /expiresOffset is required/ });
      await rejectsNative(bpf.mapSweepAsync(timed, keys, del, undefined as never), { code: 'EINVALARG' });
      await rejectsNative(bpf.mapSweepAsync(timed, keys, timed as never, { expiresOffset: EXPIRES }), { code: 'EBADHANDLE' });
      await rejectsNative(bpf.mapSweepAsync(del as never, keys, del, { expiresOffset: EXPIRES }), { code: 'EBADHANDLE' });
    } finally {
      for (const h of [percpu, wrongKeys, hashKeys]) bpf.close(h);
    }
    assert.equal(keysOf(timed).size, N, 'nothing ran');
  });

  test('a failing run rejects with the call named and what was done before it', async () => {
    const p = bpf.objectProgram(obj, 'sweep_cannot_run');
    try {
      const e = await rejectsNative(bpf.mapSweepAsync(timed, keys, p, { expiresOffset: EXPIRES, batch: 100, perRun: 10 }), { code: 'ENOTSUPP', op: 'bpf_prog_test_run_opts', message: /sweeping map "timed" after \d+ entries \(0 deleted\)/ });
      const { visited, deleted } = e as unknown as { visited: number; deleted: number };
      assert.ok(visited >= 10 && visited < N, `visited ${visited}`);
      assert.equal(deleted, 0);
    } finally {
      bpf.close(p);
    }
  });

  test('closing the handles during a sweep is safe (it has its own fds, closed at the end); closed ones are refused', async () => {
    const fds = openFdCount();
    const m = bpf.objectMap(obj, 'timed');
    const k = bpf.objectMap(obj, 'sweep_keys');
    const p = bpf.objectProgram(obj, 'sweep_delete');
    const sweeping = bpf.mapSweepAsync(m, k, p, { expiresOffset: EXPIRES, batch: 512 });
    for (const h of [m, k, p]) bpf.close(h);
    assert.equal((await sweeping).deleted, Array.from({ length: N }, (_, i) => i).filter(expired).length);
    await rejectsNative(bpf.mapSweepAsync(m, keys, del, { expiresOffset: EXPIRES }), { code: 'ECLOSED' });
    await rejectsNative(bpf.mapSweepAsync(timed, keys, del, { expiresOffset: EXPIRES, batch: 0 }), { code: 'EINVALARG' });
    assert.equal(openFdCount(), fds, 'no fd left behind');
  });
});
