import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type IpamErrorCode, IpamPool, isIpamError, parseIpv4Cidr } from './ipam-pool.ts';

function throwsIpam(fn: () => unknown, code: IpamErrorCode, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isIpamError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('IpamPool configuration', () => {
  test('refuses bad prefixes, overlapping prefixes and masks that do not fit, naming the setting', () => {
    throwsIpam(() => new IpamPool({ cidrs: [], maskSize: 24 }), 'E_IPAM_CONFIG', /^cidrs: the pool needs at least one/);
    throwsIpam(() => new IpamPool({ cidrs: ['10.244.0.0/16', '10.244.0.1/16'], maskSize: 24 }), 'E_IPAM_CONFIG', /^cidrs\[1\]: "10\.244\.0\.1\/16" has host bits set/);
    throwsIpam(() => new IpamPool({ cidrs: ['10.244.0.0/33'], maskSize: 24 }), 'E_IPAM_CONFIG', /^cidrs\[0\]: "10\.244\.0\.0\/33" is not an IPv4 network prefix/);
    throwsIpam(() => new IpamPool({ cidrs: ['10.244.0.0/16', '10.244.128.0/17'], maskSize: 24 }), 'E_IPAM_CONFIG', /^cidrs\[1\]: "10\.244\.128\.0\/17" overlaps cidrs\[0\] "10\.244\.0\.0\/16"/);
    throwsIpam(() => new IpamPool({ cidrs: ['10.244.0.0/16', '10.8.0.0/20'], maskSize: 18 }), 'E_IPAM_CONFIG', /^maskSize: 18 is not an integer in 20\.\.30/);
    throwsIpam(() => new IpamPool({ cidrs: ['10.244.0.0/16'], maskSize: 31 }), 'E_IPAM_CONFIG', /^maskSize: 31/);
    throwsIpam(() => new IpamPool({ cidrs: ['10.244.0.0/16'], maskSize: 24.5 }), 'E_IPAM_CONFIG', /^maskSize: 24\.5/);
  });

  test('capacity and free count over several prefixes', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/16', '10.8.0.0/22'], maskSize: 24 });
    assert.equal(pool.capacity, 256 + 4);
    assert.equal(pool.free, 260);
    assert.equal(pool.used, 0);
    assert.equal(pool.describe(), 'cluster pool 10.244.0.0/16, 10.8.0.0/22 (/24 per node)');
  });
});

describe('IpamPool allocation', () => {
  test('lowest free block first, idempotent per node, distinct across nodes', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/22'], maskSize: 24 });
    assert.equal(pool.allocate('a'), '10.244.0.0/24');
    assert.equal(pool.allocate('b'), '10.244.1.0/24');
    assert.equal(pool.allocate('a'), '10.244.0.0/24', 'a node asking again gets what it holds');
    assert.deepEqual(pool.cidrsOf('b'), ['10.244.1.0/24']);
    assert.deepEqual([pool.free, pool.used, pool.nodes], [2, 2, 2]);
  });

  test('exhaustion names the node and the pool; a release frees the block for the next node', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/23'], maskSize: 24 });
    pool.allocate('a');
    pool.allocate('b');
    throwsIpam(() => pool.allocate('c'), 'E_IPAM_EXHAUSTED', /^node "c": the cluster pool 10\.244\.0\.0\/23 \(\/24 per node\) is exhausted: all 2 CIDRs are in use$/);
    assert.deepEqual(pool.release('a'), ['10.244.0.0/24']);
    assert.deepEqual(pool.release('a'), []);
    assert.equal(pool.free, 1);
    assert.equal(pool.allocate('c'), '10.244.0.0/24');
  });

  test('moves on to the next prefix when the first is full', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/24', '10.8.0.0/23'], maskSize: 24 });
    assert.deepEqual(['a', 'b', 'c'].map((n) => pool.allocate(n)), ['10.244.0.0/24', '10.8.0.0/24', '10.8.1.0/24']);
  });
});

