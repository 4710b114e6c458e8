import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { MapSizes } from '../datapath/loader.ts';
import { MapGrowth, grownSize } from './map-growth.ts';

test('grownSize: a power of two keeping the need under the mark, at least double', () => {
  assert.equal(grownSize(64, 10, 0.8), 128, 'at least double');
  assert.equal(grownSize(64, 2000, 0.8), 4096, '2000 > 0.8 x 2048');
  assert.equal(grownSize(65536, 100_000 * 12, 0.8), 1 << 21);
  assert.equal(grownSize(1 << 26, 1 << 27, 0.8), 1 << 26, 'never past the largest size');
});

function setup(fixed: Partial<Record<keyof MapSizes, boolean>> = {}, fail = false) {
  const sizes: MapSizes = { services: 100, backends: 100, affinity: 100, ct: 1000 };
  const calls: Partial<MapSizes>[] = [];
  const grown: MapSizes[] = [];
  let release: (() => void) | undefined;
  const g = new MapGrowth({
    sizes: () => ({ ...sizes }),
    grow: async (t) => {
      calls.push(t);
      await new Promise<void>((r) => (release = r));
      if (fail) throw new Error('EPERM');
      Object.assign(sizes, t);
      return { maps: [], ms: 1, carried: 0 };
    },
    fixed, highWater: 0.8, grown: (s) => grown.push(s), log: pino({ level: 'silent' }), registry: new Registry(),
  });
  return { g, sizes, calls, grown, release: () => release?.() };
}

test('asks under the mark do nothing; past it one growth takes every map that needs it; asks during a growth are merged into the next', async () => {
  const { g, sizes, calls, grown, release } = setup();
  await g.ensure({ services: 80, ct: 800 });
  assert.deepEqual(calls, [], 'at the mark: nothing');
  assert.equal(g.needsGrowth({ services: 81 }), true);
  const first = g.ensure({ services: 81, backends: 90 });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls, [{ services: 256, backends: 256 }], 'one growth of both, each to the power of two past double');
  const second = g.ensure({ services: 500 });
  const third = g.ensure({ ct: 5000 });
  release();
  await first;
  await new Promise((r) => setImmediate(r));
  assert.equal(calls.length, 2, 'the asks made meanwhile: one more growth');
  assert.deepEqual(calls[1], { services: grownSize(200, 500, 0.8), ct: grownSize(1000, 5000, 0.8) });
  release();
  await Promise.all([second, third]);
  assert.deepEqual([sizes.services, sizes.ct], [1024, 8192]);
  assert.deepEqual(calls[1], { services: 1024, ct: 8192 });
  assert.equal(grown.length, 2);
});

test('a fixed map never grows; a failed growth keeps the sizes and waits before trying again', async () => {
  const f = setup({ services: true });
  assert.equal(f.g.needsGrowth({ services: 1_000_000 }), false);
  await f.g.ensure({ services: 1_000_000 });
  assert.deepEqual(f.calls, []);
  const e = setup({}, true);
  const p = e.g.ensure({ backends: 1000 });
  await new Promise((r) => setImmediate(r));
  e.release();
  await p;
  assert.deepEqual([e.sizes.backends, e.grown.length], [100, 0]);
  await e.g.ensure({ backends: 1000 });
  assert.equal(e.calls.length, 1, 'no retry within the backoff');
});
