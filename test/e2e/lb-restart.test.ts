// The datapath outlives its owner: the agent is killed with SIGKILL and
// started again while a long-lived TCP stream and a loop of new connections
// run through a ClusterIP. Not one connection may fail, and the restarted
// agent adopts the pinned maps without rewriting them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestAgent } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Host, type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';
import { lastJsonObject } from './lib/proc.ts';

const web: ServiceSpec = { name: 'web', type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] };

describe('agent restart under traffic', () => {
  let topo: Topology;
  let node: Node;
  let client: Pod;
  let outside: Host;
  let agent: TestAgent;
  let work: string;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'restart' });
    node = await topo.addNode('n1');
    outside = await topo.addExternalHost('outside');
    const m = new ManifestDir(path.join(work, 'services'));
    agent = new TestAgent(topo, node, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: m.dir, workDir: work, external: 'eth0', externalMode: 'xdp' });
    await agent.start();
    client = await topo.addPod(node, 'client');
    const backends = await Promise.all(['b1', 'b2', 'b3'].map((n) => topo.addPod(node, n)));
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

  test('kill -9 and restart: zero failed connections, open streams unbroken, maps adopted as they were', async () => {
    const mapsBefore = JSON.stringify(agent.frontends());
    const duration = '9';
    const clients = [
      topo.spawn(client, toolArgv('client', ['stream', '--to', '10.96.0.10:80', '--duration', duration, '--interval', '10'])),
      topo.spawn(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--duration', duration, '--timeout', '2000'])),
      topo.spawn(outside, toolArgv('client', ['stream', '--to', `${node.ip}:30080`, '--duration', duration, '--interval', '10'])),
      topo.spawn(outside, toolArgv('client', ['loop', '--to', `${node.ip}:30080`, '--duration', duration, '--timeout', '2000'])),
    ];
    await sleep(2000);
    await agent.kill9();
    await sleep(1500); // the datapath runs with no owner at all
    await agent.start();
    const restarted = agent.logs();
    await Promise.all(clients.map((c) => c.exited));
    const results = clients.map((c) => lastJsonObject(c.lines.join('\n')) as Record<string, unknown>);
    const [podStream, podLoop, extStream, extLoop] = results as [Record<string, number | boolean>, Record<string, number>, Record<string, number | boolean>, Record<string, number>];
    assert.equal(podStream.ok, true, `pod stream: ${JSON.stringify(podStream)}`);
    assert.equal(extStream.ok, true, `outside stream: ${JSON.stringify(extStream)}`);
    assert.ok(Number(podStream.sent) > 300 && podStream.sent === podStream.echoed, JSON.stringify(podStream));
    assert.equal(podLoop.failed, 0, `pod loop: ${JSON.stringify(podLoop)}`);
    assert.equal(extLoop.failed, 0, `outside loop: ${JSON.stringify(extLoop)}`);
    assert.ok(Number(podLoop.attempts) > 100 && Number(extLoop.attempts) > 100, `connections made: ${podLoop.attempts}, ${extLoop.attempts}`);
    const adopted = restarted.find((l) => l.msg === 'adopted ids from pinned maps');
    assert.ok(adopted && Number(adopted.frontends) >= 2, JSON.stringify(adopted));
    const firstSync = restarted.find((l) => l.msg === 'load balancer synced');
    assert.deepEqual([firstSync?.upserts, firstSync?.deletes], [0, 0], 'the restarted agent rewrote nothing');
    assert.equal(JSON.stringify(agent.frontends()), mapsBefore);
    process.stdout.write(`# restart under load: pod ${podLoop.attempts} connections, outside ${extLoop.attempts}, 0 failed; streams ${podStream.sent}/${extStream.sent} lines echoed, max gap ${podStream.maxGapMs}/${extStream.maxGapMs} ms\n`);
  });
});
