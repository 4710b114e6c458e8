import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileNodes } from '../nodes/compile.ts';
import { withIdentities } from './ipcache.ts';
import { podRowOf, podNeedsIdentity, LabelInterner, PortsInterner, namespaceLabelsOf } from './pods.ts';

const nodes = compileNodes([
  { name: 'n1', addresses: ['192.168.0.1'], podCIDRs: ['10.244.1.0/24'] },
  { name: 'n2', addresses: ['192.168.0.2'], podCIDRs: ['10.244.2.0/24'] },
], { mode: 'native', self: 'n1', clusterCIDRs: ['10.244.0.0/16'] });

test('node addresses get host (this node) and remote-node; other entries are left as they are', () => {
  const { entries } = withIdentities(nodes.ipcache, []);
  assert.deepEqual(entries.map((e) => [e.cidr, e.identity]), [
    ['10.244.0.0/16', undefined],
    ['192.168.0.1/32', 1],
    ['10.244.1.0/24', undefined],
    ['192.168.0.2/32', 6],
    ['10.244.2.0/24', undefined],
  ]);
});

test('pod addresses: a /32 with the identity and what the pod CIDR entry says of the node', () => {
  const { entries, problems } = withIdentities(nodes.ipcache, [
    { ip: '10.244.2.7', identity: 300, local: false, pod: 'default/b' },
    { ip: '10.244.1.5', identity: 301, local: true, pod: 'default/a' },
    { ip: '10.244.2.8', identity: 0, local: false, pod: 'default/unknown' },
    { ip: '10.99.0.1', identity: 302, local: false, pod: 'default/elsewhere' },
  ]);
  assert.deepEqual(problems, []);
  const pods = entries.filter((e) => e.cidr.endsWith('/32') && !e.flags.node);
  assert.deepEqual(pods, [
    { cidr: '10.244.1.5/32', nodeAddr: '192.168.0.1', identity: 301, flags: { cluster: true, pod: true, node: false, local: true } },
    { cidr: '10.244.2.7/32', nodeAddr: '192.168.0.2', identity: 300, flags: { cluster: true, pod: true, node: false, local: false } },
    { cidr: '10.99.0.1/32', nodeAddr: '', identity: 302, flags: { cluster: true, pod: true, node: false, local: false } },
  ]);
});

test('an address claimed twice: a node address wins, then a local pod, then the first by name; reported', () => {
  const { entries, problems } = withIdentities(nodes.ipcache, [
    { ip: '192.168.0.2', identity: 300, local: false, pod: 'default/hostish' },
    { ip: '10.244.1.9', identity: 310, local: false, pod: 'default/stale' },
    { ip: '10.244.1.9', identity: 311, local: true, pod: 'default/mine' },
  ]);
  assert.equal(entries.find((e) => e.cidr === '192.168.0.2/32')?.identity, 6);
  assert.equal(entries.find((e) => e.cidr === '10.244.1.9/32')?.identity, 311);
  assert.deepEqual(problems, [
    'pod default/hostish: address 192.168.0.2 is already node 192.168.0.2\'s; its identity 300 is not cached',
    'pod default/stale: address 10.244.1.9 is already pod default/mine\'s; its identity 310 is not cached',
  ]);
});

test('podRowOf keeps what identities need; hostNetwork and finished pods need none', () => {
  const row = podRowOf({
    metadata: { namespace: 'ns1', name: 'p', uid: 'u1', labels: { app: 'a', 'pod-template-hash': 'x', n: 5 } },
    spec: { nodeName: 'n2', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: '10.244.2.3', podIPs: [{ ip: '10.244.2.3' }, { ip: 'fd00::3' }] },
  });
  assert.deepEqual(row, { namespace: 'ns1', name: 'p', uid: 'u1', node: 'n2', ips: ['10.244.2.3'], hostNetwork: false, terminated: false, labels: { app: 'a' }, ports: [] });
  assert.equal(podNeedsIdentity(row), true);
  assert.equal(podNeedsIdentity(podRowOf({ metadata: { name: 'h' }, spec: { hostNetwork: true } })), false);
  assert.equal(podNeedsIdentity(podRowOf({ metadata: { name: 'd' }, status: { phase: 'Succeeded' } })), false);
  assert.deepEqual(podRowOf(null), { namespace: '', name: '', uid: '', node: '', ips: [], hostNetwork: false, terminated: false, labels: {}, ports: [] });
  assert.deepEqual(namespaceLabelsOf({ metadata: { labels: { b: '1', a: '2' } } }), { a: '2', b: '1' });
});

test('podRowOf keeps named container ports (sidecars too), protocol defaulting to TCP; unnamed and bad ones left out', () => {
  const row = podRowOf({
    metadata: { namespace: 'ns1', name: 'p' },
    spec: {
      containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 9000 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }, { name: 'bad', containerPort: 70000 }, { name: 'x', containerPort: 1, protocol: 'ICMP' }] }],
      initContainers: [{ name: 's', restartPolicy: 'Always', ports: [{ name: 'admin', containerPort: 9901, protocol: 'TCP' }] }],
    },
  });
  assert.deepEqual(row.ports, [{ name: 'admin', port: 9901, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }, { name: 'http', port: 8080, protocol: 'TCP' }]);
  const i = new PortsInterner();
  assert.equal(i.intern(row.ports), i.intern(podRowOf({ spec: { initContainers: [{ ports: [{ name: 'admin', containerPort: 9901 }] }], containers: [{ ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }] }] } }).ports));
});

test('LabelInterner shares equal label maps and forgets them when released', () => {
  const i = new LabelInterner();
  const a = i.intern({ app: 'web' });
  const b = i.intern({ app: 'web' });
  assert.equal(a, b);
  assert.equal(i.size, 1);
  i.release(a);
  assert.equal(i.size, 1);
  i.release(b);
  assert.equal(i.size, 0);
});
