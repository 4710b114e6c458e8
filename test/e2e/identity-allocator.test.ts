// Security identities against a real API server: the HyphaIdentity CRD and
// its update policy as the API server enforces them; allocators (each with
// its own client, as separate agents would be) racing on the same and on
// different label sets, never giving one set two ids nor one id two sets; a
// restarted allocator; exhaustion; and the operator (a real process)
// collecting unused identities after the grace period while keeping the
// ones pods use.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { IdentityAllocator, isIdentityError } from '../../src/identity/allocator.ts';
import { KubeIdentityStore } from '../../src/identity/kube-store.ts';
import { type LabelSet, canonicalLabelSet, labelsKey, stringLabels } from '../../src/identity/labels.ts';
import { KubeApiError, KubeClient, isInvalid, isNotFound } from '../../src/k8s/client.ts';
import { HYPHAIDENTITIES_PATH, type HyphaIdentityObject, LABELS_KEY_LABEL, hyphaIdentityBody, hyphaIdentityPath, normalizeHyphaIdentity } from '../../src/k8s/hyphaidentity.ts';
import { eventually } from './lib/agent.ts';
import { type ControlPlane, startControlPlane } from './lib/apiserver.ts';
import { installCrds, installIdentityPolicy } from './lib/crds.ts';
import { TestOperator } from './lib/operator.ts';
import { type Host, Topology } from './lib/topology.ts';

const GRACE_SECONDS = 3;

