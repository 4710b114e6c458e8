// The Helm chart (deploy/helm/hypha) against the plain manifests (deploy/):
// with default values `helm template --include-crds` renders the same objects
// as `kubectl kustomize deploy/`; apiServer.host adds exactly the
// hypha-apiserver ConfigMap; podCIDR reaches both components' configs; the
// chart, packaged, renders the same (its links into deploy/ are followed);
// bad values fail naming the field. No root, no cluster: a few seconds.
//
// Objects are compared parsed (order-insensitive, by apiVersion, kind,
// namespace and name); the agent.yaml / operator.yaml texts in ConfigMaps are
// compared parsed too (the chart renders them from values with toYaml, so
// comments and key order differ from deploy/config.yaml).
//
// Needs helm (`make helm-versions`) and kubectl (`make k8s-versions`), built
// first when missing.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, makeTool, runTool } from './lib/make-tools.ts';

const CHART = path.join(REPO_ROOT, 'deploy/helm/hypha');
const NAMESPACE = 'kube-system';

type Obj = Record<string, any>;

function parseObjects(text: string, what: string): Obj[] {
  const out: Obj[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${what}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const obj: unknown = doc.toJS();
    if (obj === null || obj === undefined) continue;
    out.push(obj as Obj);
  }
  return out;
}

function keyOf(o: Obj): string {
  return `${o['apiVersion']} ${o['kind']} ${o['metadata']?.['namespace'] ?? ''}/${o['metadata']?.['name']}`;
}

/** Objects by key, ConfigMap data ending in .yaml parsed (the configs' text). */
function byKey(objects: Obj[]): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const o of objects) {
    const k = keyOf(o);
    assert.ok(!out.has(k), `${k} rendered twice`);
    if (o['kind'] === 'ConfigMap' && o['data']) {
      const data: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(o['data'] as Record<string, string>)) {
        data[name] = name.endsWith('.yaml') ? parseObjects(value, `${k} data ${name}`)[0] ?? null : value;
      }
      o['data'] = data;
    }
    out.set(k, o);
  }
  return out;
}

let helm = '';
let kubectl = '';