describe('IpamPool occupy (state rebuilt from HyphaNodes)', () => {
  test('what nodes hold is never handed out again', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/22'], maskSize: 24 });
    pool.occupy('a', '10.244.0.0/24');
    pool.occupy('b', '10.244.2.0/24');
    pool.occupy('a', '10.244.0.0/24'); // again: no-op
    assert.equal(pool.allocate('c'), '10.244.1.0/24');
    assert.equal(pool.allocate('d'), '10.244.3.0/24');
    throwsIpam(() => pool.allocate('e'), 'E_IPAM_EXHAUSTED', /node "e"/);
  });

  test('refuses overlaps, out-of-pool and invalid CIDRs, naming node, CIDR and holder', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/16'], maskSize: 24 });
    pool.occupy('a', '10.244.1.0/24');
    throwsIpam(() => pool.occupy('b', '10.244.1.0/24'), 'E_IPAM_OVERLAP', /^node "b": pod CIDR "10\.244\.1\.0\/24" overlaps 10\.244\.1\.0\/24, held by node "a"$/);
    throwsIpam(() => pool.occupy('b', '10.244.0.0/23'), 'E_IPAM_OVERLAP', /overlaps 10\.244\.1\.0\/24, held by node "a"/);
    throwsIpam(() => pool.occupy('b', '10.244.1.128/25'), 'E_IPAM_OVERLAP', /held by node "a"/);
    throwsIpam(() => pool.occupy('a', '10.244.1.0/25'), 'E_IPAM_OVERLAP', /which this node also holds/);
    throwsIpam(() => pool.occupy('b', '10.245.0.0/24'), 'E_IPAM_OUT_OF_POOL', /^node "b": pod CIDR "10\.245\.0\.0\/24" is outside the cluster pool 10\.244\.0\.0\/16 \(\/24 per node\)$/);
    throwsIpam(() => pool.occupy('b', '10.244.0.0/15'), 'E_IPAM_OUT_OF_POOL', /10\.244\.0\.0\/15/);
    throwsIpam(() => pool.occupy('b', '10.244.2.1/24'), 'E_IPAM_INVALID', /^node "b": pod CIDR "10\.244\.2\.1\/24" has host bits set/);
    assert.deepEqual(pool.cidrsOf('b'), [], 'a refused claim holds nothing');
    assert.deepEqual(pool.holderOf('10.244.1.64/26'), { node: 'a', cidr: '10.244.1.0/24' });
    assert.equal(pool.holderOf('10.244.2.0/24'), undefined);
  });

  test('a CIDR of another size (mask changed since) blocks exactly what it covers', () => {
    const pool = new IpamPool({ cidrs: ['10.244.0.0/22'], maskSize: 24 });
    pool.occupy('old-big', '10.244.0.0/23'); // from a /23 per-node config
    pool.occupy('old-small', '10.244.2.0/25'); // from a /25 per-node config
    assert.equal(pool.free, 1);
    assert.equal(pool.used, 3);
    assert.equal(pool.allocate('new'), '10.244.3.0/24');
    throwsIpam(() => pool.allocate('newer'), 'E_IPAM_EXHAUSTED', /newer/);
    pool.release('old-small');
    assert.equal(pool.allocate('newer'), '10.244.2.0/24');
  });

  test('many nodes: all distinct, inside the pool, of the mask size', () => {
    const pool = new IpamPool({ cidrs: ['10.0.0.0/8'], maskSize: 26 });
    const got = new Set<string>();
    for (let i = 0; i < 5000; i++) got.add(pool.allocate(`n${i}`));
    assert.equal(got.size, 5000);
    for (const c of got) {
      const r = parseIpv4Cidr(c);
      assert.ok(typeof r !== 'string' && r.end - r.start + 1 === 64 && c.startsWith('10.'), c);
    }
    assert.equal(pool.free, 2 ** 18 - 5000);
  });
});
