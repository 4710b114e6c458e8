// `make demo`: Hypha's Service load balancing on this machine, with no
// Docker and no real devices touched. Builds a node, pods and an outside
// host as network namespaces, runs the agent on the node, programs a few
// Services from Kubernetes YAML, and shows requests spread over backends.
//
//   node scripts/demo.ts          run, show, tear down
//   node scripts/demo.ts --keep   leave it running until Ctrl-C
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TestAgent, CLI, NODE_BIN } from '../test/e2e/lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from '../test/e2e/lib/manifests.ts';
import { run } from '../test/e2e/lib/proc.ts';
import { Topology, toolArgv } from '../test/e2e/lib/topology.ts';

const { values } = parseArgs({ options: { keep: { type: 'boolean', default: false } } });
const step = (n: number, text: string): void => {
  process.stdout.write(`\n[${n}/6] ${text}\n`);
};

interface LoopResult { attempts: number; ok: number; failed: number; replies: Record<string, number>; errors: Record<string, number> }

function histogram(r: LoopResult): string {
  const total = Object.values(r.replies).reduce((a, b) => a + b, 0);
  return Object.entries(r.replies).sort().map(([k, v]) => `    ${k.padEnd(8)} ${'#'.repeat(Math.round((v / Math.max(total, 1)) * 40)).padEnd(40)} ${v}`).join('\n')
    + `\n    ${r.ok}/${r.attempts} ok${r.failed ? `, failed: ${JSON.stringify(r.errors)}` : ''}`;
}

const web: ServiceSpec = {
  name: 'web', type: 'NodePort', clusterIP: '10.96.0.10',
  ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }],
};
const dns: ServiceSpec = { name: 'dns', clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }] };
const pending: ServiceSpec = { name: 'pending', clusterIP: '10.96.0.99', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

const work = mkdtempSync(path.join(tmpdir(), 'hypha-demo-'));
Topology.sweepStale();
const topo = await Topology.create({ name: 'demo' });
let agent: TestAgent | undefined;
try {
  step(1, 'building the cluster: a node, four pods and a host outside (network namespaces)');
  const node = await topo.addNode('node-1');
  const client = await topo.addPod(node, 'client');
  const pods = await Promise.all(['web-1', 'web-2', 'web-3'].map((n) => topo.addPod(node, n)));
  const outside = await topo.addExternalHost('outside');
  for (const p of pods) await topo.spawnReady(p, toolArgv('echo-server', ['--name', p.name, '--port', '8080,5353', '--both']));
  process.stdout.write(`    node-1 ${node.ip} (pods ${node.podCidr}); pods ${pods.map((p) => `${p.name} ${p.ip}`).join(', ')}; client ${client.ip}; outside ${outside.ip}\n`);

  step(2, 'starting the Hypha agent on node-1 (XDP on eth0, tc on each pod veth)');
  const m = new ManifestDir(path.join(work, 'services'));
  const eps = pods.map((p) => ({ ip: p.ip, node: node.name }));
  m.write('web.yaml', [serviceObject(web), sliceObject(web, eps, [{ name: 'http', port: 8080 }])]);
  m.write('dns.yaml', [serviceObject(dns), sliceObject(dns, eps, [{ name: 'dns', port: 5353, protocol: 'UDP' }])]);
  m.write('pending.yaml', [serviceObject(pending)]);
  agent = new TestAgent(topo, node, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: m.dir, workDir: work, external: 'eth0', externalMode: 'auto' });
  await agent.start();
  process.stdout.write(`    Services come from ${m.dir} (Kubernetes YAML); maps pinned under ${agent.opts.pinRoot}\n`);

  step(3, 'what the datapath holds (`hypha service list`, read from the pinned maps)');
  const list = await run([NODE_BIN, CLI, 'service', 'list', '--pin-root', agent.opts.pinRoot]);
  process.stdout.write(list.stdout.replace(/^/gm, '    '));

  step(4, 'client pod -> ClusterIP 10.96.0.10:80 (60 new TCP connections) and 10.96.0.53:53/UDP (30 datagrams)');
  const tcp = await topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--count', '60']));
  process.stdout.write(`${histogram(tcp)}\n`);
  const udp = await topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', '10.96.0.53:53', '--count', '30', '--udp']));
  process.stdout.write(`${histogram(udp)}\n`);

  step(5, `outside host -> NodePort ${node.ip}:30080 (60 connections through XDP on the node's eth0)`);
  const np = await topo.execJson<LoopResult>(outside, toolArgv('client', ['loop', '--to', `${node.ip}:30080`, '--count', '60']));
  process.stdout.write(`${histogram(np)}\n`);

  step(6, 'a Service with no backend refuses at once (ICMP port unreachable), and the drop is counted');
  const refused = await topo.execJson<{ ok: boolean; error?: string; ms: number }>(client, toolArgv('client', ['once', '--to', '10.96.0.99:80']), { allowFail: true });
  process.stdout.write(`    connect to 10.96.0.99:80: ${refused.ok ? 'connected?!' : refused.error} after ${refused.ms} ms\n`);
  const drops = await run([NODE_BIN, CLI, 'bpf', 'drops', '--pin-root', agent.opts.pinRoot]);
  process.stdout.write(drops.stdout.replace(/^/gm, '    '));

  if (values.keep) {
    process.stdout.write(`\nThe cluster keeps running. Try, in another shell:\n`
      + `    nsenter --net=/run/netns/${client.netns} ${NODE_BIN} ${toolArgv('client', ['once', '--to', '10.96.0.10:80']).slice(1).join(' ')}\n`
      + `    ${path.resolve('bin/hypha')} service list --pin-root ${agent.opts.pinRoot}\n`
      + `    edit ${m.dir}/web.yaml (the agent follows the file)\n`
      + 'Ctrl-C tears everything down.\n');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
  }
} finally {
  process.stdout.write('\ntearing down (namespaces, processes, pinned maps)...\n');
  await agent?.stop();
  await topo.destroy();
  agent?.cleanupPins();
  rmSync(work, { recursive: true, force: true });
  process.stdout.write('done\n');
}