function helmTemplate(args: string[] = [], chart = CHART, namespace = NAMESPACE): Map<string, Obj> {
  const r = runTool([helm, 'template', 'hypha', chart, '--namespace', namespace, '--include-crds', ...args]);
  assert.equal(r.status, 0, `helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return byKey(parseObjects(r.stdout, 'helm template'));
}

function helmFails(args: string[]): string {
  const r = runTool([helm, 'template', 'hypha', CHART, '--namespace', NAMESPACE, ...args]);
  assert.notEqual(r.status, 0, `helm template ${args.join(' ')} succeeded; expected it to fail`);
  return r.stderr.split('\n').filter((l) => !l.startsWith('level=INFO')).join('\n');
}

function kustomize(): Map<string, Obj> {
  const r = runTool([kubectl, 'kustomize', path.join(REPO_ROOT, 'deploy')]);
  assert.equal(r.status, 0, `kubectl kustomize deploy/ failed:\n${r.stderr}`);
  return byKey(parseObjects(r.stdout, 'kubectl kustomize'));
}

function assertSameObjects(actual: Map<string, Obj>, expected: Map<string, Obj>, what: string): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), `${what}: the set of objects differs`);
  for (const [k, o] of expected) assert.deepEqual(actual.get(k), o, `${what}: ${k} differs`);
}

function get(objects: Map<string, Obj>, key: string): Obj {
  const o = objects.get(key);
  assert.ok(o, `no ${key} among ${[...objects.keys()].join(', ')}`);
  return o;
}

const CONFIG = `v1 ConfigMap ${NAMESPACE}/hypha-config`;
const APISERVER = `v1 ConfigMap ${NAMESPACE}/hypha-apiserver`;
const AGENT = `apps/v1 DaemonSet ${NAMESPACE}/hypha-agent`;
const OPERATOR = `apps/v1 Deployment ${NAMESPACE}/hypha-operator`;

function containers(o: Obj): Obj[] {
  const pod = o['spec']['template']['spec'];
  return [...(pod['initContainers'] ?? []), ...pod['containers']];
}

describe('deploy/helm/hypha renders deploy/', () => {
  let plain: Map<string, Obj>;
  let chart: Map<string, Obj>;

  before(() => {
    helm = makeTool('helm-versions', 'HELM');
    kubectl = makeTool('k8s-versions', 'KUBECTL');
    plain = kustomize();
    chart = helmTemplate();
  });

  test('default values: the same objects as kubectl kustomize deploy/', () => {
    assert.ok(plain.size >= 10, `kustomize rendered only ${plain.size} objects`);
    assertSameObjects(chart, plain, 'helm template vs kubectl kustomize');
    assert.ok(!chart.has(APISERVER), 'hypha-apiserver rendered with apiServer.host unset');
  });

  test("the chart's appVersion is package.json's version (the image make image builds)", () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const meta = parseObjects(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8'), 'Chart.yaml')[0];
    assert.equal(meta?.['appVersion'], pkg.version);
    for (const c of [...containers(get(chart, AGENT)), ...containers(get(chart, OPERATOR))]) {
      assert.equal(c['image'], `hypha.dev/hypha:${pkg.version}`, `container ${c['name']}`);
    }
  });

  test('apiServer.host adds exactly the hypha-apiserver ConfigMap', () => {
    const withHost = helmTemplate(['--set', 'apiServer.host=hypha-control-plane']);
    const extra = [...withHost.keys()].filter((k) => !chart.has(k));
    assert.deepEqual(extra, [APISERVER]);
    assert.deepEqual(get(withHost, APISERVER)['data'], { KUBERNETES_SERVICE_HOST: 'hypha-control-plane', KUBERNETES_SERVICE_PORT: '6443' });
    withHost.delete(APISERVER);
    assertSameObjects(withHost, chart, 'with apiServer.host, the other objects');
    const port = helmTemplate(['--set', 'apiServer.host=10.0.0.1', '--set', 'apiServer.port=443']);
    assert.equal(get(port, APISERVER)['data']['KUBERNETES_SERVICE_PORT'], '443');
    // Both components read it (envFrom, optional: it may be created later).
    for (const k of [AGENT, OPERATOR]) {
      const main = get(chart, k)['spec']['template']['spec']['containers'][0];
      assert.deepEqual(main['envFrom'], [{ configMapRef: { name: 'hypha-apiserver', optional: true } }], k);
    }
  });

  test('podCIDR reaches the agent (routing.clusterCIDRs) and the operator (ipam.clusterPool.cidrs), nothing else', () => {
    const before = get(chart, CONFIG)['data'];
    assert.deepEqual(before['agent.yaml']['routing']['clusterCIDRs'], ['10.244.0.0/16']);
    assert.deepEqual(before['operator.yaml']['ipam']['clusterPool']['cidrs'], ['10.244.0.0/16']);
    const one = helmTemplate(['--set', 'podCIDR=10.32.0.0/12']);
    const data = get(one, CONFIG)['data'];
    assert.deepEqual(data['agent.yaml']['routing']['clusterCIDRs'], ['10.32.0.0/12']);
    assert.deepEqual(data['operator.yaml']['ipam']['clusterPool']['cidrs'], ['10.32.0.0/12']);
    // Everything else in both configs, and every other object, unchanged.
    data['agent.yaml']['routing']['clusterCIDRs'] = before['agent.yaml']['routing']['clusterCIDRs'];
    data['operator.yaml']['ipam']['clusterPool']['cidrs'] = before['operator.yaml']['ipam']['clusterPool']['cidrs'];
    assertSameObjects(one, chart, 'with podCIDR=10.32.0.0/12, apart from the two CIDR lists');
    const two = get(helmTemplate(['--set', 'podCIDR={10.32.0.0/12,10.64.0.0/12}']), CONFIG)['data'];
    assert.deepEqual(two['agent.yaml']['routing']['clusterCIDRs'], ['10.32.0.0/12', '10.64.0.0/12']);
    assert.deepEqual(two['operator.yaml']['ipam']['clusterPool']['cidrs'], ['10.32.0.0/12', '10.64.0.0/12']);
  });

  test('image, replicas, resources, tolerations and listen ports from values', () => {
    const r = helmTemplate([
      '--set', 'image.repository=registry.example/hypha', '--set', 'image.tag=dev', '--set', 'image.pullPolicy=Always',
      '--set', 'operator.replicas=3', '--set', 'agent.resources.limits.memory=1Gi',
      '--set', 'operator.tolerations=null', '--set', 'agent.config.listen.port=9990', '--set', 'operator.config.listen.port=9991',
    ]);
    const agent = get(r, AGENT);
    const operator = get(r, OPERATOR);
    for (const c of [...containers(agent), ...containers(operator)]) {
      assert.equal(c['image'], 'registry.example/hypha:dev', `container ${c['name']}`);
      assert.equal(c['imagePullPolicy'], 'Always', `container ${c['name']}`);
    }
    assert.equal(operator['spec']['replicas'], 3);
    const main = agent['spec']['template']['spec']['containers'][0];
    assert.deepEqual(main['resources'], { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } });
    assert.equal(operator['spec']['template']['spec']['tolerations'], undefined);
    assert.deepEqual(agent['spec']['template']['spec']['tolerations'], [{ operator: 'Exists' }]);
    for (const p of ['readinessProbe', 'livenessProbe', 'startupProbe']) assert.equal(main[p]['httpGet']['port'], 9990, p);
    const op = operator['spec']['template']['spec']['containers'][0];
    for (const p of ['readinessProbe', 'livenessProbe']) assert.equal(op[p]['httpGet']['port'], 9991, p);
    assert.deepEqual(op['ports'], [{ name: 'metrics', containerPort: 9991 }]);
    const data = get(r, CONFIG)['data'];
    assert.equal(data['agent.yaml']['listen']['port'], 9990);
    assert.equal(data['operator.yaml']['listen']['port'], 9991);
  });

  test("another namespace: every namespaced object, the bindings' subjects and the leader Lease follow it", () => {
    const r = helmTemplate([], CHART, 'hypha-system');
    const namespaced = [...r.values()].filter((o) => o['metadata']['namespace'] !== undefined);
    assert.ok(namespaced.length >= 7, `only ${namespaced.length} namespaced objects`);
    for (const o of namespaced) assert.equal(o['metadata']['namespace'], 'hypha-system', keyOf(o));
    for (const o of r.values()) {
      for (const s of o['subjects'] ?? []) assert.equal(s['namespace'], 'hypha-system', `${keyOf(o)} subject ${s['name']}`);
    }
    const data = get(r, 'v1 ConfigMap hypha-system/hypha-config')['data'];
    assert.equal(data['operator.yaml']['leaderElection']['namespace'], 'hypha-system');
  });

  describe('packaged', () => {
    let dir = '';
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'hypha-chart-'));
    });
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('helm package follows the links into deploy/: the archive renders the same objects', () => {
      const r = runTool([helm, 'package', CHART, '--destination', dir]);
      assert.equal(r.status, 0, r.stderr);
      const tgz = r.stdout.match(/saved it to: (\S+)/)?.[1];
      assert.ok(tgz, r.stdout);
      const listing = runTool(['tar', 'tzf', tgz]);
      for (const f of ['hypha/crds/hyphanodes.yaml', 'hypha/crds/hyphaidentities.yaml', 'hypha/crds/hyphanetworkpolicies.yaml', 'hypha/files/agent.yaml', 'hypha/values.schema.json']) {
        assert.ok(listing.stdout.split('\n').includes(f), `${f} not in ${tgz}`);
      }
      assertSameObjects(helmTemplate([], tgz), plain, 'packaged chart vs kubectl kustomize');
    });
  });

  test('bad values fail naming the field', () => {
    const cases: [string[], RegExp][] = [
      [['--set', 'operator.replicas=-1'], /at '\/operator\/replicas': minimum: got -1, want 0/],
      [['--set', 'podCIDR=10.0.0.0/33'], /at '\/podCIDR'.*'10\.0\.0\.0\/33' does not match pattern/s],
      [['--set', 'image.pullPolicy=Sometimes'], /at '\/image\/pullPolicy': value must be one of/],
      [['--set', 'apiServer.port=70000'], /at '\/apiServer\/port': maximum/],
      [['--set', 'operater.replicas=1'], /additional properties 'operater' not allowed/],
      [['--set', 'agent.tolerations[0].operator=Sometimes'], /at '\/agent\/tolerations\/0\/operator'/],
      [['--set', 'agent.config.routing.clusterCIDRs={10.1.0.0/16}'], /agent\.config\.routing\.clusterCIDRs: set podCIDR instead/],
      [['--set', 'operator.config.ipam.clusterPool.cidrs={10.1.0.0/16}'], /operator\.config\.ipam\.clusterPool\.cidrs: set podCIDR instead/],
    ];
    for (const [args, want] of cases) assert.match(helmFails(args), want, args.join(' '));
  });
});
