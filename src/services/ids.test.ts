import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdAllocator, IdExhaustedError, IdPool } from './ids.ts';

test('ids: stable per key, continue after the newest, wrap, and refuse when exhausted', () => {
  const ids = new IdAllocator('t', 1, 3);
  assert.equal(ids.acquire('a'), 1);
  assert.equal(ids.acquire('a'), 1);
  assert.equal(ids.acquire('b'), 2);
  ids.release('a');
  assert.equal(ids.acquire('c'), 3);
  assert.equal(ids.acquire('d'), 1, 'wraps to the freed id');
  assert.throws(() => ids.acquire('e'), IdExhaustedError);
  assert.equal(ids.adopt('x', 2), false, 'an adopted clash keeps the first owner');
});

test('IdPool: a million ids, adopted past the bitmap, released and taken again; size counts each once', () => {
  const pool = new IdPool('backend ids', 1, 0xffffffff);
  for (let i = 0; i < 1_000_000; i++) assert.equal(pool.acquire(), i + 1);
  assert.equal(pool.size, 1_000_000);
  assert.equal(pool.adopt(4_000_000_000), true, 'an id far past the others');
  assert.equal(pool.adopt(4_000_000_000), false, 'taken');
  assert.equal(pool.has(4_000_000_000), true);
  assert.equal(pool.acquire(), 4_000_000_001, 'allocation continues after the newest');
  assert.equal(pool.adopt(0), false, 'below min');
  assert.equal(pool.adopt(1.5), false, 'not an integer');
  pool.release(500);
  pool.release(500);
  assert.equal(pool.has(500), false);
  assert.equal(pool.size, 1_000_001);
  pool.release(7_000_000_000);
  assert.equal(pool.size, 1_000_001, 'out of range: nothing');
});

test('IdPool: wraps to the freed ids and is exhausted when full', () => {
  const pool = new IdPool('t', 10, 12);
  assert.deepEqual([pool.acquire(), pool.acquire(), pool.acquire()], [10, 11, 12]);
  assert.throws(() => pool.acquire(), IdExhaustedError);
  pool.release(11);
  assert.equal(pool.acquire(), 11);
});
