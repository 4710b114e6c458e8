// Pods on three nodes against a real API server, in both routing modes: the
// operator gives each node a pod CIDR (cluster-pool IPAM, HyphaNodes), the
// agents make the pods through the CNI plugin, route between the nodes
// (native, or over VXLAN) and masquerade what leaves the cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { CtDir } from '../../src/abi/abi.gen.ts';
import type { AgentStatus } from '../../src/agent/status.ts';
import { eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import type { ServiceSpec } from './lib/manifests.ts';
import { type Host, type Pod, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; ok: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }
interface OnceResult { ok: boolean; reply?: string; error?: string }

const far: ServiceSpec = { name: 'far', clusterIP: '10.96.3.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const np: ServiceSpec = { name: 'np', type: 'NodePort', clusterIP: '10.96.3.11', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30300 }] };
const http = [{ name: 'http', port: 8080 }];

for (const mode of ['native', 'vxlan'] as const) {
  describe(`pods on three nodes, ${mode} routing, operator IPAM`, () => {
    let c: Cluster;
    let outside: Host;
    const pods: Record<string, Pod> = {};
    const once = (from: Pod | Host, to: string) => c.topo.execJson<OnceResult>(from, toolArgv('client', ['once', '--to', to, '--timeout', '3000']), { allowFail: true });
    const loop = (from: Pod | Host, to: string, count = 30) => c.topo.execJson<LoopResult>(from, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000']));
    const custom = () => c.kc.makeApiClient(k8s.CustomObjectsApi);

    before(async () => {
      c = await Cluster.create({ name: `rt${mode.slice(0, 2)}`, nodes: 3, ipam: 'cluster-pool', routing: mode, externalMode: 'xdp', externalHosts: ['outside'] });
      outside = c.topo.hosts.find((h) => h.name === 'outside')!;
      if (mode === 'vxlan') {
        // As between nodes on different networks, whose routers know nothing
        // of pod CIDRs: the underlay drops every frame addressed to a pod.
        // Only the tunnel (and masquerade) can get traffic to pods across.
        await c.topo.exec(c.topo.fabric, ['nft', '-f', '-'], {
          input: `table bridge ${c.topo.prefix}underlay {\n chain nopods { type filter hook forward priority 0; policy accept; ip daddr 10.244.0.0/16 counter drop; }\n}\n`,
        });
      }
      await c.topo.spawnReady(outside, toolArgv('echo-server', ['--name', 'outside', '--port', '9000', '--both', '--peer']));
      const [n1, n2, n3] = c.nodes as [typeof c.nodes[0], typeof c.nodes[0], typeof c.nodes[0]];
      for (const [name, node] of [['a1', n1], ['a2', n1], ['b', n2], ['c', n3]] as const) {
        pods[name] = await c.addServingPod(node, name, '8080', ['--both', '--peer']);
      }
      await c.applyService(far);
      await c.applySlice(far, Cluster.endpoints([pods.b!, pods.c!]), http);
      await c.applyService(np);
      await c.applySlice(np, Cluster.endpoints([pods.c!]), http);
      for (const a of c.agents) await a.waitForFrontends(['10.96.3.10:80/TCP'], 2, 30_000);
      // Every agent has published its address and routes to the two others
      // (the node table converges after the agents start, each on its own).
      for (const [i, a] of c.agents.entries()) {
        await eventually(`${c.nodes[i]!.name} routes to the other nodes`, async () => {
          const st = JSON.parse((await a.http('/status')).body) as AgentStatus;
          return st.routing?.routes.length === 2;
        }, 30_000).catch((err: Error) => {
          const lines = a.logs().filter((l) => /HyphaNode|routing|route|node table/.test(String(l.msg))).map((l) => `${String(l.msg)} ${l.err ?? l.reason ?? ''}`);
          throw new Error(`${err.message}\nagent log: ${lines.join(' | ')}`);
        });
      }
    });

    after(async () => {
      await c?.destroy();
    });

    test('the operator gave each node its own /24 of the pool; each agent took it and made its pods from it', async () => {
      const cidrs: string[] = [];
      for (const [i, node] of c.nodes.entries()) {
        const hn = (await custom().getClusterCustomObject({ group: 'hypha.dev', version: 'v1alpha1', plural: 'hyphanodes', name: node.name })) as { spec?: { ipam?: { podCIDRs?: string[] }; addresses?: { ip: string }[] } };
        const cidr = hn.spec?.ipam?.podCIDRs?.[0] ?? '';
        assert.match(cidr, /^10\.244\.\d+\.0\/24$/, `${node.name}: ${JSON.stringify(hn.spec)}`);
        assert.deepEqual(hn.spec?.addresses?.map((a) => a.ip), [node.ip], `${node.name} published its address`);
        cidrs.push(cidr);
        const st = JSON.parse((await c.agents[i]!.http('/status')).body) as AgentStatus;
        assert.deepEqual(st.pods?.podCIDRs, [cidr]);
        assert.equal(st.routing?.mode, mode);
      }
      assert.equal(new Set(cidrs).size, 3);
      // Addresses taken off a HyphaNode (by hand, or a recreated object) are put back by its agent.
      const n1 = c.nodes[0]!;
      await custom().patchClusterCustomObject({ group: 'hypha.dev', version: 'v1alpha1', plural: 'hyphanodes', name: n1.name, body: { spec: { addresses: [] } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
      await eventually(`${n1.name}'s agent put its address back`, async () => {
        const hn = (await custom().getClusterCustomObject({ group: 'hypha.dev', version: 'v1alpha1', plural: 'hyphanodes', name: n1.name })) as { spec?: { addresses?: { ip: string }[] } };
        return hn.spec?.addresses?.[0]?.ip === n1.ip;
      }, 20_000);
      const prefixOf = (ip: string) => ip.split('.').slice(0, 3).join('.');
      for (const [name, pod] of Object.entries(pods)) {
        const i = c.nodes.indexOf(pod.node);
        assert.equal(`${prefixOf(pod.ip)}.0/24`, cidrs[i], `pod ${name}'s address ${pod.ip} is from ${pod.node.name}'s CIDR`);
      }
    });

    test('the agent knows its pods\' labels from their Pod objects', async () => {
      await c.core.createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'a1', labels: { app: 'a', tier: 'web' } }, spec: { nodeName: c.nodes[0]!.name, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10.2' }] } },
      });
      await eventually('a1 has its labels', async () => (await c.agents[0]!.endpointList()).find((e) => e.pod?.name === 'a1' && (e as { labels?: Record<string, string> }).labels?.app === 'a'));
      const a2 = (await c.agents[0]!.endpointList()).find((e) => e.pod?.name === 'a2') as { labels?: unknown } | undefined;
      assert.equal(a2?.labels, undefined, 'a pod without a Pod object has no labels');
    });

    test('pod to pod on one node and across nodes, both ways; the destination sees the pod\'s own address', async () => {
      for (const [from, to] of [['a1', 'a2'], ['a1', 'b'], ['a1', 'c'], ['c', 'a1'], ['b', 'c']] as const) {
        const r = await once(pods[from]!, `${pods[to]!.ip}:8080`);
        assert.equal(r.reply, `${to} ${pods[from]!.ip}`, `${from} -> ${to}: ${JSON.stringify(r)}`);
      }
    });

    test(`the kernel routes other nodes' pods ${mode === 'vxlan' ? 'over the tunnel device' : 'via their nodes'}`, async () => {
      const n1 = c.nodes[0]!;
      const routes = (await c.topo.exec(n1, ['ip', 'route', 'show', 'proto', '73'])).stdout;
      for (const other of c.nodes.slice(1)) {
        const cidr = `${pods[other === c.nodes[1] ? 'b' : 'c']!.ip.split('.').slice(0, 3).join('.')}.0/24`;
        if (mode === 'native') assert.match(routes, new RegExp(`${cidr.replace(/[./]/g, '\\$&')} via ${other.ip.replace(/\./g, '\\.')} dev eth0`));
        else assert.match(routes, new RegExp(`${cidr.replace(/[./]/g, '\\$&')} via \\S+ dev hypha_vxlan onlink`));
      }
      const vx = await c.topo.exec(n1, ['ip', '-d', 'link', 'show', 'dev', 'hypha_vxlan'], { allowFail: true });
      assert.equal(vx.code === 0, mode === 'vxlan', vx.stdout + vx.stderr);
      if (mode === 'vxlan') {
        assert.match(vx.stdout, /vxlan id 1 .*dstport 8472/);
        // The underlay filter is real: a frame addressed to a pod straight
        // over the fabric (not through the tunnel) does not get through.
        const probe = await c.topo.exec(outside, ['ip', 'route', 'get', pods.c!.ip], { allowFail: true });
        await c.topo.exec(outside, ['ip', 'route', 'replace', `${pods.c!.ip}/32`, 'via', c.nodes[2]!.ip]);
        const r = await once(outside, `${pods.c!.ip}:8080`);
        await c.topo.exec(outside, ['ip', 'route', 'del', `${pods.c!.ip}/32`]);
        assert.equal(r.ok, false, `pod addresses do not cross the underlay (${probe.stdout.trim()}): ${JSON.stringify(r)}`);
      }
    });

    test('a pod reaches a ClusterIP whose backends are on the other nodes', async () => {
      const r = await loop(pods.a1!, '10.96.3.10:80');
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
      assert.deepEqual(Object.keys(r.replies).map((x) => x.split(' ')[0]).sort(), ['b', 'c']);
    });

    test('from outside, the NodePort on n1 reaches the pod on n3', async () => {
      const r = await loop(outside, `${c.nodes[0]!.ip}:30300`, 20);
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
      assert.deepEqual(Object.keys(r.replies).map((x) => x.split(' ')[0]), ['c']);
    });

    test('a pod reaches a host outside the cluster, masqueraded to its node\'s address', async () => {
      for (const name of ['a1', 'c']) {
        const pod = pods[name]!;
        const r = await once(pod, `${outside.ip}:9000`);
        assert.equal(r.reply, `outside ${pod.node.ip}`, `${name}: ${JSON.stringify(r)}`);
        const udp = await c.topo.execJson<OnceResult>(pod, toolArgv('client', ['once', '--to', `${outside.ip}:9000`, '--udp', '--timeout', '3000']), { allowFail: true });
        assert.equal(udp.reply, `outside ${pod.node.ip}`, `${name} UDP: ${JSON.stringify(udp)}`);
      }
      // ping too (ICMP echo, its identifier mapped like a port).
      const ping = await c.topo.exec(pods.c!, ['ping', '-c', '2', '-W', '2', '-q', outside.ip], { allowFail: true });
      assert.equal(ping.code, 0, `ping from a pod to the outside: ${ping.stdout}${ping.stderr}`);
      const agent = c.agents[0]!;
      const masq = agent.conntrack().filter((e) => e.key.dir === CtDir.MASQ_OUT && e.key.saddr === pods.a1!.ip);
      assert.ok(masq.length >= 2, 'the masqueraded flows are in conntrack');
      // The source-NAT runs with Linux's defaults: 61000-65535 and 1024-29999 (clear of NodePorts and ephemeral ports).
      for (const m of masq) {
        const p = m.entry.nat_port2;
        assert.ok(p >= 61000 || (p >= 1024 && p <= 29999), `masquerade port ${p} is outside the NodePort and ephemeral ranges`);
      }
    });

    if (mode === 'native') {
      test('an outside host that routes pod addresses reaches a pod directly, and the pod answers as itself (not masqueraded)', async () => {
        const a1 = pods.a1!;
        await c.topo.exec(outside, ['ip', 'route', 'replace', `${a1.ip}/32`, 'via', a1.node.ip]);
        try {
          const r = await once(outside, `${a1.ip}:8080`);
          assert.equal(r.reply, `a1 ${outside.ip}`, JSON.stringify(r));
          const u = await c.topo.execJson<OnceResult>(outside, toolArgv('client', ['once', '--to', `${a1.ip}:8080`, '--udp', '--timeout', '3000']), { allowFail: true });
          assert.equal(u.reply, `a1 ${outside.ip}`, JSON.stringify(u));
        } finally {
          await c.topo.exec(outside, ['ip', 'route', 'del', `${a1.ip}/32`]);
        }
      });
    }

    test('a node that leaves takes its route with it', async () => {
      const n3 = c.nodes[2]!;
      const cidr = `${pods.c!.ip.split('.').slice(0, 3).join('.')}.0/24`;
      await c.agents[2]!.stop();
      await c.core.deleteNode({ name: n3.name });
      for (const i of [0, 1]) {
        await eventually(`${c.nodes[i]!.name} dropped the route to ${cidr}`, async () => !(await c.topo.exec(c.nodes[i]!, ['ip', 'route', 'show', 'proto', '73'])).stdout.includes(cidr), 30_000);
      }
    });
  });
}
