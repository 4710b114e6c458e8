// containerd drives Hypha: a real container runtime (containerd 2.4 + runc)
// on each node of a cluster against a real API server, its CNI conf dir and
// bin dir the node agent's own, so every RunPodSandbox / StopPodSandbox makes
// containerd exec the installed `hypha` plugin exactly as on a real node (in
// containerd's private mount namespace, the pod netns a mount only it sees).
// Shown: network not ready before the agent wrote its conflist; sandboxes get
// addresses from their node's pod CIDR with the pod's namespace/name in the
// agent's endpoint list; agnhost containers talk on one node and across
// nodes, and to a ClusterIP Service backed by a pod on the other node;
// StopPodSandbox's DEL removes the endpoint; an agent restart adopts the
// running pods; an ADD while the agent is down fails with code 11 and the
// retried sandbox comes up once it is back.
//
//   make test-e2e   (the containerd binaries and images: make containerd-bins)
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { type TestAgent, eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import { CONFLIST } from './lib/cni.ts';
import { containerdBinaries, isContainerdError, startContainerd, sweepStaleContainerd, type ContainerInfo, type PodInfo, type Runtime } from './lib/containerd.ts';
import type { ServiceSpec } from './lib/manifests.ts';
import { run } from './lib/proc.ts';
import { Topology, type Node } from './lib/topology.ts';

const log = pino({ level: process.env['LOG_LEVEL'] ?? 'info' }, pino.destination(2));
/** Debian's containernetworking-plugins: containerd brings `lo` up with its `loopback` plugin. */
const REFERENCE_CNI_BIN = '/usr/lib/cni';
const PORT = 8080;
const web: ServiceSpec = { name: 'web', clusterIP: '10.96.7.10', ports: [{ name: 'http', port: 80, targetPort: PORT }] };

type Endpoint = Awaited<ReturnType<TestAgent['endpointList']>>[number];

/** argv prefix that enters a pod's network namespace through its pause process. */
const inPod = (pod: PodInfo): string[] => ['nsenter', `--net=/proc/${pod.pid}/ns/net`, '--'];
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const cidrPrefix = (cidr: string): string => cidr.split('.').slice(0, 3).join('.');

interface Condition { type?: string; status?: boolean; reason?: string; message?: string }

async function networkCondition(rt: Runtime): Promise<Condition | undefined> {
  const r = await rt.crictl(['info']);
  const v = JSON.parse(r.stdout) as { status?: { conditions?: Condition[] } };
  return v.status?.conditions?.find((c) => c.type === 'NetworkReady');
}

describe('containerd on every node runs its pods through Hypha\'s CNI plugin', () => {
  let c: Cluster | undefined;
  let workDir: string | undefined;
  const runtimes: Runtime[] = [];
  let agnhost = '';
  const pods: Record<string, { pod: PodInfo; ctr: ContainerInfo; rt: Runtime; agent: TestAgent; node: Node }> = {};

  const cluster = (): Cluster => {
    assert.ok(c, 'cluster not created');
    return c;
  };
  /** A sandbox through the CRI and agnhost netexec in it. */
  const runServing = async (i: number, name: string, namespace = 'default'): Promise<void> => {
    const rt = runtimes[i]!;
    const pod = await rt.runPod(name, namespace, { labels: { app: name } });
    const ctr = await rt.runContainer(pod.podId, agnhost, ['/agnhost', 'netexec', `--http-port=${PORT}`, '--udp-port=-1'], { name: 'netexec' });
    pods[name] = { pod, ctr, rt, agent: cluster().agents[i]!, node: cluster().nodes[i]! };
    await eventually(`${name} serves HTTP`, async () =>
      (await run([...inPod(pod), 'curl', '-sS', '--max-time', '2', `http://127.0.0.1:${PORT}/hostname`], { allowFail: true })).stdout === name, 20_000);
  };
  /** agnhost connect from one pod's container (ExecSync) to host:port. */
  const connect = (from: string, to: string) =>
    pods[from]!.rt.exec(pods[from]!.ctr.containerId, ['/agnhost', 'connect', to, '--timeout=3s'], { allowFail: true, timeoutMs: 10_000 });
  /** netexec /dial in `from`: an HTTP request from that pod to host:port; the answers it collected. */
  const dial = async (from: string, host: string, port: number, request: string): Promise<string[]> => {
    const url = `http://127.0.0.1:${PORT}/dial?request=${request}&protocol=http&host=${host}&port=${port}&tries=1`;
    const r = await run([...inPod(pods[from]!.pod), 'curl', '-sS', '--max-time', '10', url]);
    return (JSON.parse(r.stdout) as { responses?: string[] }).responses ?? [];
  };
  const endpointOf = async (name: string): Promise<Endpoint | undefined> =>
    (await pods[name]!.agent.endpointList()).find((e) => e.containerId === pods[name]!.pod.podId);

  before(async () => {
    sweepStaleContainerd({ log });
    Topology.sweepStale();
    const bins = await containerdBinaries({ log });
    // Agents later: the first test looks at containerd before Hypha is there.
    c = await Cluster.create({ name: 'ctrd', nodes: 2, ipam: 'kubernetes', noAgents: true });
    workDir = await mkdtemp('/tmp/hyctrd-');
    for (const [i, node] of c.nodes.entries()) {
      const dirs = c.agents[i]!.cniDirs;
      mkdirSync(dirs.binDir, { recursive: true });
      runtimes.push(await startContainerd(c.topo, node, {
        workDir, cniBinDirs: [dirs.binDir, REFERENCE_CNI_BIN], cniConfDir: dirs.confDir, log, binaries: bins,
        env: { HYPHA_CNI_LOG: 'debug' },
      }));
    }
    const [name] = await runtimes[0]!.importImage(bins.agnhostImageTar);
    assert.ok(name, 'the agnhost archive names no image');
    agnhost = name;
    await runtimes[1]!.importImage(bins.agnhostImageTar);
  });

  after(async () => {
    for (const rt of runtimes) {
      const report = await rt.stop();
      if (report.problems.length > 0) log.warn({ node: rt.node.name, problems: report.problems }, 'containerd stop problems');
    }
    await c?.destroy();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  test('before the agent has written its conflist containerd reports the network not ready; once it has, ready', async () => {
    const cl = cluster();
    for (const [i, rt] of runtimes.entries()) {
      assert.ok(!existsSync(path.join(cl.agents[i]!.cniDirs.confDir, CONFLIST)));
      const cond = await networkCondition(rt);
      assert.equal(cond?.status, false, JSON.stringify(cond));
      assert.match(`${cond?.reason} ${cond?.message}`, /NetworkPluginNotReady|cni plugin not initialized|no network config/i, JSON.stringify(cond));
      // The CRI refuses nothing yet, but the runtime's wait for NetworkReady times out.
      await assert.rejects(rt.runPod('early', 'default', { timeoutMs: 1500 }), (err) => isContainerdError(err, 'E_CTRD_TIMEOUT') && /NetworkReady/.test(err.message));
    }
    const t0 = performance.now();
    await Promise.all(cl.agents.map((a) => a.start(60_000)));
    for (const [i, rt] of runtimes.entries()) {
      await rt.waitNetworkReady(30_000);
      assert.ok(existsSync(path.join(cl.agents[i]!.cniDirs.confDir, CONFLIST)));
      assert.ok(existsSync(path.join(cl.agents[i]!.cniDirs.binDir, 'hypha')));
    }
    log.info({ ms: Math.round(performance.now() - t0) }, 'agents started and containerd network ready');
  });

  test('RunPodSandbox: each sandbox gets an address of its node\'s pod CIDR from Hypha, listed by the agent with the pod\'s namespace and name', async () => {
    await runServing(0, 'a1');
    await runServing(0, 'a2', 'shop');
    await runServing(1, 'b');
    for (const [name, { pod, rt, agent, node }] of Object.entries(pods)) {
      assert.match(pod.ip, new RegExp(`^${escape(cidrPrefix(node.podCidr))}\\.\\d+$`), `${name}: ${pod.ip} is not in ${node.podCidr}`);
      // crictl inspectp: the address is containerd's record of the CNI result.
      const inspect = await rt.inspectPod(pod.podId) as { status?: { state?: string; network?: { ip?: string } } };
      assert.equal(inspect.status?.state, 'SANDBOX_READY');
      assert.equal(inspect.status?.network?.ip, pod.ip);
      const ep = await endpointOf(name);
      assert.ok(ep, `${name}: the agent on ${node.name} lists no endpoint for sandbox ${pod.podId.slice(0, 12)}: ${JSON.stringify(await agent.endpointList())}`);
      assert.equal(ep.ip, pod.ip);
      assert.equal(ep.ifname, 'eth0');
      assert.deepEqual(ep.pod, { namespace: pod.namespace, name, uid: pod.uid }, 'K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from containerd');
      assert.deepEqual(ep.datapath, { attached: true, mapped: true });
      assert.equal(agent.endpoints().get(pod.ip), ep.hostIfindex);
      // The pod's side, as Hypha set it up.
      const addr = JSON.parse((await run([...inPod(pod), 'ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout) as { addr_info: { local: string; prefixlen: number }[] }[];
      assert.deepEqual(addr[0]?.addr_info.map((x) => `${x.local}/${x.prefixlen}`), [`${pod.ip}/32`]);
      assert.match((await run([...inPod(pod), 'ip', 'route'])).stdout, /default via 169\.254\.1\.1 dev eth0/);
    }
    assert.equal(new Set(Object.values(pods).map((p) => p.pod.ip)).size, 3);
    // containerd's CNI calls went through the installed plugin (its debug log is in containerd's).
    const ctrdLog = readFileSync(runtimes[0]!.logPath, 'utf8');
    assert.match(ctrdLog, new RegExp(`"name":"hypha-cni".*"command":"ADD".*"containerId":"${pods.a1!.pod.podId}"`));
  });

  test('agnhost in one pod reaches agnhost in another on the same node and on the other node; the server sees the client\'s own address', async () => {
    for (const [from, to] of [['a1', 'a2'], ['a1', 'b'], ['b', 'a2']] as const) {
      const r = await connect(from, `${pods[to]!.pod.ip}:${PORT}`);
      assert.equal(r.code, 0, `${from} -> ${to}: ${r.stderr}${r.stdout}`);
      assert.deepEqual(await dial(from, pods[to]!.pod.ip, PORT, 'hostname'), [to], `${from} -> ${to} over HTTP`);
      const [seen] = await dial(from, pods[to]!.pod.ip, PORT, 'clientip');
      assert.match(seen ?? '', new RegExp(`^${escape(pods[from]!.pod.ip)}:\\d+$`), `${to} saw ${seen}, not ${from} (${pods[from]!.pod.ip})`);
    }
    const refused = await connect('a1', `${pods.b!.pod.ip}:9`);
    assert.notEqual(refused.code, 0, 'a connection to a closed port succeeded');
    assert.match(refused.stderr + refused.stdout, /REFUSED/);
  });

  test('a pod reaches a ClusterIP Service whose backend is an agnhost pod on the other node', async () => {
    const cl = cluster();
    await cl.applyService(web);
    await cl.applySlice(web, [{ ip: pods.b!.pod.ip, node: cl.nodes[1]!.name }], [{ name: 'http', port: PORT }]);
    await cl.agents[0]!.waitForFrontends([`${web.clusterIP}:80/TCP`], 1, 30_000);
    const r = await connect('a1', `${web.clusterIP}:80`);
    assert.equal(r.code, 0, `${r.stderr}${r.stdout}`);
    assert.deepEqual(await dial('a1', web.clusterIP!, 80, 'hostname'), ['b']);
    assert.deepEqual(await dial('a2', web.clusterIP!, 80, 'hostname'), ['b']);
  });

  test('StopPodSandbox: containerd\'s DEL removes the endpoint (no veth, map entry or record); RemovePodSandbox after it is clean', async () => {
    const rt = runtimes[0]!;
    const agent = cluster().agents[0]!;
    const node = cluster().nodes[0]!;
    const pod = await rt.runPod('short-lived');
    const ep = (await agent.endpointList()).find((e) => e.containerId === pod.podId);
    assert.ok(ep, 'no endpoint for the new sandbox');
    const record = path.join(agent.cniDirs.stateDir, 'endpoints', `${pod.podId}:eth0.json`);
    assert.ok(existsSync(record), `no record ${record}`);
    assert.equal(agent.endpoints().get(pod.ip), ep.hostIfindex);

    await rt.stopPod(pod.podId);
    const link = await cluster().topo.exec(node, ['ip', 'link', 'show', 'dev', ep.hostIfname], { allowFail: true });
    assert.notEqual(link.code, 0, `host veth ${ep.hostIfname} is still there`);
    assert.equal(agent.endpoints().has(pod.ip), false, 'the endpoints map still has the pod');
    assert.equal((await agent.endpointList()).some((e) => e.containerId === pod.podId), false, 'the agent still lists the endpoint');
    assert.ok(!existsSync(record), 'the endpoint record is still there');
    assert.match(readFileSync(rt.logPath, 'utf8'), new RegExp(`"name":"hypha-cni".*"command":"DEL".*"containerId":"${pod.podId}"`));
    await rt.removePod(pod.podId);
    assert.equal((await rt.crictl(['pods', '-q', '--name', 'short-lived'])).stdout.trim(), '');
    // The address is free again: the next pod may get it.
    const st = JSON.parse((await agent.http('/status')).body) as { pods?: { addresses?: { used: number } } };
    assert.equal(st.pods?.addresses?.used, 2, JSON.stringify(st.pods));
  });

  test('the agent restarted while pods run: they keep working, are adopted and keep their addresses', async () => {
    const agent = cluster().agents[0]!;
    const before = (await agent.endpointList()).map((e) => [e.containerId, e.ip, e.hostIfindex]).sort();
    assert.equal(before.length, 2);
    await agent.stop();
    // Without its owner the datapath keeps forwarding.
    assert.equal((await connect('a1', `${pods.b!.pod.ip}:${PORT}`)).code, 0, 'a1 -> b with the agent stopped');
    assert.equal((await connect('b', `${pods.a2!.pod.ip}:${PORT}`)).code, 0, 'b -> a2 with the agent stopped');
    await agent.start(60_000);
    const reconciled = await eventually('the agent reconciled its endpoints', () => agent.logs().find((l) => l['msg'] === 'endpoints reconciled'));
    assert.equal(reconciled?.['adopted'], 2, JSON.stringify(reconciled));
    assert.equal(reconciled?.['gone'], 0);
    const after_ = (await agent.endpointList()).map((e) => [e.containerId, e.ip, e.hostIfindex]).sort();
    assert.deepEqual(after_, before, 'same endpoints, addresses and devices after the restart');
    for (const name of ['a1', 'a2']) {
      const inspect = await pods[name]!.rt.inspectPod(pods[name]!.pod.podId) as { status?: { network?: { ip?: string } } };
      assert.equal(inspect.status?.network?.ip, pods[name]!.pod.ip);
      assert.deepEqual((await endpointOf(name))?.datapath, { attached: true, mapped: true });
    }
    await runtimes[0]!.waitNetworkReady(30_000);
    for (const [from, to] of [['a1', 'a2'], ['a1', 'b'], ['b', 'a1']] as const) {
      assert.deepEqual(await dial(from, pods[to]!.pod.ip, PORT, 'hostname'), [to], `${from} -> ${to} after the restart`);
    }
    assert.deepEqual(await dial('a2', web.clusterIP!, 80, 'hostname'), ['b']);
  });

  test('an ADD while the agent is down fails with code 11; the sandbox retried once it is back comes up', async () => {
    const rt = runtimes[1]!;
    const agent = cluster().agents[1]!;
    const node = cluster().nodes[1]!;
    await agent.stop();
    const failed = await rt.runPod('retried').then(() => undefined, (err: unknown) => err);
    assert.ok(isContainerdError(failed, 'E_CTRD_COMMAND'), `RunPodSandbox with the agent down: ${String(failed)}`);
    // (crictl quotes containerd's message: its quotes come escaped.)
    const m = /failed to setup network for sandbox \\?"([0-9a-f]{64})\\?": plugin type=\\?"hypha\\?" failed \(add\): (try again later: agent at \S+cni\.sock: [^"\\\n]+)/.exec(failed.message);
    assert.ok(m, `containerd's error does not carry the plugin's: ${failed.message}`);
    const [, failedId, reported] = m as unknown as [string, string, string];
    // libcni keeps only the error object's msg: the same binary, run the same
    // way with the agent still down, shows the code that msg came with.
    const probe = await cluster().topo.addScratch('probe');
    try {
      const direct = await agent.plugin.invoke('ADD', {
        containerId: 'f'.repeat(64), netns: cluster().topo.netnsPath(probe), args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'retried' },
      });
      assert.equal(direct.exitCode, 1, direct.stdout);
      assert.equal(direct.json?.['code'], 11, direct.stdout);
      assert.equal(direct.json?.['msg'], reported, 'containerd reported the plugin\'s code-11 message');
    } finally {
      await cluster().topo.removeScratch(probe);
    }
    // containerd tore the failed sandbox down: the plugin queued its DEL for the agent.
    const shimLines = readFileSync(rt.logPath, 'utf8').split('\n').filter((l) => l.startsWith('{') && l.includes('"name":"hypha-cni"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(shimLines.some((l) => l['command'] === 'DEL' && l['containerId'] === failedId && l['msg'] === 'agent not reachable: DEL queued for the agent to replay'), `no queued DEL of ${failedId} in ${rt.logPath}`);
    assert.ok(readdirSync(agent.cniDirs.delQueueDir).some((f) => f.startsWith(failedId)), `the DEL queue has no entry for ${failedId}`);
    assert.equal((await rt.crictl(['pods', '-q', '--name', 'retried'])).stdout.trim(), '', 'containerd kept the failed sandbox');
    // STATUS: containerd asks the plugin, which says it is not available.
    await eventually('containerd reports the network not ready', async () => (await networkCondition(rt))?.status === false, 15_000);

    await agent.start(60_000);
    await eventually('the queued DEL replayed', () => readdirSync(agent.cniDirs.delQueueDir).filter((f) => f.endsWith('.json')).length === 0, 10_000);
    await rt.waitNetworkReady(30_000);
    const pod = await rt.runPod('retried');
    assert.match(pod.ip, new RegExp(`^${escape(cidrPrefix(node.podCidr))}\\.\\d+$`));
    const ep = (await agent.endpointList()).find((e) => e.containerId === pod.podId);
    assert.equal(ep?.ip, pod.ip);
    assert.deepEqual(ep?.pod, { namespace: 'default', name: 'retried', uid: pod.uid });
    assert.equal((await run([...inPod(pod), 'ping', '-c', '1', '-W', '2', pods.a1!.pod.ip], { allowFail: true })).code, 0, 'the retried pod reaches a1');
  });

  test('stopping the runtimes removes every sandbox through Hypha: no endpoint, veth or record left', async () => {
    const cl = cluster();
    for (const [i, rt] of runtimes.entries()) {
      if (!cl.agents[i]!.proc) await cl.agents[i]!.start(60_000); // an earlier test failed with it stopped
      const report = await rt.stop();
      assert.deepEqual(report.problems, [], `containerd on ${rt.node.name}`);
      const agent = cl.agents[i]!;
      assert.deepEqual(await agent.endpointList(), [], `${agent.node.name} still lists endpoints`);
      assert.equal(agent.endpoints().size, 0);
      assert.deepEqual(readdirSync(path.join(agent.cniDirs.stateDir, 'endpoints')), []);
      const veths = (await cl.topo.exec(cl.nodes[i]!, ['ip', '-o', 'link', 'show', 'type', 'veth'])).stdout;
      assert.doesNotMatch(veths, /lxc[0-9a-f]{11}/, `pod veths left on ${cl.nodes[i]!.name}`);
    }
  });
});
