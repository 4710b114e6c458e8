// Identities on two nodes against a real API server: pods made through the
// CNI plugin, with Pod objects whose labels (and namespace's labels) make
// their identities; each agent allocates its pods' identities and writes
// every pod address of the cluster into its ipcache with its identity, and
// the node addresses with host / remote-node. Label changes of a pod or of
// its namespace move its address to a new identity on every node; a deleted
// pod's address leaves every ipcache; `hypha identity list` shows the
// identities and how many local pods have each; a restarted agent keeps the
// identities in the datapath.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IpcacheFlags } from '../../src/abi/abi.gen.ts';
import type { IdentityView } from '../../src/agent/identities.ts';
import { HOST_IDENTITY, REMOTE_NODE_IDENTITY, labelsKey, podLabelSet, stringLabels } from '../../src/identity/labels.ts';
import { KubeClient } from '../../src/k8s/client.ts';
import { HYPHAIDENTITIES_PATH, type HyphaIdentityObject, LABELS_KEY_LABEL } from '../../src/k8s/hyphaidentity.ts';
import { HYPHA_BIN, type TestAgent, eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import { installIdentityPolicy } from './lib/crds.ts';
import type { Node, Pod } from './lib/topology.ts';

const NS = 'shop';

describe('identities of pods on two nodes, in every ipcache', () => {
  let c: Cluster;
  let client: KubeClient;
  const pods: Record<string, Pod> = {};
  const labels: Record<string, Record<string, string>> = {};

  const nsLabels = async (): Promise<Record<string, string>> => stringLabels((await client.get<{ metadata: { labels?: unknown } }>(`/api/v1/namespaces/${NS}`)).metadata.labels);
  /** The id of a pod's label set, from the API server (undefined while it has none). */
  const idOf = async (name: string): Promise<number | undefined> => {
    const key = labelsKey(podLabelSet(NS, labels[name]!, await nsLabels()));
    const list = await client.get<{ items: HyphaIdentityObject[] }>(HYPHAIDENTITIES_PATH, { labelSelector: `${LABELS_KEY_LABEL}=${key}` });
    return list.items.length === 1 ? Number(list.items[0]!.metadata.name) : undefined;
  };
  const identityIn = (a: TestAgent, ip: string) => a.ipcache().get(`${ip}/32`)?.identity;
  /** Every agent's ipcache has each named pod's address with that pod's current identity. */
  const everywhere = (what: string, names: string[], timeoutMs = 15_000) => eventually(what, async () => {
    for (const n of names) {
      const id = await idOf(n);
      if (id === undefined) return false;
      for (const a of c.agents) if (identityIn(a, pods[n]!.ip) !== id) return false;
    }
    return true;
  }, timeoutMs).catch(async (err: Error) => {
    const seen = await Promise.all(names.map(async (n) => `${n} ${pods[n]!.ip}: API ${await idOf(n)}, ipcaches ${c.agents.map((a) => identityIn(a, pods[n]!.ip)).join('/')}`));
    const logs = c.agents.map((a) => a.logs().filter((l) => l.level !== 30 || l.component === 'identities' || /identit|pods|namespaces/i.test(String(l.msg))).map((l) => `${a.node.name}: ${String(l.msg)} ${JSON.stringify({ ...l, msg: undefined, time: undefined, pid: undefined, hostname: undefined })}`).join('\n'));
    throw new Error(`${err.message}\n${seen.join('\n')}\n${logs.join('\n')}`);
  });

  /** Pod object (as the scheduler leaves it), the pod through CNI, then its address in the status (as the kubelet writes it). */
  const addPod = async (node: Node, name: string, podLabels: Record<string, string>): Promise<void> => {
    labels[name] = podLabels;
    await client.create(`/api/v1/namespaces/${NS}/pods`, {
      metadata: { name, labels: podLabels }, spec: { nodeName: node.name, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10.2' }] },
    });
    const pod = await c.topo.addPod(node, name, { namespace: NS });
    pods[name] = pod;
    await client.mergePatchStatus(`/api/v1/namespaces/${NS}/pods/${name}`, { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } });
  };

  before(async () => {
    c = await Cluster.create({ name: 'idag', nodes: 2, ipam: 'cluster-pool' });
    await installIdentityPolicy(c.cp.hostKubeconfigPath);
    client = KubeClient.fromKubeconfig(c.cp.hostKubeconfigPath, { userAgent: 'hypha-e2e' });
    await client.create('/api/v1/namespaces', { metadata: { name: NS, labels: { team: 'shop' } } });
    const [n1, n2] = c.nodes as [Node, Node];
    // Two replicas of one workload (different pod-template-hash, one identity) on two nodes, and a database.
    await addPod(n1, 'web-1', { app: 'web', 'pod-template-hash': 'aaa' });
    await addPod(n2, 'web-2', { app: 'web', 'pod-template-hash': 'bbb' });
    await addPod(n2, 'db-1', { app: 'db' });
  });

  after(async () => {
    client?.close();
    await c?.destroy();
  });

  test('every pod address is in both ipcaches with its identity; replicas share one; nodes are host and remote-node', async () => {
    await everywhere('pods in both ipcaches', ['web-1', 'web-2', 'db-1']);
    const web = await idOf('web-1');
    const db = await idOf('db-1');
    assert.equal(await idOf('web-2'), web, 'pod-template-hash is not part of the identity');
    assert.notEqual(web, db);
    assert.ok(web! >= 256 && db! >= 256);
    const [a1, a2] = c.agents as [TestAgent, TestAgent];
    const [n1, n2] = c.nodes as [Node, Node];
    for (const [a, self, other] of [[a1, n1, n2], [a2, n2, n1]] as const) {
      const m = a.ipcache();
      assert.equal(m.get(`${self.ip}/32`)?.identity, HOST_IDENTITY, `${self.name}'s own address`);
      assert.equal(m.get(`${other.ip}/32`)?.identity, REMOTE_NODE_IDENTITY, `${other.name}'s address`);
      // A pod's entry names the node it is on, as its pod CIDR's entry does.
      assert.equal(m.get(`${pods['db-1']!.ip}/32`)?.nodeAddr, n2.ip);
    }
    // Exactly two identities in the cluster: nobody allocated twice.
    const all = (await client.get<{ items: HyphaIdentityObject[] }>(HYPHAIDENTITIES_PATH)).items;
    assert.deepEqual(all.map((o) => Number(o.metadata.name)).sort(), [web, db].sort());
  });

  test('hypha identity list: reserved, the cluster\'s identities, local pods of each', async () => {
    const [a1, a2] = c.agents as [TestAgent, TestAgent];
    const web = await idOf('web-1');
    const db = await idOf('db-1');
    const rows = async (a: TestAgent) => JSON.parse((await c.topo.exec(a.node, [HYPHA_BIN, 'identity', 'list', '--json'])).stdout) as IdentityView[];
    const r1 = await rows(a1);
    assert.deepEqual(r1.filter((r) => r.reserved).map((r) => [r.id, r.reserved]), [[1, 'host'], [2, 'world'], [3, 'unmanaged'], [4, 'health'], [6, 'remote-node']]);
    assert.deepEqual(r1.filter((r) => !r.reserved).map((r) => [r.id, r.namespace, r.podLabels, r.localPods]).sort(), [
      [web, NS, { app: 'web' }, 1], [db, NS, { app: 'db' }, 0],
    ].sort());
    assert.equal((await rows(a2)).find((r) => r.id === db)?.localPods, 1);
    const text = (await c.topo.exec(a2.node, [HYPHA_BIN, 'identity', 'list', '--local'])).stdout;
    const lines = text.trim().split('\n');
    assert.match(lines[0]!, /^ID\s+NAMESPACE\s+LABELS\s+LOCAL PODS$/);
    assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)).sort(), [[String(web), NS, 'app=web', '1'], [String(db), NS, 'app=db', '1']].sort());
  });

  test('a pod\'s label change and its namespace\'s label change give its address a new identity on every node', async () => {
    const dbBefore = await idOf('db-1');
    labels['db-1'] = { app: 'db', role: 'primary' };
    await client.mergePatch(`/api/v1/namespaces/${NS}/pods/db-1`, { metadata: { labels: { role: 'primary' } } });
    await everywhere('db-1 under its new labels', ['db-1']);
    assert.notEqual(await idOf('db-1'), dbBefore);
    const webBefore = await idOf('web-1');
    await client.mergePatch(`/api/v1/namespaces/${NS}`, { metadata: { labels: { team: 'shop-2' } } });
    await everywhere('every pod under the namespace\'s new labels', ['web-1', 'web-2', 'db-1']);
    assert.notEqual(await idOf('web-1'), webBefore);
    assert.equal(await idOf('web-1'), await idOf('web-2'));
  });

  test('a deleted pod\'s address leaves every ipcache', async () => {
    const ip = pods['db-1']!.ip;
    await c.topo.removePod(pods['db-1']!);
    await client.delete(`/api/v1/namespaces/${NS}/pods/db-1`, { gracePeriodSeconds: 0 });
    await eventually('db-1 gone from both ipcaches', () => c.agents.every((a) => !a.ipcache().has(`${ip}/32`)));
    for (const a of c.agents) assert.ok(identityIn(a, pods['web-1']!.ip), 'the others stay');
  });

  test('a restarted agent keeps the identities in its ipcache while it lists again (watched from the kill until it has listed)', async () => {
    const a1 = c.agents[0]!;
    // Pod addresses only: the node table's own entries (node addresses, pod
    // CIDRs) follow the node list, which a restarted agent lists again too.
    const pinned = () => [...a1.ipcache()].filter(([k, v]) => k.endsWith('/32') && (v.flags & IpcacheFlags.POD) !== 0).map(([k, v]) => `${k}=${v.identity}`).sort().join(' ');
    const before = pinned();
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        seen.add(pinned());
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    try {
      await a1.kill9();
      await a1.start(60_000);
      const total = (await client.get<{ items: unknown[] }>(HYPHAIDENTITIES_PATH)).items.length;
      await eventually('identities listed again', async () => (await a1.metric('hypha_identities', { scope: 'cluster' })) === total);
      await eventually('an ipcache sync after the lists', async () => JSON.parse((await a1.http('/status')).body).routing?.lastSync);
      await a1.http('/status');
    } finally {
      watching = false;
      await watcher;
    }
    seen.add(pinned());
    assert.equal(before.split(' ').length, 2, `web-1 and web-2: ${before}`);
    assert.deepEqual([...seen], [before], 'the pod entries never changed');
    assert.equal(await a1.metric('hypha_identity_allocations_total', { outcome: 'created' }), 0, 'the restarted agent found its pods\' identity');
  });
});
