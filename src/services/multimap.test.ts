import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MultiMap } from './multimap.ts';

test('MultiMap: one value held directly, a Set from the second, back to one, gone with the last', () => {
  const m = new MultiMap<string, string>();
  assert.deepEqual([...m.get('svc')], []);
  m.add('svc', 'a');
  m.add('svc', 'a');
  assert.deepEqual([...m.get('svc')], ['a']);
  assert.equal(m.count('svc'), 1);
  m.add('svc', 'b');
  assert.deepEqual([...m.get('svc')].sort(), ['a', 'b']);
  assert.equal(m.has('svc', 'b'), true);
  assert.equal(m.delete('svc', 'x'), false);
  assert.equal(m.delete('svc', 'a'), true);
  assert.deepEqual([...m.get('svc')], ['b']);
  m.add('svc', 'c');
  assert.equal(m.count('svc'), 2);
  m.delete('svc', 'b');
  m.delete('svc', 'c');
  assert.equal(m.has('svc'), false);
  assert.equal(m.size, 0, 'no empty entry is left for a key');
  assert.equal(m.delete('svc', 'c'), false);
});
