// The operator against a real API server, run as real processes
// (bin/hypha operator): cluster-pool IPAM through Node churn, exhaustion and
// bad claims; leader election with two operators, a SIGKILLed leader, a
// paused one that wakes up after losing its Lease, a restart that changes
// nothing; then the kubernetes IPAM mode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Address4 } from 'ip-address';
import { KubeClient, isNotFound } from '../../src/k8s/client.ts';
import { type HyphaNodeObject, HYPHANODES_PATH, hyphaNodePath } from '../../src/k8s/hyphanode.ts';
import type { LeaseObject } from '../../src/operator/leader.ts';
import { HYPHA_BIN, eventually } from './lib/agent.ts';
import { type ControlPlane, startControlPlane } from './lib/apiserver.ts';
import { installCrds } from './lib/crds.ts';
import { TestOperator } from './lib/operator.ts';
import { run } from './lib/proc.ts';
import { type Host, Topology } from './lib/topology.ts';

const POOL = '10.244.0.0/22';
const MASK = 24;
const LEASE_SECONDS = 4;
const leaderElection = { leaseDurationSeconds: LEASE_SECONDS, renewDeadlineSeconds: 3, retryPeriodSeconds: 0.5 };
const LEASE_PATH = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/hypha-operator';

interface NodeObject {
  metadata: { name: string; uid: string; resourceVersion: string };
}

function range(cidr: string): [number, number] {
  const a = new Address4(cidr);
  return [Number(a.startAddress().bigInt()), Number(a.endAddress().bigInt())];
}

function assertDisjointInPool(cidrs: string[]): void {
  const [ps, pe] = range(POOL);
  const rs = cidrs.map((c) => {
    assert.ok(c.endsWith(`/${MASK}`), `${c} is a /${MASK}`);
    const r = range(c);
    assert.ok(r[0] >= ps && r[1] <= pe, `${c} is inside ${POOL}`);
    return r;
  }).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < rs.length; i++) assert.ok(rs[i]![0] > rs[i - 1]![1], `overlap in ${cidrs.join(', ')}`);
}

