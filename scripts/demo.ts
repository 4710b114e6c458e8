// `make demo`: a Kubernetes cluster on this machine with Hypha as its CNI and
// kube-proxy replacement, no Docker and no real device touched
// (test/e2e/lib/kube-cluster.ts). A control-plane host runs etcd,
// kube-apiserver, the controller manager and the scheduler; each node runs
// containerd and a kubelet. Hypha is installed from deploy/ with kubectl, as
// a user installs it (the agent DaemonSet, the operator Deployment), then
// CoreDNS. The demo's pods are placed by the scheduler and made by each
// node's kubelet through Hypha's CNI plugin; a Service is reached by its DNS
// name and through a NodePort, a NetworkPolicy blocks a client until it
// is labelled, and a HyphaNetworkPolicy then lets only GET /hostname through
// the agent's L7 proxy.
//
//   node scripts/demo.ts [--nodes N]          set up, show, keep running until Ctrl-C
//   node scripts/demo.ts [--nodes N] --once   set up, show, tear down
//
// Three nodes by default (one web replica each); measured on this 2-core
// machine under load: the cluster up in 44 to 61 s with 3 nodes, 32 s with 2.
//
// HYPHA_IMAGE_TAR (make image) is Hypha's image archive; make demo builds it.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { HYPHA_BIN } from '../test/e2e/lib/agent.ts';
import { KubeCluster } from '../test/e2e/lib/kube-cluster.ts';

const AGNHOST = 'registry.k8s.io/e2e-test-images/agnhost:2.63.0';
const NODE_PORT = 30080;
const IN_AGENT = ['-c', 'agent', '--', '/opt/hypha/bin/hypha'];

const { values } = parseArgs({ options: { once: { type: 'boolean', default: false }, nodes: { type: 'string', default: '3' } } });
const nodeCount = Number(values.nodes);
if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 4) throw new Error(`--nodes ${JSON.stringify(values.nodes)}: an integer from 1 to 4`);
const image = process.env.HYPHA_IMAGE_TAR;
if (!image || !existsSync(image)) throw new Error(`HYPHA_IMAGE_TAR ${JSON.stringify(image)} is not Hypha's image archive: run make demo (it builds the image first)`);

const STEPS = 6;
const t0 = performance.now();
const secs = (from = t0): string => `${((performance.now() - from) / 1000).toFixed(0)} s`;
const say = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const step = (n: number, text: string): void => say(`\n[${n}/${STEPS}] ${text}`);
const indent = (s: string, by = '    '): string => s.replace(/\s+$/, '').replace(/^/gm, by);

/** Counts of each reply as bars, like `uniq -c`. */
function histogram(replies: readonly string[], label: (reply: string) => string = (r) => r): string {
  const counts = new Map<string, number>();
  for (const r of replies) counts.set(r, (counts.get(r) ?? 0) + 1);
  const width = Math.max(...[...counts.keys()].map((k) => label(k).length));
  return [...counts.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `    ${label(k).padEnd(width)}  ${'#'.repeat(Math.round((v / replies.length) * 40)).padEnd(40)} ${v}`).join('\n');
}

function deployment(): string {
  const labels = { app: 'web' };
  return JSON.stringify({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', labels },
    spec: {
      replicas: 3, selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 1,
          // The scheduler spreads the replicas over the nodes.
          topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: labels } }],
          containers: [{ name: 'web', image: AGNHOST, args: ['netexec', '--http-port=8080'], ports: [{ name: 'http', containerPort: 8080 }], readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 2 } }],
        },
      },
    },
  });
}

function clientPod(name: string): string {
  return JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: 'client' } },
    spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: AGNHOST, args: ['pause'] }] },
  });
}

const services = JSON.stringify({
  apiVersion: 'v1', kind: 'List',
  items: [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web-nodeport' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', nodePort: NODE_PORT }] } },
  ],
});

