// The informer against a real API server: paged lists, watch events,
// resuming, relisting on 410 and restarting a silent watch.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { KubeApiError, KubeClient } from '../../src/k8s/client.ts';
import { Informer, type InformerEvent, type ObjectMeta } from '../../src/k8s/informer.ts';
import { type ControlPlane, startControlPlane } from './lib/apiserver.ts';
import { eventually } from './lib/agent.ts';
import { run } from './lib/proc.ts';

describe('informer', () => {
  let cp: ControlPlane;
  let netns: string;
  let work: string;
  let core: k8s.CoreV1Api;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-informer-'));
    netns = `hyinf${process.pid.toString(36)}-cp`;
    await run(['ip', 'netns', 'add', netns]);
    cp = await startControlPlane({ netns, listenIp: '127.0.0.1', workDir: work });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.hostKubeconfigPath);
    core = kc.makeApiClient(k8s.CoreV1Api);
  });

  after(async () => {
    await cp?.stop();
    await run(['ip', 'netns', 'del', netns], { allowFail: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const configMap = (name: string, data: Record<string, string> = {}) =>
    core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name }, data } });

  test('lists every page, then follows changes', async () => {
    await Promise.all(Array.from({ length: 120 }, (_, i) => configMap(`cm-${i}`)));
    const client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath);
    const seen = new Map<string, ObjectMeta>();
    const events: InformerEvent<ObjectMeta>['type'][] = [];
    const inf = new Informer<ObjectMeta>(client, { resource: 'configmaps', path: '/api/v1/namespaces/default/configmaps' }, { pageSize: 50 });
    inf.start((e) => {
      events.push(e.type);
      if (e.type === 'upsert') seen.set(e.key, e.obj);
      if (e.type === 'delete') seen.delete(e.key);
    });
    try {
      await eventually('initial list', () => events.includes('synced'));
      assert.equal([...seen.keys()].filter((k) => k.startsWith('default/cm-')).length, 120, 'all three pages');
      await configMap('late');
      await core.deleteNamespacedConfigMap({ name: 'cm-0', namespace: 'default' });
      await eventually('watch events', () => seen.has('default/late') && !seen.has('default/cm-0'));
      assert.equal(inf.status.phase, 'watching');
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('a watch from a compacted resourceVersion gets 410 and the informer relists', async () => {
    const client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath);
    const inf = new Informer<ObjectMeta>(client, { resource: 'configmaps', path: '/api/v1/namespaces/default/configmaps' }, {});
    const seen = new Set<string>();
    inf.start((e) => {
      if (e.type === 'upsert') seen.add(e.key);
      if (e.type === 'delete') seen.delete(e.key);
    });
    try {
      await eventually('synced', () => inf.status.synced);
      // Restart the API server (its watch cache starts over) and compact
      // etcd, so the informer's resourceVersion is too old; change things meanwhile.
      await cp.stopApiServer();
      await cp.startApiServer();
      await configMap('after-restart');
      await cp.compactEtcd();
      await eventually('relisted', () => inf.status.relists >= 1 && seen.has('default/after-restart'), 60_000);
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('a watch that hears nothing, not even a bookmark, is restarted', async () => {
    const client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath);
    const restarts: string[] = [];
    const inf = new Informer<ObjectMeta>(client, { resource: 'quiet', path: '/api/v1/namespaces/quiet-ns/configmaps' }, {
      silenceMs: 1500, hooks: { restarted: (_r, reason) => restarts.push(reason) },
    });
    inf.start(() => {});
    try {
      await eventually('a silent restart', () => restarts.includes('silent'), 15_000);
      assert.equal(inf.status.phase === 'watching' || inf.status.phase === 'listing', true);
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('a failure that repeats (a CRD not installed) is one warn line, then debug per attempt; the list that finally works says after how many', async () => {
    const lines: { level: number; msg: string; attempts?: number; failedAttempts?: number }[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath);
    const inf = new Informer<ObjectMeta>(client, { resource: 'widgets', path: '/apis/test.hypha.io/v1/widgets' }, { log, backoffMinMs: 10, backoffMaxMs: 40 });
    const events: string[] = [];
    inf.start((e) => events.push(e.type));
    try {
      await eventually('eight failed attempts', () => lines.filter((l) => /widgets: list failed/.test(l.msg)).length >= 8, 20_000);
      const warns = lines.filter((l) => l.level >= 40);
      assert.equal(warns.length, 1, `one warn line, not one per retry: ${JSON.stringify(warns)}`);
      assert.match(warns[0]!.msg, /^widgets: list failed; retrying$/);
      assert.ok(lines.filter((l) => l.level === 20 && /widgets: list failed again; retrying/.test(l.msg)).length >= 7);
      const ext = new k8s.KubeConfig();
      ext.loadFromFile(cp.hostKubeconfigPath);
      await ext.makeApiClient(k8s.ApiextensionsV1Api).createCustomResourceDefinition({ body: {
        metadata: { name: 'widgets.test.hypha.io' },
        spec: { group: 'test.hypha.io', scope: 'Namespaced', names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } }] },
      } });
      await eventually('listed once the CRD is served', () => events.includes('synced'), 30_000);
      const listed = lines.find((l) => /^widgets: listed/.test(l.msg))!;
      assert.match(listed.msg, /^widgets: listed after \d+ failed attempts$/);
      assert.ok((listed.failedAttempts ?? 0) >= 8);
      assert.equal(lines.filter((l) => l.level >= 40).length, 1, 'still the one warn line');
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('absentIsEmpty: a CRD not installed is a complete empty list (synced, absent), then its objects once it is', async () => {
    const client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath);
    const inf = new Informer<ObjectMeta>(client, { resource: 'gadgets', path: '/apis/test.hypha.io/v1/gadgets', absentIsEmpty: true }, { backoffMinMs: 10, backoffMaxMs: 40 });
    const events: InformerEvent<ObjectMeta>[] = [];
    inf.start((e) => events.push(e));
    try {
      await eventually('synced as absent', () => events.some((e) => e.type === 'synced' && e.absent === true), 10_000);
      assert.equal(inf.status.synced, true);
      const ext = new k8s.KubeConfig();
      ext.loadFromFile(cp.hostKubeconfigPath);
      await ext.makeApiClient(k8s.ApiextensionsV1Api).createCustomResourceDefinition({ body: {
        metadata: { name: 'gadgets.test.hypha.io' },
        spec: { group: 'test.hypha.io', scope: 'Namespaced', names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget' },
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } }] },
      } });
      await eventually('the CRD served', async () => {
        try {
          await client.create('/apis/test.hypha.io/v1/namespaces/default/gadgets', { apiVersion: 'test.hypha.io/v1', kind: 'Gadget', metadata: { name: 'g1' } });
          return true;
        } catch {
          return false;
        }
      }, 30_000);
      await eventually('the object arrives', () => events.some((e) => e.type === 'upsert' && e.key === 'default/g1'), 30_000);
      assert.ok(events.some((e) => e.type === 'synced' && !e.absent), 'a real list followed');
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('API errors name the request: a missing resource is a 404 KubeApiError', async () => {
    const client = KubeClient.fromKubeconfig(cp.hostKubeconfigPath);
    try {
      await assert.rejects(client.get('/api/v1/namespaces/default/configmaps/does-not-exist'), (e: unknown) =>
        e instanceof KubeApiError && e.statusCode === 404 && /not found/.test(e.message));
    } finally {
      client.close();
    }
  });
});