describe('operator against a real API server', () => {
  let topo: Topology;
  let host: Host;
  let cp: ControlPlane;
  let work: string;
  let client: KubeClient;
  const operators: TestOperator[] = [];
  let nextPort = 9900;

  const operator = (identity: string, ipam: ConstructorParameters<typeof TestOperator>[2]['ipam'] = { mode: 'cluster-pool', clusterPool: { cidrs: [POOL], maskSize: MASK } }): TestOperator => {
    const op = new TestOperator(topo, host, { identity, kubeconfig: cp.kubeconfigPath, workDir: path.join(work, identity), port: nextPort++, ipam, leaderElection });
    operators.push(op);
    return op;
  };

  const createNode = (name: string) => client.create<NodeObject>('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name } });
  const deleteNode = (name: string) => client.delete(`/api/v1/nodes/${name}`);
  const hyphaNodes = async (): Promise<Map<string, HyphaNodeObject>> =>
    new Map((await client.get<{ items: HyphaNodeObject[] }>(HYPHANODES_PATH)).items.map((h) => [h.metadata.name, h]));
  const cidrsByNode = async (): Promise<Map<string, string[]>> =>
    new Map([...(await hyphaNodes())].map(([n, h]) => [n, h.spec?.ipam?.podCIDRs ?? []]));
  const lease = () => client.get<LeaseObject>(LEASE_PATH);
  /** The node's HyphaNode once it has a CIDR and the operator's status says it is allocated. */
  const allocated = async (name: string, timeoutMs = 15_000): Promise<HyphaNodeObject> => (await eventually(`${name} allocated`, async () => {
    const h = await client.get<HyphaNodeObject>(hyphaNodePath(name)).catch(() => undefined);
    const ok = h?.spec?.ipam?.podCIDRs?.length === 1 && h.status?.ipam?.allocatedAt && !h.status.ipam.operatorError
      && h.status.conditions?.some((c) => c.type === 'PodCIDRAllocated' && c.status === 'True');
    return ok ? h : undefined;
  }, timeoutMs))!;
  const gone = (name: string) => eventually(`HyphaNode ${name} deleted`, () => client.get(hyphaNodePath(name)).then(() => false, (e: unknown) => isNotFound(e)), 15_000);

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-operator-'));
    topo = await Topology.create({ name: 'operator' });
    host = await topo.addControlPlaneHost();
    cp = await startControlPlane({ netns: host.netns, listenIp: host.ip, workDir: path.join(work, 'control-plane') });
    await installCrds(cp.hostKubeconfigPath);
    client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath, { userAgent: 'hypha-e2e' });
  }, { timeout: 60 * 60_000 });

  after(async () => {
    await Promise.all(operators.map((o) => o.stop(1000).catch(() => undefined)));
    client?.close();
    await cp?.stop().catch(() => undefined);
    await topo?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('a bad configuration is refused naming the field and the value, exit code 2', async () => {
    const file = path.join(work, 'bad.yaml');
    writeFileSync(file, `ipam:\n  mode: cluster-pool\n  clusterPool:\n    cidrs: [10.244.0.1/16]\n`);
    const r = await run([HYPHA_BIN, 'operator', '--config', file], { allowFail: true, timeoutMs: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    // (bin/hypha may say first that it runs the TypeScript sources.)
    assert.equal(r.stderr.trim().split('\n').at(-1), `hypha operator: config ${file}: ipam.clusterPool.cidrs[0]: "10.244.0.1/16" has host bits set (the network is 10.244.0.0/16)`);
    writeFileSync(file, `ipam:\n  mode: cluster-pool\n  clusterPool:\n    cidrs: [10.244.0.0/16]\n    maskSize: 12\nleaderElection:\n  leaseDurationSeconds: 5\n`);
    const r2 = await run([HYPHA_BIN, 'operator', '--config', file], { allowFail: true, timeoutMs: 30_000 });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /ipam\.clusterPool\.maskSize: 12 is not an integer in 16\.\.30/);
  });

  test('three Nodes get HyphaNodes owned by them, with distinct CIDRs of the mask size inside the pool', async () => {
    const nodes = await Promise.all(['n1', 'n2', 'n3'].map(createNode));
    const a = operator('op-a');
    await a.start();
    const hns = await Promise.all(nodes.map((n) => allocated(n.metadata.name)));
    for (const [i, h] of hns.entries()) {
      assert.deepEqual(h.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.uid]), [['Node', nodes[i]!.metadata.name, nodes[i]!.metadata.uid]]);
    }
    assertDisjointInPool(hns.map((h) => h.spec!.ipam!.podCIDRs![0]!));
    assert.equal(await a.metric('hypha_operator_is_leader'), 1);
    assert.equal((await lease()).spec?.holderIdentity, 'op-a');
    assert.equal((await a.http('/readyz')).status, 200);
    await eventually('pool metrics', async () => await a.metric('hypha_operator_ipam_cidrs', { state: 'used' }) === 3 && await a.metric('hypha_operator_ipam_cidrs', { state: 'free' }) === 1);
  });

  test('a deleted Node: its HyphaNode goes and its CIDR is given to the next new Node', async () => {
    const before = await cidrsByNode();
    const freed = before.get('n2')![0]!;
    await deleteNode('n2');
    await gone('n2');
    await createNode('n4');
    const h = await allocated('n4');
    assert.equal(h.spec?.ipam?.podCIDRs?.[0], freed);
    const after = await cidrsByNode();
    assert.deepEqual(after.get('n1'), before.get('n1'));
    assert.deepEqual(after.get('n3'), before.get('n3'));
  });

  test('an exhausted pool: the waiting node gets an error in its status and the metric says so; freeing a CIDR recovers', async () => {
    const a = operators[0]!;
    await createNode('n5');
    await allocated('n5');
    await createNode('n6');
    const waiting = (await eventually('n6 reports exhaustion', async () => {
      const h = await client.get<HyphaNodeObject>(hyphaNodePath('n6')).catch(() => undefined);
      return h?.status?.ipam?.operatorError ? h : undefined;
    }))!;
    assert.equal(waiting.spec?.ipam?.podCIDRs, undefined, 'no CIDR was made up');
    assert.match(waiting.status!.ipam!.operatorError!, /^node "n6": the cluster pool 10\.244\.0\.0\/22 \(\/24 per node\) is exhausted: all 4 CIDRs are in use$/);
    assert.deepEqual(waiting.status?.conditions?.map((c) => [c.type, c.status, c.reason]), [['PodCIDRAllocated', 'False', 'PoolExhausted']]);
    await eventually('exhausted metric', async () => await a.metric('hypha_operator_ipam_exhausted') === 1);
    assert.equal(await a.metric('hypha_operator_ipam_cidrs', { state: 'free' }), 0);
    assert.equal(await a.metric('hypha_operator_ipam_cidrs', { state: 'used' }), 4);

    const freed = (await cidrsByNode()).get('n1')![0]!;
    await deleteNode('n1');
    const h = await allocated('n6');
    assert.equal(h.spec?.ipam?.podCIDRs?.[0], freed);
    await eventually('exhausted metric cleared', async () => await a.metric('hypha_operator_ipam_exhausted') === 0);
  });

  test('an overlapping claim written by hand gets an error in its status and is left as written; the holder keeps its CIDR', async () => {
    const before = await cidrsByNode();
    const held = before.get('n3')![0]!;
    await createNode('clash');
    // The pool is full: the operator gives it no CIDR and says so.
    await eventually('clash waits', async () => (await client.get<HyphaNodeObject>(hyphaNodePath('clash'))).status?.ipam?.operatorError);
    const cur = await client.get<HyphaNodeObject>(hyphaNodePath('clash'));
    await client.mergePatch(hyphaNodePath('clash'), { spec: { ipam: { podCIDRs: [held] } } }, { resourceVersion: cur.metadata.resourceVersion });
    const refused = (await eventually('overlap reported', async () => {
      const h = await client.get<HyphaNodeObject>(hyphaNodePath('clash'));
      return h.status?.conditions?.some((c) => c.reason === 'Overlap') ? h : undefined;
    }))!;
    assert.equal(refused.status?.ipam?.operatorError, `node "clash": pod CIDR "${held}" overlaps ${held}, held by node "n3"`);
    assert.deepEqual(refused.spec?.ipam?.podCIDRs, [held], 'never a silent fix');
    const n3 = await client.get<HyphaNodeObject>(hyphaNodePath('n3'));
    assert.deepEqual(n3.spec?.ipam?.podCIDRs, [held]);
    assert.equal(n3.status?.ipam?.operatorError, undefined);
    assert.equal(await operators[0]!.metric('hypha_operator_ipam_claims_refused'), 1);
    // Resolved by hand: the claim removed, the node waits for the pool again.
    await deleteNode('clash');
    await gone('clash');
  });

  test('two operators: one leads, the other watches and writes nothing', async () => {
    const [a] = operators;
    const b = operator('op-b');
    await b.start();
    // Give b time to campaign a few rounds.
    await eventually('b has seen the holder', async () => (await b.http('/status')).body.includes('"holder": "op-a"'));
    assert.equal(await a!.metric('hypha_operator_is_leader'), 1);
    assert.equal(await b.metric('hypha_operator_is_leader'), 0);
    assert.equal(await b.metric('hypha_operator_writes_total'), 0);
    assert.equal(await b.metric('hypha_operator_reconcile_passes_total'), 0);
    assert.equal((await lease()).spec?.holderIdentity, 'op-a');
    const rss = async (o: TestOperator) => Math.round(await o.metric('hypha_operator_process_resident_memory_bytes') / 1048576);
    process.stderr.write(`# RSS: leader ${await rss(a!)} MB, follower ${await rss(b)} MB\n`);
  });

  test('SIGKILL the leader: the other takes over within the lease duration and allocates nothing twice', async () => {
    const [a, b] = operators;
    const before = await cidrsByNode();
    const held = await lease();
    // A change waiting for the new leader: a new Node needing the CIDR n5 frees.
    await deleteNode('n5');
    await gone('n5');
    const killedAt = performance.now();
    const killedWall = Date.now();
    await a!.kill9();
    await createNode('n7');
    await eventually('b leads', async () => await b!.metric('hypha_operator_is_leader') === 1, 3 * LEASE_SECONDS * 1000);
    const tookMs = performance.now() - killedAt;
    const now = await lease();
    assert.equal(now.spec?.holderIdentity, 'op-b');
    assert.equal(now.spec?.leaseTransitions, (held.spec?.leaseTransitions ?? 0) + 1);
    // The successor's acquireTime (its clock, the same machine's) is within the
    // lease duration of the kill: it saw the last renew when it happened (its
    // watch), and that renew was before the kill. The margin is for watch
    // delivery and timer latency on a busy machine (measured: 3.6 to 4.0 s).
    const acquiredMs = Date.parse(now.spec?.acquireTime ?? '') - killedWall;
    assert.ok(acquiredMs <= LEASE_SECONDS * 1000 + 500, `acquired ${acquiredMs} ms after the kill (lease ${LEASE_SECONDS} s)`);
    const n7 = await allocated('n7');
    const afterTakeover = await cidrsByNode();
    for (const [name, cidrs] of before) {
      if (name === 'n5') continue;
      assert.deepEqual(afterTakeover.get(name), cidrs, `${name} kept its CIDR`);
    }
    assertDisjointInPool([...afterTakeover.values()].flat());
    assert.equal(n7.spec?.ipam?.podCIDRs?.[0], before.get('n5')![0], 'n7 got the CIDR n5 released');
    process.stderr.write(`# Lease acquired ${acquiredMs} ms after SIGKILL, seen leading after ${Math.round(tookMs)} ms (lease ${LEASE_SECONDS} s)\n`);
  });

  test('a restart of the operator changes nothing: it hands back the Lease, the next one takes it at once and writes nothing', async () => {
    const b = operators[1]!;
    const rvs = new Map([...(await hyphaNodes())].map(([n, h]) => [n, h.metadata.resourceVersion]));
    const st = await b.stop();
    assert.equal(st?.code, 0, 'SIGTERM: a clean exit');
    assert.equal((await lease()).spec?.holderIdentity, undefined, 'the Lease was handed back');
    const c = operator('op-c');
    const t0 = performance.now();
    await c.start();
    await eventually('c leads', async () => await c.metric('hypha_operator_is_leader') === 1, 10_000);
    await eventually('c made a pass', async () => await c.metric('hypha_operator_reconcile_passes_total') >= 1);
    process.stderr.write(`# restarted operator leading ${Math.round(performance.now() - t0)} ms after start\n`);
    assert.equal(await c.metric('hypha_operator_writes_total'), 0);
    const now = new Map([...(await hyphaNodes())].map(([n, h]) => [n, h.metadata.resourceVersion]));
    assert.deepEqual(now, rvs);
  });

  test('a leader paused past its Lease wakes up, sees it lost, stops acting and exits', async () => {
    const c = operators[2]!;
    const d = operator('op-d');
    await d.start();
    c.proc!.kill('SIGSTOP');
    await eventually('d leads', async () => await d.metric('hypha_operator_is_leader') === 1, 4 * LEASE_SECONDS * 1000);
    const rvs = new Map([...(await hyphaNodes())].map(([n, h]) => [n, h.metadata.resourceVersion]));
    c.proc!.kill('SIGCONT');
    const st = await c.proc!.exited;
    assert.equal(st.code, 1);
    assert.ok(c.logs().some((l) => l.msg === 'leadership lost: stopping and exiting'), 'it says why');
    assert.equal((await lease()).spec?.holderIdentity, 'op-d');
    assert.deepEqual(new Map([...(await hyphaNodes())].map(([n, h]) => [n, h.metadata.resourceVersion])), rvs, 'the stale leader wrote nothing');
  });

  test('kubernetes mode: HyphaNodes follow the Nodes, nothing is allocated, cluster-pool errors are cleared', async () => {
    // The pool is full again (n3, n4, n6, n7): a new Node waits with an error.
    await createNode('full');
    await eventually('full waits', async () => (await client.get<HyphaNodeObject>(hyphaNodePath('full'))).status?.ipam?.operatorError);
    await operators[3]!.stop();
    const before = await cidrsByNode();
    const k = operator('op-k', { mode: 'kubernetes' });
    await k.start();
    await createNode('k1');
    const h = (await eventually('k1 HyphaNode', () => client.get<HyphaNodeObject>(hyphaNodePath('k1')).catch(() => undefined)))!;
    assert.equal(h.spec?.ipam, undefined, 'the operator does not allocate in kubernetes mode');
    await deleteNode('n3');
    await gone('n3');
    await eventually('k leads and settled', async () => await k.metric('hypha_operator_is_leader') === 1 && await k.metric('hypha_operator_reconcile_passes_total') >= 1);
    const full = await eventually('the exhaustion error cleared', async () => {
      const f = await client.get<HyphaNodeObject>(hyphaNodePath('full'));
      return f.status?.ipam?.operatorError === undefined && (f.status?.conditions ?? []).length === 0 ? f : undefined;
    });
    assert.equal(full?.spec?.ipam, undefined);
    const after = await cidrsByNode();
    for (const [name, cidrs] of after) if (before.has(name)) assert.deepEqual(cidrs, before.get(name), `${name} untouched`);
    assert.equal(await k.metric('hypha_operator_ipam_cidrs'), 0, 'no pool in kubernetes mode');
  });

  test('the API server goes away: the leader cannot renew, stops acting within the renew deadline and exits', async () => {
    const k = operators.at(-1)!;
    assert.equal(await k.metric('hypha_operator_is_leader'), 1);
    const t0 = performance.now();
    await cp.stopApiServer();
    try {
      const st = await k.proc!.exited;
      const ms = performance.now() - t0;
      assert.equal(st.code, 1);
      // renewDeadline 3 s after the last renew (at most a retry period before the stop), plus the exit.
      assert.ok(ms < (leaderElection.renewDeadlineSeconds + 2) * 1000, `exited ${Math.round(ms)} ms after the API server stopped`);
      assert.ok(k.logs().some((l) => l.msg === 'leadership lost: stopping and exiting'));
    } finally {
      await cp.startApiServer();
    }
  });
});