describe('identities against a real API server', () => {
  let topo: Topology;
  let host: Host;
  let cp: ControlPlane;
  let work: string;
  let client: KubeClient;
  const clients: KubeClient[] = [];
  let operator: TestOperator | undefined;

  const allocator = (range?: { min: number; max: number }): IdentityAllocator => {
    const c = KubeClient.fromKubeconfig(cp.hostKubeconfigPath, { userAgent: `hypha-e2e-allocator-${clients.length}` });
    clients.push(c);
    return new IdentityAllocator({ store: new KubeIdentityStore(c), ...(range ? { range } : {}) });
  };
  const liveIdentities = async () => (await client.get<{ items: HyphaIdentityObject[] }>(HYPHAIDENTITIES_PATH)).items.map((o) => normalizeHyphaIdentity(o).value!);
  const exists = (id: number) => client.get(hyphaIdentityPath(id)).then(() => true, (e: unknown) => {
    if (isNotFound(e)) return false;
    throw e;
  });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-identity-'));
    topo = await Topology.create({ name: 'ident' });
    host = await topo.addControlPlaneHost();
    cp = await startControlPlane({ netns: host.netns, listenIp: host.ip, workDir: path.join(work, 'control-plane') });
    await installCrds(cp.hostKubeconfigPath);
    await installIdentityPolicy(cp.hostKubeconfigPath);
    client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath, { userAgent: 'hypha-e2e' });
  }, { timeout: 60 * 60_000 });

  after(async () => {
    await operator?.stop(1000).catch(() => undefined);
    for (const c of clients) c.close();
    client?.close();
    await cp?.stop().catch(() => undefined);
    await topo?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('HyphaIdentity: the name is an id in 256..65535, the spec is validated and immutable, no update is accepted, delete is', async () => {
    const set: LabelSet = { namespace: 'crd', podLabels: { app: 'web' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'crd' } };
    for (const name of ['255', '65536', '0300', 'web']) {
      await assert.rejects(client.create(HYPHAIDENTITIES_PATH, { ...hyphaIdentityBody(300, set), metadata: { name } }), (e: unknown) => {
        assert.ok(isInvalid(e), String(e));
        assert.match((e as Error).message, /metadata\.name must be an identity from 256 to 65535, in decimal/);
        return true;
      }, name);
    }
    await assert.rejects(client.create(HYPHAIDENTITIES_PATH, { ...hyphaIdentityBody(300, set), spec: { namespace: 'Bad_NS', podLabels: { app: 7 } } }), (e: unknown) => {
      assert.ok(isInvalid(e));
      assert.match((e as Error).message, /spec\.namespace/);
      return true;
    });
    const obj = await client.create<HyphaIdentityObject>(HYPHAIDENTITIES_PATH, hyphaIdentityBody(300, set));
    assert.equal(obj.metadata.labels?.[LABELS_KEY_LABEL], labelsKey(set));
    // A spec change: the CRD's rule. A label change: the admission policy.
    await assert.rejects(client.mergePatch(hyphaIdentityPath(300), { spec: { podLabels: { app: 'db' } } }), (e: unknown) => {
      assert.match((e as Error).message, /spec is immutable/);
      return true;
    });
    await assert.rejects(client.mergePatch(hyphaIdentityPath(300), { metadata: { labels: { [LABELS_KEY_LABEL]: 'x' } } }), (e: unknown) => {
      assert.ok(e instanceof KubeApiError && e.statusCode === 403, String(e));
      assert.match(e.message, /HyphaIdentity objects are immutable/);
      return true;
    });
    await assert.rejects(client.mergePatch(hyphaIdentityPath(300), { metadata: { finalizers: ['example.com/keep'] } }), /immutable/);
    // kubectl's view: the object as a meta.k8s.io Table.
    const table = await new Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }>((resolve, reject) => {
      const req = request(new URL(hyphaIdentityPath(300), cp.hostUrl), {
        ca: readFileSync(cp.pki.caCert), cert: readFileSync(cp.pki.adminCert), key: readFileSync(cp.pki.adminKey),
        headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
      }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as never) : reject(new Error(`${res.statusCode}: ${body}`))));
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(table.columnDefinitions.map((c) => c.name), ['Name', 'Namespace', 'Pod Labels', 'Labels Key', 'Age']);
    assert.deepEqual(table.rows[0]?.cells.slice(0, 4), ['300', 'crd', '{"app":"web"}', labelsKey(set)]);
    const now = await client.get<HyphaIdentityObject>(hyphaIdentityPath(300));
    assert.equal(now.metadata.resourceVersion, obj.metadata.resourceVersion, 'still at its creation revision');
    await client.delete(hyphaIdentityPath(300));
    assert.equal(await exists(300), false);
  });

  test('5 allocators race, 2 rounds: 50 label sets they all ask for and 10 of their own each; one live identity per set, the one every allocator got; no id with two sets', async () => {
    const allocators = Array.from({ length: 5 }, () => allocator());
    const outcomes: Record<string, number> = {};
    const t0 = performance.now();
    for (const round of [1, 2]) {
      const shared = Array.from({ length: 50 }, (_, i): LabelSet => ({ namespace: `race${round}`, podLabels: { app: `s${i}`, tier: i % 2 ? 'a' : 'b' }, namespaceLabels: { 'kubernetes.io/metadata.name': `race${round}` } }));
      const own = (a: number) => Array.from({ length: 10 }, (_, i): LabelSet => ({ namespace: `race${round}`, podLabels: { app: `own${a}-${i}` }, namespaceLabels: { 'kubernetes.io/metadata.name': `race${round}` } }));
      // Every allocator asks for all of them at once, each in its own order.
      const got = await Promise.all(allocators.flatMap((al, a) => {
        const sets = [...shared, ...own(a)];
        const order = a % 2 ? sets.reverse() : sets;
        return order.map(async (s) => {
          const r = await al.allocate(s);
          outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
          return { canon: canonicalLabelSet(s), id: r.identity.id };
        });
      }));
      const idsOfSet = new Map<string, Set<number>>();
      for (const g of got) {
        if (!idsOfSet.has(g.canon)) idsOfSet.set(g.canon, new Set());
        idsOfSet.get(g.canon)!.add(g.id);
      }
      assert.equal(idsOfSet.size, 50 + 5 * 10);
      for (const [c, ids] of idsOfSet) assert.equal(ids.size, 1, `${c} was given ids ${[...ids].join(', ')}`);
      const live = (await liveIdentities()).filter((i) => i.namespace === `race${round}`);
      const liveBySet = new Map<string, number[]>();
      for (const i of live) liveBySet.set(canonicalLabelSet(i), [...(liveBySet.get(canonicalLabelSet(i)) ?? []), i.id]);
      for (const [c, ids] of idsOfSet) assert.deepEqual(liveBySet.get(c), [...ids], `${c}: live ${JSON.stringify(liveBySet.get(c))}`);
      assert.equal(live.length, idsOfSet.size, 'no leftover of a lost race');
      assert.equal(new Set(live.map((i) => i.id)).size, live.length);
    }
    process.stderr.write(`# 2 rounds of 5 allocators x 100 label sets in ${Math.round(performance.now() - t0)} ms: ${JSON.stringify(outcomes)}\n`);
    assert.ok((outcomes['lost-race'] ?? 0) + (outcomes.existing ?? 0) > 0);
  });

  test('allocators crowded into 64 ids, each with 12 sets of its own: creates clash by name, yet no id ever has two sets', async () => {
    const range = { min: 64000, max: 64063 };
    const allocators = Array.from({ length: 5 }, () => allocator(range));
    const sets = (a: number) => Array.from({ length: 12 }, (_, i): LabelSet => ({ namespace: 'crowd', podLabels: { app: `c${a}-${i}` }, namespaceLabels: {} }));
    const got = await Promise.all(allocators.flatMap((al, a) => sets(a).map(async (s) => ({ canon: canonicalLabelSet(s), id: (await al.allocate(s)).identity.id }))));
    const setOfId = new Map<number, string>();
    for (const g of got) {
      assert.ok(g.id >= range.min && g.id <= range.max);
      assert.equal(setOfId.get(g.id) ?? g.canon, g.canon, `id ${g.id} was given to two sets`);
      setOfId.set(g.id, g.canon);
    }
    assert.equal(setOfId.size, 60);
    const live = (await liveIdentities()).filter((i) => i.namespace === 'crowd');
    assert.deepEqual(new Map(live.map((i) => [i.id, canonicalLabelSet(i)])), setOfId);

    // The ids left (4, less any the earlier test's allocators happened to
    // pick from the whole range) are given out; then a set finds none, and
    // the error says which range.
    const taken = (await liveIdentities()).filter((i) => i.id >= range.min && i.id <= range.max).length;
    const more = allocator(range);
    for (let i = 0; i < 64 - taken; i++) await more.allocate({ namespace: 'crowd', podLabels: { app: `more${i}` }, namespaceLabels: {} });
    await assert.rejects(more.allocate({ namespace: 'crowd', podLabels: { app: 'one-too-many' }, namespaceLabels: {} }), (e: unknown) => {
      assert.ok(isIdentityError(e, 'E_IDENTITY_EXHAUSTED'), String(e));
      assert.match(e.message, /^no free security identity in 64000\.\.64063: all 64 are in use/);
      return true;
    });
  });

  test('an allocator on a client that also holds more watches than its request pool has sockets (an agent has 8) still gets answers', async () => {
    const c = KubeClient.fromKubeconfig(cp.hostKubeconfigPath, { userAgent: 'hypha-e2e-watches' });
    clients.push(c);
    const watches = Array.from({ length: 10 }, () => c.watch(HYPHAIDENTITIES_PATH, { timeoutSeconds: 60 }, () => {}, () => {}));
    try {
      let timer: NodeJS.Timeout | undefined;
      const got = await Promise.race([
        new IdentityAllocator({ store: new KubeIdentityStore(c) }).allocate({ namespace: 'watches', podLabels: { app: 'w' }, namespaceLabels: {} }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer in 10 s: the requests wait behind the watches')), 10_000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(got.outcome, 'created');
    } finally {
      for (const w of watches) w.abort();
    }
  });

  test('a restarted allocator (new client, nothing cached) finds every set\'s identity and creates nothing', async () => {
    const before = await liveIdentities();
    const fresh = allocator();
    const race1 = before.filter((i) => i.namespace === 'race1');
    assert.ok(race1.length === 100);
    for (const i of race1) {
      const r = await fresh.allocate({ namespace: i.namespace, podLabels: i.podLabels, namespaceLabels: i.namespaceLabels });
      assert.deepEqual([r.outcome, r.identity.id], ['existing', i.id]);
    }
    const after = await liveIdentities();
    assert.deepEqual(after.map((i) => [i.id, i.resourceVersion]).sort(), before.map((i) => [i.id, i.resourceVersion]).sort());
  });

  test('the operator collects identities no pod uses once idle for the grace period, keeps those pods use or got just now, and removes leftovers of lost races', async () => {
    // The earlier tests' identities have no pods: out of the way first.
    await Promise.all((await liveIdentities()).map((i) => client.delete(hyphaIdentityPath(i.id))));
    await client.create('/api/v1/namespaces', { metadata: { name: 'gc', labels: { team: 'x' } } });
    const ns = await client.get<{ metadata: { labels?: Record<string, string> } }>('/api/v1/namespaces/gc');
    const nsLabels = stringLabels(ns.metadata.labels);
    const set = (app: string): LabelSet => ({ namespace: 'gc', podLabels: { app }, namespaceLabels: nsLabels });
    const pod = (name: string, app: string) => client.create('/api/v1/namespaces/gc/pods', {
      metadata: { name, labels: { app, 'pod-template-hash': `h-${name}` } }, spec: { containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10.2' }] },
    });
    const a = allocator();
    await pod('used-1', 'used');
    const used = (await a.allocate(set('used'))).identity;
    const unused = (await a.allocate(set('unused'))).identity;
    // The leftover of an allocator that lost a race and died before deleting
    // its object: a second identity of the 'used' set, created later.
    const store = new KubeIdentityStore(client);
    const dup = await store.create(65000, set('used'));
    assert.notEqual(dup, 'exists');

    operator = new TestOperator(topo, host, {
      identity: 'op-gc', kubeconfig: cp.kubeconfigPath, workDir: path.join(work, 'op-gc'), port: 9950, ipam: { mode: 'kubernetes' },
      identityGc: { graceSeconds: GRACE_SECONDS, intervalSeconds: 0.5 },
      leaderElection: { leaseDurationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 0.5 },
    });
    await operator.start();
    await eventually('operator leads', async () => await operator!.metric('hypha_operator_is_leader') === 1, 15_000);
    await eventually('the collector has listed', async () => (JSON.parse((await operator!.http('/status')).body) as { identities?: { synced?: boolean } }).identities?.synced === true);
    // A set allocated for a pod the operator has not seen yet (an agent is faster than the operator's watch).
    const late = (await a.allocate(set('late'))).identity;
    await pod('late-1', 'late');

    const t0 = performance.now();
    await eventually('the unused identity collected', async () => !(await exists(unused.id)), 20_000);
    await eventually('the duplicate collected', async () => !(await exists(65000)), 10_000);
    const tookMs = performance.now() - t0;
    assert.equal(await exists(used.id), true, 'a pod uses it');
    assert.equal(await exists(late.id), true, 'its pod came right after it');
    assert.equal(await operator.metric('hypha_operator_identities_collected_total', { reason: 'unused' }), 1);
    assert.equal(await operator.metric('hypha_operator_identities_collected_total', { reason: 'duplicate' }), 1);
    assert.equal(await operator.metric('hypha_operator_identities_allocated_total'), 1, 'the late one, created after the operator listed');
    process.stderr.write(`# unused identity collected ${Math.round(tookMs)} ms after the operator led (grace ${GRACE_SECONDS} s)\n`);

    // The last pod of a set goes: its identity is collected a grace period later.
    const goneAt = performance.now();
    await client.delete('/api/v1/namespaces/gc/pods/used-1', { gracePeriodSeconds: 0 });
    await eventually('the identity of the deleted pod collected', async () => !(await exists(used.id)), 20_000);
    const afterMs = performance.now() - goneAt;
    assert.ok(afterMs >= GRACE_SECONDS * 1000 - 200, `collected ${Math.round(afterMs)} ms after its last pod left (grace ${GRACE_SECONDS} s)`);
    assert.equal(await exists(late.id), true);
    // What the collector deleted was only what it should have.
    const left = (await liveIdentities()).filter((i) => i.namespace === 'gc').map((i) => i.podLabels.app);
    assert.deepEqual(left, ['late']);
  });
});
