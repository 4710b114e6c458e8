// Builders for policy unit tests and benchmarks: identities, endpoints and
// NetworkPolicy objects as literals, normalised the way the agent reads them.
import assert from 'node:assert/strict';
import type { Endpoint, Identity, NamedPort, NetworkPolicy } from './model.ts';
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
