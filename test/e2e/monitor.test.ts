// `hypha monitor` against real agents on two nodes: pods made through the CNI
// plugin with Pod objects (so identities and pod names are known), a
// connection to a ClusterIP without backends (NO_BACKEND, on the client's
// node) and one a NetworkPolicy denies (POLICY_INGRESS, on the server's
// node). The events arrive with reason, addresses, pod names, the Service and
// both identities; the datapath's drop events are off while no monitor is
// attached and on while one is; Ctrl-C exits 0 and a vanished agent exits 1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as native from '../../native/index.ts';
import { ConfigFlags } from '../../src/abi/abi.gen.ts';
import type { DropMonitorEvent } from '../../src/agent/monitor-event.ts';
import { configCodec } from '../../src/datapath/loader.ts';
import { KubeClient } from '../../src/k8s/client.ts';
import { HYPHA_BIN, type TestAgent, eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import { installIdentityPolicy } from './lib/crds.ts';
import type { Proc } from './lib/proc.ts';
import { type Node, type Pod, toolArgv } from './lib/topology.ts';

const EMPTY = { name: 'empty', namespace: 'x', clusterIP: '10.96.3.20', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

describe('hypha monitor', () => {
  let c: Cluster;
  let client: KubeClient;
  let n1: Node;
  let n2: Node;
  let a1: TestAgent;
  let a2: TestAgent;
  let xb: Pod;
  let ya: Pod;
  const monitors: Proc[] = [];

  /** Whether the programs on this node write drop events (the config map's flag). */
  const eventsOn = (a: TestAgent): boolean => {
    const h = native.openPinnedMap(path.join(a.opts.pinRoot, 'hypha_config_v4'));
    try {
      return (configCodec.decode(native.mapLookup(h, new Uint8Array(4))!).flags & ConfigFlags.DROP_EVENTS) !== 0;
    } finally {
      native.close(h);
    }
  };
  /** `hypha monitor` on a node, attached (its first line read). */
  const monitor = async (node: Node, args: string[]): Promise<Proc> => {
    const p = c.topo.spawn(node, [HYPHA_BIN, 'monitor', ...args], { context: `hypha monitor on ${node.name}` });
    monitors.push(p);
    if (args.includes('--json')) await p.waitForLine((l) => l.startsWith('{"monitor"'), { timeoutMs: 15_000 });
    else await eventually('the monitor attached (its first line, on stderr)', () => p.stderr.includes('listening for '), 15_000);
    return p;
  };
  const events = (p: Proc): DropMonitorEvent[] => p.lines.filter((l) => l.startsWith('{"type":"drop"')).map((l) => JSON.parse(l) as DropMonitorEvent);
  const once = (from: Pod, to: string) =>
    c.topo.execJson<{ ok: boolean; error?: string }>(from, toolArgv('client', ['once', '--to', to, '--timeout', '1500']), { allowFail: true });

  const addPod = async (node: Node, ns: string, name: string): Promise<Pod> => {
    await client.create(`/api/v1/namespaces/${ns}/pods`, {
      metadata: { name, labels: { pod: name } }, spec: { nodeName: node.name, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10.2' }] },
    });
    const pod = await c.topo.addPod(node, name, { namespace: ns });
    await client.mergePatchStatus(`/api/v1/namespaces/${ns}/pods/${name}`, { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } });
    return pod;
  };

  before(async () => {
    c = await Cluster.create({ name: 'mon', nodes: 2, ipam: 'cluster-pool' });
    await installIdentityPolicy(c.cp.hostKubeconfigPath);
    client = KubeClient.fromKubeconfig(c.cp.hostKubeconfigPath, { userAgent: 'hypha-e2e-monitor' });
    [n1, n2] = c.nodes as [Node, Node];
    [a1, a2] = c.agents as [TestAgent, TestAgent];
    for (const ns of ['x', 'y']) await client.create('/api/v1/namespaces', { metadata: { name: ns } });
    xb = await addPod(n1, 'x', 'b');
    ya = await addPod(n2, 'y', 'a');
    await c.topo.spawnReady(ya, toolArgv('echo-server', ['--name', 'y/a', '--port', '8080']), { timeoutMs: 20_000 });
    await c.applyService(EMPTY);
    await a1.waitForFrontends(['10.96.3.20:80/TCP'], 0, 30_000);
    await eventually('both pods in both ipcaches with an identity', () => c.agents.every((a) => [xb, ya].every((p) => (a.ipcache().get(`${p.ip}/32`)?.identity ?? 0) >= 256)), 30_000);
  });

  after(async () => {
    for (const p of monitors) await p.stop({ graceMs: 1000 });
    client?.close();
    await c?.destroy();
  });

  test('drop events are off with no monitor attached, on while one is, off again when it leaves (Ctrl-C exits 0)', async () => {
    assert.equal(eventsOn(a1), false);
    const m = await monitor(n1, ['--type', 'drop', '--json']);
    assert.equal(eventsOn(a1), true, 'on once the monitor has its first line');
    assert.equal(eventsOn(a2), false, 'only on the monitored node');
    m.kill('SIGINT');
    assert.deepEqual(await m.exited, { code: 0, signal: null }, m.stderr);
    await eventually('events off after the last monitor left', () => !eventsOn(a1));
  });

  test('a connection to a ClusterIP without backends: NO_BACKEND with addresses, pod name and Service', async () => {
    const m = await monitor(n1, ['--type', 'drop', '--json']);
    const text = await monitor(n1, []);
    const r = await once(xb, '10.96.3.20:80');
    assert.equal(r.ok, false, 'refused');
    const ev = (await eventually('the NO_BACKEND event', () => events(m).find((e) => e.reason === 'NO_BACKEND' && e.src.ip === xb.ip)))!;
    assert.deepEqual(
      { ...ev, time: undefined, ifindex: undefined, svcId: undefined, src: { ...ev.src, port: undefined } },
      {
        type: 'drop', time: undefined, node: n1.name, reason: 'NO_BACKEND', code: 3, description: 'reject: the Service has no ready backend', policy: false,
        hook: 'from-pod', ifindex: undefined, proto: 'TCP', src: { ip: xb.ip, port: undefined, pod: 'x/b' }, dst: { ip: '10.96.3.20', port: 80 },
        service: 'x/empty:http', svcId: undefined,
      },
    );
    assert.ok(Math.abs(Date.parse(ev.time) - Date.now()) < 60_000, `wall-clock time ${ev.time}`);
    const line = await text.waitForLine((l) => l.includes('NO_BACKEND'));
    assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} NO_BACKEND from-pod x/b ${xb.ip.replace(/\./g, '\\.')}:\\d+ -> 10\\.96\\.3\\.20:80/TCP via x/empty:http  reject: the Service has no ready backend$`));
    for (const p of [m, text]) p.kill('SIGINT');
    await Promise.all([m.exited, text.exited]);
  });

  test('a NetworkPolicy that denies: POLICY_INGRESS on the server\'s node with both pods and identities', async () => {
    assert.equal((await once(xb, `${ya.ip}:8080`)).ok, true, 'open before the policy');
    const m = await monitor(n2, ['--type', 'policy-drop', '--json']);
    await client.create('/apis/networking.k8s.io/v1/namespaces/y/networkpolicies', {
      metadata: { name: 'deny-all-ingress', namespace: 'y' }, spec: { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress'] },
    });
    await eventually('the policy enforced', async () => !(await once(xb, `${ya.ip}:8080`)).ok, 30_000);
    const ev = (await eventually('the POLICY_INGRESS event', () => events(m).find((e) => e.reason === 'POLICY_INGRESS')))!;
    const idOf = (p: Pod) => a2.ipcache().get(`${p.ip}/32`)?.identity;
    assert.deepEqual([ev.hook, ev.policy, ev.proto, ev.node], ['to-pod', true, 'TCP', n2.name]);
    assert.deepEqual({ ...ev.src, port: undefined }, { ip: xb.ip, port: undefined, pod: 'x/b', identity: { id: idOf(xb), namespace: 'x', labels: { pod: 'b' } } });
    assert.deepEqual(ev.dst, { ip: ya.ip, port: 8080, pod: 'y/a', identity: { id: idOf(ya), namespace: 'y', labels: { pod: 'a' } } });
    assert.ok(events(m).every((e) => e.policy), '--type policy-drop: policy drops only');
    m.kill('SIGINT');
    await m.exited;
  });

  test('the agent going away ends the monitor with exit 1 and says why; no agent: exit 1 at once', async () => {
    const m = await monitor(n1, ['--json']);
    await a1.stop();
    const st = await m.exited;
    assert.equal(st.code, 1);
    assert.match(m.stderr, /hypha monitor: the agent at http:\/\/127\.0\.0\.1:9890 ended the stream|the stream from .* broke/);
    const r = await c.topo.exec(n1, [HYPHA_BIN, 'monitor'], { allowFail: true });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /hypha monitor: the agent is not reachable at http:\/\/127\.0\.0\.1:9890/);
  });
});
