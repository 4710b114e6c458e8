// A CIS-hardened host: net.ipv4.conf.all.rp_filter=1 (and default=1, so every
// device starts strict). The kernel applies the larger of `all` and a
// device's own value, so a pod device's rp_filter=0 alone does not let through
// the replies Hypha rewrites to a Service, node or loopback source. The agent
// turns `all` off (sysctl.manageRpFilter, on by default) and sets its own
// devices to 0; with the option off it refuses to start, naming the sysctl.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HYPHA_BIN, TestAgent } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Host, type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }
interface OnceResult { ok: boolean; reply?: string; error?: string }

const web: ServiceSpec = { name: 'web', type: 'NodePort', clusterIP: '10.96.4.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30400 }] };
const self: ServiceSpec = { name: 'self', clusterIP: '10.96.4.11', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const http = [{ name: 'http', port: 8080 }];

for (const mode of ['native', 'vxlan'] as const) {
  describe(`all.rp_filter=1 on the nodes (${mode} routing)`, () => {
    let topo: Topology;
    let n1: Node;
    let n2: Node;
    let outside: Host;
    const pods: Record<string, Pod> = {};
    const agents: TestAgent[] = [];
    let work: string;

    const sysctl = async (where: Node, name: string) => (await topo.exec(where, ['sysctl', '-n', name])).stdout.trim();
    // As a hardened host boots: `default` strict before its devices exist, `all` strict.
    const harden = (node: Node) => topo.exec(node, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1', 'net.ipv4.conf.eth0.rp_filter=1']);
    const loop = (from: Pod | Host, to: string, count = 20) => topo.execJson<LoopResult>(from, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000']));

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'hypha-rpf-'));
      topo = await Topology.create({ name: `rpf${mode.slice(0, 2)}` });
      n1 = await topo.addNode('n1');
      n2 = await topo.addNode('n2');
      outside = await topo.addExternalHost('outside');
      for (const n of [n1, n2]) await harden(n);
      const m = new ManifestDir(path.join(work, 'services'));
      for (const node of [n1, n2]) {
        const other = node === n1 ? n2 : n1;
        agents.push(new TestAgent(topo, node, {
          pinRoot: `/sys/fs/bpf/${topo.prefix}${node.name}`, servicesDir: m.dir, workDir: path.join(work, node.name), external: 'eth0', externalMode: 'xdp',
          routing: { mode, nodes: [{ name: other.name, addresses: [other.ip], podCIDRs: [other.podCidr] }] },
        }));
      }
      await Promise.all(agents.map((a) => a.start()));
      // Pods through the agents' CNI plugin, after they started.
      for (const [name, node] of [['client', n1], ['b1', n1], ['h', n1], ['b2', n2]] as const) {
        pods[name] = await topo.addPod(node, name);
        await topo.spawnReady(pods[name], toolArgv('echo-server', ['--name', name, '--port', '8080', '--peer']));
      }
      const ep = (p: Pod) => ({ ip: p.ip, node: p.node.name });
      m.write('web.yaml', [serviceObject(web), sliceObject(web, [ep(pods.b1!), ep(pods.b2!)], http)]);
      m.write('self.yaml', [serviceObject(self), sliceObject(self, [ep(pods.h!)], http)]);
      for (const a of agents) await a.waitForFrontends(['10.96.4.10:80/TCP', '10.96.4.11:80/TCP'], 1);
    });

    after(async () => {
      for (const a of agents) await a.stop().catch(() => undefined);
      await topo?.destroy();
      for (const a of agents) a.cleanupPins();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test('the agent turned all.rp_filter off (logged with the old value) and its devices are at 0; default is left as it was', async () => {
      for (const [i, node] of [n1, n2].entries()) {
        assert.equal(await sysctl(node, 'net.ipv4.conf.all.rp_filter'), '0', node.name);
        assert.equal(await sysctl(node, 'net.ipv4.conf.default.rp_filter'), '1', `${node.name}: default untouched`);
        const line = agents[i]!.logs().find((l) => l.sysctl === 'net.ipv4.conf.all.rp_filter' && l.level === 30);
        assert.ok(line, `${node.name}: an info line for the change`);
        assert.deepEqual([line.old, line.new], ['1', '0'], JSON.stringify(line));
      }
      for (const p of Object.values(pods)) assert.equal(await sysctl(p.node, `net.ipv4.conf.${p.hostIfname}.rp_filter`), '0', `${p.name}'s host-side veth`);
      if (mode === 'vxlan') for (const node of [n1, n2]) assert.equal(await sysctl(node, 'net.ipv4.conf.hypha_vxlan.rp_filter'), '0', `${node.name}'s tunnel device`);
    });

    test('a pod reaches a ClusterIP whose backends are on its node and on the other', async () => {
      const r = await loop(pods.client!, '10.96.4.10:80', 30);
      assert.equal(r.failed, 0, JSON.stringify(r.errors));
      assert.deepEqual(Object.keys(r.replies).map((x) => x.split(' ')[0]).sort(), ['b1', 'b2']);
    });

    test('a pod reaches itself through its Service (hairpin: the loopback source)', async () => {
      const r = await topo.execJson<OnceResult>(pods.h!, toolArgv('client', ['once', '--to', '10.96.4.11:80', '--timeout', '3000']), { allowFail: true });
      assert.equal(r.reply, 'h 169.254.42.1', JSON.stringify(r));
    });

    test('from outside, the NodePort on either node reaches both backends', async () => {
      for (const node of [n1, n2]) {
        const r = await loop(outside, `${node.ip}:30400`, 30);
        assert.equal(r.failed, 0, `${node.name}: ${JSON.stringify(r.errors)}`);
        assert.deepEqual(Object.keys(r.replies).map((x) => x.split(' ')[0]).sort(), ['b1', 'b2'], node.name);
      }
    });

    if (mode === 'native') {
      test('with sysctl.manageRpFilter: false the agent refuses to start, naming the sysctl, its value and the option', async () => {
        const n3 = await topo.addNode('n3');
        await harden(n3);
        const a = new TestAgent(topo, n3, {
          pinRoot: `/sys/fs/bpf/${topo.prefix}n3`, servicesDir: path.join(work, 'services'), workDir: path.join(work, 'n3'), external: 'eth0',
          extra: { sysctl: { manageRpFilter: false } },
        });
        try {
          const proc = topo.spawn(n3, [HYPHA_BIN, 'agent', '--config', a.configPath]);
          const st = await proc.exited;
          assert.equal(st.code, 1, proc.stderr);
          const fatal = proc.jsonLines().find((l) => l.level === 60);
          assert.ok(fatal, `a fatal line: ${JSON.stringify(proc.jsonLines())}`);
          assert.match(String(fatal.err), /net\.ipv4\.conf\.all\.rp_filter is 1\b.*sysctl\.manageRpFilter/, String(fatal.err));
          assert.equal(fatal.code, 'ERPFILTER');
          assert.equal(await sysctl(n3, 'net.ipv4.conf.all.rp_filter'), '1', 'nothing was changed');
          assert.equal(proc.jsonLines().some((l) => /attached/.test(String(l.msg))), false, 'nothing was attached');
        } finally {
          a.cleanupPins();
        }
      });
    }
  });
}
