import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Endpoint, endpointCount, endpointsOf, packEndpoints } from './model.ts';

test('packed endpoints read back exactly: every condition combination, node names shared per slice, no node', () => {
  const eps: Endpoint[] = [];
  for (let i = 0; i < 8; i++) {
    eps.push({ address: `10.${i}.255.${i * 31}`, ready: !!(i & 1), serving: !!(i & 2), terminating: !!(i & 4), nodeName: i % 3 === 0 ? '' : `node-${i % 3}` });
  }
  const p = packEndpoints(eps);
  assert.deepEqual(endpointsOf(p), eps);
  assert.equal(endpointCount(p), 8);
  assert.deepEqual([...p.nodes].sort(), ['', 'node-1', 'node-2']);
  assert.equal(packEndpoints(eps).nodes, p.nodes, 'the same node list is one shared array');
  assert.deepEqual(endpointsOf(packEndpoints([])), []);
});

test('packed endpoints: a slice naming 300 nodes (indexes past one byte)', () => {
  const eps = Array.from({ length: 300 }, (_, i) => ({ address: `10.0.${i >> 8}.${i & 255}`, ready: true, serving: true, terminating: false, nodeName: `n${i}` }));
  assert.deepEqual(endpointsOf(packEndpoints(eps)), eps);
});
