import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Interner, internString } from './intern.ts';

test('Interner: one shared value per key, bounded', () => {
  const t = new Interner<string[]>(2);
  const a = t.get('a', () => ['a']);
  assert.equal(t.get('a', () => ['other']), a, 'the first one is shared');
  t.get('b', () => ['b']);
  const c1 = t.get('c', () => ['c']);
  const c2 = t.get('c', () => ['c']);
  assert.notEqual(c1, c2, 'past its bound nothing new is kept');
  assert.deepEqual(c2, ['c']);
  assert.equal(t.size, 2);
  assert.equal(internString(['n', '1'].join('')), internString('n1'));
});
