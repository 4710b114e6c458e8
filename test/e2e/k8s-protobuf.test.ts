// The agent's protobuf lists against a real kube-apiserver: Services and
// EndpointSlices of every shape the normalizers read, listed both in JSON and
// in protobuf (src/k8s/protobuf.ts), must normalise to the same thing; pages
// carry the continue token and the resourceVersion a watch resumes from; a
// failure's Status is read from protobuf; a custom resource (which the API
// server cannot send as protobuf) comes back as JSON and is read as JSON.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeApiError, KubeClient, isNotFound } from '../../src/k8s/client.ts';
import { HYPHANODES_PATH } from '../../src/k8s/hyphanode.ts';
import { Informer, type ListPage, type ObjectMeta, objectKey } from '../../src/k8s/informer.ts';
import { ENDPOINT_SLICE_LIST, type Schema, SERVICE_LIST } from '../../src/k8s/protobuf.ts';
import { normalizeEndpointSlice, normalizeService } from '../../src/services/normalize.ts';
import { eventually } from './lib/agent.ts';
import { type ControlPlane, startControlPlane } from './lib/apiserver.ts';
import { installCrds } from './lib/crds.ts';
import { run } from './lib/proc.ts';

const SERVICES = '/api/v1/namespaces/default/services';
const SLICES = '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices';

const svc = (name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: { name, labels: { app: name } }, spec, ...extra });
const port = (p: number, extra: Record<string, unknown> = {}) => ({ name: `p${p}`, port: p, ...extra });

