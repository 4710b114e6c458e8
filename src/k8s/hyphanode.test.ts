import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type HyphaNodeObject, hyphaNodePath, hyphaNodesInformerSpec, ipv4PrefixProblem, normalizeHyphaNode, podCidrsOf } from './hyphanode.ts';

const base = (patch: Partial<HyphaNodeObject> = {}): HyphaNodeObject => ({
  apiVersion: 'hypha.dev/v1alpha1',
  kind: 'HyphaNode',
  metadata: {
    name: 'node-1', uid: 'u-1', resourceVersion: '42', creationTimestamp: '2025-01-01T00:00:00Z',
    ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: 'n-1' }],
  },
  spec: { addresses: [{ type: 'InternalIP', ip: '192.168.1.10' }], ipam: { podCIDRs: ['10.244.1.0/24'] } },
  status: { ipam: { allocatedAt: '2025-01-01T00:00:01Z' } },
  ...patch,
});

describe('normalizeHyphaNode', () => {
  test('a good object', () => {
    const n = normalizeHyphaNode(base());
    assert.deepEqual(n.problems, []);
    assert.deepEqual(n.value, {
      name: 'node-1', uid: 'u-1', resourceVersion: '42', creationTimestamp: '2025-01-01T00:00:00Z', deleting: false,
      owner: { name: 'node-1', uid: 'n-1' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: 'n-1' }],
      addresses: [{ type: 'InternalIP', ip: '192.168.1.10' }],
      podCIDRs: ['10.244.1.0/24'], declaredPodCIDRs: ['10.244.1.0/24'],
      ipam: { allocatedAt: '2025-01-01T00:00:01Z' }, conditions: [],
    });
  });

  test('without a name it is unusable', () => {
    const n = normalizeHyphaNode({ metadata: {} });
    assert.equal(n.value, undefined);
    assert.match(n.problems[0]?.message ?? '', /metadata\.name: \(missing\) is required/);
    assert.equal(normalizeHyphaNode(null).value, undefined);
  });

  test('bad fields are named with their value and left out', () => {
    const n = normalizeHyphaNode(base({
      spec: {
        addresses: [{ type: 'Hostname', ip: 'n1' } as never, { type: 'InternalIP', ip: '10.0.0.300' }, { type: 'ExternalIP', ip: '2001:db8::1' }],
        ipam: { podCIDRs: ['10.244.1.7/24', 'fd00:10::/64', '10.244.2.0/24', '10.244.2.0/24', 'banana'] },
      },
      status: { ipam: { allocatedAt: 'yesterday' }, conditions: [{ type: 'X', status: 'Maybe' } as never] },
    }));
    assert.deepEqual(n.value?.addresses, [{ type: 'ExternalIP', ip: '2001:db8::1' }]);
    assert.deepEqual(n.value?.podCIDRs, ['10.244.2.0/24']);
    assert.deepEqual(n.value?.declaredPodCIDRs, ['10.244.1.7/24', 'fd00:10::/64', '10.244.2.0/24', '10.244.2.0/24', 'banana']);
    assert.deepEqual(n.problems.map((p) => p.message), [
      'HyphaNode node-1: spec.addresses[0].type: "Hostname" is not one of InternalIP, ExternalIP',
      'HyphaNode node-1: spec.addresses[1].ip: "10.0.0.300" is not an IP address',
      'HyphaNode node-1: spec.ipam.podCIDRs[0]: "10.244.1.7/24" has host bits set (the network is 10.244.1.0/24)',
      'HyphaNode node-1: spec.ipam.podCIDRs[3]: "10.244.2.0/24" is listed twice',
      'HyphaNode node-1: spec.ipam.podCIDRs[4]: "banana" is not an IPv4 network prefix',
      'HyphaNode node-1: status.ipam.allocatedAt: "yesterday" is not a date-time',
      'HyphaNode node-1: status.conditions[0].status: "Maybe" is not one of True, False, Unknown',
    ]);
  });

  test('the owner is the ownerReference of kind Node', () => {
    const n = normalizeHyphaNode(base({ metadata: { name: 'x', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'x', uid: 'd' }] } }));
    assert.equal(n.value?.owner, undefined);
  });
});

