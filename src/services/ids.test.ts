import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdAllocator, IdExhaustedError } from './ids.ts';

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
