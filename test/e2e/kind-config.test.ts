// kind-config.yaml (the cluster `make kind-e2e` creates) checked two ways,
// with no container runtime and no root (under a second):
//   - hack/kind/kind-config-check: strict decoding into kind's public
//     v1alpha4 types (the decoder kind's loader uses) and what Hypha needs:
//     no default CNI, no kube-proxy, podSubnet = Hypha's cluster CIDR as
//     deploy/config.yaml says it, a node per operator replica;
//   - hack/kind/kind-validate.sh: kind itself (its loader and validation are
//     internal packages), stopped before it creates anything.
// The file passes both; broken copies fail with an error naming the field.
//
// Needs kind and the checker (`make kind-versions`), built first when missing.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { REPO_ROOT, makeTool, runTool, type Ran } from './lib/make-tools.ts';

const KIND_CONFIG = path.join(REPO_ROOT, 'kind-config.yaml');
const HYPHA_CONFIG = path.join(REPO_ROOT, 'deploy/config.yaml');
const OPERATOR = path.join(REPO_ROOT, 'deploy/operator.yaml');
const VALIDATE = path.join(REPO_ROOT, 'hack/kind/kind-validate.sh');

let kind = '';
let checker = '';
let dir = '';

function check(file: string, hyphaConfig = HYPHA_CONFIG): Ran {
  return runTool([checker, '-hypha-config', hyphaConfig, '-operator', OPERATOR, file]);
}

function kindValidate(file: string): Ran {
  return runTool([VALIDATE, kind, file]);
}

/** A copy of kind-config.yaml changed by `edit` (on the parsed object, or on the text). */
function broken(name: string, edit: (cfg: any) => void, text?: (s: string) => string): string {
  const file = path.join(dir, `${name}.yaml`);
  const original = readFileSync(KIND_CONFIG, 'utf8');
  if (text) {
    writeFileSync(file, text(original));
  } else {
    const cfg = parse(original);
    edit(cfg);
    writeFileSync(file, stringify(cfg));
  }
  return file;
}

function fails(r: Ran, want: RegExp, what: string): void {
  assert.notEqual(r.status, 0, `${what}: passed; stdout: ${r.stdout}`);
  assert.match(r.stderr, want, what);
}

describe('kind-config.yaml', () => {
  before(() => {
    kind = makeTool('kind-versions', 'KIND');
    checker = makeTool('kind-versions', 'KIND_CONFIG_CHECK');
    dir = mkdtempSync(path.join(tmpdir(), 'hypha-kind-config-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("passes Hypha's checks, with podSubnet = deploy/config.yaml's cluster CIDR", () => {
    const cm = parse(readFileSync(HYPHA_CONFIG, 'utf8'));
    const cidrs: string[] = parse(cm.data['agent.yaml']).routing.clusterCIDRs;
    assert.deepEqual(parse(cm.data['operator.yaml']).ipam.clusterPool.cidrs, cidrs);
    const r = check(KIND_CONFIG);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ok \(kind\.x-k8s\.io\/v1alpha4 Cluster, 3 nodes: 1 control-plane, 2 worker;/);
    assert.ok(r.stdout.includes(`podSubnet ${cidrs[0]} = Hypha's cluster CIDR`), r.stdout);
    assert.match(r.stdout, /serviceSubnet 10\.96\.0\.0\/12; kubeProxyMode none; default CNI disabled/);
  });

  test('kind itself accepts it (stopped before creating anything)', () => {
    const r = kindValidate(KIND_CONFIG);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /kind-config\.yaml: kind v\d+\.\d+\.\d+ accepts it/);
  });

  test('an unknown field: both fail naming it and its line', () => {
    const file = broken('unknown-field', () => {}, (s) => s.replace('  podSubnet:', '  podSubnett:'));
    const want = /line \d+: field podSubnett not found in type v1alpha4\.Networking/;
    fails(check(file), want, 'checker');
    fails(kindValidate(file), want, 'kind');
  });

  test('a podSubnet that is not a CIDR: both fail naming it', () => {
    const file = broken('bad-cidr', (c) => { c.networking.podSubnet = '10.244.0.0/33'; });
    fails(check(file), /networking\.podSubnet: "10\.244\.0\.0\/33" is not a valid CIDR/, 'checker');
    fails(kindValidate(file), /invalid pod subnet .*10\.244\.0\.0\/33/, 'kind');
  });

  test("a valid podSubnet that is not Hypha's: kind accepts it, the checker names it", () => {
    const file = broken('other-cidr', (c) => { c.networking.podSubnet = '10.32.0.0/16'; });
    assert.equal(kindValidate(file).status, 0, 'kind accepts any valid subnet');
    fails(check(file), /networking\.podSubnet: 10\.32\.0\.0\/16 is not Hypha's cluster CIDR 10\.244\.0\.0\/16 \(.*deploy\/config\.yaml/, 'checker');
  });

  test('kindnet or kube-proxy left on, too few nodes, a bad role: each named', () => {
    const file = broken('defaults', (c) => {
      delete c.networking.disableDefaultCNI;
      c.networking.kubeProxyMode = 'iptables';
      c.nodes = [{ role: 'control-plane' }];
    });
    const r = check(file);
    fails(r, /networking\.disableDefaultCNI: must be true/, 'checker');
    assert.match(r.stderr, /networking\.kubeProxyMode: "iptables": must be none/);
    assert.match(r.stderr, /nodes: 1, fewer than the operator's 2 replicas/);
    const role = broken('role', (c) => { c.nodes[1].role = 'wrker'; });
    fails(check(role), /nodes\[1\]\.role: "wrker" is not a node role/, 'checker');
    fails(kindValidate(role), /invalid configuration for node 1: "wrker" is not a valid node role/, 'kind');
  });

  test("deploy/config.yaml's agent and operator disagreeing on the CIDR is named", () => {
    const cm = parse(readFileSync(HYPHA_CONFIG, 'utf8'));
    const op = parse(cm.data['operator.yaml']);
    op.ipam.clusterPool.cidrs = ['10.32.0.0/12'];
    cm.data['operator.yaml'] = stringify(op);
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, stringify(cm));
    fails(check(KIND_CONFIG, file), /agent\.yaml routing\.clusterCIDRs \(10\.244\.0\.0\/16\) and operator\.yaml ipam\.clusterPool\.cidrs \(10\.32\.0\.0\/12\) differ/, 'checker');
  });
});