describe('ipv4PrefixProblem', () => {
  test('canonical IPv4 prefixes only', () => {
    assert.equal(ipv4PrefixProblem('10.244.0.0/16'), undefined);
    assert.equal(ipv4PrefixProblem('0.0.0.0/0'), undefined);
    assert.equal(ipv4PrefixProblem('10.244.0.0/33'), 'is not an IPv4 network prefix');
    assert.equal(ipv4PrefixProblem('10.244.0.0'), 'is not an IPv4 network prefix (no /length)');
    assert.equal(ipv4PrefixProblem('10.0.0.0/08'), 'is not in canonical form (10.0.0.0/8)');
    assert.equal(ipv4PrefixProblem('10.244.0.1/16'), 'has host bits set (the network is 10.244.0.0/16)');
  });
});

describe('podCidrsOf', () => {
  test('cluster-pool: the HyphaNode spec', () => {
    assert.deepEqual(podCidrsOf(base(), 'cluster-pool'), { cidrs: ['10.244.1.0/24'], problems: [] });
    assert.deepEqual(podCidrsOf(undefined, 'cluster-pool'), { cidrs: [], problems: [] });
    assert.deepEqual(podCidrsOf(base({ spec: {} }), 'cluster-pool').cidrs, []);
  });

  test('cluster-pool: a claim the operator refused is not used', () => {
    const refused = base({
      status: { conditions: [{ type: 'PodCIDRAllocated', status: 'False', reason: 'Overlap', message: 'overlaps node-0', lastTransitionTime: '2025-01-01T00:00:00Z' }] },
    });
    const r = podCidrsOf(refused, 'cluster-pool');
    assert.deepEqual(r.cidrs, []);
    assert.match(r.problems[0]?.message ?? '', /spec\.ipam\.podCIDRs: \["10\.244\.1\.0\/24"\] was refused by the operator \(Overlap\): overlaps node-0/);
    // Exhaustion is not a refusal of what the spec holds.
    const exhausted = base({ status: { conditions: [{ type: 'PodCIDRAllocated', status: 'False', reason: 'PoolExhausted', message: '', lastTransitionTime: '' }] } });
    assert.deepEqual(podCidrsOf(exhausted, 'cluster-pool').cidrs, ['10.244.1.0/24']);
  });

  test('kubernetes: the Node spec, podCIDRs over podCIDR, IPv6 skipped, bad entries named', () => {
    assert.deepEqual(podCidrsOf({ metadata: { name: 'n' }, spec: { podCIDR: '10.1.0.0/24', podCIDRs: ['10.1.0.0/24', 'fd00::/64'] } }, 'kubernetes'), { cidrs: ['10.1.0.0/24'], problems: [] });
    assert.deepEqual(podCidrsOf({ spec: { podCIDR: '10.1.0.0/24' } }, 'kubernetes').cidrs, ['10.1.0.0/24']);
    assert.deepEqual(podCidrsOf({ spec: {} }, 'kubernetes').cidrs, []);
    const bad = podCidrsOf({ metadata: { name: 'n' }, spec: { podCIDR: '10.1.0.9/24' } }, 'kubernetes');
    assert.deepEqual(bad.cidrs, []);
    assert.equal(bad.problems[0]?.message, 'Node n: spec.podCIDR: "10.1.0.9/24" has host bits set (the network is 10.1.0.0/24)');
  });
});

test('paths and informer spec', () => {
  assert.equal(hyphaNodePath('node-1'), '/apis/hypha.dev/v1alpha1/hyphanodes/node-1');
  assert.deepEqual(hyphaNodesInformerSpec(), { resource: 'hyphanodes', path: '/apis/hypha.dev/v1alpha1/hyphanodes' });
  assert.deepEqual(hyphaNodesInformerSpec('node-1').query, { fieldSelector: 'metadata.name=node-1' });
});
