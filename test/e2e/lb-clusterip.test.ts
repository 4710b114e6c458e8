// Real traffic through the Service datapath on one node: a client pod, three
// backend pods, a standalone agent following Kubernetes YAML files.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CtDir, CtFlags } from '../../src/abi/abi.gen.ts';
import { TestAgent, eventually } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; ok: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }
interface OnceResult { ok: boolean; reply?: string; error?: string; ms: number }

const web: ServiceSpec = { name: 'web', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const dns: ServiceSpec = { name: 'dns', clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }] };
const empty: ServiceSpec = { name: 'empty', clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const self: ServiceSpec = { name: 'self', clusterIP: '10.96.0.40', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const sticky: ServiceSpec = { name: 'sticky', clusterIP: '10.96.0.50', ports: [{ name: 'http', port: 80, targetPort: 8080 }], sessionAffinity: { timeoutSeconds: 600 } };

describe('ClusterIP through the BPF datapath', () => {
  let topo: Topology;
  let node: Node;
  let client: Pod;
  let backends: Pod[];
  let agent: TestAgent;
  let manifests: ManifestDir;
  let work: string;

  const loop = (to: string, count: number, extra: string[] = []) =>
    topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000', ...extra]));
  const once = (to: string, extra: string[] = []) =>
    topo.execJson<OnceResult>(client, toolArgv('client', ['once', '--to', to, '--timeout', '3000', ...extra]), { allowFail: true });
  const eps = (pods: Pod[]) => pods.map((p) => ({ ip: p.ip, node: node.name }));

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'lb' });
    node = await topo.addNode('n1');
    manifests = new ManifestDir(path.join(work, 'services'));
    manifests.write('empty.yaml', [serviceObject(empty)]);
    agent = new TestAgent(topo, node, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: manifests.dir, workDir: work, ctGcMaxSeconds: 1 });
    await agent.start();
    // Pods come from the agent, through the CNI plugin.
    client = await topo.addPod(node, 'client');
    backends = await Promise.all(['b1', 'b2', 'b3'].map((n) => topo.addPod(node, n)));
    for (const [i, b] of backends.entries()) {
      await topo.spawnReady(b, toolArgv('echo-server', ['--name', `b${i + 1}`, '--port', '8080,5353', '--both']));
    }
    await topo.spawnReady(client, toolArgv('echo-server', ['--name', 'client', '--port', '8080']));
    manifests.write('web.yaml', [serviceObject(web), sliceObject(web, eps(backends), [{ name: 'http', port: 8080 }])]);
    manifests.write('dns.yaml', [serviceObject(dns), sliceObject(dns, eps(backends), [{ name: 'dns', port: 5353, protocol: 'UDP' }])]);
    manifests.write('self.yaml', [serviceObject(self), sliceObject(self, eps([client]), [{ name: 'http', port: 8080 }])]);
    manifests.write('sticky.yaml', [serviceObject(sticky), sliceObject(sticky, eps(backends), [{ name: 'http', port: 8080 }])]);
    await agent.waitForFrontends(['10.96.0.10:80/TCP', '10.96.0.40:80/TCP', '10.96.0.50:80/TCP'], 1);
    await agent.waitForFrontends(['10.96.0.53:53/UDP'], 3);
  });

  after(async () => {
    await agent?.stop();
    await topo?.destroy();
    agent?.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('a client pod reaches all three backends through the ClusterIP', async () => {
    const r = await loop('10.96.0.10:80', 60);
    assert.equal(r.failed, 0, JSON.stringify(r.errors));
    assert.deepEqual(Object.keys(r.replies).sort(), ['b1', 'b2', 'b3']);
  });

  test('UDP: datagrams to the ClusterIP are answered by the backends', async () => {
    const r = await loop('10.96.0.53:53', 30, ['--udp']);
    assert.equal(r.failed, 0, JSON.stringify(r.errors));
    assert.ok(Object.keys(r.replies).length >= 2, JSON.stringify(r.replies));
  });

  test('a Service without backends refuses connections at once', async () => {
    const r = await once('10.96.0.20:80');
    assert.equal(r.ok, false);
    assert.equal(r.error, 'ECONNREFUSED');
    assert.ok(r.ms < 500, `refused after ${r.ms} ms`);
  });

  test('a Service address on a port it does not serve is refused at once', async () => {
    const r = await once('10.96.0.10:81');
    assert.deepEqual([r.ok, r.error], [false, 'ECONNREFUSED']);
  });

  test('a pod reaches itself through a Service (hairpin)', async () => {
    const r = await once('10.96.0.40:80');
    assert.deepEqual([r.ok, r.reply], [true, 'client']);
  });

  test('session affinity keeps a client on one backend', async () => {
    const r = await loop('10.96.0.50:80', 20);
    assert.equal(r.failed, 0);
    assert.equal(Object.keys(r.replies).length, 1, JSON.stringify(r.replies));
  });

  test('host routing: pod-to-pod traffic on the node goes straight to the pod, past the node\'s stack', async () => {
    // The endpoints map names every local pod's host-side veth.
    const want = new Map([client, ...backends].map((p) => [p.ip, p.hostIfindex]));
    await eventually('every pod in the endpoints map', () => [...want].every(([ip, ifindex]) => agent.endpoints().get(ip) === ifindex));
    // A counter in the node's prerouting sees what enters the node's IP stack from the client.
    const table = `${topo.prefix}count`;
    await topo.exec(node, ['nft', '-f', '-'], {
      input: `table ip ${table} {\n chain pre { type filter hook prerouting priority -400; policy accept; ip saddr ${client.ip} counter; }\n}\n`,
    });
    const counted = async (): Promise<number> => {
      const out = JSON.parse((await topo.exec(node, ['nft', '-j', 'list', 'table', 'ip', table])).stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
      return out.nftables.flatMap((o) => o.rule?.expr ?? []).reduce((n, e) => n + (e.counter?.packets ?? 0), 0);
    };
    // The counter works: a ping to the node enters the stack.
    await topo.exec(client, ['ping', '-c', '1', '-W', '2', node.ip]);
    const before = await counted();
    assert.ok(before >= 1, `the ping was counted (${before})`);
    // Through the Service and straight to a pod's own address: answered, and not one packet through the node's stack.
    const viaService = await loop('10.96.0.10:80', 30);
    const direct = await loop(`${backends[0]!.ip}:8080`, 10);
    assert.deepEqual([viaService.failed, direct.failed], [0, 0], JSON.stringify([viaService.errors, direct.errors]));
    assert.equal(await counted(), before, 'no packet from the client entered the node\'s stack');
  });

  test('conntrack entries of closed flows are garbage-collected once their closing time runs out', async () => {
    const r = await loop('10.96.0.10:80', 5);
    assert.equal(r.failed, 0);
    const id = (c: { key: { saddr: string; daddr: string; sport: number; dport: number; dir: number } }) =>
      `${c.key.dir} ${c.key.saddr}:${c.key.sport} ${c.key.daddr}:${c.key.dport}`;
    const closed = new Set(agent.conntrack().filter((c) => c.entry.flags & CtFlags.CLOSING).map(id));
    assert.ok(closed.size >= 10, `the loop's flows are closing (${closed.size})`);
    // Closing lifetime 10 s, then a GC pass (at most 1 s apart in this test).
    await eventually('closed flows gone from conntrack', () => !agent.conntrack().some((c) => closed.has(id(c))), 20_000);
  });

  test('a removed backend gets no new flows, and its open connection does not hang on it: the next segment is balanced afresh and reset', async () => {
    const stream = topo.spawn(client, toolArgv('client', ['stream', '--to', '10.96.0.10:80', '--duration', '4', '--interval', '20']));
    // The stream's backend, from conntrack: the one open (not closing) flow from the client to the VIP.
    const victimIp = await eventually('the stream in conntrack', () => {
      const open = agent.conntrack().filter((c) => c.key.dir === CtDir.SERVICE && c.key.saddr === client.ip &&
        c.key.daddr === '10.96.0.10' && !(c.entry.flags & CtFlags.CLOSING));
      return open.length === 1 ? open[0]!.entry.nat_addr : undefined;
    });
    const victim = backends.find((b) => b.ip === victimIp)!;
    const victimName = `b${backends.indexOf(victim) + 1}`;
    manifests.write('web.yaml', [serviceObject(web), sliceObject(web, eps(backends.filter((b) => b !== victim)), [{ name: 'http', port: 8080 }])]);
    const removedAt = performance.now();
    await eventually('backend removed from the maps', () => agent.backendsOf('10.96.0.10:80/TCP')?.length === 2);
    const r = await loop('10.96.0.10:80', 40);
    assert.equal(r.failed, 0);
    assert.equal(r.replies[victimName], undefined, `no new flow went to ${victimName}: ${JSON.stringify(r.replies)}`);
    await stream.exited;
    const s = JSON.parse([...stream.lines].reverse().find((l) => l.startsWith('{')) ?? '{}') as { ok: boolean; reply: string; error?: string; ms: number };
    // As under Cilium: the flow's backend is gone from the Service, so its next segment goes to a backend still
    // there, which knows no such connection and resets it: the client fails at once instead of talking to a
    // pod that no longer serves (a terminating backend keeps its connections: see the packet tests).
    assert.equal(s.ok, false, `the stream was reset: ${JSON.stringify(s)}`);
    assert.match(s.error ?? '', /ECONNRESET|EPIPE/);
    assert.ok(s.ms < 4000, `it ended before its 4 s: ${JSON.stringify(s)} (backend removed at ${Math.round(removedAt)} ms)`);
    manifests.write('web.yaml', [serviceObject(web), sliceObject(web, eps(backends), [{ name: 'http', port: 8080 }])]);
    await eventually('backend back', () => agent.backendsOf('10.96.0.10:80/TCP')?.length === 3);
  });
});

