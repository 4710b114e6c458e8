import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLUSTER_IDENTITY_RANGE, LABELS_KEY_LENGTH, RESERVED_IDENTITIES, canonicalLabelSet, formatLabels, labelSetProblems, labelsKey, podLabelSet, reservedName, sameLabelSet,
  securityPodLabels,
} from './labels.ts';

const web = { namespace: 'default', podLabels: { app: 'web', tier: 'front' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'default' } };

test('canonical form and key do not depend on the order labels come in', () => {
  const shuffled = { namespace: 'default', podLabels: { tier: 'front', app: 'web' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'default' } };
  assert.equal(canonicalLabelSet(shuffled), canonicalLabelSet(web));
  assert.equal(labelsKey(shuffled), labelsKey(web));
  assert.ok(sameLabelSet(shuffled, web));
  assert.match(labelsKey(web), new RegExp(`^[0-9a-f]{${LABELS_KEY_LENGTH}}$`));
  assert.equal(canonicalLabelSet(web), '["default",[["app","web"],["tier","front"]],[["kubernetes.io/metadata.name","default"]]]');
});

test('namespace, pod labels and namespace labels are all part of the key, and kept apart', () => {
  const keys = new Set([
    labelsKey(web),
    labelsKey({ ...web, namespace: 'other' }),
    labelsKey({ ...web, podLabels: { app: 'web' } }),
    labelsKey({ ...web, podLabels: { ...web.podLabels, tier: 'back' } }),
    labelsKey({ ...web, namespaceLabels: { ...web.namespaceLabels, team: 'a' } }),
    // The same label as a pod label or as a namespace label is not the same set.
    labelsKey({ namespace: 'default', podLabels: { team: 'a' }, namespaceLabels: {} }),
    labelsKey({ namespace: 'default', podLabels: {}, namespaceLabels: { team: 'a' } }),
    // No separator trick makes two sets one string.
    labelsKey({ namespace: 'default', podLabels: { 'a,b': 'c' }, namespaceLabels: {} }),
    labelsKey({ namespace: 'default', podLabels: { a: 'b,c' }, namespaceLabels: {} }),
  ]);
  assert.equal(keys.size, 9);
});

test('security labels leave out what differs between replicas of one workload', () => {
  const pod = { app: 'web', 'pod-template-hash': '5d4f8c7b9', 'controller-revision-hash': 'abc', 'pod-template-generation': '3', 'statefulset.kubernetes.io/pod-name': 'web-0', 'apps.kubernetes.io/pod-index': '0', 'batch.kubernetes.io/controller-uid': 'u', 'controller-uid': 'u', 'job-name': 'j' };
  assert.deepEqual(securityPodLabels(pod), { app: 'web', 'job-name': 'j' });
  const a = podLabelSet('default', { app: 'web', 'pod-template-hash': 'one' }, { 'kubernetes.io/metadata.name': 'default' });
  const b = podLabelSet('default', { 'pod-template-hash': 'two', app: 'web' }, { 'kubernetes.io/metadata.name': 'default' });
  assert.equal(labelsKey(a), labelsKey(b), 'two ReplicaSets of one Deployment share an identity');
  assert.deepEqual(Object.keys(securityPodLabels({ z: '1', a: '2' })), ['a', 'z'], 'sorted');
});

test('reserved ids and the cluster range', () => {
  assert.deepEqual(RESERVED_IDENTITIES, { host: 1, world: 2, unmanaged: 3, health: 4, 'remote-node': 6 });
  assert.equal(reservedName(6), 'remote-node');
  assert.equal(reservedName(5), undefined);
  assert.equal(reservedName(256), undefined);
  assert.deepEqual(CLUSTER_IDENTITY_RANGE, { min: 256, max: 65535 });
  for (const id of Object.values(RESERVED_IDENTITIES)) assert.ok(id < CLUSTER_IDENTITY_RANGE.min);
});

test('bad label sets are named by field and value', () => {
  assert.deepEqual(labelSetProblems(web), []);
  assert.deepEqual(labelSetProblems({ namespace: 'Default', podLabels: { 'a/b/c': 'x', ok: 'bad value!' }, namespaceLabels: [] }).map((p) => p.message), [
    'spec.namespace: "Default" is not a namespace name (a DNS label)',
    'spec.podLabels: "a/b/c" (a key) has a prefix that is not a DNS subdomain',
    'spec.podLabels["ok"]: "bad value!" is not a label value (at most 63 letters, digits, "-", "_", ".", starting and ending alphanumeric)',
    'spec.namespaceLabels: [] is not a map of labels',
  ]);
  assert.deepEqual(labelSetProblems(undefined).map((p) => p.message), ['spec: undefined is not an object']);
  assert.deepEqual(labelSetProblems({ namespace: 'a', podLabels: { '': 'x', [`${'a'.repeat(64)}`]: 'y', 'example.com/app': '' }, namespaceLabels: {} }).map((p) => p.field), ['spec.podLabels', 'spec.podLabels']);
});

test('formatLabels', () => {
  assert.equal(formatLabels({ tier: 'front', app: 'web' }), 'app=web,tier=front');
  assert.equal(formatLabels({}), '');
});
