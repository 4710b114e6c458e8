// Two nodes: Services whose backends sit on either node, reached from pods
// and from a host outside the cluster through either node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TestAgent } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Host, type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }
interface OnceResult { ok: boolean; reply?: string; error?: string; ms: number }

const web: ServiceSpec = { name: 'web', type: 'NodePort', clusterIP: '10.96.2.10', externalIPs: ['198.51.100.20'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30200 }] };
const far: ServiceSpec = { name: 'far', type: 'NodePort', clusterIP: '10.96.2.11', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30201 }] };
const farLocal: ServiceSpec = { name: 'far-local', type: 'NodePort', clusterIP: '10.96.2.12', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30202 }] };

for (const mode of ['xdp', 'tc'] as const) {
  describe(`two nodes, backends on either (${mode} on the external devices)`, () => {
    let topo: Topology;
    let n1: Node;
    let n2: Node;
    let client: Pod;
    let outside: Host;
    const agents: TestAgent[] = [];
    let work: string;

    const loop = (from: Pod | Host, to: string, count = 40) =>
      topo.execJson<LoopResult>(from, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000']));

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
      topo = await Topology.create({ name: `mn${mode}` });
      n1 = await topo.addNode('n1');
      n2 = await topo.addNode('n2');
      outside = await topo.addExternalHost('outside', { routes: [{ to: '198.51.100.20/32', via: n1.ip }] });
      const m = new ManifestDir(path.join(work, 'services'));
      // Standalone agents: each is told about the other node (its routes come from the agent).
      for (const node of [n1, n2]) {
        const other = node === n1 ? n2 : n1;
        const a = new TestAgent(topo, node, {
          pinRoot: `/sys/fs/bpf/${topo.prefix}${node.name}`, servicesDir: m.dir, workDir: path.join(work, node.name), external: 'eth0', externalMode: mode,
          routing: { nodes: [{ name: other.name, addresses: [other.ip], podCIDRs: [other.podCidr] }] },
        });
        agents.push(a);
        await a.start();
      }
      client = await topo.addPod(n1, 'client');
      const b1 = await topo.addPod(n1, 'b1');
      const b2 = await topo.addPod(n2, 'b2');
      for (const b of [b1, b2]) await topo.spawnReady(b, toolArgv('echo-server', ['--name', b.name, '--port', '8080']));
      const ep = (p: Pod) => ({ ip: p.ip, node: p.node.name });
      m.write('web.yaml', [serviceObject(web), sliceObject(web, [ep(b1), ep(b2)], [{ name: 'http', port: 8080 }])]);
      m.write('far.yaml', [serviceObject(far), sliceObject(far, [ep(b2)], [{ name: 'http', port: 8080 }])]);
      m.write('far-local.yaml', [serviceObject(farLocal), sliceObject(farLocal, [ep(b2)], [{ name: 'http', port: 8080 }])]);
      for (const a of agents) await a.waitForFrontends(['10.96.2.10:80/TCP'], 2);
    });

    after(async () => {
      for (const a of agents) await a.stop();
      await topo?.destroy();
      for (const a of agents) a.cleanupPins();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test('a pod reaches a ClusterIP whose backends are on both nodes', async () => {
      const r = await loop(client, '10.96.2.10:80');
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
      assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2']);
    });

    test('outside -> NodePort on either node reaches backends on both nodes (the remote one source-NATed)', async () => {
      for (const node of [n1, n2]) {
        const r = await loop(outside, `${node.ip}:30200`);
        assert.equal(r.failed, 0, `${node.name}: ${JSON.stringify(r.errors)}`);
        assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2'], node.name);
      }
    });

    test('outside -> NodePort of a Service whose only backend is on the other node', async () => {
      const r = await loop(outside, `${n1.ip}:30201`, 20);
      assert.deepEqual([r.failed, Object.keys(r.replies)], [0, ['b2']], JSON.stringify(r));
    });

    test('outside -> ExternalIP routed to n1 reaches both backends', async () => {
      const r = await loop(outside, '198.51.100.20:80');
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
      assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2']);
    });

    test('externalTrafficPolicy Local: refused where no backend runs, served where one does', async () => {
      const refused = await topo.execJson<OnceResult>(outside, toolArgv('client', ['once', '--to', `${n1.ip}:30202`, '--timeout', '2000']), { allowFail: true });
      assert.deepEqual([refused.ok, refused.error], [false, 'ECONNREFUSED']);
      const served = await topo.execJson<OnceResult>(outside, toolArgv('client', ['once', '--to', `${n2.ip}:30202`, '--timeout', '2000']), { allowFail: true });
      assert.deepEqual([served.ok, served.reply], [true, 'b2']);
    });

    test('a long-lived stream through the remote NodePort path echoes every line', async () => {
      const r = await topo.execJson<{ ok: boolean; sent: number; echoed: number }>(outside, toolArgv('client', ['stream', '--to', `${n1.ip}:30201`, '--duration', '2', '--interval', '10']), { allowFail: true });
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.ok(r.sent > 50 && r.sent === r.echoed);
    });
  });
}
