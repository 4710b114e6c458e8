import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podMetaOf } from './pod-metadata.ts';

test('podMetaOf keeps the uid and the string labels', () => {
  assert.deepEqual(podMetaOf({ metadata: { name: 'p', uid: 'u1', labels: { app: 'web', n: 3 } } }), { uid: 'u1', labels: { app: 'web' } });
  assert.deepEqual(podMetaOf({}), { uid: '', labels: {} });
  assert.deepEqual(podMetaOf(undefined), { uid: '', labels: {} });
});
