import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { KubeClient } from '../k8s/client.ts';
import { ClusterNodesSource } from './cluster-nodes.ts';

function fakeClient(calls: string[]): KubeClient {
  return {
    mergePatch: async (path: string, patch: unknown) => {
      calls.push(`patch ${path} ${JSON.stringify(patch)}`);
      return {};
    },
  } as unknown as KubeClient;
}

const source = (mode: 'cluster-pool' | 'kubernetes', calls: string[]) => new ClusterNodesSource({
  client: fakeClient(calls), nodeName: 'n1', mode, log: pino({ level: 'silent' }), silenceMs: 60_000, resyncMs: 0, onChange: () => undefined,
});

test('kubernetes IPAM: no HyphaNode to keep, nothing written (and nothing spins)', async () => {
  const calls: string[] = [];
  source('kubernetes', calls).setAddresses(['10.0.0.1']);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(calls, []);
});

test('cluster-pool IPAM: the addresses are patched onto the HyphaNode once, again when they change', async () => {
  const calls: string[] = [];
  const s = source('cluster-pool', calls);
  s.setAddresses(['10.0.0.1']);
  s.setAddresses(['10.0.0.1']);
  await new Promise((r) => setTimeout(r, 20));
  s.setAddresses(['10.0.0.2']);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(calls, [
    'patch /apis/hypha.dev/v1alpha1/hyphanodes/n1 {"spec":{"addresses":[{"type":"InternalIP","ip":"10.0.0.1"}]}}',
    'patch /apis/hypha.dev/v1alpha1/hyphanodes/n1 {"spec":{"addresses":[{"type":"InternalIP","ip":"10.0.0.2"}]}}',
  ]);
  s.stop();
});

test('a publish that keeps failing the same way is one warn line, the tries after it debug; fixed and failing again, warned again', async () => {
  const lines: { level: number; msg: string; attempts?: number }[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  let fail = true;
  const notFound = Object.assign(new Error('404 Not Found: 404 page not found'), { code: 404 });
  const client = {
    mergePatch: async () => {
      if (fail) throw notFound;
      return {};
    },
    get: async () => ({ metadata: { uid: 'u1' } }),
    create: async () => {
      if (fail) throw notFound;
      return {};
    },
  } as unknown as KubeClient;
  const s = new ClusterNodesSource({ client, nodeName: 'n1', mode: 'cluster-pool', log, silenceMs: 60_000, resyncMs: 0, onChange: () => undefined, retryMs: 5 });
  const failed = () => lines.filter((l) => /not published/.test(l.msg));
  s.setAddresses(['10.0.0.1']);
  while (failed().length < 5) await new Promise((r) => setTimeout(r, 5));
  assert.equal(failed()[0]?.level, 40);
  assert.ok(failed().slice(1).every((l) => l.level === 20), JSON.stringify(failed()));
  fail = false;
  while (!lines.some((l) => l.msg === 'addresses published on the HyphaNode')) await new Promise((r) => setTimeout(r, 5));
  fail = true;
  s.setAddresses(['10.0.0.2']);
  while (failed().filter((l) => l.level >= 40).length < 2) await new Promise((r) => setTimeout(r, 5));
  assert.equal(failed().filter((l) => l.level >= 40).at(-1)?.attempts, 1);
  s.stop();
});
