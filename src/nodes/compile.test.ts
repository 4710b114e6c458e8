import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileNodes, tunnelMacOf } from './compile.ts';

const nodes = [
  { name: 'n1', addresses: ['192.168.77.11'], podCIDRs: ['10.244.1.0/24'] },
  { name: 'n2', addresses: ['192.168.77.12'], podCIDRs: ['10.244.2.0/24'] },
  { name: 'n3', addresses: ['192.168.77.13'], podCIDRs: [] },
];

test('native routing: a route to every other node\'s pod CIDR via that node', () => {
  const c = compileNodes(nodes, { mode: 'native', self: 'n1', clusterCIDRs: [] });
  assert.deepEqual(c.routes, [{ dst: '10.244.2.0/24', gateway: '192.168.77.12', tunnel: false, node: 'n2' }]);
  assert.deepEqual(c.peers, []);
  assert.deepEqual(c.problems, []);
});

test('VXLAN: a route over the tunnel to the peer\'s tunnel address, and the peer', () => {
  const c = compileNodes(nodes, { mode: 'vxlan', self: 'n1', clusterCIDRs: [] });
  assert.deepEqual(c.routes, [{ dst: '10.244.2.0/24', gateway: '10.244.2.0', tunnel: true, node: 'n2' }]);
  assert.deepEqual(c.peers, [{ node: 'n2', remote: '192.168.77.12', address: '10.244.2.0', mac: '0a:58:c0:a8:4d:0c' }]);
  assert.equal(tunnelMacOf('10.0.0.1'), '0a:58:0a:00:00:01');
});

test('ipcache: cluster CIDRs, every node address and pod CIDR; clashes reported, first kept', () => {
  const c = compileNodes([...nodes, { name: 'n4', addresses: ['192.168.77.14'], podCIDRs: ['10.244.2.0/24', 'bogus'] }], { mode: 'native', self: 'n1', clusterCIDRs: ['10.96.0.0/12'] });
  assert.deepEqual(c.ipcache.map((e) => [e.cidr, e.nodeAddr, e.flags.pod, e.flags.node, e.flags.local]), [
    ['10.96.0.0/12', '', false, false, false],
    ['192.168.77.11/32', '192.168.77.11', false, true, true],
    ['10.244.1.0/24', '192.168.77.11', true, false, true],
    ['192.168.77.12/32', '192.168.77.12', false, true, false],
    ['10.244.2.0/24', '192.168.77.12', true, false, false],
    ['192.168.77.13/32', '192.168.77.13', false, true, false],
    ['192.168.77.14/32', '192.168.77.14', false, true, false],
  ]);
  assert.equal(c.problems.length, 2);
  assert.match(c.problems.join('\n'), /10\.244\.2\.0\/24 is claimed by 192\.168\.77\.12 and by 192\.168\.77\.14/);
  assert.match(c.problems.join('\n'), /node n4 pod CIDR "bogus" is not a valid IPv4 prefix/);
  // The CIDR n2 holds is not routed to n4 as well.
  assert.deepEqual(c.routes.map((r) => r.node), ['n2']);
});

test('a node without an address gets no route, and says why', () => {
  const c = compileNodes([{ name: 'n1', addresses: ['10.0.0.1'], podCIDRs: ['10.244.1.0/24'] }, { name: 'x', addresses: [], podCIDRs: ['10.244.9.0/24'] }], { mode: 'native', self: 'n1', clusterCIDRs: [] });
  assert.deepEqual(c.routes, []);
  assert.match(c.problems[0] ?? '', /node x has pod CIDRs 10\.244\.9\.0\/24 but no address/);
});
