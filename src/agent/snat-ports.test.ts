import { test } from 'node:test';
import assert from 'node:assert/strict';
import { snatPortRange, snatPortRanges } from './snat-ports.ts';

test('SNAT ports avoid the NodePort and ephemeral ranges', () => {
  // Linux defaults: above both.
  assert.deepEqual(snatPortRange([{ min: 30000, max: 32767 }, { min: 32768, max: 60999 }]), { min: 61000, max: 65535 });
  // A wide ephemeral range leaves the ports below the NodePort range.
  assert.deepEqual(snatPortRange([{ min: 30000, max: 32767 }, { min: 15000, max: 65000 }]), { min: 1024, max: 14999 });
  // Overlapping and unsorted ranges.
  assert.deepEqual(snatPortRange([{ min: 40000, max: 65535 }, { min: 30000, max: 45000 }]), { min: 1024, max: 29999 });
  // Only small runs: the largest.
  assert.deepEqual(snatPortRange([{ min: 1024, max: 2000 }, { min: 3000, max: 65000 }]), { min: 2001, max: 2999 });
  assert.throws(() => snatPortRange([{ min: 1000, max: 65535 }]), /no source ports are left/);
});

test('a second run of SNAT ports: the largest other free run of 2048 or more', () => {
  // Linux defaults: above both ranges first, then below the NodePort range.
  assert.deepEqual(snatPortRanges([{ min: 30000, max: 32767 }, { min: 32768, max: 60999 }]), [{ min: 61000, max: 65535 }, { min: 1024, max: 29999 }]);
  // No second run of 2048.
  assert.deepEqual(snatPortRanges([{ min: 2000, max: 32767 }, { min: 32768, max: 60999 }]), [{ min: 61000, max: 65535 }]);
  // Only small runs: the largest alone.
  assert.deepEqual(snatPortRanges([{ min: 1024, max: 2000 }, { min: 3000, max: 65000 }]), [{ min: 2001, max: 2999 }]);
});
