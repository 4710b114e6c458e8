// Builders for policy unit tests and benchmarks: identities, endpoints and
// NetworkPolicy objects as literals, normalised the way the agent reads them.
import assert from 'node:assert/strict';
import type { Endpoint, Identity, NamedPort, NetworkPolicy, PodNamedPorts } from './model.ts';
import { normalizeNetworkPolicy } from './normalize.ts';

/** A NetworkPolicy object as the API serves it, normalised; problems fail the test. */
export function policy(namespace: string, name: string, spec: Record<string, unknown>): NetworkPolicy {
  const { value, problems } = normalizeNetworkPolicy({
    apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec,
  });
  assert.deepEqual(problems.map((p) => p.message), []);
  return value!;
}

export interface PodSpec {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ports?: NamedPort[];
  ip?: string;
}

/** One identity per pod (ids from `first`), the pods as endpoints. */
export function cluster(pods: PodSpec[], nsLabels: Record<string, Record<string, string>> = {}, first = 1000) {
  const identities: Identity[] = pods.map((p, i) => ({
    id: first + i, namespace: p.namespace, podLabels: p.labels, namespaceLabels: nsLabels[p.namespace] ?? {},
  }));
  const endpoints: Endpoint[] = pods.map((p, i) => ({
    name: p.name, namespace: p.namespace, identity: first + i, ports: p.ports ?? [], ...(p.ip ? { addresses: [p.ip] } : {}),
  }));
  const id = (key: string): number => {
    const i = pods.findIndex((p) => `${p.namespace}/${p.name}` === key);
    assert.ok(i >= 0, `no pod ${key}`);
    return first + i;
  };
  return { identities, endpoints, id };
}

/** The upstream e2e layout: namespaces x, y, z with pods a, b, c each
 *  (label pod=<name>, namespace label ns=<name>), serving 80 and 81 on TCP
 *  and UDP with named ports serve-80-tcp etc.; pod IPs 10.0.<ns>.<pod>. */
export function xyz() {
  const pods: PodSpec[] = [];
  const namespaces = ['x', 'y', 'z'];
  const names = ['a', 'b', 'c'];
  namespaces.forEach((ns, i) => names.forEach((n, j) => pods.push({
    namespace: ns, name: n, labels: { pod: n }, ip: `10.0.${i + 1}.${j + 1}`,
    ports: [80, 81].flatMap((port) => (['TCP', 'UDP', 'SCTP'] as const).map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, port, protocol }))),
  })));
  const nsLabels = Object.fromEntries(namespaces.map((ns) => [ns, { ns }]));
  return { ...cluster(pods, nsLabels), pods: pods.map((p) => `${p.namespace}/${p.name}`), ipOf: (key: string) => pods.find((p) => `${p.namespace}/${p.name}` === key)!.ip! };
}

/** Cluster-scale tables (perf test, bench-policy): `namespaces` x `podsPerNs` pods,
 *  each its own identity, and `policiesPerNs` policies per namespace with pod,
 *  namespace and ipBlock peers, named ports, ranges and both directions. */
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
