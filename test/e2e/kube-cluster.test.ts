// Hypha in a real cluster (issue 9): kubelets and containerd on two namespace
// nodes, no kube-proxy, Hypha installed from deploy/ with kubectl as a user
// does, CoreDNS. What a user sees: pods scheduled by the scheduler and
// networked by Hypha through the kubelet, Services by name, a NetworkPolicy,
// the upstream smoke specs, the agent pod killed under traffic, and Hypha
// deleted and applied again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { pino } from 'pino';
import { runSpecs, SETS } from '../../scripts/conformance.ts';
import { REPO_ROOT } from './lib/apiserver.ts';
import { KubeCluster } from './lib/kube-cluster.ts';

const AGNHOST = 'registry.k8s.io/e2e-test-images/agnhost:2.63.0';
const image = process.env.HYPHA_IMAGE_TAR;

function podYaml(name: string, node: string, labels: Record<string, string>, args: string[]): string {
  return JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, labels },
    spec: { nodeName: node, terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: AGNHOST, args }] },
  });
}

describe('a real cluster: kubelets, containerd, Hypha from deploy/', { skip: image && existsSync(image) ? false : 'HYPHA_IMAGE_TAR is not built (make test-e2e builds it)' }, () => {
  let c: KubeCluster;
  const k = (args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}) => c.kubectl(args, opts);
  const ready = (what: string) => k(['wait', '--for=condition=Ready', what, '--timeout=90s'], { timeoutMs: 100_000 });

  before(async () => {
    const t0 = Date.now();
    c = await KubeCluster.create({ name: 'kcl', nodes: 2, images: [image!], dns: true, log: pino({ level: 'warn' }) });
    await c.installHypha();
    await c.installDns();
    console.log(`# cluster with Hypha from deploy/ and CoreDNS in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    for (const [name, node] of [['web-1', 'n1'], ['web-2', 'n2']] as const) {
      await k(['apply', '-f', '-'], { input: podYaml(name, node, { app: 'web' }, ['netexec', '--http-port=8080']) });
    }
    await k(['create', 'service', 'clusterip', 'web', '--tcp=80:8080']);
    await k(['apply', '-f', '-'], { input: podYaml('client', 'n1', { app: 'client' }, ['pause']) });
    for (const p of ['web-1', 'web-2', 'client']) await ready(`pod/${p}`);
  });
  after(async () => {
    await c?.destroy();
  });

  test('every node is Ready, the agent runs on each and the operator on two; pods reach a Service by its DNS name on either node', async () => {
    const nodes = JSON.parse((await k(['get', 'nodes', '-o', 'json'])).stdout) as { items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[] };
    assert.deepEqual(nodes.items.map((n) => [n.metadata.name, n.status.conditions.find((x) => x.type === 'Ready')?.status]), [['n1', 'True'], ['n2', 'True']]);
    const agents = (await k(['-n', 'kube-system', 'get', 'pods', '-l', 'app.kubernetes.io/component=agent', '-o', 'jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{"\\n"}{end}'])).stdout.trim().split('\n').sort();
    assert.deepEqual(agents, ['n1 Running', 'n2 Running']);
    // Both backends answer, by name (CoreDNS behind its ClusterIP, then the Service's).
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const r = await k(['exec', 'client', '--', 'curl', '-sS', '--max-time', '3', 'http://web.default.svc.cluster.local/hostname']);
      seen.add(r.stdout.trim());
    }
    assert.deepEqual([...seen].sort(), ['web-1', 'web-2']);
  });

  test('upstream smoke: one Service spec and one NetworkPolicy spec of e2e-network.test pass', async () => {
    const lines: string[] = [];
    const { rows, status } = await runSpecs(c, { focus: SETS.smoke!.focus, labels: SETS.smoke!.labels, procs: 2, say: (l) => lines.push(l) });
    const ran = rows.filter((r) => r.result !== 'skipped');
    console.log(`# smoke specs: ${ran.map((r) => `${r.result} ${r.seconds} s: ${r.spec}`).join('; ')}`);
    assert.equal(ran.length, 2, `two specs ran (${JSON.stringify(status)}): ${lines.join('\n')}`);
    assert.deepEqual(ran.filter((r) => r.result !== 'passed'), []);
  });

  test('the agent pod of the client\'s node killed under traffic: one connection through the ClusterIP keeps answering, the DaemonSet brings the agent back', async () => {
    const ip = (await k(['get', 'svc', 'web', '-o', 'jsonpath={.spec.clusterIP}'])).stdout;
    const agent = (await k(['-n', 'kube-system', 'get', 'pods', '-l', 'app.kubernetes.io/component=agent', '--field-selector=spec.nodeName=n1', '-o', 'name'])).stdout.trim();
    // 120 requests at 4 a second on one kept-alive connection (curl reuses it for every URL of the range).
    const traffic = k(['exec', 'client', '--', 'curl', '-sS', '--rate', '4/s', '--max-time', '60', '-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null', `http://${ip}/echo?msg=[1-120]`], { timeoutMs: 90_000, allowFail: true });
    await new Promise((r) => setTimeout(r, 5000));
    await k(['-n', 'kube-system', 'delete', agent, '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    await k(['-n', 'kube-system', 'rollout', 'status', 'daemonset/hypha-agent', '--timeout=90s'], { timeoutMs: 100_000 });
    const r = await traffic;
    const results = r.stdout.trim().split('\n');
    assert.equal(r.code, 0, `curl: ${r.stderr}`);
    assert.equal(results.length, 120);
    assert.deepEqual(results.filter((l) => !l.startsWith('200 ')), [], 'every request answered');
    assert.equal(results.reduce((n, l) => n + Number(l.split(' ')[1]), 0), 1, 'one connection for all of them');
    const newAgent = (await k(['-n', 'kube-system', 'get', 'pods', '-l', 'app.kubernetes.io/component=agent', '--field-selector=spec.nodeName=n1', '-o', 'name'])).stdout.trim();
    assert.notEqual(newAgent, agent);
  });

  test('kubectl delete -k deploy/, a pod deleted meanwhile, apply again: nothing of that pod is left, the others keep their addresses, one conflist, routes to existing nodes only', async () => {
    // The smoke specs' namespaces (and their pods) gone first: only this test's pods change meanwhile.
    await c.waitFor('the e2e namespaces deleted', async () => (await k(['get', 'ns', '-o', 'name'])).stdout.trim().split('\n')
      .every((n) => /^namespace\/(default|kube-system|kube-public|kube-node-lease)$/.test(n)), 180_000);
    // Pods' host-side veths (the node's own eth0 is a veth into the fabric too).
    const veths = async () => (JSON.parse((await c.nodeExec('n1', ['ip', '-j', 'link', 'show', 'type', 'veth'])).stdout) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith('lxc')).sort();
    // The pod-network pods on n1 besides gone (CoreDNS may be one of them), as the API server lists them.
    const n1PodIps = async () => (JSON.parse((await k(['get', 'pods', '-A', '--field-selector=spec.nodeName=n1', '-o', 'json'])).stdout) as { items: { metadata: { name: string }; spec: { hostNetwork?: boolean }; status: { podIP?: string } }[] }).items
      .filter((p) => !p.spec.hostNetwork && p.metadata.name !== 'gone' && p.status.podIP).map((p) => p.status.podIP!).sort();
    const vethsBefore = await veths();
    await k(['apply', '-f', '-'], { input: podYaml('gone', 'n1', { app: 'gone' }, ['pause']) });
    await ready('pod/gone');
    const podIp = async (p: string) => (await k(['get', 'pod', p, '-o', 'jsonpath={.status.podIP}'])).stdout;
    const goneIp = await podIp('gone');
    const before = { web1: await podIp('web-1'), client: await podIp('client') };
    const goneVeth = (await veths()).filter((v) => !vethsBefore.includes(v));
    assert.equal(goneVeth.length, 1, `one new veth for gone: ${goneVeth.join(' ')}`);

    await k(['delete', '-k', `${REPO_ROOT}/deploy`, '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    await c.waitFor('the agent pods gone', async () => (await k(['-n', 'kube-system', 'get', 'pods', '-l', 'app.kubernetes.io/name=hypha', '-o', 'name'])).stdout.trim() === '', 60_000);
    // With Hypha gone the runtime's DEL goes to the plugin's queue.
    await k(['delete', 'pod', 'gone', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });

    await c.installHypha();
    await c.waitFor('the queued DEL replayed (gone\'s veth removed)', async () => !(await veths()).includes(goneVeth[0]!), 60_000);
    const expected = await n1PodIps();
    assert.ok(expected.includes(before.web1) && expected.includes(before.client), expected.join(' '));
    assert.equal((await veths()).length, expected.length, 'a veth for each pod on n1, none for gone');
    assert.deepEqual({ web1: await podIp('web-1'), client: await podIp('client') }, before);
    const eps = (await c.nodeExec('n1', ['bpftool', '-j', 'map', 'dump', 'pinned', '/sys/fs/bpf/hypha/hypha_endpoints_v1'])).stdout;
    const mapped = (JSON.parse(eps) as { key: string[] }[]).map((e) => e.key.map((b) => Number(b)).join('.')).sort();
    assert.deepEqual(mapped, expected, `n1's endpoints map: the pods that stayed, nothing of gone (${goneIp})`);
    const agentOn = (await k(['-n', 'kube-system', 'get', 'pods', '-l', 'app.kubernetes.io/component=agent', '--field-selector=spec.nodeName=n1', '-o', 'name'])).stdout.trim();
    const epN1 = JSON.parse((await k(['-n', 'kube-system', 'exec', agentOn, '-c', 'agent', '--', '/opt/hypha/bin/hypha', 'endpoint', 'list', '--json'])).stdout) as { ip: string }[];
    assert.deepEqual(epN1.map((e) => e.ip).sort(), expected, `n1's endpoints (not ${goneIp})`);
    assert.deepEqual((await c.nodeExec('n1', ['ls', '/etc/cni/net.d'])).stdout.trim().split('\n'), ['05-hypha.conflist']);
    // Routes through other nodes: exactly n2's pod CIDR.
    const n2Cidr = (await k(['get', 'hyphanodes', 'n2', '-o', 'jsonpath={.spec.ipam.podCIDRs[0]}'])).stdout;
    const routes = JSON.parse((await c.nodeExec('n1', ['ip', '-j', 'route', 'show'])).stdout) as { dst: string; gateway?: string }[];
    assert.deepEqual(routes.filter((r) => r.gateway !== undefined && r.dst !== 'default').map((r) => r.dst), [n2Cidr]);
    // Traffic still flows for the pods that stayed.
    const r = await k(['exec', 'client', '--', 'curl', '-sS', '--max-time', '5', 'http://web/hostname']);
    assert.match(r.stdout.trim(), /^web-[12]$/);
  });
});
