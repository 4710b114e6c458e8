import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PodIpam, isIpamError, parseCidr4 } from './ipam.ts';

test('addresses come from the CIDR without its network and broadcast addresses', () => {
  const ipam = new PodIpam(['10.244.1.0/30']);
  assert.equal(ipam.capacity, 2);
  assert.equal(ipam.routerAddress, '10.244.1.0');
  assert.equal(ipam.allocate('a'), '10.244.1.1');
  assert.equal(ipam.allocate('b'), '10.244.1.2');
  assert.throws(() => ipam.allocate('c'), (e: unknown) => isIpamError(e, 'EEXHAUSTED') && /no free address in pod CIDR 10\.244\.1\.0\/30: all 2 are in use/.test(e.message));
});

test('next-fit: a released address comes back only after the others', () => {
  const ipam = new PodIpam(['10.0.0.0/29']);
  const a = ipam.allocate('a');
  ipam.allocate('b');
  ipam.release(a);
  const got = [ipam.allocate('c'), ipam.allocate('d'), ipam.allocate('e'), ipam.allocate('f'), ipam.allocate('g')];
  assert.deepEqual(got, ['10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.0.1']);
});

test('being told the same CIDRs again keeps the next-fit position', () => {
  const ipam = new PodIpam(['10.0.0.0/29']);
  const a = ipam.allocate('a');
  ipam.release(a);
  ipam.setCidrs(['10.0.0.0/29']);
  assert.equal(ipam.allocate('b'), '10.0.0.2');
  ipam.setCidrs([]);
  assert.throws(() => ipam.allocate('c'), (e: unknown) => isIpamError(e, 'ENOCIDR'));
  assert.equal(ipam.ownerOf('10.0.0.2'), 'b', 'held addresses stay held without a CIDR');
});

test('claimed addresses (from the store) are never given out', () => {
  const ipam = new PodIpam(['10.0.0.0/29']);
  ipam.claim('10.0.0.1', 'x');
  ipam.claim('10.0.0.2', 'y');
  assert.equal(ipam.allocate('z'), '10.0.0.3');
  assert.throws(() => ipam.claim('10.0.0.1', 'other'), (e: unknown) => isIpamError(e, 'EINUSE'));
  ipam.claim('10.0.0.1', 'x');
  assert.equal(ipam.ownerOf('10.0.0.2'), 'y');
  assert.equal(ipam.used, 3);
});

test('several CIDRs are used one after the other', () => {
  const ipam = new PodIpam(['10.0.0.0/30', '10.0.1.0/30']);
  assert.deepEqual([1, 2, 3, 4].map((i) => ipam.allocate(`p${i}`)), ['10.0.0.1', '10.0.0.2', '10.0.1.1', '10.0.1.2']);
});

test('bad CIDRs are named', () => {
  assert.throws(() => new PodIpam(['10.0.0.0/33']), /pod CIDR 0 "10\.0\.0\.0\/33" is not a valid IPv4 prefix/);
  assert.throws(() => new PodIpam(['10.0.0.1/24']), /has host bits set \(the prefix is 10\.0\.0\.0\/24\)/);
  assert.throws(() => new PodIpam(['10.0.0.0/31']), /too small for pods/);
  assert.throws(() => new PodIpam(['10.0.0.0/24', '10.0.0.128/25']), /overlaps 10\.0\.0\.0\/24/);
  assert.throws(() => parseCidr4('podCIDR', '10.0.0.0'), /podCIDR "10\.0\.0\.0" is not a valid IPv4 prefix/);
  assert.throws(() => new PodIpam([]).allocate('a'), (e: unknown) => isIpamError(e, 'ENOCIDR'));
});
