// Pods made by the agent through the CNI plugin on one node: the binary
// invoked as a runtime invokes it, the pod's interface, address and routes,
// the datapath entries, traffic between pods and to a Service, DEL, and the
// bad inputs a runtime can send.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TestAgent, eventually } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface OnceResult { ok: boolean; reply?: string; error?: string }

const web: ServiceSpec = { name: 'web', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

describe('pods through the CNI plugin (one node)', () => {
  let topo: Topology;
  let node: Node;
  let agent: TestAgent;
  let work: string;
  let a: Pod;
  let b: Pod;
  let manifests: ManifestDir;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-cni-'));
    topo = await Topology.create({ name: 'cni' });
    node = await topo.addNode('n1');
    manifests = new ManifestDir(path.join(work, 'services'));
    manifests.write('web.yaml', [serviceObject(web)]);
    agent = new TestAgent(topo, node, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: manifests.dir, workDir: work });
    await agent.start();
    [a, b] = await Promise.all([topo.addPod(node, 'pod-a'), topo.addPod(node, 'pod-b')]);
    await topo.spawnReady(b, toolArgv('echo-server', ['--name', 'b', '--port', '8080']));
    manifests.write('web.yaml', [serviceObject(web), sliceObject(web, [{ ip: b.ip, node: node.name }], [{ name: 'http', port: 8080 }])]);
  });

  after(async () => {
    await agent?.stop();
    await topo?.destroy();
    agent?.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the agent installed the plugin and a conflist offering every config version', () => {
    assert.ok(existsSync(agent.plugin.binary));
    const list = agent.plugin.conflist();
    assert.equal(list.cniVersion, '1.1.0');
    assert.deepEqual((list as unknown as { cniVersions: string[] }).cniVersions, ['0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    assert.equal(list.plugins[0]?.type, 'hypha');
  });

  test('each pod has an address from the node\'s pod CIDR on eth0 (/32), a default route via the link-local gateway', async () => {
    for (const p of [a, b]) {
      assert.match(p.ip, /^10\.244\.1\.\d+$/);
      const addr = JSON.parse((await topo.exec(p, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout) as { addr_info: { local: string; prefixlen: number }[] }[];
      assert.deepEqual(addr[0]?.addr_info.map((x) => `${x.local}/${x.prefixlen}`), [`${p.ip}/32`]);
      const routes = (await topo.exec(p, ['ip', 'route'])).stdout;
      assert.match(routes, /default via 169\.254\.1\.1 dev eth0/);
      const neigh = (await topo.exec(p, ['ip', 'neigh', 'show', '169.254.1.1'])).stdout;
      assert.match(neigh, new RegExp(`lladdr ${p.hostMac} PERMANENT`));
    }
  });

  test('the endpoints are in the agent\'s list and in the datapath', async () => {
    const eps = await agent.endpointList();
    assert.deepEqual(eps.map((e) => [e.pod?.name, e.ip, e.datapath]).sort(), [
      ['pod-a', a.ip, { attached: true, mapped: true }],
      ['pod-b', b.ip, { attached: true, mapped: true }],
    ]);
    const map = agent.endpoints();
    assert.equal(map.get(a.ip), eps.find((e) => e.ip === a.ip)?.hostIfindex);
  });

  test('pod to pod and pod to a ClusterIP whose backend is the other pod', async () => {
    const direct = await topo.execJson<OnceResult>(a, toolArgv('client', ['once', '--to', `${b.ip}:8080`, '--timeout', '3000']));
    assert.equal(direct.ok, true, JSON.stringify(direct));
    await eventually('web has its backend', () => agent.backendsOf('10.96.0.10:80/TCP')?.length === 1);
    const svc = await topo.execJson<OnceResult>(a, toolArgv('client', ['once', '--to', '10.96.0.10:80', '--timeout', '3000']));
    assert.equal(svc.reply, 'b');
  });

  test('CHECK passes for a pod as ADD left it', async () => {
    const list = await agent.endpointList();
    const ep = list.find((e) => e.ip === a.ip)!;
    const r = await agent.plugin.invoke('CHECK', { containerId: ep.containerId, netns: topo.netnsPath(a), prevResult: { cniVersion: '1.1.0', interfaces: [], ips: [{ address: `${a.ip}/32` }], routes: [] } });
    assert.equal(r.exitCode, 0, r.stdout);
  });

  test('a removed pod leaves no veth, map entry or record; its address is free again', async () => {
    const c = await topo.addPod(node, 'pod-c');
    const host = c.hostIfname;
    await topo.removePod(c);
    assert.equal((await topo.exec(node, ['ip', 'link', 'show', 'dev', host], { allowFail: true })).code, 1);
    assert.equal(agent.endpoints().has(c.ip), false);
    assert.equal((await agent.endpointList()).some((e) => e.ip === c.ip), false);
  });
});
