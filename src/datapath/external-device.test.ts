import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectExternalDevice } from './external-device.ts';

const links = [
  { index: 1, name: 'lo', up: true },
  { index: 2, name: 'eth0', up: true },
  { index: 3, name: 'eth1', up: true },
  { index: 4, name: 'lxc1234', up: true, kind: 'veth' },
  { index: 5, name: 'hypha_vxlan', up: true, kind: 'vxlan' },
  { index: 6, name: 'eth2', up: false },
];
const addr = (ifindex: number, address: string) => ({ ifindex, address, scope: 'universe' });

test('the default route names the external device', () => {
  const r = detectExternalDevice({ links, addrs: [addr(2, '10.0.0.5'), addr(3, '192.168.1.5')], routes: [{ dst: 'default', ifindex: 3 }] });
  assert.deepEqual(r, { device: 'eth1', why: 'it has the default route' });
});

test('without a default route: the device holding a node address, or the only one with a global address', () => {
  const addrs = [addr(2, '10.0.0.5'), addr(3, '192.168.1.5'), { ifindex: 1, address: '127.0.0.1', scope: 'host' }];
  assert.equal(detectExternalDevice({ links, addrs, routes: [] }, ['192.168.1.5']).device, 'eth1');
  assert.deepEqual(detectExternalDevice({ links, addrs: [addr(2, '10.0.0.5'), addr(4, '169.254.1.1'), addr(5, '10.244.0.1')], routes: [] }),
    { device: 'eth0', why: 'it is the only device with a global IPv4 address' });
});

test('Hypha\'s own devices, devices that are down and a default route through them never count; an ambiguous node is said to be', () => {
  assert.equal(detectExternalDevice({ links, addrs: [addr(6, '10.9.9.9')], routes: [{ dst: 'default', ifindex: 5 }, { dst: 'default', ifindex: 6 }] }).device, undefined);
  const r = detectExternalDevice({ links, addrs: [addr(2, '10.0.0.5'), addr(3, '192.168.1.5')], routes: [] });
  assert.equal(r.device, undefined);
  assert.match(r.why, /2 devices with global IPv4 addresses \(eth0, eth1\): set devices\.external/);
  assert.match(detectExternalDevice({ links, addrs: [], routes: [] }).why, /no default route and no device with a global IPv4 address/);
});
