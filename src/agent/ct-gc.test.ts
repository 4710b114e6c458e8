import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { ConntrackGc, nextGcInterval, pauseAfter } from './ct-gc.ts';

const limits = { minSeconds: 1, maxSeconds: 60 };

test('a pass that deletes much of the map brings the next one closer, down to the minimum', () => {
  assert.equal(nextGcInterval(10, 40_000, 100_000, limits), 2.5);
  assert.equal(nextGcInterval(2, 90_000, 100_000, limits), 1);
});

test('a quiet pass at most doubles the interval, up to the maximum', () => {
  assert.equal(nextGcInterval(10, 0, 100_000, limits), 20);
  assert.equal(nextGcInterval(10, 1_000, 100_000, limits), 20);
  assert.equal(nextGcInterval(40, 0, 100_000, limits), 60);
  assert.equal(nextGcInterval(10, 10_000, 100_000, limits), 10);
});

test('the pause is at least twice the pass, within the maximum', () => {
  assert.equal(pauseAfter(1, 800, limits), 1.6, 'a 0.8 s pass: at least 1.6 s before the next');
  assert.equal(pauseAfter(10, 800, limits), 10);
  assert.equal(pauseAfter(1, 40_000, limits), 60);
  assert.equal(pauseAfter(1, 100, limits), 1);
});

test('a failing pass is logged and retried at the slowest pace, never thrown', async () => {
  let calls = 0;
  const gc = new ConntrackGc({
    collect: async () => {
      calls++;
      throw new Error('EPERM');
    },
    capacity: 1000, limits: { minSeconds: 1, maxSeconds: 60 }, log: pino({ level: 'silent' }),
  });
  gc.start();
  await new Promise((r) => setImmediate(r));
  gc.stop();
  assert.equal(calls, 1);
  assert.equal(gc.last, undefined);
});

test('a pass is reported with its batches and the next interval, and logged with them', async () => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const seen: { batches: number; next: number }[] = [];
  const result = { deleted: 500, entries: 99_500, visited: 100_000, batches: 25, runs: 1, ms: 42.04, cpuMs: 40.1, maxCallMs: 1.26 };
  const gc = new ConntrackGc({
    collect: async () => result,
    capacity: 100_000, limits, log,
    hooks: { pass: (r, next) => seen.push({ batches: r.batches, next }) },
  });
  gc.start();
  await new Promise((r) => setImmediate(r));
  gc.stop();
  assert.deepEqual(seen, [{ batches: 25, next: 10 }], 'a quiet pass doubles the first interval (5 s)');
  assert.equal(gc.last?.runs, 1);
  const line = lines.find((l) => l.msg === 'conntrack garbage collected');
  assert.deepEqual(
    line && [line.deleted, line.entries, line.batches, line.runs, line.ms, line.cpuMs, line.maxCallMs, line.nextSeconds],
    [500, 99_500, 25, 1, 42, 40.1, 1.3, 10],
  );
});
