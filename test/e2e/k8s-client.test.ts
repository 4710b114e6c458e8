// The project's API client's writes against a real kube-apiserver: create,
// replace, merge and JSON patch, delete with preconditions, the status
// subresource, and the error predicates on what the server really answers.
// Also installs the HyphaNode CRD and checks its schema is enforced.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeApiError, KubeClient, isAlreadyExists, isConflict, isInvalid, isNotFound } from '../../src/k8s/client.ts';
import { type HyphaNodeObject, HYPHANODES_PATH, hyphaNodePath, normalizeHyphaNode } from '../../src/k8s/hyphanode.ts';
import { type ControlPlane, startControlPlane } from './lib/apiserver.ts';
import { installCrds } from './lib/crds.ts';
import { run } from './lib/proc.ts';

interface ConfigMap {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; uid?: string; resourceVersion?: string; labels?: Record<string, string>; managedFields?: { manager?: string; operation?: string }[] };
  data?: Record<string, string>;
}

const CMS = '/api/v1/namespaces/default/configmaps';
const cmPath = (name: string) => `${CMS}/${name}`;

function expectApiError(pred: (e: unknown) => boolean, statusCode: number) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof KubeApiError, `expected a KubeApiError, got ${String(err)}`);
    assert.ok(pred(err), `predicate failed for ${err.statusCode} ${err.reason}: ${err.message}`);
    assert.equal(err.statusCode, statusCode);
    return true;
  };
}

