// bench-policy's iptables peer (calico-policy-iptables.ts): the layout as text,
// bad input named by field, and the ruleset loaded into a node namespace of the
// e2e Topology (iptables-nft and iptables-legacy, each a fresh topology) where
// real TCP connections between pods must be allowed and denied as the
// policies say: a peer pod selector, a namespace-AND-pod selector (the
// client's namespace labels), a port range, an ipBlock with an except, a pod
// no policy allows, and a reply that passes by conntrack. Netns part: root only.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { policy } from '../../src/policy/fixtures.ts';
import { type Pod, Topology } from '../../test/e2e/lib/topology.ts';
import { type PolicyPeerPod, calicoPolicyRuleset, policyChain, setName } from './calico-policy-iptables.ts';
import { IPTABLES_RESTORE_ARGS, xtablesLockEnv } from './kube-proxy-iptables.ts';

const ACCEPTD = fileURLToPath(new URL('../build/acceptd', import.meta.url));
const isRoot = process.getuid?.() === 0;

const server = policy('web', 'b-allow-client', {
  podSelector: { matchLabels: { app: 'server' } },
  ingress: [
    { from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 8080 }, { port: 9000, endPort: 9099 }] },
    { from: [{ namespaceSelector: { matchLabels: { team: 'ops' } }, podSelector: { matchLabels: { role: 'probe' } } }], ports: [{ port: 8081 }] },
  ],
});
const blocks = policy('web', 'a-blocks', {
  podSelector: { matchLabels: { app: 'server' } },
  ingress: [{ from: [{ ipBlock: { cidr: '10.244.1.0/24', except: ['10.244.1.4/32', '10.244.1.5/32'] } }], ports: [{ port: 8082, protocol: 'TCP' }] }],
});

