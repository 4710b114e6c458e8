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