describe('API client writes against a real API server', () => {
  let cp: ControlPlane;
  let netns: string;
  let work: string;
  let client: KubeClient;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-k8sclient-'));
    netns = `hykc${process.pid.toString(36)}-cp`;
    await run(['ip', 'netns', 'add', netns]);
    cp = await startControlPlane({ netns, listenIp: '127.0.0.1', workDir: work });
    client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath, { userAgent: 'hypha-e2e' });
  }, { timeout: 60 * 60_000 });

  after(async () => {
    client?.close();
    await cp?.stop();
    await run(['ip', 'netns', 'del', netns], { allowFail: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('create returns the stored object (fieldManager recorded); a second create is AlreadyExists', async () => {
    const cm = await client.create<ConfigMap>(CMS, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c1' }, data: { a: '1' } });
    assert.ok(cm.metadata.uid && cm.metadata.resourceVersion);
    assert.deepEqual(cm.data, { a: '1' });
    assert.ok(cm.metadata.managedFields?.some((f) => f.manager === 'hypha-e2e' && f.operation === 'Update'), JSON.stringify(cm.metadata.managedFields));
    await assert.rejects(client.create(CMS, { metadata: { name: 'c1' } }), expectApiError(isAlreadyExists, 409));
    await assert.rejects(client.create(CMS, { metadata: { name: 'c1' } }), (e: unknown) => !isConflict(e));
    await assert.rejects(client.get(cmPath('nope')), expectApiError(isNotFound, 404));
    const dry = await client.create<ConfigMap>(CMS, { metadata: { name: 'dry' } }, { dryRun: true });
    assert.equal(dry.metadata.name, 'dry');
    await assert.rejects(client.get(cmPath('dry')), expectApiError(isNotFound, 404));
  });

  test('replace needs the current resourceVersion: a stale one is a Conflict', async () => {
    const cur = await client.get<ConfigMap>(cmPath('c1'));
    const next = await client.replace<ConfigMap>(cmPath('c1'), { ...cur, data: { a: '2' } });
    assert.deepEqual(next.data, { a: '2' });
    assert.notEqual(next.metadata.resourceVersion, cur.metadata.resourceVersion);
    await assert.rejects(client.replace(cmPath('c1'), { ...cur, data: { a: 'stale' } }), expectApiError(isConflict, 409));
    await assert.rejects(client.replace(cmPath('c1'), { metadata: { name: 'c1' } }), TypeError);
    assert.deepEqual((await client.get<ConfigMap>(cmPath('c1'))).data, { a: '2' });
  });

  test('merge patch: fields merged, null deletes, resourceVersion precondition', async () => {
    const cur = await client.get<ConfigMap>(cmPath('c1'));
    const p1 = await client.mergePatch<ConfigMap>(cmPath('c1'), { data: { b: 'x' }, metadata: { labels: { l: 'v' } } }, { resourceVersion: cur.metadata.resourceVersion });
    assert.deepEqual(p1.data, { a: '2', b: 'x' });
    assert.deepEqual(p1.metadata.labels, { l: 'v' });
    await assert.rejects(client.mergePatch(cmPath('c1'), { data: { c: 'y' } }, { resourceVersion: cur.metadata.resourceVersion }), expectApiError(isConflict, 409));
    const p2 = await client.mergePatch<ConfigMap>(cmPath('c1'), { data: { a: null } });
    assert.deepEqual(p2.data, { b: 'x' });
    await assert.rejects(client.mergePatch(cmPath('nope'), { data: {} }), expectApiError(isNotFound, 404));
  });

  test('JSON patch: ops applied in order, resourceVersion precondition, a failed test op is Invalid', async () => {
    const cur = await client.get<ConfigMap>(cmPath('c1'));
    const p = await client.jsonPatch<ConfigMap>(cmPath('c1'), [
      { op: 'add', path: '/data/z', value: 'zz' },
      { op: 'replace', path: '/data/b', value: 'bb' },
      { op: 'remove', path: '/metadata/labels/l' },
    ], { resourceVersion: cur.metadata.resourceVersion });
    assert.deepEqual(p.data, { b: 'bb', z: 'zz' });
    assert.equal(p.metadata.labels?.l, undefined);
    await assert.rejects(client.jsonPatch(cmPath('c1'), [{ op: 'add', path: '/data/q', value: '1' }], { resourceVersion: cur.metadata.resourceVersion }), expectApiError(isConflict, 409));
    await assert.rejects(client.jsonPatch(cmPath('c1'), [{ op: 'test', path: '/data/b', value: 'other' }]), expectApiError(isInvalid, 422));
  });

  test('delete: uid and resourceVersion preconditions, then NotFound', async () => {
    const cur = await client.get<ConfigMap>(cmPath('c1'));
    await assert.rejects(client.delete(cmPath('c1'), { preconditions: { resourceVersion: '1' } }), expectApiError(isConflict, 409));
    await assert.rejects(client.delete(cmPath('c1'), { preconditions: { uid: '00000000-0000-0000-0000-000000000000' } }), expectApiError(isConflict, 409));
    await client.delete(cmPath('c1'), { preconditions: { uid: cur.metadata.uid, resourceVersion: cur.metadata.resourceVersion } });
    await assert.rejects(client.get(cmPath('c1')), expectApiError(isNotFound, 404));
    await assert.rejects(client.delete(cmPath('c1')), expectApiError(isNotFound, 404));
  });

  describe('the HyphaNode CRD', () => {
    before(async () => {
      assert.ok((await installCrds(cp.hostKubeconfigPath)).includes('hyphanodes.hypha.dev'));
      // Installing again (an upgrade) replaces it and is established at once.
      await installCrds(cp.hostKubeconfigPath);
    });

    const hn = (name: string, spec: HyphaNodeObject['spec'], status?: HyphaNodeObject['status']): HyphaNodeObject => ({
      apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNode', metadata: { name }, spec, ...(status ? { status } : {}),
    });

    test('a good object round-trips and normalises without problems; status on create is ignored', async () => {
      const created = await client.create<HyphaNodeObject>(HYPHANODES_PATH, hn('node-a',
        { addresses: [{ type: 'InternalIP', ip: '192.168.1.10' }], ipam: { podCIDRs: ['10.244.1.0/24'] } },
        { ipam: { operatorError: 'should not be stored' } }));
      assert.equal(created.status, undefined, 'status is a subresource: create drops it');
      const n = normalizeHyphaNode(created);
      assert.deepEqual(n.problems, []);
      assert.deepEqual(n.value?.podCIDRs, ['10.244.1.0/24']);
    });

    test('status is written through the subresource only; spec writes leave it alone', async () => {
      const cur = await client.get<HyphaNodeObject>(hyphaNodePath('node-a'));
      const at = new Date().toISOString();
      const s1 = await client.mergePatchStatus<HyphaNodeObject>(hyphaNodePath('node-a'),
        { status: { ipam: { operatorError: 'pool exhausted', allocatedAt: at } }, spec: { ipam: { podCIDRs: ['10.244.9.0/24'] } } },
        { resourceVersion: cur.metadata.resourceVersion });
      assert.equal(s1.status?.ipam?.operatorError, 'pool exhausted');
      assert.deepEqual(s1.spec?.ipam?.podCIDRs, ['10.244.1.0/24'], 'a status write does not change spec');
      await assert.rejects(client.replaceStatus(hyphaNodePath('node-a'), { ...cur, status: { ipam: {} } }), expectApiError(isConflict, 409));
      const s2 = await client.replaceStatus<HyphaNodeObject>(hyphaNodePath('node-a'), { ...s1, status: { ipam: { allocatedAt: at } } });
      assert.equal(s2.status?.ipam?.operatorError, undefined);
      const sp = await client.mergePatch<HyphaNodeObject>(hyphaNodePath('node-a'), { spec: { addresses: [] }, status: { ipam: { operatorError: 'ignored' } } });
      assert.equal(sp.status?.ipam?.operatorError, undefined, 'a spec write does not change status');
      assert.deepEqual(sp.spec?.ipam?.podCIDRs, ['10.244.1.0/24']);
    });

    test('the schema refuses bad CIDRs and addresses, naming the field', async () => {
      const cases: [HyphaNodeObject['spec'], RegExp][] = [
        [{ ipam: { podCIDRs: ['10.244.1.7/24'] } }, /spec\.ipam\.podCIDRs\[0\]/],
        [{ ipam: { podCIDRs: ['banana'] } }, /spec\.ipam\.podCIDRs\[0\]/],
        [{ addresses: [{ type: 'Hostname' as never, ip: '10.0.0.1' }] }, /spec\.addresses\[0\]\.type/],
        [{ addresses: [{ type: 'InternalIP', ip: '10.0.0.300' }] }, /spec\.addresses\[0\]\.ip/],
      ];
      for (const [spec, field] of cases) {
        await assert.rejects(client.create(HYPHANODES_PATH, hn('bad', spec)), (err: unknown) => {
          assert.ok(isInvalid(err), String(err));
          const causes = (err as KubeApiError).status?.details?.causes ?? [];
          assert.ok(causes.some((c) => field.test(c.field ?? '')), `${JSON.stringify(spec)}: ${JSON.stringify(causes)}`);
          return true;
        });
      }
    });

    test('printer columns: pod CIDRs, internal IP, IPAM error, age', async () => {
      await client.mergePatch(hyphaNodePath('node-a'), { spec: { addresses: [{ type: 'ExternalIP', ip: '203.0.113.5' }, { type: 'InternalIP', ip: '192.168.1.10' }] } });
      await client.mergePatchStatus(hyphaNodePath('node-a'), { status: { ipam: { operatorError: 'pool exhausted' } } });
      // kubectl's view: the object as a meta.k8s.io Table.
      const table = await new Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }>((resolve, reject) => {
        const url = new URL(`${HYPHANODES_PATH}/node-a`, cp.hostUrl);
        const req = request(url, {
          ca: readFileSync(cp.pki.caCert), cert: readFileSync(cp.pki.adminCert), key: readFileSync(cp.pki.adminKey),
          headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
        }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => { body += c; });
          res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as never) : reject(new Error(`${res.statusCode}: ${body}`))));
        });
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual(table.columnDefinitions.map((c) => c.name), ['Name', 'Pod CIDRs', 'Internal IP', 'IPAM Error', 'Age']);
      assert.deepEqual(table.rows[0]?.cells.slice(0, 4), ['node-a', '["10.244.1.0/24"]', '192.168.1.10', 'pool exhausted']);
    });

    test('cluster-scoped, listed by field selector (how an agent watches its own)', async () => {
      await client.create(HYPHANODES_PATH, hn('node-b', {}));
      const list = await client.get<{ items: HyphaNodeObject[] }>(HYPHANODES_PATH, { fieldSelector: 'metadata.name=node-b' });
      assert.deepEqual(list.items.map((i) => i.metadata.name), ['node-b']);
      const gone = await client.get<HyphaNodeObject>(hyphaNodePath('node-b'));
      await client.delete(hyphaNodePath('node-b'), { preconditions: { uid: gone.metadata.uid, resourceVersion: gone.metadata.resourceVersion } });
      await assert.rejects(client.get(hyphaNodePath('node-b')), expectApiError(isNotFound, 404));
    });
  });
});
