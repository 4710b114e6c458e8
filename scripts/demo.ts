// `make demo`: a local Kubernetes cluster on this machine, with no Docker and
// no real device touched. A control-plane host runs kube-apiserver, etcd and
// the Hypha operator (a pod CIDR per node, HyphaNodes); three nodes each run
// the Hypha agent, which makes every pod through the CNI plugin (invoked as a
// container runtime invokes it), routes between the nodes and replaces
// kube-proxy; pods and an outside host are network namespaces. Demo Services
// are created through the API and requests are shown spread over their
// backends.
//
//   node scripts/demo.ts          set up, show, and keep running until Ctrl-C
//   node scripts/demo.ts --once   set up, show, tear down
import { parseArgs } from 'node:util';
import { HYPHA_BIN, NODE_BIN } from '../test/e2e/lib/agent.ts';
import { Cluster } from '../test/e2e/lib/cluster.ts';
import type { ServiceSpec } from '../test/e2e/lib/manifests.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { type Host, type Pod, Topology, TOOLS_DIR, toolArgv } from '../test/e2e/lib/topology.ts';

const { values } = parseArgs({ options: { once: { type: 'boolean', default: false } } });
const STEPS = 9;
const step = (n: number, text: string): void => {
  process.stdout.write(`\n[${n}/${STEPS}] ${text}\n`);
};
const indent = (s: string): string => s.replace(/^/gm, '    ').replace(/\s+$/, '');

interface LoopResult { attempts: number; ok: number; failed: number; replies: Record<string, number>; errors: Record<string, number> }

function histogram(r: LoopResult): string {
  const total = Object.values(r.replies).reduce((a, b) => a + b, 0);
  const bars = Object.entries(r.replies).sort().map(([k, v]) => `    ${k.padEnd(8)} ${'#'.repeat(Math.round((v / Math.max(total, 1)) * 40)).padEnd(40)} ${v}`);
  return `${bars.join('\n')}\n    ${r.ok}/${r.attempts} ok${r.failed ? `, failed: ${JSON.stringify(r.errors)}` : ''}`;
}