describe('Calico-style policy ruleset: layout', () => {
  const pods: PolicyPeerPod[] = [
    { namespace: 'web', name: 'server', labels: { app: 'server' }, ip: '10.244.1.2', iface: 'lxc0000000002' },
    { namespace: 'web', name: 'client', labels: { app: 'client' }, ip: '10.244.1.3', iface: 'lxc0000000003' },
    { namespace: 'ops', name: 'probe', labels: { role: 'probe' }, ip: '10.244.2.9' },
    { namespace: 'dev', name: 'probe', labels: { role: 'probe' }, ip: '10.244.3.9' },
  ];
  const rs = calicoPolicyRuleset({ pods, namespaceLabels: { ops: { team: 'ops' }, dev: { team: 'dev' } }, policies: [server, blocks] });
  const lines = rs.iptables.split('\n');

  test('FORWARD jumps to cali-FORWARD, which dispatches by interface; the endpoint chain accepts conntrack first', () => {
    assert.ok(lines.includes('-A FORWARD -j cali-FORWARD'));
    assert.ok(lines.includes('-A cali-to-wl-dispatch -o lxc0000000002 -g cali-tw-lxc0000000002'));
    const tw = lines.filter((l) => l.startsWith('-A cali-tw-lxc0000000002 '));
    assert.equal(tw[0], '-A cali-tw-lxc0000000002 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
    assert.match(tw.at(-2)!, /Drop if no policies passed packet/);
  });

  test('policies in name order, each in its chain; a pod no policy selects takes the allow profile', () => {
    const tw = lines.filter((l) => l.startsWith('-A cali-tw-lxc0000000002 ') && l.includes('-j cali-pi-'));
    assert.deepEqual(tw.map((l) => l.split(' -j ')[1]), [policyChain('web/a-blocks', 'ingress'), policyChain('web/b-allow-client', 'ingress')]);
    assert.ok(policyChain('web/b-allow-client', 'ingress').length <= 28);
    const client = lines.filter((l) => l.startsWith('-A cali-tw-lxc0000000003 '));
    assert.ok(client.some((l) => l.endsWith('-j MARK --set-xmark 0x10000/0x10000')));
    assert.ok(!client.some((l) => l.includes('cali-pi-')));
  });

  test('peers are ipsets of the selected pods; namespace AND pod selectors both apply; excepts are a negated set', () => {
    const sets = new Map<string, string[]>();
    for (const l of rs.ipsets.trim().split('\n')) {
      const [op, name, member] = l.split(' ');
      if (op === 'create') sets.set(name!, []);
      else sets.get(name!)!.push(member!);
    }
    const chain = policyChain('web/b-allow-client', 'ingress');
    const rules = lines.filter((l) => l.startsWith(`-A ${chain} `) && l.includes('MARK --set-xmark'));
    assert.equal(rules.length, 2);
    assert.match(rules[0]!, /^-A \S+ -p tcp -m multiport --dports 8080,9000:9099 -m set --match-set (\S+) src -j MARK/);
    const setOf = (l: string) => sets.get(/--match-set (\S+) src/.exec(l)![1]!);
    assert.deepEqual(setOf(rules[0]!), ['10.244.1.3']);
    assert.deepEqual(setOf(rules[1]!), ['10.244.2.9'], 'ops/probe only: dev is not team=ops');
    const block = lines.find((l) => l.startsWith(`-A ${policyChain('web/a-blocks', 'ingress')} -p tcp`))!;
    assert.ok(block.includes(`-s 10.244.1.0/24 -m set ! --match-set ${setName('n', 'except 10.244.1.4/32,10.244.1.5/32')} src`), block);
    assert.deepEqual(rs.stats, { policyChains: 2, policyRules: 6, ipsets: 3, members: 4 });
  });

  test('bad input names the field and the value', () => {
    const named = policy('web', 'named', { podSelector: {}, ingress: [{ ports: [{ port: 'http' }] }] });
    assert.throws(() => calicoPolicyRuleset({ pods, policies: [named] }), /NetworkPolicy web\/named: spec\.ingress\[0\]\.ports\[0\]\.port "http" is a named port/);
    assert.throws(() => calicoPolicyRuleset({ pods: [{ ...pods[0]!, ip: '10.0.0.300' }], policies: [] }), /pods\[0\]\.ip "10\.0\.0\.300" is not an IPv4 address/);
    assert.throws(() => calicoPolicyRuleset({ pods: [{ ...pods[0]!, iface: 'eth0' }], policies: [] }), /pods\[0\]\.iface "eth0" must start with "lxc"/);
  });
});

describe('Calico-style policy ruleset in a node namespace', { skip: isRoot ? false : 'needs root' }, () => {
  for (const variant of ['nft', 'legacy'] as const) {
    test(`iptables-${variant}: connections allowed and denied as the policies say`, async () => {
      const topo = await Topology.create({ name: `calpol-${variant.slice(0, 3)}` });
      const work = await mkdtemp(join(tmpdir(), 'hypha-calpol-'));
      try {
        const node = await topo.addNode('n1', { podCidr: '10.244.1.0/24' });
        const srv = await topo.addPod(node, 'server', { ip: '10.244.1.2' });
        const client = await topo.addPod(node, 'client', { ip: '10.244.1.3' });
        const other = await topo.addPod(node, 'other', { ip: '10.244.1.4' });
        const ranger = await topo.addPod(node, 'ranger', { ip: '10.244.1.6' });
        const local: { pod: Pod; labels: Record<string, string>; ns: string }[] = [
          { pod: srv, labels: { app: 'server' }, ns: 'web' }, { pod: client, labels: { app: 'client' }, ns: 'web' },
          { pod: other, labels: { app: 'other' }, ns: 'web' }, { pod: ranger, labels: { role: 'probe' }, ns: 'ops' },
        ];
        const rs = calicoPolicyRuleset({
          pods: local.map((p) => ({ namespace: p.ns, name: p.pod.name, labels: p.labels, ip: p.pod.ip, iface: p.pod.hostIfname })),
          namespaceLabels: { ops: { team: 'ops' } }, policies: [server, blocks],
        });
        await topo.exec(node, ['ipset', 'restore'], { input: rs.ipsets });
        await topo.exec(node, [`iptables-${variant}-restore`, ...IPTABLES_RESTORE_ARGS], { input: rs.iptables, env: { ...process.env, ...xtablesLockEnv(work, node.netns) } });
        await topo.spawnReady(srv, [ACCEPTD, '--ports', '8080,8081,8082,9050']);
        const can = async (from: Pod, port: number): Promise<boolean> =>
          (await topo.exec(from, ['nc', '-z', '-w', '1', srv.ip, String(port)], { allowFail: true })).code === 0;
        assert.equal(await can(client, 8080), true, 'client on 8080');
        assert.equal(await can(client, 9050), true, 'client inside the range 9000-9099');
        assert.equal(await can(client, 8081), false, 'client on 8081: only ops probes');
        assert.equal(await can(ranger, 8081), true, 'ops probe (namespace AND pod selector) on 8081');
        assert.equal(await can(ranger, 8082), true, 'ranger by the ipBlock');
        assert.equal(await can(other, 8082), false, 'other is in the ipBlock\'s except');
        assert.equal(await can(other, 8080), false, 'other: no policy allows it');
        // The server connecting out to a pod no policy selects (its profile
        // allows): the answers come back by the ESTABLISHED rule.
        await topo.spawnReady(client, [ACCEPTD, '--ports', '7000']);
        assert.equal((await topo.exec(srv, ['nc', '-z', '-w', '1', client.ip, '7000'], { allowFail: true })).code, 0, 'server to client and back');
      } finally {
        await topo.destroy();
        await rm(work, { recursive: true, force: true });
      }
    });
  }
});
