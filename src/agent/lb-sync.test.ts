import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { layouts } from '../abi/abi.gen.ts';
import { BACKENDS_MAP, LbReconciler, SERVICES_MAP } from '../datapath/lb-reconciler.ts';
import { FaultyMapIO, MemoryMapIO } from '../datapath/map-io.ts';
import { slice, svc } from '../services/fixtures.ts';
import { LbTable } from '../services/lb-table.ts';
import { LbSync } from './lb-sync.ts';

function setup() {
  const services = new FaultyMapIO(new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, 1000));
  const backends = new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, 1000);
  const table = new LbTable({ services: 1000, backends: 1000 });
  const sync = new LbSync({ table, reconciler: new LbReconciler({ services, backends }), node: { name: 'n1', addresses: [] }, log: pino({ level: 'silent' }) });
  return { services, backends, sync };
}

test('the first sync completes with no Services at all (an empty node becomes ready)', async () => {
  const { sync } = setup();
  sync.replaceAll([], []);
  await sync.flushed();
  assert.equal(sync.status.synced, true);
});

test('Services and slices arriving separately are merged; a slice before its Service is kept', async () => {
  const { sync, backends } = setup();
  sync.setSlice('default/web-1', slice('web', ['10.0.0.1', '10.0.0.2']));
  await sync.flushed();
  assert.equal(backends.entries.size, 0);
  sync.setService('default/web', svc('web'));
  await sync.flushed();
  assert.equal(backends.entries.size, 2);
  sync.setSlice('default/web-1', undefined);
  await sync.flushed();
  assert.equal(backends.entries.size, 0);
});

test('a failed write is retried with backoff until it lands; the status says what failed', async () => {
  const { sync, services } = setup();
  sync.replaceAll([], []);
  await sync.flushed();
  let failed = 0;
  services.failWhen((op) => (op === 'update' && failed < 2 ? (failed++, 'ENOMEM') : undefined));
  sync.setService('default/web', svc('web'));
  sync.setSlice('default/web-1', slice('web', ['10.0.0.1']));
  await sync.flushed();
  assert.equal(failed, 2, 'two failures, then success');
  assert.equal(sync.status.lastError, undefined);
  assert.equal((services.inner as MemoryMapIO).entries.size, 3);
  sync.stop();
});
