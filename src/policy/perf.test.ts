// A sanity check of compile cost at cluster scale (not a timed assertion:
// bench/ measures it properly): 1 000 policies over 5 000 pods, each its own
// identity, in 50 namespaces. The time and entry counts go to the test log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicies } from './compile.ts';
import type { Endpoint, Identity, NetworkPolicy, PodNamedPorts } from './model.ts';
import { normalizeNetworkPolicy } from './normalize.ts';

export function scaleTables(namespaces = 50, podsPerNs = 100, policiesPerNs = 20) {
  const identities: Identity[] = [];
  const endpoints: Endpoint[] = [];
  const namedPorts: PodNamedPorts[] = [];
  for (let n = 0; n < namespaces; n++) {
    const ns = `ns-${n}`;
    for (let p = 0; p < podsPerNs; p++) {
      const id = 1000 + n * podsPerNs + p;
      const ports = [{ name: 'http', port: 8000 + (p % 4), protocol: 'TCP' as const }, { name: 'metrics', port: 9090, protocol: 'TCP' as const }];
      identities.push({ id, namespace: ns, podLabels: { app: `app-${p % 20}`, pod: `p${p}`, tier: p % 2 ? 'web' : 'db' }, namespaceLabels: { team: `team-${n % 5}` } });
      endpoints.push({ name: `p${p}`, namespace: ns, identity: id, ports, addresses: [`10.${n}.${p >> 8}.${p & 255}`] });
      namedPorts.push({ pod: `${ns}/p${p}`, identity: id, ports });
    }
  }
  const policies: NetworkPolicy[] = [];
  for (let n = 0; n < namespaces; n++) {
    for (let i = 0; i < policiesPerNs; i++) {
      const spec: Record<string, unknown> = {
        podSelector: { matchLabels: { app: `app-${i}` } },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: `app-${(i + 1) % 20}` } } }, { namespaceSelector: { matchLabels: { team: `team-${i % 5}` } }, podSelector: { matchLabels: { tier: 'web' } } }], ports: [{ port: 'http' }, { port: 9090 }] },
          { from: [{ ipBlock: { cidr: `172.${16 + (i % 16)}.0.0/16`, except: [`172.${16 + (i % 16)}.${n}.0/24`] } }], ports: [{ port: 443 }, { port: 8000, endPort: 8100, protocol: 'UDP' }] },
        ],
        egress: [
          { to: [{ podSelector: { matchLabels: { app: `app-${(i + 2) % 20}` } } }], ports: [{ port: 'http' }] },
          { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ns-0' } } }], ports: [{ port: 53, protocol: 'UDP' }] },
        ],
      };
      const { value, problems } = normalizeNetworkPolicy({ metadata: { namespace: `ns-${n}`, name: `pol-${i}` }, spec });
      assert.deepEqual(problems, []);
      policies.push(value!);
    }
  }
  return { identities, endpoints, namedPorts, policies };
}

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
