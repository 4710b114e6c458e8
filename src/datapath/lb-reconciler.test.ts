import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileService } from '../services/compile.ts';
import { slice, svc } from '../services/fixtures.ts';
import { LbTable } from '../services/lb-table.ts';
import { layouts } from '../abi/abi.gen.ts';
import { BACKENDS_MAP, LbReconciler, SERVICES_MAP, svcKeyCodec, svcValCodec } from './lb-reconciler.ts';
import { FaultyMapIO, MemoryMapIO } from './map-io.ts';
import { ReconcileError, fromBytes } from './reconciler.ts';

const node = { name: 'node-a', addresses: ['192.168.77.10'] };

function maps(capacity = 1000) {
  const services = new FaultyMapIO(new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, capacity));
  const backends = new FaultyMapIO(new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, capacity));
  return { services, backends };
}

function masterCount(io: MemoryMapIO, addr: string, port: number): number | undefined {
  const v = io.lookup(svcKeyCodec.encode({ addr, dport: port, proto: 6, scope: 0, slot: 0 }));
  return v ? svcValCodec.decode(v).count : undefined;
}

describe('LbReconciler', () => {
  test('writes backends, then slots, then masters; deletes in the reverse order', () => {
    const m = maps();
    const order: string[] = [];
    const record = (name: string) => (op: string, key?: Uint8Array) => {
      const slot = key && name === SERVICES_MAP ? svcKeyCodec.decode(key).slot : -1;
      order.push(`${op}:${name === BACKENDS_MAP ? 'backend' : slot === 0 ? 'master' : 'slot'}`);
      return undefined;
    };
    m.services.failWhen(record(SERVICES_MAP));
    m.backends.failWhen(record(BACKENDS_MAP));
    const t = new LbTable({ services: 100, backends: 100 });
    const r = new LbReconciler(m);
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node)));
    assert.deepEqual([...new Set(order)], ['update:backend', 'update:slot', 'update:master']);
    order.length = 0;
    r.apply(t.set('default/web', undefined));
    assert.deepEqual([...new Set(order)], ['delete:master', 'delete:slot', 'delete:backend']);
    assert.equal((m.services.inner as MemoryMapIO).entries.size, 0);
    assert.equal((m.backends.inner as MemoryMapIO).entries.size, 0);
  });

  test('an incremental change touches only what changed', () => {
    const m = maps();
    const t = new LbTable({ services: 100, backends: 100 });
    const r = new LbReconciler(m);
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node)));
    r.apply(t.set('default/other', compileService(svc('other', { clusterIPs: ['10.96.0.11'] }), [slice('other', ['10.0.1.1'])], node)));
    const stats = r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2', '10.0.0.3'])], node)));
    // one new backend, one new slot, the master's count
    assert.deepEqual({ upserts: stats.upserts, deletes: stats.deletes }, { upserts: 3, deletes: 0 });
    assert.equal(masterCount(m.services.inner as MemoryMapIO, '10.96.0.10', 80), 3);
  });

  test('the changed hook runs after a pass that wrote or deleted entries, and not after one that did nothing', async () => {
    const m = maps();
    const t = new LbTable({ services: 100, backends: 100 });
    let bumps = 0;
    const r = new LbReconciler({ ...m, changed: () => bumps++ });
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node)));
    assert.equal(bumps, 1);
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node)));
    await r.resync(t);
    assert.equal(bumps, 1, 'nothing changed: no bump');
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1'])], node)));
    assert.equal(bumps, 2, 'a backend left');
  });

  test('a failing phase stops the plan before the masters switch; a resync then converges', async () => {
    const m = maps();
    const t = new LbTable({ services: 100, backends: 100 });
    const r = new LbReconciler(m);
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1'])], node)));
    m.backends.failWhen((op) => (op === 'update' ? 'ENOMEM' : undefined));
    assert.throws(
      () => r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node))),
      (e: unknown) => e instanceof ReconcileError && /upsert in map hypha_lb4_backends_v1 failed: map hypha_lb4_backends_v1: update failed: ENOMEM/.test(e.message),
    );
    assert.equal(masterCount(m.services.inner as MemoryMapIO, '10.96.0.10', 80), 1, 'the old Service is intact');
    m.backends.failWhen(undefined);
    await r.resync(t);
    assert.equal(masterCount(m.services.inner as MemoryMapIO, '10.96.0.10', 80), 2);
  });

  test('resync repairs an entry deleted by hand and prunes entries nothing wants', async () => {
    const m = maps();
    const t = new LbTable({ services: 100, backends: 100 });
    const r = new LbReconciler(m);
    r.apply(t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1'])], node)));
    const inner = m.services.inner as MemoryMapIO;
    inner.delete(svcKeyCodec.encode({ addr: '10.96.0.10', dport: 80, proto: 6, scope: 0, slot: 0 }));
    inner.update(svcKeyCodec.encode({ addr: '10.96.9.9', dport: 80, proto: 6, scope: 0, slot: 0 }), new Uint8Array(16));
    const stats = await r.resync(t);
    assert.deepEqual({ upserts: stats.upserts, deletes: stats.deletes }, { upserts: 1, deletes: 1 });
    assert.equal(masterCount(inner, '10.96.0.10', 80), 1);
    assert.equal(masterCount(inner, '10.96.9.9', 80), undefined);
  });

  test('a resync larger than a chunk streams: every master is written after its slots and backends, and stale entries go after', async () => {
    const m = maps(80_000);
    const t = new LbTable({ services: 80_000, backends: 80_000 });
    const r = new LbReconciler(m);
    // 5 000 x (master, VIP marker, 5 slots, 5 backends): every phase's
    // batch passes the 8 192-entry chunk and is written as it fills
    const n = 5000;
    const ipOf = (i: number) => `10.97.${i >> 8}.${i & 255}`;
    for (let i = 0; i < n; i++) {
      t.set(`default/s${i}`, compileService(svc(`s${i}`, { clusterIPs: [ipOf(i)] }), [slice(`s${i}`, Array.from({ length: 5 }, (_, k) => `10.${2 + k}.${i >> 8}.${i & 255}`))], node));
    }
    // a stale Service left in the maps (deleted while the agent was down)
    const inner = m.services.inner as MemoryMapIO;
    const stale = svcKeyCodec.encode({ addr: '10.96.9.9', dport: 80, proto: 6, scope: 0, slot: 0 });
    inner.update(stale, new Uint8Array(layouts.hypha_lb4_svc_val.size));
    const problems: string[] = [];
    let masters = 0;
    let staleGoneAt = -1;
    m.services.failWhen((op, key) => {
      if (!key) return undefined;
      const k = svcKeyCodec.decode(key);
      // (dport 0: the address's VIP marker, no slots)
      if (op === 'update' && k.slot === 0 && k.dport !== 0) {
        masters++;
        for (let slot = 1; slot <= 5; slot++) {
          if (!inner.lookup(svcKeyCodec.encode({ ...k, slot }))) problems.push(`${k.addr}: master before slot ${slot}`);
        }
      }
      if (op === 'delete' && k.addr === '10.96.9.9') staleGoneAt = masters;
      return undefined;
    });
    const stats = await r.resync(t);
    assert.deepEqual(problems.slice(0, 3), []);
    assert.equal(masters, n);
    assert.equal(staleGoneAt, n, 'stale entries are deleted after every write');
    assert.equal(stats.upserts, n * 7 + n * 5, "each: master, 5 slots, the VIP marker and 5 backends");
    assert.equal(stats.deletes, 1);
    assert.equal(inner.lookup(stale), undefined);
    m.services.failWhen(undefined);
    const again = await r.resync(t);
    assert.deepEqual({ upserts: again.upserts, deletes: again.deletes }, { upserts: 0, deletes: 0 }, 'converged: nothing to write');
  });

  test('a restarted agent adopts the ids in the maps and rewrites nothing', async () => {
    const m = maps();
    const t1 = new LbTable({ services: 100, backends: 100 });
    const r1 = new LbReconciler(m);
    const compiled = compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node);
    // ids that a fresh allocator would not pick first
    t1.frontendIds.acquire('unrelated');
    r1.apply(t1.set('default/web', compiled));
    const before = new Map((m.services.inner as MemoryMapIO).entries);

    const t2 = new LbTable({ services: 100, backends: 100 });
    const r2 = new LbReconciler(m);
    assert.deepEqual(t2.adoptPinned(await r2.readIds()), { frontends: 1, backends: 2 });
    t2.set('default/web', compiled);
    const stats = await r2.resync(t2);
    assert.deepEqual({ upserts: stats.upserts, deletes: stats.deletes }, { upserts: 0, deletes: 0 });
    assert.deepEqual(new Map((m.services.inner as MemoryMapIO).entries), before);
    void fromBytes;
  });
});
