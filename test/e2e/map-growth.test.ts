// Maps that grow online: an agent whose configuration fixes no map size,
// started with tiny maps (64 services and backends, 256 conntrack entries),
// is given more Services and more connections than they hold while a
// long-lived TCP stream and loops of new connections run through a NodePort
// from a pod and from outside. It must grow the services, backends and
// conntrack maps (new maps, programs reloaded and swapped on every device)
// with zero failed connections, and serve every Service afterwards. Then the
// agent is killed (SIGKILL) after each step of a growth in turn and started
// again: the interrupted growth is rolled back (no staging pins left), every
// Service is still served, the next growth completes, and the connections
// running across all of it never fail.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GROW_DIR, type GrowStep } from '../../src/datapath/loader.ts';
import { TestAgent, eventually } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { lastJsonObject } from './lib/proc.ts';
import { type Host, type Node, type Pod, type Proc, Topology, toolArgv } from './lib/topology.ts';

const web: ServiceSpec = { name: 'web', type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] };
const INITIAL = { services: 64, backends: 64, affinity: 64, ct: 1024 };
// New connections every 10 ms from each loop: about 2 000 conntrack entries
// live at once (a closed flow's entries stay 10 s), past 1 024 within seconds
// but never so fast that the LRU map evicts a live flow before the agent's
// next count (each GC pass, at most a second apart here) grows it.
const LOOP_INTERVAL_MS = '10';

interface MapUse {
  map: string;
  entries: number;
  capacity: number;
}

