// The real control plane the other control-plane tests stand on: etcd and
// kube-apiserver (built from the Go module proxy) inside a network namespace,
// driven with the Kubernetes JS client the way Hypha's informers will be.
//
//   make test-k8s      (builds the binaries first if they are missing)

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { isControlPlaneError, startControlPlane, type ControlPlane } from './lib/apiserver.ts';
import { eventually } from './lib/agent.ts';
import { run } from './lib/proc.ts';

const log = pino({ level: process.env['LOG_LEVEL'] ?? 'info' }, pino.destination(2));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

type WatchOutcome =
  | { kind: 'event'; type: string }
  | { kind: 'gone'; how: 'ERROR event' | 'HTTP status' }
  | { kind: 'failed'; detail: string }
  | { kind: 'quiet' };

/**
 * Starts a watch at resourceVersion `rv` and reports the first thing that
 * happens: an event, 410 Gone (as an ERROR event carrying a Status with code
 * 410, or as the HTTP status), another failure, or nothing within quietMs.
 */
async function watchFrom(kc: k8s.KubeConfig, path: string, rv: string, quietMs = 3000): Promise<WatchOutcome> {
  let abort: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<WatchOutcome>((resolve) => {
      timer = setTimeout(resolve, quietMs, { kind: 'quiet' } as const);
      void new k8s.Watch(kc).watch(path, { resourceVersion: rv }, (type, obj: { code?: unknown } | undefined) => {
        if (type === 'ERROR') {
          resolve(obj?.code === 410 ? { kind: 'gone', how: 'ERROR event' } : { kind: 'failed', detail: JSON.stringify(obj) });
        } else {
          resolve({ kind: 'event', type });
        }
      }, (err: unknown) => {
        const status = (err as { statusCode?: unknown } | null)?.statusCode;
        resolve(status === 410 ? { kind: 'gone', how: 'HTTP status' } : { kind: 'failed', detail: String(err) });
      }).then((c) => { abort = c; }, (err: unknown) => resolve({ kind: 'failed', detail: String(err) }));
    });
  } finally {
    clearTimeout(timer);
    abort?.abort();
  }
}

