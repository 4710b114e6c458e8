import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileService } from './compile.ts';
import { slice, svc } from './fixtures.ts';
import { LbTable, type LbUpdate } from './lb-table.ts';
import { decodeEntries } from '../abi/lb-codecs.ts';

const after = (u: LbUpdate) => decodeEntries(u.after);
const before = (u: LbUpdate) => decodeEntries(u.before);

const node = { name: 'node-a', addresses: ['192.168.77.10'] };
const big = { services: 1000, backends: 1000 };

describe('LbTable', () => {
  test('renders master, slots, backends and a VIP marker', () => {
    const t = new LbTable(big);
    const u = t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node));
    assert.deepEqual(u.before, { services: [], backends: [], names: [] });
    const master = after(u).services.find((e) => e.key.slot === 0 && e.key.dport === 80)!;
    assert.equal(master.value.count, 2);
    const slots = after(u).services.filter((e) => e.key.slot > 0).map((e) => e.value.backend_id);
    assert.deepEqual(slots.sort(), after(u).backends.map((b) => b.id).sort());
    assert.ok(after(u).services.some((e) => e.key.dport === 0 && e.key.proto === 0 && e.key.addr === '10.96.0.10'));
    assert.deepEqual(t.usage, { services: 4, backends: 2, names: 1 });
    assert.deepEqual(after(u).names, [{ id: master.value.svc_id, name: 'default/web:http' }]);
  });

  test('ids stay the same for unchanged frontends and backends across updates', () => {
    const t = new LbTable(big);
    const a = t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.2'])], node));
    const b = t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.2', '10.0.0.3'])], node));
    const idOf = (u: LbUpdate, ip: string): number | undefined => after(u).backends.find((x) => x.value.addr === ip)?.id;
    assert.equal(idOf(a, '10.0.0.2'), idOf(b, '10.0.0.2'));
    assert.notEqual(idOf(b, '10.0.0.3'), idOf(a, '10.0.0.1'), 'a freed id is not reused at once');
    assert.equal(after(a).services[0]?.value.svc_id, after(b).services[0]?.value.svc_id);
  });

  test('removing a Service lists all its entries as before and none after', () => {
    const t = new LbTable(big);
    const a = t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1'])], node));
    const r = t.set('default/web', undefined);
    assert.equal(before(r).services.length, after(a).services.length);
    assert.equal(after(r).services.length, 0);
    assert.deepEqual(t.usage, { services: 0, backends: 0, names: 0 });
    assert.equal(t.frontendIds.size, 0);
    assert.equal(t.backendIds.size, 0);
  });

  test('a frontend claimed twice stays with the first Service; the second takes over when it goes', () => {
    const t = new LbTable(big);
    t.set('default/a', compileService(svc('a'), [slice('a', ['10.0.0.1'])], node));
    const second = t.set('default/b', compileService(svc('b'), [slice('b', ['10.0.0.2'])], node));
    assert.match(t.rendered('default/b')?.problems[0]?.message ?? '', /frontend ClusterIP: "10.96.0.10:80\/TCP" is already served by Service default\/a/);
    assert.equal(after(second).backends.length, 0);
    const handover = t.set('default/a', undefined);
    assert.deepEqual(handover.services.sort(), ['default/a', 'default/b']);
    assert.deepEqual(after(handover).backends.map((b) => b.value.addr), ['10.0.0.2']);
    const afterKeys = new Set(after(handover).services.map((e) => JSON.stringify(e.key)));
    const deleted = before(handover).services.filter((e) => !afterKeys.has(JSON.stringify(e.key)));
    assert.ok(!deleted.some((e) => e.key.dport === 0), 'the shared VIP marker is not deleted');
  });

  test('a Service that does not fit the maps is not programmed at all, and others are untouched', () => {
    const t = new LbTable({ services: 10, backends: 5 });
    t.set('default/small', compileService(svc('small'), [slice('small', ['10.0.0.1'])], node));
    const eps = Array.from({ length: 8 }, (_, i) => `10.0.1.${i + 1}`);
    const u = t.set('default/big', compileService(svc('big', { clusterIPs: ['10.96.0.11'] }), [slice('big', eps)], node));
    assert.deepEqual(u.after, { services: [], backends: [], names: [] });
    assert.match(t.rendered('default/big')?.problems[0]?.message ?? '', /Service default\/big: endpoints: 8 do not fit the maps: the Service needs 8 backend entries, 4 of 5 are free; not programmed/);
    assert.deepEqual(t.usage, { services: 3, backends: 1, names: 1 });
    assert.equal(t.backendIds.size, 1, 'no ids leak from the refused Service');
  });

  test('adopted ids are reused for the same keys; unused adopted ids are released', () => {
    const t = new LbTable(big);
    t.frontendIds.adopt('10.96.0.10:80/TCP', 77);
    t.adoptBackend('10.96.0.10:80/TCP', '10.0.0.1:8080', 500);
    t.adoptBackend('10.96.0.99:80/TCP', '10.0.0.9:8080', 501);
    const u = t.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1'])], node));
    assert.equal(after(u).services.find((e) => e.key.slot === 0 && e.key.dport === 80)?.value.svc_id, 77);
    assert.equal(after(u).backends[0]?.id, 500);
    assert.equal(t.releaseUnusedIds(), 1);
    assert.equal(t.backendIds.has(501), false);
  });
});