/** Every field normalizeService reads, in the values a real cluster has. */
const SERVICE_OBJECTS = [
  svc('plain', { ports: [{ port: 80 }] }),
  svc('named-target', { ports: [port(80, { targetPort: 'http' }), port(53, { protocol: 'UDP', targetPort: 5353 })] }),
  svc('node-port', { type: 'NodePort', ports: [port(80, { nodePort: 30080 })], externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local' }),
  svc('affinity', { ports: [{ port: 443 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }),
  svc('external', { ports: [{ port: 8080 }], externalIPs: ['192.0.2.10', '192.0.2.11'] }),
  svc('lb', { type: 'LoadBalancer', ports: [port(80), port(81)], externalTrafficPolicy: 'Local', allocateLoadBalancerNodePorts: true }),
  svc('headless', { clusterIP: 'None', ports: [{ port: 80 }] }),
  svc('external-name', { type: 'ExternalName', externalName: 'db.example.com' }),
  svc('no-ports', { clusterIP: 'None', selector: { app: 'x' } }),
  svc('dual-asked', { ports: [{ port: 80 }], ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4'] }),
];

const slice = (name: string, service: string | undefined, body: Record<string, unknown>) => ({
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { name, labels: service ? { 'kubernetes.io/service-name': service } : { other: 'yes' } },
  addressType: 'IPv4', ...body,
});

/** Every field normalizeEndpointSlice reads, conditions set, unset and false. */
const SLICE_OBJECTS = [
  slice('plain-1', 'plain', { ports: [{ name: '', port: 80, protocol: 'TCP' }], endpoints: [{ addresses: ['10.1.0.1'], conditions: { ready: true }, nodeName: 'n1' }] }),
  slice('conditions-1', 'plain', {
    ports: [{ name: 'p80', port: 80 }, { name: 'p53', port: 53, protocol: 'UDP' }],
    endpoints: [
      { addresses: ['10.1.0.2'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'n2' },
      { addresses: ['10.1.0.3'], conditions: {} },
      { addresses: ['10.1.0.4'] },
      { addresses: ['10.1.0.5'], conditions: { ready: false, serving: false, terminating: false }, hostname: 'h', zone: 'z1', hints: { forZones: [{ name: 'z1' }] } },
    ],
  }),
  slice('no-ports-1', 'no-ports', { ports: [{}], endpoints: [] }),
  slice('empty-1', 'plain', { endpoints: [] }),
  slice('v6-1', 'plain', { addressType: 'IPv6', ports: [{ port: 80 }], endpoints: [{ addresses: ['fd00::1'] }] }),
  slice('fqdn-1', 'plain', { addressType: 'FQDN', ports: [{ port: 80 }], endpoints: [{ addresses: ['db.example.com'] }] }),
  slice('unlabelled-1', undefined, { ports: [{ port: 80 }], endpoints: [{ addresses: ['10.1.0.9'] }] }),
];

describe('protobuf lists against a real API server', () => {
  let cp: ControlPlane;
  let netns: string;
  let work: string;
  let client: KubeClient;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-k8spb-'));
    netns = `hypb${process.pid.toString(36)}-cp`;
    await run(['ip', 'netns', 'add', netns]);
    cp = await startControlPlane({ netns, listenIp: '127.0.0.1', workDir: work });
    client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath, { userAgent: 'hypha-e2e' });
    for (const s of SERVICE_OBJECTS) await client.create(SERVICES, s);
    await client.mergePatchStatus(`${SERVICES}/lb`, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.5', ipMode: 'VIP' }, { hostname: 'lb.example.com' }] } } });
    for (const s of SLICE_OBJECTS) await client.create(SLICES, s);
  }, { timeout: 60 * 60_000 });

  after(async () => {
    client?.close();
    await cp?.stop();
    await run(['ip', 'netns', 'del', netns], { allowFail: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Every page of a list (pages of 3: the continue token is exercised). */
  async function listAll(pathname: string, schema?: Schema): Promise<{ items: ObjectMeta[]; resourceVersion: string; pages: number }> {
    const items: ObjectMeta[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    let pages = 0;
    do {
      const query = { limit: 3, continue: cont };
      const page = schema ? await client.getProtobuf<ListPage<ObjectMeta>>(schema, pathname, query) : await client.get<ListPage<ObjectMeta>>(pathname, query);
      items.push(...page.items);
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      cont = page.metadata?.continue || undefined;
      pages++;
    } while (cont);
    return { items, resourceVersion, pages };
  }

  for (const [what, pathname, schema, normalize] of [
    ['Services', SERVICES, SERVICE_LIST, normalizeService],
    ['EndpointSlices', SLICES, ENDPOINT_SLICE_LIST, normalizeEndpointSlice],
  ] as const) {
    test(`${what}: the protobuf list normalises exactly as the JSON list, object by object`, async () => {
      const json = await listAll(pathname);
      const pb = await listAll(pathname, schema);
      const count = what === 'Services' ? SERVICE_OBJECTS.length : SLICE_OBJECTS.length;
      assert.equal(pb.items.length, json.items.length);
      assert.ok(pb.items.length >= count, `${pb.items.length} listed`);
      assert.ok(pb.pages >= 3, `${pb.pages} pages`);
      assert.equal(pb.resourceVersion, json.resourceVersion, 'the same resourceVersion to watch from');
      for (let i = 0; i < json.items.length; i++) {
        const key = objectKey(json.items[i]!);
        assert.equal(objectKey(pb.items[i]!), key);
        assert.equal(pb.items[i]!.metadata?.resourceVersion, json.items[i]!.metadata?.resourceVersion, key);
        assert.deepEqual((normalize as (o: unknown) => unknown)(pb.items[i]), (normalize as (o: unknown) => unknown)(json.items[i]), key);
      }
    });
  }

  test('values whose JSON and protobuf forms differ: a named targetPort, conditions false and unset, a load balancer ingress', async () => {
    const services = new Map((await listAll(SERVICES, SERVICE_LIST)).items.map((o) => [objectKey(o), o as ObjectMeta & { spec: any; status: any }]));
    assert.equal(services.get('default/named-target')!.spec.ports[0].targetPort, 'http');
    assert.equal(services.get('default/named-target')!.spec.ports[1].targetPort, 5353);
    assert.equal(services.get('default/plain')!.spec.ports[0].name, undefined, 'an empty name is left out, as in JSON');
    assert.deepEqual(services.get('default/lb')!.status.loadBalancer.ingress, [{ ip: '203.0.113.5', ipMode: 'VIP' }, { hostname: 'lb.example.com' }]);
    assert.match((services.get('default/plain')!.metadata as { creationTimestamp?: string }).creationTimestamp ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const lb = normalizeService(services.get('default/lb'));
    assert.deepEqual(lb.value?.loadBalancerIPs, ['203.0.113.5']);
    const slices = new Map((await listAll(SLICES, ENDPOINT_SLICE_LIST)).items.map((o) => [objectKey(o), o as ObjectMeta & { endpoints: any[] }]));
    const eps = slices.get('default/conditions-1')!.endpoints;
    assert.deepEqual(eps.map((e) => e.conditions), [{ ready: false, serving: true, terminating: true }, {}, {}, { ready: false, serving: false, terminating: false }]);
    assert.equal(eps[0].nodeName, 'n2');
    assert.equal('nodeName' in eps[1], false);
  });

  test('an informer with a protobuf schema lists in pages, then follows changes over its JSON watch', async () => {
    const seen = new Map<string, unknown>();
    let synced = 0;
    const inf = new Informer<ObjectMeta>(client, { resource: 'services', path: SERVICES, protobuf: SERVICE_LIST, pageSize: 4 });
    inf.start((e) => {
      if (e.type === 'synced') synced++;
      else if (e.type === 'upsert') seen.set(e.key, e.obj);
      else seen.delete(e.key);
    });
    try {
      await eventually('listed', () => synced === 1);
      for (const s of SERVICE_OBJECTS) assert.ok(seen.has(`default/${s.metadata.name}`), s.metadata.name);
      await client.create(SERVICES, svc('late', { ports: [{ port: 99 }] }));
      await client.delete(`${SERVICES}/plain`);
      await eventually('watch events', () => seen.has('default/late') && !seen.has('default/plain'));
      assert.equal(normalizeService(seen.get('default/late')).value?.ports[0]?.port, 99);
    } finally {
      inf.stop();
      await client.create(SERVICES, SERVICE_OBJECTS[0]).catch(() => {});
      await client.delete(`${SERVICES}/late`).catch(() => {});
    }
  });

  test('a failed request answered in protobuf is a KubeApiError with the Status it sent', async () => {
    await assert.rejects(client.getProtobuf(SERVICE_LIST, `${SERVICES}/nope`), (e: unknown) => {
      assert.ok(isNotFound(e), String(e));
      assert.equal((e as KubeApiError).status?.details?.name, 'nope');
      assert.match((e as KubeApiError).message, /404 NotFound: services "nope" not found/);
      return true;
    });
    await assert.rejects(client.getProtobuf(SERVICE_LIST, SERVICES, { labelSelector: 'a in (' }), (e: unknown) => {
      assert.ok(e instanceof KubeApiError, String(e));
      assert.equal(e.statusCode, 400);
      assert.equal(e.reason, 'BadRequest');
      assert.match(e.message, /unable to parse requirement|found '', expected/);
      return true;
    });
  });

  test('a custom resource has no protobuf form: the server answers JSON and it is read as JSON', async () => {
    await installCrds(cp.hostKubeconfigPath);
    await client.create(HYPHANODES_PATH, { apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNode', metadata: { name: 'n1' }, spec: {} }).catch((e: unknown) => {
      throw new Error(`HyphaNode create: ${(e as Error).message}`);
    });
    const page = await client.getProtobuf<ListPage<ObjectMeta>>(SERVICE_LIST, HYPHANODES_PATH);
    const items = [...page.items];
    assert.deepEqual(items.map((o) => o.metadata?.name), ['n1']);
    assert.equal((items[0] as { kind?: string }).kind, 'HyphaNode', 'the whole JSON object');
  });
});
