// The agent as a kube-proxy replacement against a real kube-apiserver: what
// the API says ends up in the maps and in real traffic, through API outages,
// 410s and agent restarts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentStatus } from '../../src/agent/status.ts';
import * as native from '../../native/index.ts';
import { svcKeyCodec } from '../../src/abi/lb-codecs.ts';
import { HYPHA_BIN, eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import type * as k8s from '@kubernetes/client-node';
import { type ServiceSpec, serviceObject } from './lib/manifests.ts';
import { lastJsonObject } from './lib/proc.ts';
import { type Pod, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; ok: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }

const web: ServiceSpec = { name: 'web', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 'web' }] };
const httpPort = [{ name: 'http', port: 8080 }];

describe('agent against a real API server', () => {
  let c: Cluster;
  let client: Pod;
  let backends: Pod[];
  const agent = () => c.agents[0]!;
  const loop = (to: string, count: number) =>
    c.topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000']));
  const frontends = () => agent().frontends().map((f) => f.frontend).sort();

  before(async () => {
    c = await Cluster.create({ name: 'k8s', nodes: 1, resyncSeconds: 3, mapSizes: { services: 16384, backends: 4096, affinity: 4096, ct: 65536 } });
    const node = c.nodes[0]!;
    client = await c.topo.addPod(node, 'client');
    backends = [];
    for (const n of ['b1', 'b2', 'b3']) backends.push(await c.addServingPod(node, n));
  });

  after(async () => {
    await c?.destroy();
  });

  test('a Service and its EndpointSlice become a frontend with all backends, and traffic reaches each', async () => {
    await c.applyService(web);
    await c.applySlice(web, Cluster.endpoints(backends), httpPort);
    await eventually('web programmed', () => agent().backendsOf('10.96.0.10:80/TCP')?.length === 3);
    const r = await loop('10.96.0.10:80', 45);
    assert.equal(r.failed, 0, JSON.stringify(r.errors));
    assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2', 'b3']);
  });

  test('an EndpointSlice update removes a backend from new flows', async () => {
    await c.applySlice(web, Cluster.endpoints(backends.slice(0, 2)), httpPort);
    await eventually('b3 gone', () => agent().backendsOf('10.96.0.10:80/TCP')?.length === 2);
    const r = await loop('10.96.0.10:80', 30);
    assert.equal(r.failed, 0);
    assert.equal(r.replies.b3, undefined);
  });

  test('a Service spread over two slices merges them; an endpoint in both counts once', async () => {
    await c.applySlice(web, Cluster.endpoints([backends[1]!, backends[2]!]), httpPort, 'web-2');
    await eventually('merged', () => agent().backendsOf('10.96.0.10:80/TCP')?.length === 3);
    await c.deleteSlice('web-2');
    await eventually('slice removed', () => agent().backendsOf('10.96.0.10:80/TCP')?.length === 2);
  });

  test('NodePort and ExternalIP are programmed on the Node object\'s address', async () => {
    const np: ServiceSpec = { name: 'np', type: 'NodePort', clusterIP: '10.96.0.11', externalIPs: ['198.51.100.9'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30111 }] };
    await c.applyService(np);
    await c.applySlice(np, Cluster.endpoints(backends), httpPort);
    const nodeIp = c.nodes[0]!.ip;
    await eventually('NodePort on the node address', () => frontends().includes(`${nodeIp}:30111/TCP`) && frontends().includes('198.51.100.9:80/TCP'));
    const r = await loop(`${nodeIp}:30111`, 10);
    assert.equal(r.failed, 0);
  });

  test('a deleted Service leaves the maps; a Service without endpoints refuses at once', async () => {
    const gone: ServiceSpec = { name: 'gone', clusterIP: '10.96.0.12', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    await c.applyService(gone);
    await eventually('gone programmed', () => frontends().includes('10.96.0.12:80/TCP'));
    const refused = await c.topo.execJson<{ ok: boolean; error: string; ms: number }>(client, toolArgv('client', ['once', '--to', '10.96.0.12:80', '--timeout', '2000']), { allowFail: true });
    assert.deepEqual([refused.ok, refused.error], [false, 'ECONNREFUSED']);
    await c.deleteService('gone');
    await eventually('gone removed', () => !frontends().includes('10.96.0.12:80/TCP'));
  });

  test('a Service another proxy implements (service-proxy-name) or marked headless is left alone, as kube-proxy leaves it; without the label it is served', async () => {
    const other: ServiceSpec = { name: 'other-proxy', clusterIP: '10.96.0.116', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    const marked: ServiceSpec = { name: 'marked-headless', clusterIP: '10.96.0.117', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    for (const [spec, labels] of [[other, { 'service.kubernetes.io/service-proxy-name': 'foo-bar' }], [marked, { 'service.kubernetes.io/headless': '' }]] as const) {
      const body = serviceObject(spec) as k8s.V1Service;
      body.metadata = { ...body.metadata, labels };
      await c.core.createNamespacedService({ namespace: 'default', body });
      await c.applySlice(spec, Cluster.endpoints(backends), httpPort);
    }
    // A Service created after them is programmed: by then they would have been too.
    const probe: ServiceSpec = { name: 'probe', clusterIP: '10.96.0.118', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    await c.applyService(probe);
    await eventually('probe programmed', () => frontends().includes('10.96.0.118:80/TCP'));
    assert.ok(!frontends().includes('10.96.0.116:80/TCP') && !frontends().includes('10.96.0.117:80/TCP'), frontends().join(' '));
    const cur = await c.core.readNamespacedService({ name: 'other-proxy', namespace: 'default' });
    cur.metadata = { ...cur.metadata, labels: {} };
    await c.core.replaceNamespacedService({ name: 'other-proxy', namespace: 'default', body: cur });
    await eventually('other-proxy programmed once its label is gone', () => agent().backendsOf('10.96.0.116:80/TCP')?.length === 3);
    for (const n of ['other-proxy', 'marked-headless', 'probe']) await c.deleteService(n);
  });

  test('bad objects do not stop the agent: a slice of a Service that does not exist, 5 000 endpoints that do not fit', async () => {
    const orphan: ServiceSpec = { name: 'nobody', clusterIP: '10.96.0.13', ports: [{ name: 'http', port: 80 }] };
    await c.applySlice(orphan, Cluster.endpoints(backends), httpPort);
    const big: ServiceSpec = { name: 'big', clusterIP: '10.96.0.14', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    await c.applyService(big);
    for (let s = 0; s < 5; s++) {
      // 1 000 endpoints per slice (the API's limit), 5 slices.
      const eps = Array.from({ length: 1000 }, (_, i) => ({ ip: `10.${250 + s}.${Math.floor(i / 250)}.${(i % 250) + 1}`, node: 'elsewhere' }));
      await c.applySlice(big, eps, httpPort, `big-${s}`);
    }
    const line = await eventually('the refusal logged', () => agent().logs().find((l) => /Service default\/big: endpoints: 5000 do not fit the maps/.test(String(l.msg))));
    assert.ok(line);
    assert.ok(!frontends().includes('10.96.0.14:80/TCP'));
    assert.ok((await agent().metric('hypha_object_problems_total')) >= 1);
    const r = await loop('10.96.0.10:80', 10);
    assert.equal(r.failed, 0, 'other Services keep working');
    assert.equal((await agent().http('/healthz')).status, 200);
  });

  test('a map entry deleted by hand comes back at the next full resync, and traffic with it', async () => {
    const h = native.openPinnedMap(`${agent().opts.pinRoot}/hypha_lb4_services_v1`);
    try {
      assert.equal(native.mapDelete(h, svcKeyCodec.encode({ addr: '10.96.0.10', dport: 80, proto: 6, scope: 0, slot: 0 })), true);
    } finally {
      native.close(h);
    }
    assert.equal(agent().backendsOf('10.96.0.10:80/TCP'), undefined, 'the frontend is gone from the maps');
    await eventually('repaired', () => (agent().backendsOf('10.96.0.10:80/TCP')?.length ?? 0) > 0, 20_000);
    assert.equal((await loop('10.96.0.10:80', 10)).failed, 0);
  });

  test('hypha status shows the API connection and map use; hypha service list names each Service, also with the agent down', async () => {
    const node = c.nodes[0]!;
    const pinRoot = agent().opts.pinRoot;
    const status = await c.topo.exec(node, [HYPHA_BIN, 'status', '--pin-root', pinRoot]);
    assert.match(status.stdout, /api server\s+connected/);
    assert.match(status.stdout, /services\s+watching/);
    assert.match(status.stdout, /map\s+hypha_lb4_services_v1\s+\d+ \/ 16384/);
    assert.match(status.stdout, new RegExp(`node\\s+n1 \\(${node.ip.replace(/\./g, '\\.')}\\)`));
    await agent().stop();
    try {
      const list = await c.topo.exec(node, [HYPHA_BIN, 'service', 'list', '--pin-root', pinRoot]);
      assert.match(list.stdout, /default\/web:http\s+10\.96\.0\.10:80\/TCP\s+ClusterIP\s+internal/);
      const down = await c.topo.exec(node, [HYPHA_BIN, 'status', '--pin-root', pinRoot]);
      assert.match(down.stdout, /agent\s+not reachable/);
    } finally {
      await agent().start(60_000);
    }
  });

  test('the agent starts while the API server is down, keeps the datapath, and catches up when it is back', async () => {
    await agent().stop();
    const late: ServiceSpec = { name: 'late', clusterIP: '10.96.0.15', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    await c.applyService(late);
    await c.applySlice(late, Cluster.endpoints(backends), httpPort);
    await c.cp.stopApiServer();
    const started = agent().start(120_000);
    // The agent is up and has tried the API server: its status shows a failed list.
    await eventually('a failed list in the status', async () => {
      const st = JSON.parse((await agent().http('/status')).body) as AgentStatus;
      return st.source.kind === 'kubernetes' && st.source.informers.some((i) => i.lastError !== null);
    }, 60_000);
    assert.equal((await agent().http('/readyz')).status, 503, 'not ready without the API server');
    assert.equal((await loop('10.96.0.10:80', 10)).failed, 0, 'the pinned datapath still serves');
    await c.cp.startApiServer();
    await started;
    await eventually('late programmed', () => frontends().includes('10.96.0.15:80/TCP'));
    assert.equal((await agent().http('/readyz')).status, 200);
  });

  test('an API server restart with compacted history: the agent relists on 410 and the maps equal the API', async () => {
    await c.cp.stopApiServer();
    await c.cp.startApiServer();
    // Changes the agent's old watch never saw, then history compacted away.
    await c.deleteService('late');
    const fresh: ServiceSpec = { name: 'fresh', clusterIP: '10.96.0.16', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    await c.applyService(fresh);
    await c.applySlice(fresh, Cluster.endpoints(backends.slice(0, 1)), httpPort);
    await c.cp.compactEtcd();
    await eventually('maps equal the API', async () => {
      const f = frontends();
      return f.includes('10.96.0.16:80/TCP') && !f.includes('10.96.0.15:80/TCP');
    }, 60_000);
    const svcs = await c.core.listServiceForAllNamespaces();
    const inApi = new Set(svcs.items.flatMap((s) => (s.spec?.clusterIP && s.spec.clusterIP !== 'None' ? (s.spec.ports ?? []).map((p) => `${s.spec!.clusterIP}:${p.port}/${p.protocol ?? 'TCP'}`) : [])));
    const programmed = new Set(frontends().filter((f) => f.startsWith('10.96.')));
    // Everything programmed is in the API; everything in the API with endpoints that fit is programmed.
    for (const f of programmed) assert.ok(inApi.has(f), `${f} is in the API`);
    for (const f of ['10.96.0.10:80/TCP', '10.96.0.16:80/TCP', '10.96.0.11:80/TCP']) assert.ok(programmed.has(f), `${f} is programmed`);
    assert.ok((await agent().metric('hypha_k8s_watch_restarts_total', { reason: 'gone' })) >= 1, 'a watch was answered 410 Gone and relisted');
  });

  test('the agent is killed and restarted while traffic flows: no connection fails', async () => {
    const stream = c.topo.spawn(client, toolArgv('client', ['stream', '--to', '10.96.0.10:80', '--duration', '8', '--interval', '10']));
    const conns = c.topo.spawn(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--duration', '8', '--timeout', '2000']));
    // Kill while flows are open (the stream's and the loop's connections are
    // tracked), restart once the datapath has served new connections alone.
    const tracked = (): number => agent().conntrack().filter((e) => e.key.daddr === '10.96.0.10').length;
    await eventually('flows to the Service in conntrack', () => tracked() >= 4);
    await agent().kill9();
    const atKill = agent().conntrack().length;
    await eventually('new connections served with the agent down', () => agent().conntrack().length >= atKill + 20);
    await agent().start(60_000);
    await Promise.all([stream.exited, conns.exited]);
    const s = lastJsonObject(stream.lines.join('\n')) as { ok: boolean; sent: number; echoed: number };
    const l = lastJsonObject(conns.lines.join('\n')) as unknown as LoopResult;
    assert.equal(s.ok, true, JSON.stringify(s));
    assert.equal(l.failed, 0, JSON.stringify(l));
    assert.ok(l.attempts > 100);
  });
});
