import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { serverPort, startServer } from './server.ts';

test('/readyz: 200 when ready, with a note when there is one; 503 before', async () => {
  let ready = false;
  let note: string | undefined;
  const server = await startServer('127.0.0.1', 0, { ready: () => ready, readyNote: () => note, status: () => ({}), registry: new Registry() });
  const get = async () => {
    const res = await fetch(`http://127.0.0.1:${serverPort(server)}/readyz`);
    return [res.status, await res.text()];
  };
  try {
    assert.deepEqual(await get(), [503, 'not synced yet\n']);
    ready = true;
    assert.deepEqual(await get(), [200, 'ready\n']);
    note = '4539 Services not programmed (hypha service list --problems)';
    assert.deepEqual(await get(), [200, 'ready; 4539 Services not programmed (hypha service list --problems)\n']);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('/memory: resident memory and V8 spaces in MB; ?gc=1 collects first when gc is exposed', async () => {
  const { memoryDocument } = await import('./gc.ts');
  const d = memoryDocument(true) as { rssMb: number; heapUsedMb: number; spaces: { space: string; usedMb: number }[]; collected: boolean };
  assert.ok(d.rssMb > d.heapUsedMb && d.heapUsedMb > 0);
  assert.ok(d.spaces.some((s) => s.space === 'old_space'));
  assert.equal(d.collected, typeof (globalThis as { gc?: unknown }).gc === 'function');
});
