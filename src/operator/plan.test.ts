import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Condition, HyphaNode } from '../k8s/hyphanode.ts';
import { type NodeRow, type PlanInput, type Write, planHyphaNodes } from './plan.ts';

const now = new Date('2025-06-01T12:00:00.000Z');
const NOW = '2025-06-01T12:00:00Z';

const node = (name: string, uid = `uid-${name}`): NodeRow => ({ name, uid });

let created = 0;
function hn(name: string, podCIDRs: string[], extra: Partial<HyphaNode> = {}): HyphaNode {
  created++;
  return {
    name, uid: `hn-${name}`, resourceVersion: `rv-${name}`,
    creationTimestamp: `2025-01-01T00:00:${String(created % 60).padStart(2, '0')}Z`,
    deleting: false, owner: { name, uid: `uid-${name}` }, ownerReferences: [], addresses: [],
    podCIDRs, declaredPodCIDRs: podCIDRs, ipam: {}, conditions: [], ...extra,
  };
}

const allocated = (cidrs: string[], at = NOW): Partial<HyphaNode> => ({
  ipam: { allocatedAt: at },
  conditions: [{ type: 'PodCIDRAllocated', status: 'True', reason: 'Allocated', message: `pod CIDRs ${cidrs.join(', ')}`, lastTransitionTime: at }],
});

function input(nodes: NodeRow[], hns: HyphaNode[], patch: Partial<PlanInput> = {}): PlanInput {
  return {
    mode: 'cluster-pool', pool: { cidrs: ['10.244.0.0/22'], maskSize: 24 },
    nodes: new Map(nodes.map((n) => [n.name, n])), hyphaNodes: new Map(hns.map((h) => [h.name, h])), now, ...patch,
  };
}

const kinds = (ws: Write[]) => ws.map((w) => `${w.kind} ${w.name}`);

