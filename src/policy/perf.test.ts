// A sanity check of compile cost at cluster scale (not a timed assertion:
// bench/ measures it properly): 1 000 policies over 5 000 pods, each its own
// identity, in 50 namespaces. The time and entry counts go to the test log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicies } from './compile.ts';
import { scaleTables } from './fixtures.ts';

test('perf sanity: 1 000 policies over 5 000 pods and identities', (t) => {
  const tables = scaleTables();
  assert.equal(tables.policies.length, 1000);
  assert.equal(tables.identities.length, 5000);
  const t0 = performance.now();
  const all = compilePolicies(tables);
  const tAll = performance.now() - t0;
  const count = (c: typeof all) => c.endpoints.reduce((n, e) => n + e.ingress.entries.length + e.egress.entries.length, 0);
  const distinct = new Set(all.endpoints.flatMap((e) => [e.ingress, e.egress])).size;
  t.diagnostic(`all 5000 endpoints: ${tAll.toFixed(0)} ms, ${count(all)} entries (${distinct} distinct direction lists), ${all.cidrs.length} CIDR identities, ${all.problems.length} problems`);
  // One node's share: 110 endpoints from across the namespaces.
  const local = tables.endpoints.filter((_, i) => i % 45 === 0);
  const t1 = performance.now();
  const node = compilePolicies({ ...tables, endpoints: local });
  const tNode = performance.now() - t1;
  t.diagnostic(`one node (${local.length} endpoints): ${tNode.toFixed(0)} ms, ${count(node)} entries`);
  assert.deepEqual(all.problems, []);
  assert.ok(all.endpoints.every((e) => e.ingress.enforced && e.egress.enforced));
});
