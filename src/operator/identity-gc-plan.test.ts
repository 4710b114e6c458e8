import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type LabelSet, labelsKey } from '../identity/labels.ts';
import type { StoredIdentity } from '../k8s/hyphaidentity.ts';
import { planIdentityGc } from './identity-gc-plan.ts';

const set = (app: string): LabelSet => ({ namespace: 'default', podLabels: { app }, namespaceLabels: {} });
const ident = (id: number, s: LabelSet, revision: bigint, extra: Partial<StoredIdentity> = {}): StoredIdentity => ({
  id, ...s, key: labelsKey(s), uid: `u${id}`, resourceVersion: String(revision), revision, creationTimestamp: '', deleting: false, ...extra,
});

const GRACE = 10_000;
const plan = (identities: StoredIdentity[], o: { inUse?: LabelSet[]; lastUsed?: [LabelSet, number][]; firstSeen?: [number, number][]; now?: number }) => planIdentityGc({
  identities,
  inUse: new Set((o.inUse ?? []).map(labelsKey)),
  lastUsed: new Map((o.lastUsed ?? []).map(([s, t]) => [labelsKey(s), t])),
  firstSeen: new Map(o.firstSeen ?? identities.map((i) => [i.id, 0])),
  now: o.now ?? 100_000,
  graceMs: GRACE,
});

test('an identity in use is kept; an unused one is collected once idle for the grace period', () => {
  const p = plan([ident(300, set('a'), 10n), ident(301, set('b'), 11n)], { inUse: [set('a')] });
  assert.deepEqual(p.collect.map((c) => [c.identity.id, c.reason]), [[301, 'unused']]);
  assert.deepEqual(p.counts, { inUse: 1, unused: 1, duplicate: 0 });
});

test('grace on creation: an identity first seen less than the grace period ago is kept, even with no pod', () => {
  const p = plan([ident(300, set('a'), 10n)], { firstSeen: [[300, 95_000]], now: 100_000 });
  assert.deepEqual(p.collect, []);
  const later = plan([ident(300, set('a'), 10n)], { firstSeen: [[300, 95_000]], now: 105_000 });
  assert.deepEqual(later.collect.map((c) => c.identity.id), [300]);
});

test('grace after the last use: a set whose last pod left recently is kept', () => {
  assert.deepEqual(plan([ident(300, set('a'), 10n)], { lastUsed: [[set('a'), 95_000]] }).collect, []);
  assert.equal(plan([ident(300, set('a'), 10n)], { lastUsed: [[set('a'), 89_000]] }).collect[0]?.idleMs, 11_000);
});

test('duplicates: every identity of a set but the lowest revision is collected after the grace period, used or not', () => {
  const ids = [ident(300, set('a'), 20n), ident(301, set('a'), 10n), ident(302, set('a'), 30n)];
  const p = plan(ids, { inUse: [set('a')], firstSeen: [[300, 0], [301, 0], [302, 95_000]] });
  assert.deepEqual(p.collect.map((c) => [c.identity.id, c.reason]), [[300, 'duplicate']]);
  assert.deepEqual(p.counts, { inUse: 1, unused: 0, duplicate: 2 });
  // Revisions compare as numbers: 9 < 10.
  const q = plan([ident(310, set('b'), 10n), ident(311, set('b'), 9n)], { inUse: [set('b')] });
  assert.deepEqual(q.collect.map((c) => c.identity.id), [310]);
});

test('identities being deleted are left alone and do not count as the winner', () => {
  const p = plan([ident(300, set('a'), 10n, { deleting: true }), ident(301, set('a'), 11n)], { inUse: [set('a')] });
  assert.deepEqual(p.collect, []);
  assert.deepEqual(p.counts, { inUse: 1, unused: 0, duplicate: 0 });
});

test('an identity never seen before this pass counts as seen now', () => {
  assert.deepEqual(plan([ident(300, set('a'), 10n)], { firstSeen: [] }).collect, []);
});
