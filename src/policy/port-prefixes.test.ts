import { test } from 'node:test';
import assert from 'node:assert/strict';
import { portRangePrefixes } from './port-prefixes.ts';

test('port ranges as LPM prefixes: exact cover, fewest prefixes', () => {
  assert.deepEqual(portRangePrefixes({ from: 80, to: 80 }), [{ port: 80, prefixLen: 16 }]);
  assert.deepEqual(portRangePrefixes('any'), [{ port: 0, prefixLen: 0 }]);
  assert.deepEqual(portRangePrefixes({ from: 0, to: 65535 }), [{ port: 0, prefixLen: 0 }]);
  assert.deepEqual(portRangePrefixes({ from: 1, to: 65535 }).length, 16);
  assert.deepEqual(portRangePrefixes({ from: 8000, to: 8080 }), [{ port: 8000, prefixLen: 10 }, { port: 8064, prefixLen: 12 }, { port: 8080, prefixLen: 16 }]);
  for (const [from, to] of [[1, 1], [79, 81], [1024, 65535], [32768, 60999], [5, 1000]] as const) {
    const covered: number[] = [];
    for (const p of portRangePrefixes({ from, to })) {
      const size = 2 ** (16 - p.prefixLen);
      assert.equal(p.port % size, 0, 'aligned');
      for (let i = 0; i < size; i++) covered.push(p.port + i);
    }
    assert.deepEqual(covered, Array.from({ length: to - from + 1 }, (_, i) => from + i), `${from}-${to}`);
  }
  assert.throws(() => portRangePrefixes({ from: 90, to: 80 }), /port range 90-80/);
});