describe('maps grow online under traffic', () => {
  let topo: Topology;
  let node: Node;
  let client: Pod;
  let outside: Host;
  let agent: TestAgent;
  let work: string;
  let m: ManifestDir;
  let backends: Pod[];
  const pauseFile = () => path.join(work, 'grow-pause');
  const pinRoot = () => `/sys/fs/bpf/${topo.prefix}hypha`;

  const maps = async (): Promise<Map<string, MapUse>> => {
    const st = JSON.parse((await agent.http('/status')).body) as { maps: MapUse[] };
    return new Map(st.maps.map((u) => [u.map, u]));
  };

  /** `n` ClusterIP Services named `<prefix>-<i>` (addresses from `net`, 10.96.<net>.<i+1>), served by the real
   *  backends, and `extra` more backend addresses each (10.<200+i>.x.y, not answering). */
  const writeServices = (prefix: string, net: number, n: number, extra = 0): string[] => {
    const frontends: string[] = [];
    for (let i = 0; i < n; i++) {
      const s: ServiceSpec = { name: `${prefix}-${i}`, clusterIP: `10.96.${net}.${i + 1}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
      const eps = [...backends.map((b) => ({ ip: b.ip, node: node.name })), ...Array.from({ length: extra }, (_, j) => ({ ip: `10.${200 + i}.${j >> 8}.${(j & 255) + 1}`, node: node.name }))];
      m.write(`${s.name}.yaml`, [serviceObject(s), sliceObject(s, eps, [{ name: 'http', port: 8080 }])]);
      frontends.push(`${s.clusterIP}:80/TCP`);
    }
    return frontends;
  };

  /** Connections from the client pod and from outside, for `seconds`. */
  const traffic = (seconds: number): Proc[] => [
    topo.spawn(client, toolArgv('client', ['stream', '--to', '10.96.0.10:80', '--duration', String(seconds), '--interval', '10'])),
    topo.spawn(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--duration', String(seconds), '--interval', LOOP_INTERVAL_MS, '--timeout', '2000'])),
    topo.spawn(outside, toolArgv('client', ['stream', '--to', `${node.ip}:30080`, '--duration', String(seconds), '--interval', '10'])),
    topo.spawn(outside, toolArgv('client', ['loop', '--to', `${node.ip}:30080`, '--duration', String(seconds), '--interval', LOOP_INTERVAL_MS, '--timeout', '2000'])),
  ];

  const noFailures = async (clients: Proc[], what: string): Promise<{ loops: number; streams: number }> => {
    await Promise.all(clients.map((c) => c.exited));
    const [podStream, podLoop, extStream, extLoop] = clients.map((c) => lastJsonObject(c.lines.join('\n')) as Record<string, number | boolean>) as Record<string, number | boolean>[];
    assert.equal(podStream!.ok, true, `${what}: pod stream ${JSON.stringify(podStream)}`);
    assert.equal(extStream!.ok, true, `${what}: outside stream ${JSON.stringify(extStream)}`);
    assert.equal(podLoop!.failed, 0, `${what}: pod loop ${JSON.stringify(podLoop)}`);
    assert.equal(extLoop!.failed, 0, `${what}: outside loop ${JSON.stringify(extLoop)}`);
    return { loops: Number(podLoop!.attempts) + Number(extLoop!.attempts), streams: Number(podStream!.sent) + Number(extStream!.sent) };
  };

  /** Every frontend answers a new connection from the client pod. */
  const served = async (frontends: string[]): Promise<void> => {
    for (const f of frontends) {
      const to = f.replace(/\/TCP$/, '');
      const r = await topo.execJson<{ ok: boolean; reply?: string; error?: string }>(client, toolArgv('client', ['once', '--to', to, '--timeout', '2000']), { allowFail: true });
      assert.equal(r.ok, true, `${f}: ${JSON.stringify(r)}`);
    }
  };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'grow' });
    node = await topo.addNode('n1');
    outside = await topo.addExternalHost('outside');
    m = new ManifestDir(path.join(work, 'services'));
    agent = new TestAgent(topo, node, {
      pinRoot: pinRoot(), servicesDir: m.dir, workDir: work, external: 'eth0', externalMode: 'xdp',
      mapSizes: {}, initialMapSizes: INITIAL, ctGcMaxSeconds: 1, env: { HYPHA_TEST_GROW_PAUSE_FILE: path.join(work, 'grow-pause') },
    });
    await agent.start();
    client = await topo.addPod(node, 'client');
    backends = await Promise.all(['b1', 'b2', 'b3'].map((n) => topo.addPod(node, n)));
    for (const [i, b] of backends.entries()) await topo.spawnReady(b, toolArgv('echo-server', ['--name', `b${i + 1}`, '--port', '8080']));
    m.write('web.yaml', [serviceObject(web), sliceObject(web, backends.map((b) => ({ ip: b.ip, node: node.name })), [{ name: 'http', port: 8080 }])]);
    await agent.waitForFrontends(['10.96.0.10:80/TCP'], 3);
  });

  after(async () => {
    await agent?.stop();
    await topo?.destroy();
    agent?.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('services, backends and conntrack grow while connections run: none fails, every Service is served after', async () => {
    const before = await maps();
    assert.equal(before.get('hypha_lb4_services_v1')?.capacity, INITIAL.services);
    assert.equal(before.get('hypha_ct4_v1')?.capacity, INITIAL.ct);
    const clients = traffic(12);
    await sleep(1500);
    // 40 Services of 3 backends: 200 service entries and 120 backends, past 64.
    const frontends = writeServices('more', 1, 40);
    await agent.waitForFrontends(frontends, 3, 20_000);
    // The connection loops alone pass 80 % of 1 024 conntrack entries within seconds.
    await eventually('conntrack grown', async () => ((await maps()).get('hypha_ct4_v1')?.capacity ?? 0) > INITIAL.ct, 20_000);
    const counts = await noFailures(clients, 'during the growths');
    const after = await maps();
    assert.ok(after.get('hypha_lb4_services_v1')!.capacity >= 256, JSON.stringify([...after.values()]));
    assert.ok(after.get('hypha_lb4_backends_v1')!.capacity >= 128, JSON.stringify([...after.values()]));
    const grown = agent.logs().filter((l) => l.msg === 'maps grown');
    assert.ok(grown.length >= 2, `growths: ${JSON.stringify(grown)}`);
    assert.equal(agent.logs().filter((l) => /do not fit/.test(String(l.msg ?? ''))).length, 0, 'no Service was refused for room');
    assert.equal(existsSync(path.join(pinRoot(), GROW_DIR)), false);
    await served(['10.96.0.10:80/TCP', ...frontends]);
    process.stdout.write(`# growth under load: ${grown.length} growths (${grown.map((g) => JSON.stringify(g.maps)).join(' ')}), ${counts.loops} connections and ${counts.streams} stream lines, 0 failed\n`);
  });

  test('killed after each step of a growth: restarted, the growth is rolled back, every Service served, the next growth completes, no connection fails', async () => {
    const steps: GrowStep[] = ['created', 'copied', 'loaded', 'attached', 'carried'];
    const frontends = writeServices('more', 1, 40);
    for (const [i, step] of steps.entries()) {
      const clients = traffic(7);
      const use = await maps();
      const size = use.get('hypha_lb4_backends_v1')!.capacity;
      writeFileSync(pauseFile(), step);
      // One Service with as many backends as the map holds: it must grow.
      const big = writeServices(`grow${i}`, 10 + i, 1, size);
      await eventually(`paused after ${step}`, () => agent.logs().some((l) => l.msg === 'map growth paused (test hook)' && l.step === step), 20_000).catch((err: Error) => {
        const lines = agent.logs().filter((l) => /grow|paused|rolled back|completed/.test(String(l.msg)) || Number(l.level) >= 40);
        throw new Error(`${err.message}\n${lines.map((l) => JSON.stringify({ ...l, time: undefined, pid: undefined, hostname: undefined })).join('\n')}`);
      });
      await agent.kill9();
      rmSync(pauseFile(), { force: true });
      await agent.start();
      const logs = agent.logs();
      assert.ok(logs.some((l) => l.msg === 'a map growth that did not finish was rolled back (the old maps are in place)'), `${step}: rolled back`);
      await agent.waitForFrontends([...frontends, ...big], 3, 30_000);
      await eventually(`${step}: grown after the restart`, async () => ((await maps()).get('hypha_lb4_backends_v1')?.capacity ?? 0) > size, 30_000);
      assert.equal(existsSync(path.join(pinRoot(), GROW_DIR)), false, `${step}: no staging pins left`);
      await noFailures(clients, `killed after ${step}`);
    }
    await served(['10.96.0.10:80/TCP', ...frontends]);
  });
});