describe('kube-apiserver and etcd in a network namespace', () => {
  const netns = `hyk-${process.pid}-${randomBytes(2).toString('hex')}-cp`;
  let workDir: string | undefined;
  let cp: ControlPlane | undefined;
  let kc: k8s.KubeConfig;
  let core: k8s.CoreV1Api;
  let discovery: k8s.DiscoveryV1Api;
  // What the first list returned, compared after the restart.
  let serviceUid: string | undefined;
  let sliceUid: string | undefined;
  let listRvBeforeRestart: string | undefined;

  const control = (): ControlPlane => {
    assert.ok(cp, 'control plane not started');
    return cp;
  };

  before(async () => {
    await run(['ip', 'netns', 'add', netns]);
    await run(['ip', '-n', netns, 'link', 'set', 'lo', 'up']);
    workDir = await mkdtemp(join(tmpdir(), 'hyk-'));
    cp = await startControlPlane({
      netns,
      listenIp: '127.0.0.1',
      workDir,
      log,
      // ConfigMaps bypass the watch cache so that the compaction test sees
      // etcd's answer; everything else is cached, as in a real cluster.
      extraApiServerArgs: ['--watch-cache-sizes=configmaps#0'],
    });
    kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.hostKubeconfigPath);
    core = kc.makeApiClient(k8s.CoreV1Api);
    discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
  }, { timeout: 60 * 60_000 }); // a first run builds kube-apiserver and etcd

  after(async () => {
    try {
      await cp?.stop();
    } finally {
      await run(['ip', 'netns', 'del', netns], { allowFail: true });
      if (workDir !== undefined && process.env['HYPHA_KEEP_WORKDIR'] === undefined) {
        await rm(workDir, { recursive: true, force: true });
      } else if (workDir !== undefined) {
        log.info({ workDir }, 'kept work directory (HYPHA_KEEP_WORKDIR)');
      }
    }
  });

  test('rejects bad options with the field and the value, starting nothing', async () => {
    const base = { netns, listenIp: '127.0.0.1', workDir: workDir ?? '/tmp/unused' };
    const cases: Array<[Partial<typeof base> & { serviceClusterIpRange?: string }, RegExp]> = [
      [{ listenIp: '10.0.0.300' }, /listenIp "10\.0\.0\.300"/],
      [{ serviceClusterIpRange: '10.96.0.0/33' }, /serviceClusterIpRange "10\.96\.0\.0\/33"/],
      [{ serviceClusterIpRange: '10.96.0.1/12' }, /serviceClusterIpRange "10\.96\.0\.1\/12"/],
      [{ netns: `${netns}-missing` }, /netns ".*-missing" does not exist/],
    ];
    for (const [patch, message] of cases) {
      await assert.rejects(startControlPlane({ ...base, ...patch }), (err: unknown) => {
        assert.ok(isControlPlaneError(err, 'E_CP_INVALID'), `expected E_CP_INVALID, got ${String(err)}`);
        assert.match(err.message, message);
        return true;
      });
    }
  });

  test('serves the Kubernetes release it was built from', async () => {
    const version = await kc.makeApiClient(k8s.VersionApi).getCode();
    assert.equal(version.gitVersion, control().binaries.kubernetesVersion);
    assert.match(control().url, /^https:\/\/127\.0\.0\.1:6443$/);
  });

  test('creates a Service with a chosen clusterIP and nodePort and its EndpointSlice, and lists them', async () => {
    const namespace = 'default';
    const svc = await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'echo', labels: { app: 'echo' } },
        spec: {
          type: 'NodePort',
          clusterIP: '10.96.100.10',
          selector: { app: 'echo' },
          ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }],
        },
      },
    });
    assert.equal(svc.spec?.clusterIP, '10.96.100.10');
    assert.equal(svc.spec?.ports?.[0]?.nodePort, 30080);
    const slice = await discovery.createNamespacedEndpointSlice({
      namespace,
      body: {
        metadata: { name: 'echo-abc12', labels: { 'kubernetes.io/service-name': 'echo' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
        endpoints: [
          { addresses: ['10.244.1.5'], conditions: { ready: true }, nodeName: 'node-1' },
          { addresses: ['10.244.2.7'], conditions: { ready: false }, nodeName: 'node-2' },
        ],
      },
    });
    serviceUid = svc.metadata?.uid;
    sliceUid = slice.metadata?.uid;

    const services = await core.listNamespacedService({ namespace, labelSelector: 'app=echo' });
    assert.deepEqual(services.items.map((s) => [s.metadata?.name, s.spec?.clusterIP, s.spec?.ports?.[0]?.nodePort]),
      [['echo', '10.96.100.10', 30080]]);
    const slices = await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: 'kubernetes.io/service-name=echo' });
    assert.deepEqual(slices.items.map((s) => (s.endpoints ?? []).map((e) => [e.addresses[0], e.conditions?.ready])),
      [[['10.244.1.5', true], ['10.244.2.7', false]]]);
    listRvBeforeRestart = services.metadata?.resourceVersion;
    assert.ok(listRvBeforeRestart, 'list has a resourceVersion');

    // The apiserver's own Service got the first address of the range (its
    // bootstrap controller creates it shortly after the server is ready).
    const kubernetes = await eventually('the kubernetes Service', () => core.readNamespacedService({ namespace, name: 'kubernetes' }));
    assert.equal(kubernetes.spec?.clusterIP, '10.96.0.1');
  });

  test('keeps the objects across an apiserver restart (same etcd, new apiserver pid)', async () => {
    const before = control().pids();
    await control().restart();
    const now = control().pids();
    assert.equal(now.etcd, before.etcd);
    assert.ok(now.apiserver !== undefined && now.apiserver !== before.apiserver, `apiserver pid ${now.apiserver} after ${before.apiserver}`);
    assert.ok(before.apiserver !== undefined && !isAlive(before.apiserver), 'old apiserver is gone');

    const svc = await core.readNamespacedService({ namespace: 'default', name: 'echo' });
    assert.equal(svc.metadata?.uid, serviceUid);
    assert.equal(svc.spec?.clusterIP, '10.96.100.10');
    const slice = await discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 'echo-abc12' });
    assert.equal(slice.metadata?.uid, sliceUid);
  });

  test('answers a watch from a compacted resourceVersion with 410 Gone', async () => {
    const namespace = 'default';
    const path = `/api/v1/namespaces/${namespace}/configmaps`;
    const created = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'rv-probe' }, data: { n: '1' } } });
    const oldRv = created.metadata?.resourceVersion;
    assert.ok(oldRv);
    await core.replaceNamespacedConfigMap({ namespace, name: 'rv-probe', body: { ...created, data: { n: '2' } } });

    // Before compaction the change after oldRv is replayed ...
    assert.deepEqual(await watchFrom(kc, path, oldRv), { kind: 'event', type: 'MODIFIED' });
    const revision = await control().compactEtcd();
    assert.ok(revision > Number(oldRv), `compacted at ${revision}, after ${oldRv}`);
    // ... after it, etcd no longer has it.
    const outcome = await watchFrom(kc, path, oldRv);
    assert.equal(outcome.kind, 'gone', `watch from ${oldRv} after compaction at ${revision}: ${JSON.stringify(outcome)}`);

    // Cached resources (Services here): a resourceVersion from before the
    // restart is older than the new apiserver's watch cache: 410 as well.
    assert.ok(listRvBeforeRestart);
    const services = await watchFrom(kc, `/api/v1/namespaces/${namespace}/services`, listRvBeforeRestart);
    assert.equal(services.kind, 'gone', `services watch from ${listRvBeforeRestart}: ${JSON.stringify(services)}`);
  });

  test('stop() ends every process it started, and can be called twice', async () => {
    const started = control().pids();
    assert.deepEqual(Object.keys(started).sort(), ['apiserver', 'etcd', 'forwarder']);
    await Promise.all([control().stop(), control().stop()]);
    await control().stop();
    assert.deepEqual(control().pids(), {});
    for (const [name, pid] of Object.entries(started)) {
      assert.ok(!isAlive(pid), `${name} (pid ${pid}) still running`);
    }
    await assert.rejects(control().restart(), (err: unknown) => isControlPlaneError(err, 'E_CP_STOPPED'));
  });
});
