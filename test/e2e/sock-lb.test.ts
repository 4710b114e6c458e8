// Socket LB: the node's own processes (the kubelet, hostNetwork pods, anything
// in the node's network namespace) reach Services as pods do, translated at
// connect()/sendmsg() by cgroup programs (bpf/sock/lb_sock.c). Here the
// programs are attached to a cgroup of this test's own (bpf.socketLbCgroup),
// and the clients are put in it: nothing else on the machine runs them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cgroup2Root } from '../../src/datapath/sock-lb.ts';
import { TestAgent } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; ok: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }
interface OnceResult { ok: boolean; reply?: string; error?: string; from?: string }

const web: ServiceSpec = { name: 'web', type: 'NodePort', clusterIP: '10.96.7.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30710 }] };
const dns: ServiceSpec = { name: 'dns', clusterIP: '10.96.7.53', ports: [{ name: 'dns', port: 53, targetPort: 8080, protocol: 'UDP' }] };
const empty: ServiceSpec = { name: 'empty', clusterIP: '10.96.7.99', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

const root = cgroup2Root();

describe('socket LB: the node\'s own connections to Services', { skip: root ? false : 'no cgroup v2 hierarchy mounted' }, () => {
  let topo: Topology;
  let n1: Node;
  let n2: Node;
  let b1: Pod;
  let b2: Pod;
  let work: string;
  let cg: string;
  const agents: TestAgent[] = [];
  /** argv run in `where`'s netns from inside the test cgroup (the only processes the programs see). */
  const inCgroup = (argv: string[]) => ['sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'in-cgroup', cg, ...argv];
  const client = <T>(where: Node, args: string[]) => topo.execJson<T>(where, inCgroup(toolArgv('client', args)), { allowFail: true });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'sock' });
    cg = path.join(root!, `${topo.prefix}sock`);
    mkdirSync(cg);
    n1 = await topo.addNode('n1');
    n2 = await topo.addNode('n2');
    const m = new ManifestDir(path.join(work, 'services'));
    for (const node of [n1, n2]) {
      const other = node === n1 ? n2 : n1;
      const a = new TestAgent(topo, node, {
        pinRoot: `/sys/fs/bpf/${topo.prefix}${node.name}`, servicesDir: m.dir, workDir: path.join(work, node.name), external: 'eth0', externalMode: 'tc',
        routing: { nodes: [{ name: other.name, addresses: [other.ip], podCIDRs: [other.podCidr] }] },
        socketLb: true, socketLbCgroup: cg,
      });
      agents.push(a);
      await a.start();
    }
    b1 = await topo.addPod(n1, 'b1');
    b2 = await topo.addPod(n2, 'b2');
    for (const b of [b1, b2]) await topo.spawnReady(b, toolArgv('echo-server', ['--name', b.name, '--port', '8080', '--both']));
    const ep = (p: Pod) => ({ ip: p.ip, node: p.node.name });
    m.write('web.yaml', [serviceObject(web), sliceObject(web, [ep(b1), ep(b2)], [{ name: 'http', port: 8080 }])]);
    m.write('dns.yaml', [serviceObject(dns), sliceObject(dns, [ep(b2)], [{ name: 'dns', port: 8080, protocol: 'UDP' }])]);
    m.write('empty.yaml', [serviceObject(empty), sliceObject(empty, [], [{ name: 'http', port: 8080 }])]);
    for (const a of agents) {
      await a.waitForFrontends(['10.96.7.10:80/TCP'], 2);
      await a.waitForFrontends(['10.96.7.53:53/UDP'], 1);
    }
  });

  after(async () => {
    for (const a of agents) await a.stop();
    await topo?.destroy();
    // The pins (and with them the links) go with the pin roots.
    for (const n of ['n1', 'n2']) rmSync(`/sys/fs/bpf/${topo.prefix}${n}`, { recursive: true, force: true });
    if (cg) rmdirSync(cg);
    rmSync(work, { recursive: true, force: true });
  });

  test('a process in the node\'s namespace reaches a ClusterIP: both backends, the local and the other node\'s', async () => {
    for (const node of [n1, n2]) {
      const r = await client<LoopResult>(node, ['loop', '--to', '10.96.7.10:80', '--count', '30', '--timeout', '2000']);
      assert.equal(r.failed, 0, `${node.name}: ${JSON.stringify(r.errors)}`);
      assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2'], `${node.name}: ${JSON.stringify(r.replies)}`);
    }
  });

  test('its own NodePort on its own address, from the node', async () => {
    const r = await client<LoopResult>(n1, ['loop', '--to', `${n1.ip}:30710`, '--count', '20', '--timeout', '2000']);
    assert.equal(r.failed, 0, JSON.stringify(r.errors));
    assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2']);
  });

  test('UDP from an unconnected socket: the answer shows the ClusterIP as its source; from a connected one it arrives', async () => {
    const d = await client<OnceResult>(n1, ['datagram', '--to', '10.96.7.53:53', '--timeout', '2000']);
    assert.deepEqual([d.ok, d.from, d.reply?.split(' ')[0]], [true, '10.96.7.53:53', 'b2'], JSON.stringify(d));
    const c = await client<OnceResult>(n1, ['once', '--to', '10.96.7.53:53', '--udp', '--timeout', '2000']);
    assert.deepEqual([c.ok, c.reply], [true, 'b2'], JSON.stringify(c));
  });

  test('a Service without endpoints is refused at connect(); processes outside the node\'s namespace are left alone', async () => {
    const r = await client<OnceResult>(n1, ['once', '--to', '10.96.7.99:80', '--timeout', '2000']);
    assert.deepEqual([r.ok, r.error], [false, 'EPERM'], JSON.stringify(r));
    // A pod's socket (another namespace) in the same cgroup: not translated here (tc on its device does that).
    const pod = await topo.addPod(n1, 'p');
    const p = await topo.execJson<OnceResult>(pod, inCgroup(toolArgv('client', ['once', '--to', '10.96.7.10:80', '--timeout', '2000'])));
    assert.equal(p.ok, true, JSON.stringify(p));
  });
});