const web: ServiceSpec = { name: 'web', type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 'http', nodePort: 30080 }] };
const dns: ServiceSpec = { name: 'dns', clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }] };
const pending: ServiceSpec = { name: 'pending', clusterIP: '10.96.0.99', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

Topology.sweepStale();
const started = performance.now();
step(1, 'starting the control plane (kube-apiserver, etcd, the Hypha operator) and three nodes, each with a Hypha agent');
const c = await Cluster.create({ name: 'demo', nodes: 3, ipam: 'cluster-pool', externalMode: 'auto', externalHosts: ['outside'], log: (s) => process.stdout.write(`    ${s}\n`) });
let stopping = false;
const teardown = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\ntearing down (agents, API server, namespaces, pinned maps)...\n');
  await c.destroy();
  process.stdout.write('done\n');
};
try {
  const [n1, n2, n3] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]];
  process.stdout.write(`    API server https://${c.controlPlaneHost.ip}:6443; nodes ${c.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')}; ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  for (const [i, a] of c.agents.entries()) {
    const st = JSON.parse((await a.http('/status')).body) as { pods: { podCIDRs: string[] }; routing: { mode: string; routes: { dst: string; via: string; node: string }[] } };
    process.stdout.write(`    ${c.nodes[i]!.name}: pod CIDR ${st.pods.podCIDRs.join(', ')} (from its HyphaNode, given by the operator); ${st.routing.mode} routes ${st.routing.routes.map((r) => `${r.dst} via ${r.via} (${r.node})`).join(', ')}\n`);
  }

  step(2, 'pods made by each node\'s agent through the CNI plugin: web-1 on n1, web-2 on n2, web-3 on n3, a client on n1');
  const pods: Pod[] = [await c.addServingPod(n1, 'web-1', '8080,5353'), await c.addServingPod(n2, 'web-2', '8080,5353'), await c.addServingPod(n3, 'web-3', '8080,5353')];
  const client = await c.topo.addPod(n1, 'client');
  const outside: Host = c.topo.hosts.find((h) => h.name === 'outside')!;
  await c.topo.spawnReady(outside, toolArgv('echo-server', ['--name', 'outside', '--port', '9000', '--peer']));
  process.stdout.write(`    ${pods.map((p) => `${p.name} ${p.ip}`).join(', ')}; client ${client.ip}; outside ${outside.ip}\n`);
  for (const [i, node] of c.nodes.entries()) {
    const eps = await c.topo.exec(node, [HYPHA_BIN, 'endpoint', 'list', '--state-dir', c.agents[i]!.cniDirs.stateDir, '--pin-root', c.agents[i]!.opts.pinRoot]);
    process.stdout.write(`    \`hypha endpoint list\` on ${node.name}:\n${indent(eps.stdout).replace(/^/gm, '  ')}\n`);
  }

  step(3, 'pod to pod across nodes, and out of the cluster (masqueraded to the node\'s address)');
  for (const p of pods) {
    const r = await c.topo.execJson<{ ok: boolean; reply?: string; error?: string }>(client, toolArgv('client', ['once', '--to', `${p.ip}:8080`]), { allowFail: true });
    process.stdout.write(`    client (${n1.name}) -> ${p.name} ${p.ip} on ${p.node.name}: ${r.ok ? 'connected' : r.error}\n`);
  }
  const out = await c.topo.execJson<{ ok: boolean; reply?: string; error?: string }>(client, toolArgv('client', ['once', '--to', `${outside.ip}:9000`]), { allowFail: true });
  process.stdout.write(`    client ${client.ip} -> outside ${outside.ip}:9000: ${out.ok ? `the outside host saw the connection come from ${out.reply?.split(' ')[1]} (${n1.name}'s address)` : out.error}\n`);

  step(4, 'Services and EndpointSlices created through the API (what the endpoints controller would write)');
  await c.applyService(web);
  await c.applySlice(web, Cluster.endpoints(pods), [{ name: 'http', port: 8080 }]);
  await c.applyService(dns);
  await c.applySlice(dns, Cluster.endpoints(pods), [{ name: 'dns', port: 5353, protocol: 'UDP' }]);
  await c.applyService(pending);
  const agent1 = c.agents[0]!;
  for (let i = 0; i < 100 && (agent1.backendsOf('10.96.0.10:80/TCP')?.length ?? 0) < 3; i++) await new Promise((r) => setTimeout(r, 50));
  const list = await c.topo.exec(n1, [HYPHA_BIN, 'service', 'list', '--pin-root', agent1.opts.pinRoot]);
  process.stdout.write(`    on n1, \`hypha service list\` (read from the pinned BPF maps):\n${indent(list.stdout)}\n`);

  step(5, 'client pod on n1 -> ClusterIP 10.96.0.10:80 (60 TCP connections) and 10.96.0.53:53/UDP (30 datagrams)');
  process.stdout.write(`${histogram(await c.topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--count', '60'])))}\n`);
  process.stdout.write(`${histogram(await c.topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', '10.96.0.53:53', '--count', '30', '--udp'])))}\n`);

  step(6, 'outside host -> NodePort 30080 on each node (backends on the other nodes are reached through it)');
  for (const node of [n1, n2, n3]) {
    process.stdout.write(`    via ${node.name} ${node.ip}:30080\n${histogram(await c.topo.execJson<LoopResult>(outside, toolArgv('client', ['loop', '--to', `${node.ip}:30080`, '--count', '45'])))}\n`);
  }

  step(7, 'an EndpointSlice change through the API reaches the datapath at once; a Service with no backend refuses');
  const t0 = performance.now();
  await c.applySlice(web, Cluster.endpoints(pods.slice(0, 2)), [{ name: 'http', port: 8080 }]);
  while ((agent1.backendsOf('10.96.0.10:80/TCP')?.length ?? 3) !== 2) await new Promise((r) => setTimeout(r, 1));
  process.stdout.write(`    web-3 removed from the slice: programmed on n1 ${(performance.now() - t0).toFixed(0)} ms after the API write began\n`);
  process.stdout.write(`${histogram(await c.topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--count', '30'])))}\n`);
  const refused = await c.topo.execJson<{ ok: boolean; error?: string; ms: number }>(client, toolArgv('client', ['once', '--to', '10.96.0.99:80']), { allowFail: true });
  process.stdout.write(`    connect to 10.96.0.99:80 (no endpoints): ${refused.ok ? 'connected?!' : refused.error} after ${refused.ms} ms\n`);
  const drops = await c.topo.exec(n1, [HYPHA_BIN, 'bpf', 'drops', '--pin-root', agent1.opts.pinRoot]);
  process.stdout.write(`    \`hypha bpf drops\` on n1:\n${indent(drops.stdout)}\n`);

  step(8, 'the agent on n1 (`hypha status`)');
  const status = await c.topo.exec(n1, [HYPHA_BIN, 'status', '--pin-root', agent1.opts.pinRoot]);
  process.stdout.write(`${indent(status.stdout)}\n`);

  step(9, 'a pod deleted: the runtime\'s DEL through the plugin removes its veth, address and datapath entry');
  const gone = await c.topo.addPod(n2, 'short-lived');
  await c.topo.removePod(gone);
  const left = await c.topo.exec(n2, [HYPHA_BIN, 'endpoint', 'list', '--state-dir', c.agents[1]!.cniDirs.stateDir, '--pin-root', c.agents[1]!.opts.pinRoot, '--json']);
  process.stdout.write(`    short-lived (${gone.ip}) added and deleted on n2; endpoints left there: ${(JSON.parse(left.stdout) as { pod?: { name: string } }[]).map((e) => e.pod?.name).join(', ')}\n`);

  if (values.once) {
    await teardown();
  } else {
    const inNs = (netns: string): string => `nsenter --net=/run/netns/${netns}`;
    process.stdout.write(`
The cluster keeps running. In another shell, as root:
    ${inNs(client.netns)} ${NODE_BIN} ${TOOLS_DIR}client.ts once --to 10.96.0.10:80
    ${inNs(outside.netns)} ${NODE_BIN} ${TOOLS_DIR}client.ts loop --to ${n2.ip}:30080 --count 20
    ${inNs(n1.netns)} ${HYPHA_BIN} status --pin-root ${agent1.opts.pinRoot}
    ${inNs(n1.netns)} ${HYPHA_BIN} service list --pin-root ${agent1.opts.pinRoot}
    ${inNs(n1.netns)} ${HYPHA_BIN} endpoint list --state-dir ${agent1.cniDirs.stateDir} --pin-root ${agent1.opts.pinRoot}
    ${inNs(n1.netns)} ${NODE_BIN} -e "fetch('http://127.0.0.1:9890/metrics').then(r => r.text()).then(console.log)"
The API server (admin kubeconfig for this machine): ${c.cp.hostKubeconfigPath}
    (e.g. with @kubernetes/client-node, or kubectl --kubeconfig if you have one)
Ctrl-C tears everything down.
`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await teardown();
  }
} catch (err) {
  await teardown();
  throw err;
}
void run;
