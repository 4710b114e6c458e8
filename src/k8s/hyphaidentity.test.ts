import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labelsKey } from '../identity/labels.ts';
import { LABELS_KEY_LABEL, hyphaIdentityBody, identityIdOfName, normalizeHyphaIdentity, revisionOf } from './hyphaidentity.ts';

const set = { namespace: 'default', podLabels: { app: 'web' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'default' } };

test('the body of a new identity: name, labels-key label, spec', () => {
  assert.deepEqual(hyphaIdentityBody(4711, set), {
    apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaIdentity',
    metadata: { name: '4711', labels: { [LABELS_KEY_LABEL]: labelsKey(set) } },
    spec: set,
  });
});

test('a stored identity normalised: revision as a number, key computed from the spec', () => {
  const n = normalizeHyphaIdentity({ ...hyphaIdentityBody(300, set), metadata: { name: '300', uid: 'u', resourceVersion: '1234', creationTimestamp: '2026-01-01T00:00:00Z', labels: { [LABELS_KEY_LABEL]: 'forged' } } });
  assert.deepEqual(n.problems, []);
  assert.equal(n.value?.id, 300);
  assert.equal(n.value?.revision, 1234n);
  assert.equal(n.value?.key, labelsKey(set), 'never the label as written');
  assert.equal(n.value?.deleting, false);
});

test('bad identities are refused, every field named', () => {
  const n = normalizeHyphaIdentity({ metadata: { name: '12', resourceVersion: 'abc' }, spec: { namespace: 'x', podLabels: { app: 3 }, namespaceLabels: {} } });
  assert.equal(n.value, undefined);
  assert.deepEqual(n.problems.map((p) => p.message), [
    'HyphaIdentity 12: metadata.name: "12" is not an identity in 256..65535 written in decimal',
    'HyphaIdentity 12: metadata.resourceVersion: "abc" is not a decimal revision',
    'HyphaIdentity 12: spec.podLabels["app"]: 3 is not a string',
  ]);
  assert.deepEqual(normalizeHyphaIdentity({}).problems.map((p) => p.message), ['HyphaIdentity (unnamed): metadata.name: (missing) is required']);
});

test('ids and revisions from their decimal strings', () => {
  assert.equal(identityIdOfName('256'), 256);
  assert.equal(identityIdOfName('65535'), 65535);
  for (const bad of ['255', '65536', '0300', '3e2', ' 300', '']) assert.equal(identityIdOfName(bad), undefined, bad);
  assert.equal(revisionOf('18446744073709551616'), 18446744073709551616n);
  assert.equal(revisionOf('0'), undefined);
  assert.equal(revisionOf(5), undefined);
});
