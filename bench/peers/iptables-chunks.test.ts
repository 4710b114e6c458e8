// Loading kube-proxy's iptables ruleset in chunks leaves exactly the ruleset
// a single restore leaves (checked with iptables-save in two scratch namespaces
// of the e2e harness, removed when the test ends however it ends).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology } from '../../test/e2e/lib/topology.ts';
import { iptablesRestoreChunks, iptablesRestoreInput, IPTABLES_RESTORE_ARGS, xtablesLockEnv } from './kube-proxy-iptables.ts';
import type { PeerService } from './peer-service.ts';

const services: PeerService[] = Array.from({ length: 120 }, (_, i) => ({
  namespace: i % 2 ? 'default' : 'shop', name: `s${i}`, portName: 'http', protocol: i % 3 ? 'TCP' : 'UDP',
  clusterIP: `10.96.${i >> 8}.${(i & 255) + 1}`, port: 80, ...(i % 4 === 0 ? { nodePort: 30000 + i } : {}),
  endpoints: i % 10 === 5 ? [] : Array.from({ length: 3 }, (_, k) => ({ ip: `10.244.1.${k + 2}`, port: 8080 })),
}));
const opts = { clusterCIDR: '10.244.0.0/16', nodeIPs: ['192.168.77.11'] };

test('chunked restore == one restore, for iptables-nft and iptables-legacy', async () => {
  const full = iptablesRestoreInput(services, opts);
  const chunks = iptablesRestoreChunks(full, 7);
  assert.ok(chunks.length > 10);
  const topo = await Topology.create({ name: 'ipt-chunks' });
  const lockDir = await mkdtemp(join(tmpdir(), 'hypha-ipt-chunks-'));
  try {
    for (const tool of ['iptables-nft', 'iptables-legacy']) {
      const saved: string[] = [];
      for (const inputs of [[full], chunks]) {
        const ns = await topo.addScratch(`${tool}-${saved.length}`);
        const env = { ...process.env, ...xtablesLockEnv(lockDir, ns.netns) };
        for (const input of inputs) await topo.exec(ns, [`${tool}-restore`, ...IPTABLES_RESTORE_ARGS], { input, env });
        const tables = [];
        for (const table of ['nat', 'filter', 'mangle']) tables.push((await topo.exec(ns, [`${tool}-save`, '-t', table], { env })).stdout);
        saved.push(tables.join('').split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n'));
        await topo.removeScratch(ns);
      }
      assert.ok(saved[0]!.includes('KUBE-SVC-'), `${tool}: the ruleset was loaded`);
      assert.equal(saved[1], saved[0], `${tool}: same ruleset`);
    }
  } finally {
    await topo.destroy();
    await rm(lockDir, { recursive: true, force: true });
  }
});
