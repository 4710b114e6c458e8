// NodePort, ExternalIP and LoadBalancer IPs from a host outside the cluster,
// through the node's external device: the XDP program, and its tc fallback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TestAgent, eventually } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Host, type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; ok: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }
interface OnceResult { ok: boolean; reply?: string; error?: string; ms: number }

const np: ServiceSpec = {
  name: 'np', type: 'NodePort', clusterIP: '10.96.1.10', externalIPs: ['198.51.100.7'],
  ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }, { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30053 }],
};
const lb: ServiceSpec = { name: 'lb', type: 'LoadBalancer', clusterIP: '10.96.1.11', loadBalancerIPs: ['203.0.113.9'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30081 }] };
const local: ServiceSpec = { name: 'local', type: 'NodePort', clusterIP: '10.96.1.12', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30082 }] };
const none: ServiceSpec = { name: 'none', type: 'NodePort', clusterIP: '10.96.1.13', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30083 }] };

for (const mode of ['xdp', 'tc'] as const) {
  describe(`NodePort from outside the cluster (${mode} on the external device)`, () => {
    let topo: Topology;
    let node: Node;
    let outside: Host;
    let backends: Pod[];
    let agent: TestAgent;
    let work: string;

    const loop = (to: string, count: number, extra: string[] = []) =>
      topo.execJson<LoopResult>(outside, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000', ...extra]));
    const once = (to: string) => topo.execJson<OnceResult>(outside, toolArgv('client', ['once', '--to', to, '--timeout', '3000']), { allowFail: true });

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
      topo = await Topology.create({ name: `np${mode}` });
      node = await topo.addNode('n1');
      // The outside host routes Service addresses to the node, as an upstream router would.
      outside = await topo.addExternalHost('outside', { routes: [{ to: '198.51.100.7/32', via: node.ip }, { to: '203.0.113.9/32', via: node.ip }] });
      const m = new ManifestDir(path.join(work, 'services'));
      m.write('none.yaml', [serviceObject(none)]);
      agent = new TestAgent(topo, node, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: m.dir, workDir: work, external: 'eth0', externalMode: mode });
      await agent.start();
      backends = await Promise.all(['b1', 'b2'].map((n) => topo.addPod(node, n)));
      for (const [i, b] of backends.entries()) {
        await topo.spawnReady(b, toolArgv('echo-server', ['--name', `b${i + 1}`, '--port', '8080,5353', '--both']));
      }
      const eps = backends.map((b) => ({ ip: b.ip, node: node.name }));
      m.write('np.yaml', [serviceObject(np), sliceObject(np, eps, [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }])]);
      m.write('lb.yaml', [serviceObject(lb), sliceObject(lb, eps, [{ name: 'http', port: 8080 }])]);
      m.write('local.yaml', [serviceObject(local), sliceObject(local, [{ ip: '10.244.9.9', node: 'elsewhere' }], [{ name: 'http', port: 8080 }])]);
      await agent.waitForFrontends([`${np.clusterIP}:80/TCP`, `${lb.clusterIP}:80/TCP`], 2);
    });

    after(async () => {
      await agent?.stop();
      await topo?.destroy();
      agent?.cleanupPins();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test(`the agent attached ${mode} to the external device`, async () => {
      const link = await topo.exec(node, ['ip', '-d', 'link', 'show', 'eth0']);
      const filters = await topo.exec(node, ['tc', 'filter', 'show', 'dev', 'eth0', 'ingress']);
      if (mode === 'xdp') assert.match(link.stdout, /prog\/xdp id \d+/);
      else assert.match(filters.stdout, /hypha_from_netd/); // program names are cut to 15 characters
    });

    test('TCP to the NodePort reaches both backends', async () => {
      const r = await loop(`${node.ip}:30080`, 40);
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
      assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2']);
    });

    test('UDP to the NodePort is answered', async () => {
      const r = await loop(`${node.ip}:30053`, 20, ['--udp']);
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
    });

    test('an ExternalIP and a LoadBalancer IP are served', async () => {
      for (const to of ['198.51.100.7:80', '203.0.113.9:80']) {
        const r = await loop(to, 10);
        assert.equal(r.failed, 0, `${to}: ${JSON.stringify(r.errors)}`);
      }
    });

    test('externalTrafficPolicy Local with no local backend refuses at once', async () => {
      const r = await once(`${node.ip}:30082`);
      assert.deepEqual([r.ok, r.error], [false, 'ECONNREFUSED']);
      assert.ok(r.ms < 500, `${r.ms} ms`);
    });

    test('a NodePort Service without backends refuses at once', async () => {
      const r = await once(`${node.ip}:30083`);
      assert.deepEqual([r.ok, r.error], [false, 'ECONNREFUSED']);
    });

    test('other traffic to the node is untouched (its own server answers)', async () => {
      await topo.spawnReady(node, toolArgv('echo-server', ['--name', 'node', '--port', '9999']));
      const r = await once(`${node.ip}:9999`);
      assert.deepEqual([r.ok, r.reply], [true, 'node']);
    });

    test('drops and rejects are counted per reason', async () => {
      const { readDrops } = await import('../../src/datapath/drops.ts');
      const { openPinnedMaps } = await import('../../src/datapath/loader.ts');
      const maps = openPinnedMaps(agent.opts.pinRoot);
      const counts = await eventually('reject counters', () => {
        const d = Object.fromEntries(readDrops(maps.get('hypha_drops_v1')!).map((x) => [x.reason, Number(x.packets)]));
        return d.NO_LOCAL_BACKEND && d.NO_BACKEND ? d : undefined;
      });
      assert.ok((counts?.NO_LOCAL_BACKEND ?? 0) >= 1 && (counts?.NO_BACKEND ?? 0) >= 1, JSON.stringify(counts));
    });
  });
}