const policy = JSON.stringify({
  apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'web-from-access' },
  spec: {
    podSelector: { matchLabels: { app: 'web' } },
    policyTypes: ['Ingress'],
    ingress: [{ from: [{ podSelector: { matchLabels: { access: 'true' } } }], ports: [{ port: 8080, protocol: 'TCP' }] }],
  },
});

/** The same ingress with HTTP rules: only GET /hostname (and what is under it) passes. */
const httpPolicy = JSON.stringify({
  apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNetworkPolicy', metadata: { name: 'web-http' },
  spec: {
    podSelector: { matchLabels: { app: 'web' } },
    ingress: [{ from: [{ podSelector: { matchLabels: { access: 'true' } } }], ports: [{ port: 8080, protocol: 'TCP', http: [{ method: 'GET', path: { prefix: '/hostname' } }] }] }],
  },
});

/** A shell loop in a pod: `count` requests, one curl (a new connection) each, a reply or the error per line. */
const curlLoop = (url: string, count: number): string[] =>
  ['sh', '-c', `i=0; while [ $i -lt ${count} ]; do curl -sS --max-time 3 ${url} 2>&1; echo; i=$((i+1)); done`];

step(1, `a ${nodeCount}-node cluster: etcd, kube-apiserver, controller manager and scheduler on a control-plane host; containerd and a kubelet per node; Hypha from deploy/; CoreDNS`);
const log = pino({ level: 'error' }, pino.destination(2));
const c = await KubeCluster.create({ name: 'demo', nodes: nodeCount, images: [image], dns: true, log, progress: (l) => say(`    [${secs().padStart(5)}] ${l.trim()}`) });
let stopping = false;
const teardown = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  say('\ntearing down (kubelets, containerd and its pods, the control plane, the namespaces)...');
  const t = performance.now();
  await c.destroy();
  say(`done in ${secs(t)}`);
};
const nodes = [...c.nodes].sort((a, b) => a.node.name.localeCompare(b.node.name));
const k = (args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}) => c.kubectl(args, opts);
try {
  await c.installHypha();
  say(`    [${secs().padStart(5)}] Hypha running: the agent on every node, the operator; every Node Ready`);
  await c.installDns();
  say(`    [${secs().padStart(5)}] CoreDNS running behind the kube-dns Service`);
  // The demo's objects go in while the next step prints.
  await k(['apply', '-f', '-'], { input: deployment() });
  await k(['apply', '-f', '-'], { input: services });
  for (const name of ['client', 'client-2']) await k(['apply', '-f', '-'], { input: clientPod(name) });
  const clusterUp = secs();

  step(2, `the cluster (up in ${clusterUp}): \`kubectl get nodes -o wide\`, \`kubectl -n kube-system get pods -o wide\``);
  say(indent((await k(['get', 'nodes', '-o', 'wide'])).stdout));
  say('');
  say(indent((await k(['-n', 'kube-system', 'get', 'pods', '-o', 'wide'])).stdout));

  step(3, 'a Deployment `web` (3 agnhost netexec replicas, placed by the scheduler), Services `web` (ClusterIP) and `web-nodeport` (NodePort 30080), two client pods');
  await k(['rollout', 'status', 'deployment/web', '--timeout=120s'], { timeoutMs: 130_000 });
  await k(['wait', '--for=condition=Ready', 'pod/client', 'pod/client-2', '--timeout=120s'], { timeoutMs: 130_000 });
  say(indent((await k(['get', 'pods', '-o', 'wide'])).stdout));
  say('');
  say(indent((await k(['get', 'services', '-o', 'wide'])).stdout));
  const pods = JSON.parse((await k(['get', 'pods', '-o', 'json'])).stdout) as { items: { metadata: { name: string }; spec: { nodeName: string }; status: { podIP: string } }[] };
  const nodeOf = new Map(pods.items.map((p) => [p.metadata.name, p.spec.nodeName]));
  const where = (name: string): string => (nodeOf.has(name) ? `${name} (${nodeOf.get(name)})` : name);
  const clientNode = nodeOf.get('client')!;
  const dig = await k(['exec', 'client', '--', 'dig', '+short', 'web.default.svc.cluster.local']);
  say(`\n    client -> CoreDNS: web.default.svc.cluster.local is ${dig.stdout.trim()}`);
  say(`    client on ${clientNode}: curl http://web/hostname, 30 times (a new connection each):`);
  const byName = await k(['exec', 'client', '--', ...curlLoop('http://web/hostname', 30)], { timeoutMs: 120_000 });
  say(histogram(byName.stdout.trim().split('\n'), where));
  const agentOn = new Map<string, string>();
  for (const line of (await k(['-n', 'kube-system', 'get', 'pods', '-l', 'app.kubernetes.io/component=agent', '-o', 'jsonpath={range .items[*]}{.spec.nodeName} {.metadata.name}{"\\n"}{end}'])).stdout.trim().split('\n')) {
    const [node, pod] = line.split(' ');
    if (node && pod) agentOn.set(node, pod);
  }
  say(`    \`hypha service list\` in the agent on ${clientNode} (read from its pinned BPF maps):`);
  say(indent((await k(['-n', 'kube-system', 'exec', agentOn.get(clientNode)!, ...IN_AGENT, 'service', 'list'])).stdout));
  say(`    the control-plane host (not a node) -> NodePort ${NODE_PORT} on each node, 10 requests each:`);
  for (const n of nodes) {
    const replies: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await c.topo.exec(c.host, ['curl', '-sS', '--max-time', '3', `http://${n.node.ip}:${NODE_PORT}/hostname`], { allowFail: true });
      replies.push(r.code === 0 ? r.stdout.trim() : r.stderr.trim());
    }
    say(`    via ${n.node.name} ${n.node.ip}:${NODE_PORT}`);
    say(histogram(replies, where));
  }

  step(4, 'a NetworkPolicy: ingress to app=web only from pods labelled access=true, on 8080/TCP');
  await k(['apply', '-f', '-'], { input: policy });
  say(indent((await k(['describe', 'networkpolicy', 'web-from-access'])).stdout));
  const webPod = pods.items.find((p) => p.metadata.name.startsWith('web-') && p.spec.nodeName === clientNode) ?? pods.items.find((p) => p.metadata.name.startsWith('web-'))!;
  const webNode = webPod.spec.nodeName;
  // The policy is in the datapath of web's node once `hypha policy get` shows it.
  await c.waitFor('the policy in the agent', async () => {
    const r = await k(['-n', 'kube-system', 'exec', agentOn.get(webNode)!, ...IN_AGENT, 'policy', 'get', `default/${webPod.metadata.name}`, '--json'], { allowFail: true });
    return r.code === 0 && r.stdout.includes('web-from-access');
  }, 30_000);
  say(`    \`hypha policy get default/${webPod.metadata.name}\` in the agent on ${webNode}:`);
  say(indent((await k(['-n', 'kube-system', 'exec', agentOn.get(webNode)!, ...IN_AGENT, 'policy', 'get', `default/${webPod.metadata.name}`])).stdout));
  // `hypha monitor` on web's node while the client is refused (the agent's local API, in the node's netns).
  const monitor = c.topo.spawn(nodes.find((n) => n.node.name === webNode)!.node, [HYPHA_BIN, 'monitor', '--type', 'policy-drop'], { context: 'hypha monitor' });
  await new Promise((r) => setTimeout(r, 1500));
  const attempt = async (pod: string, url: string): Promise<string> => {
    const r = await k(['exec', pod, '--', 'curl', '-sS', '--max-time', '2', url], { allowFail: true });
    return r.code === 0 ? `allowed: ${r.stdout.trim()} answered` : `blocked (${r.stderr.trim().replace(/^curl: /, 'curl ').replace(/\ncommand terminated.*$/s, '')})`;
  };
  const webUrl = `http://${webPod.status.podIP}:8080/hostname`;
  say(`    client (no access label) -> ${webPod.metadata.name} ${webPod.status.podIP}:8080: ${await attempt('client', webUrl)}`);
  say(`    client -> http://web/hostname: ${await attempt('client', 'http://web/hostname')}`);
  say(`    client-2 (no access label yet) -> ${webPod.metadata.name}: ${await attempt('client-2', webUrl)}`);
  await monitor.stop({ graceMs: 2000 });
  say(`    \`hypha monitor --type policy-drop\` on ${webNode} meanwhile:`);
  say(indent(monitor.lines.slice(0, 6).join('\n') || '(no event)'));
  await k(['label', 'pod', 'client-2', 'access=true']);
  say('    kubectl label pod client-2 access=true');
  let allowed = '';
  await c.waitFor('client-2 allowed', async () => (allowed = await attempt('client-2', webUrl)).startsWith('allowed'), 30_000);
  say(`    client-2 -> ${webPod.metadata.name} ${webPod.status.podIP}:8080: ${allowed}`);
  const byName2 = await k(['exec', 'client-2', '--', ...curlLoop('http://web/hostname', 15)], { timeoutMs: 120_000 });
  say(`    client-2 on ${nodeOf.get('client-2')}: curl http://web/hostname, 15 times:`);
  say(histogram(byName2.stdout.trim().split('\n'), where));
  say(`    client -> http://web/hostname: ${await attempt('client', 'http://web/hostname')}`);
  const hostTry = await c.topo.exec(c.host, ['curl', '-sS', '--max-time', '2', `http://${nodes[0]!.node.ip}:${NODE_PORT}/hostname`], { allowFail: true });
  say(`    the control-plane host -> NodePort ${nodes[0]!.node.ip}:${NODE_PORT} (not a pod labelled access=true): ${hostTry.code === 0 ? `allowed?! ${hostTry.stdout.trim()}` : `blocked (${hostTry.stderr.trim().replace(/^curl: /, 'curl ')})`}`);
  say(`    \`hypha bpf drops\` on ${webNode} (per-reason drop counters in the datapath):`);
  say(indent((await k(['-n', 'kube-system', 'exec', agentOn.get(webNode)!, ...IN_AGENT, 'bpf', 'drops'])).stdout));

  step(5, 'a HyphaNetworkPolicy in its place: the same peers and port, and HTTP rules (GET /hostname only), enforced by the agent\'s L7 proxy on web\'s node');
  await k(['delete', 'networkpolicy', 'web-from-access']);
  await k(['apply', '-f', '-'], { input: httpPolicy });
  say('    kubectl delete networkpolicy web-from-access; kubectl apply -f web-http.yaml (HyphaNetworkPolicy: from access=true, 8080/TCP, http: GET /hostname)');
  const answer = async (pod: string, url: string): Promise<string> => {
    const r = await k(['exec', pod, '--', 'curl', '-sS', '--max-time', '2', '-w', ' [%{http_code}]', url], { allowFail: true });
    return r.code === 0 ? r.stdout.trim().replace(/\s+/g, ' ') : `blocked (${r.stderr.trim().replace(/^curl: /, 'curl ').replace(/\ncommand terminated.*$/s, '')})`;
  };
  const echoUrl = `http://${webPod.status.podIP}:8080/echo?msg=hi`;
  let refused = '';
  await c.waitFor('the HTTP rules enforced', async () => (refused = await answer('client-2', echoUrl)).includes('[403]'), 30_000);
  const l7monitor = c.topo.spawn(nodes.find((n) => n.node.name === webNode)!.node, [HYPHA_BIN, 'monitor', '--type', 'l7'], { context: 'hypha monitor --type l7' });
  await new Promise((r) => setTimeout(r, 1500));
  say(`    client-2 -> ${webPod.metadata.name} GET /hostname: ${await answer('client-2', webUrl)}`);
  say(`    client-2 -> ${webPod.metadata.name} GET /echo?msg=hi: ${await answer('client-2', echoUrl)}`);
  say(`    client-2 -> http://web/echo?msg=hi (the ClusterIP): ${await answer('client-2', 'http://web/echo?msg=hi')}`);
  say(`    client (no access label) -> ${webPod.metadata.name} GET /hostname: ${await answer('client', webUrl)}`);
  await new Promise((r) => setTimeout(r, 500));
  await l7monitor.stop({ graceMs: 2000 });
  say(`    \`hypha monitor --type l7\` on ${webNode} meanwhile (the proxy's access log):`);
  say(indent(l7monitor.lines.slice(0, 6).join('\n') || '(no event)'));
  say(`    \`hypha policy trace --from default/client-2 --to default/${webPod.metadata.name} --port 8080/TCP --http 'POST /hostname'\` in the agent on ${webNode}:`);
  say(indent((await k(['-n', 'kube-system', 'exec', agentOn.get(webNode)!, ...IN_AGENT, 'policy', 'trace', '--from', 'default/client-2', '--to', `default/${webPod.metadata.name}`, '--port', '8080/TCP', '--http', 'POST /hostname'], { allowFail: true })).stdout));
  const hnpStatus = await k(['get', 'hyphanetworkpolicy', 'web-http', '-o', 'jsonpath={.status.nodes}'], { allowFail: true });
  say(`    kubectl get hnp web-http -o jsonpath={.status.nodes}: ${hnpStatus.stdout.trim()}`);

  const kubectl = `${c.bins.kubectl} --kubeconfig=${c.kubeconfig}`;
  step(6, values.once ? 'things to try (with --once the cluster goes now; `make demo` keeps it running)' : 'things to try, in another shell as root, while this runs');
  say(`    alias kubectl='${kubectl}'`);
  say(`    kubectl get pods -A -o wide
    kubectl exec client -- curl -sS http://web/hostname
    kubectl exec client-2 -- curl -sS 'http://web-nodeport/echo?msg=hi'
    kubectl scale deployment web --replicas=5 && kubectl get endpointslices -l kubernetes.io/service-name=web
    kubectl label pod client access=true; kubectl exec client -- curl -sS --max-time 2 http://web/hostname
    kubectl exec client-2 -- curl -sS -X POST http://web/hostname    # 403 from the L7 proxy
    kubectl get hnp web-http -o yaml
    kubectl delete hnp web-http
    kubectl -n kube-system exec ds/hypha-agent -c agent -- /opt/hypha/bin/hypha status
    kubectl -n kube-system exec ds/hypha-agent -c agent -- /opt/hypha/bin/hypha service list
    kubectl -n kube-system exec ds/hypha-agent -c agent -- /opt/hypha/bin/hypha endpoint list
    kubectl -n kube-system exec ds/hypha-agent -c agent -- /opt/hypha/bin/hypha identity list
    kubectl -n kube-system exec ${agentOn.get(webNode)} -c agent -- /opt/hypha/bin/hypha policy get default/${webPod.metadata.name}
    kubectl -n kube-system exec ${agentOn.get(webNode)} -c agent -- /opt/hypha/bin/hypha policy trace --from default/client --to default/${webPod.metadata.name} --port 8080/TCP
    kubectl -n kube-system exec -it ${agentOn.get(webNode)} -c agent -- /opt/hypha/bin/hypha monitor --type policy-drop
    kubectl -n kube-system exec -it ${agentOn.get(webNode)} -c agent -- /opt/hypha/bin/hypha monitor --type l7
    kubectl -n kube-system logs ds/hypha-agent -c agent
    nsenter --net=/run/netns/${c.host.netns} curl -sS http://${nodes[0]!.node.ip}:${NODE_PORT}/hostname    # the control-plane host (once the policy is gone)
The cluster's files (logs of the kubelets, containerd and the control plane): ${c.work}`);

  if (values.once) {
    await teardown();
  } else {
    say('\nThe cluster keeps running. Ctrl-C tears everything down.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await teardown();
  }
  say(`total ${secs()}`);
} catch (err) {
  await teardown();
  throw err;
}