describe('planHyphaNodes, cluster-pool', () => {
  test('new Nodes get HyphaNodes owned by them, each with a distinct CIDR', () => {
    const p = planHyphaNodes(input([node('b'), node('a'), node('c')], []));
    assert.deepEqual(p.writes, [
      { kind: 'create', name: 'a', owner: node('a'), podCIDRs: ['10.244.0.0/24'] },
      { kind: 'create', name: 'b', owner: node('b'), podCIDRs: ['10.244.1.0/24'] },
      { kind: 'create', name: 'c', owner: node('c'), podCIDRs: ['10.244.2.0/24'] },
    ]);
    assert.deepEqual(p.pool, { capacity: 4, free: 1, used: 3, waiting: [], refused: [] });
  });

  test('what HyphaNodes hold is kept; the status follows an allocation; a settled cluster plans nothing', () => {
    const a = hn('a', ['10.244.2.0/24'], allocated(['10.244.2.0/24']));
    const b = hn('b', ['10.244.0.0/24']); // allocated, status not yet written
    const p = planHyphaNodes(input([node('a'), node('b'), node('c')], [a, b]));
    assert.deepEqual(p.writes, [
      { kind: 'status', name: 'b', resourceVersion: 'rv-b', ipam: { allocatedAt: NOW }, why: 'allocated',
        conditions: [{ type: 'PodCIDRAllocated', status: 'True', reason: 'Allocated', message: 'pod CIDRs 10.244.0.0/24', lastTransitionTime: NOW }] },
      { kind: 'create', name: 'c', owner: node('c'), podCIDRs: ['10.244.1.0/24'] },
    ]);
    const settled = planHyphaNodes(input([node('a'), node('b')], [a, hn('b', ['10.244.0.0/24'], allocated(['10.244.0.0/24']))]));
    assert.deepEqual(settled.writes, []);
  });

  test('a HyphaNode without a CIDR gets one (IPv6 entries kept); a stranger owner is replaced by the Node', () => {
    const p = planHyphaNodes(input([node('a'), node('b', 'uid-new')], [hn('a', [], { declaredPodCIDRs: ['fd00::/64'] }), hn('b', ['10.244.3.0/24'], allocated(['10.244.3.0/24']))]));
    assert.deepEqual(p.writes, [
      { kind: 'update', name: 'a', resourceVersion: 'rv-a', podCIDRs: ['fd00::/64', '10.244.0.0/24'], why: 'allocated 10.244.0.0/24' },
      { kind: 'update', name: 'b', resourceVersion: 'rv-b', owner: node('b', 'uid-new'), why: 'owner' },
    ]);
  });

  test('a Node that goes: its HyphaNode is deleted, its CIDR stays held until the deletion is seen', () => {
    const a = hn('a', ['10.244.0.0/24'], allocated(['10.244.0.0/24']));
    const p = planHyphaNodes(input([node('b')], [a], { pool: { cidrs: ['10.244.0.0/24'], maskSize: 24 } }));
    assert.deepEqual(kinds(p.writes), ['delete a', 'create b']);
    assert.deepEqual(p.writes[0], { kind: 'delete', name: 'a', uid: 'hn-a', resourceVersion: 'rv-a', podCIDRs: ['10.244.0.0/24'] });
    assert.deepEqual(p.writes[1], { kind: 'create', name: 'b', owner: node('b'), podCIDRs: [] }, 'not the CIDR of a HyphaNode that still exists');
    // Once a is gone, b's HyphaNode gets the CIDR.
    const next = planHyphaNodes(input([node('b')], [hn('b', [], { ipam: { operatorError: 'x' } })], { pool: { cidrs: ['10.244.0.0/24'], maskSize: 24 } }));
    assert.deepEqual(next.writes, [{ kind: 'update', name: 'b', resourceVersion: 'rv-b', podCIDRs: ['10.244.0.0/24'], why: 'allocated 10.244.0.0/24' }]);
  });

  test('exhaustion: the waiting node gets an error in its status; the metric summary says so', () => {
    const pool = { cidrs: ['10.244.0.0/24'], maskSize: 24 };
    const a = hn('a', ['10.244.0.0/24'], allocated(['10.244.0.0/24']));
    const b = hn('b', []);
    const p = planHyphaNodes(input([node('a'), node('b')], [a, b], { pool }));
    const msg = 'node "b": the cluster pool 10.244.0.0/24 (/24 per node) is exhausted: all 1 CIDRs are in use';
    assert.deepEqual(p.writes, [{
      kind: 'status', name: 'b', resourceVersion: 'rv-b', ipam: { operatorError: msg }, why: 'pool exhausted',
      conditions: [{ type: 'PodCIDRAllocated', status: 'False', reason: 'PoolExhausted', message: msg, lastTransitionTime: NOW }],
    }]);
    assert.deepEqual(p.pool, { capacity: 1, free: 0, used: 1, waiting: ['b'], refused: [] });
  });

  test('overlapping claims: the later object gets the error, its spec is left alone, nothing else is allocated to it', () => {
    const older = hn('older', ['10.244.1.0/24'], allocated(['10.244.1.0/24']));
    const later = hn('later', ['10.244.1.0/24']);
    const outside = hn('outside', ['192.168.0.0/24']);
    const junk = hn('junk', [], { declaredPodCIDRs: ['10.244.9.7/24'] });
    const p = planHyphaNodes(input([node('older'), node('later'), node('outside'), node('junk')], [older, later, outside, junk]));
    assert.deepEqual(kinds(p.writes), ['status later', 'status outside', 'status junk']);
    const [w1, w2, w3] = p.writes as Extract<Write, { kind: 'status' }>[];
    assert.equal(w1!.ipam.operatorError, 'node "later": pod CIDR "10.244.1.0/24" overlaps 10.244.1.0/24, held by node "older"');
    assert.equal(w1!.conditions[0]?.reason, 'Overlap');
    assert.match(w2!.ipam.operatorError ?? '', /pod CIDR "192\.168\.0\.0\/24" is outside the cluster pool 10\.244\.0\.0\/22/);
    assert.equal(w2!.conditions[0]?.reason, 'OutOfPool');
    assert.equal(w3!.ipam.operatorError, 'pod CIDR "10.244.9.7/24" is not an IPv4 network prefix');
    assert.deepEqual(p.pool?.refused.map((r) => [r.name, r.reason]), [['later', 'Overlap'], ['outside', 'OutOfPool'], ['junk', 'InvalidCIDR']]);
    assert.equal(p.pool?.used, 1);
  });

  test('the oldest claim wins, whatever the names', () => {
    const first = hn('zz', ['10.244.1.0/24'], { creationTimestamp: '2024-01-01T00:00:00Z' });
    const second = hn('aa', ['10.244.1.0/24'], { creationTimestamp: '2024-02-01T00:00:00Z' });
    const p = planHyphaNodes(input([node('zz'), node('aa')], [second, first]));
    const refused = p.pool?.refused ?? [];
    assert.deepEqual(refused.map((r) => r.name), ['aa']);
  });

  test('a recovered claim clears the error and keeps lastTransitionTime only while the status stays', () => {
    const cond: Condition = { type: 'PodCIDRAllocated', status: 'False', reason: 'PoolExhausted', message: 'm', lastTransitionTime: '2025-01-01T00:00:00Z' };
    const other: Condition = { type: 'AgentReady', status: 'True', reason: 'Up', message: '', lastTransitionTime: '2025-01-01T00:00:00Z' };
    const b = hn('b', ['10.244.0.0/24'], { ipam: { operatorError: 'm' }, conditions: [other, cond] });
    const p = planHyphaNodes(input([node('b')], [b]));
    assert.deepEqual(p.writes, [{
      kind: 'status', name: 'b', resourceVersion: 'rv-b', ipam: { allocatedAt: NOW }, why: 'allocated',
      conditions: [other, { type: 'PodCIDRAllocated', status: 'True', reason: 'Allocated', message: 'pod CIDRs 10.244.0.0/24', lastTransitionTime: NOW }],
    }]);
  });

  test('a HyphaNode being deleted is left alone but its CIDR stays held', () => {
    const p = planHyphaNodes(input([node('b')], [hn('a', ['10.244.0.0/24'], { deleting: true })], { pool: { cidrs: ['10.244.0.0/23'], maskSize: 24 } }));
    assert.deepEqual(p.writes, [{ kind: 'create', name: 'b', owner: node('b'), podCIDRs: ['10.244.1.0/24'] }]);
  });
});

describe('planHyphaNodes, kubernetes mode', () => {
  test('creates and deletes HyphaNodes with their Nodes, never allocates, clears what cluster-pool mode left', () => {
    const stale = hn('a', ['10.244.0.0/24'], { ipam: { operatorError: 'old', allocatedAt: NOW }, conditions: [{ type: 'PodCIDRAllocated', status: 'False', reason: 'Overlap', message: '', lastTransitionTime: NOW }] });
    const p = planHyphaNodes(input([node('a'), node('b')], [stale, hn('gone', [])], { mode: 'kubernetes', pool: undefined }));
    assert.deepEqual(p.writes, [
      { kind: 'status', name: 'a', resourceVersion: 'rv-a', ipam: { allocatedAt: NOW }, conditions: [], why: 'not allocating (kubernetes mode)' },
      { kind: 'delete', name: 'gone', uid: 'hn-gone', resourceVersion: 'rv-gone', podCIDRs: [] },
      { kind: 'create', name: 'b', owner: node('b'), podCIDRs: [] },
    ]);
    assert.equal(p.pool, undefined);
    assert.deepEqual(planHyphaNodes(input([node('a')], [hn('a', [])], { mode: 'kubernetes' })).writes, []);
  });
});
