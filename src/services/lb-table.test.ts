import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileService } from './compile.ts';
import { slice, svc } from './fixtures.ts';
import { LbTable, type LbUpdate, backendsOf, frontendsOf } from './lb-table.ts';
import { backendKey, decodeEntries, svcKeyCodec, svcValCodec } from '../abi/lb-codecs.ts';

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

  test('the entries written are the codecs\' own encoding of every master, slot, backend and name', () => {
    // The table writes its packed form directly and reads entries back
    // from it: here they are checked against entries encoded independently.
    const t = new LbTable(big);
    const u = t.set('default/web', compileService(svc('web', { sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 300 }), [slice('web', ['10.0.0.1', '10.0.0.2', '10.0.0.3'])], node));
    const d = after(u);
    const master = d.services.find((e) => e.key.slot === 0 && e.key.dport === 80)!;
    const ids = d.backends.map((b) => b.id);
    const expected = new Map<string, string>([[svcKeyCodec.encodeString(master.key), svcValCodec.encodeString(master.value)]]);
    for (let slot = 1; slot <= master.value.count; slot++) {
      const b = d.backends.find((x) => x.id === ids[slot - 1])!;
      expected.set(svcKeyCodec.encodeString({ ...master.key, slot }), svcValCodec.encodeString({ backend_id: b.id, count: 0, flags: 0, svc_id: master.value.svc_id, affinity_timeout: 0 }));
    }
    assert.equal(master.value.count, 3);
    assert.equal(master.value.affinity_timeout, 300);
    const written = new Map<string, string>();
    for (let i = 0; i < u.after.services.length; i += 2) written.set(u.after.services[i]!, u.after.services[i + 1]!);
    for (const [k, v] of expected) assert.equal(written.get(k), v);
    // Backends in slot order by address, each with the frontend's id.
    assert.deepEqual(d.backends.map((b) => [b.value.addr, b.value.port, b.value.svc_id]), [['10.0.0.1', 8080, master.value.svc_id], ['10.0.0.2', 8080, master.value.svc_id], ['10.0.0.3', 8080, master.value.svc_id]]);
    assert.deepEqual(u.after.backends.filter((_, i) => i % 2 === 0), ids.map((id) => backendKey(id)));
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

  test('a frontend claimed twice stays with the same Service whatever the order; the other takes over when it goes', () => {
    const t = new LbTable(big);
    t.set('default/a', compileService(svc('a'), [slice('a', ['10.0.0.1'])], node));
    const second = t.set('default/b', compileService(svc('b'), [slice('b', ['10.0.0.2'])], node));
    assert.deepEqual(t.rendered('default/b')?.notServed, [
      { frontend: '10.96.0.10:80/TCP', kind: 'ClusterIP', reason: '10.96.0.10:80/TCP is also the ClusterIP of Service default/a, which sorts first' },
    ]);
    assert.deepEqual([...t.notServed()].map((n) => n.service), ['default/b']);
    assert.equal(after(second).backends.length, 0);
    const handover = t.set('default/a', undefined);
    assert.deepEqual(handover.services.sort(), ['default/a', 'default/b']);
    assert.deepEqual(after(handover).backends.map((b) => b.value.addr), ['10.0.0.2']);
    const afterKeys = new Set(after(handover).services.map((e) => JSON.stringify(e.key)));
    const deleted = before(handover).services.filter((e) => !afterKeys.has(JSON.stringify(e.key)));
    assert.ok(!deleted.some((e) => e.key.dport === 0), 'the shared VIP marker is not deleted');
  });

  test('CVE-2020-8554: an ExternalIP never keeps another Service\'s ClusterIP, across a delete and recreate', () => {
    const t = new LbTable(big);
    const a = () => compileService(svc('a', { created: '2024-02-01T00:00:00Z' }), [slice('a', ['10.0.0.1'])], node);
    const b = () => compileService(svc('b', { clusterIPs: ['10.96.0.20'], externalIPs: ['10.96.0.10'], created: '2024-01-01T00:00:00Z' }), [slice('b', ['10.0.0.2'])], node);
    const servedBy = (): string | undefined => {
      const owner = [...t.renderedServices()].find((r) => frontendsOf(r).some((f) => f.key === '10.96.0.10:80/TCP'));
      return owner?.key;
    };
    t.set('default/a', a());
    t.set('default/b', b());
    assert.equal(servedBy(), 'default/a');
    assert.deepEqual(t.rendered('default/b')?.notServed, [
      { frontend: '10.96.0.10:80/TCP', kind: 'ExternalIP', reason: 'address 10.96.0.10 is the ClusterIP of Service default/a' },
    ]);
    const gone = t.set('default/a', undefined);
    assert.deepEqual(gone.stale, [], 'B was waiting: the table re-renders it itself');
    assert.equal(servedBy(), 'default/b', 'nobody owns the address: the ExternalIP is served');
    // A comes back with the same ClusterIP: it waits for B, which the caller must compile again.
    const back = t.set('default/a', a());
    assert.deepEqual(back.stale, ['default/b']);
    assert.equal(servedBy(), 'default/b', 'still B until it is set again (never both)');
    assert.match(t.rendered('default/a')?.notServed[0]?.reason ?? '', /being handed over from Service default\/b/);
    const handover = t.set('default/b', b());
    assert.deepEqual(handover.stale, []);
    assert.equal(servedBy(), 'default/a');
    assert.deepEqual(t.rendered('default/a')?.notServed, []);
    assert.deepEqual(after(handover).backends.filter((x) => x.value.addr === '10.0.0.1').length, 1, "A's backend is programmed in the same change");
    assert.equal(t.rendered('default/b')?.notServed.length, 1);
  });

  test('the same Services in any order give the same entries', () => {
    const services = [
      compileService(svc('a'), [slice('a', ['10.0.0.1'])], node),
      compileService(svc('b', { clusterIPs: ['10.96.0.20'], externalIPs: ['10.96.0.10', '198.51.100.1'] }), [slice('b', ['10.0.0.2'])], node),
      compileService(svc('c', { clusterIPs: ['10.96.0.30'], externalIPs: ['198.51.100.1'] }), [slice('c', ['10.0.0.3'])], node),
      compileService(svc('d', { clusterIPs: ['10.96.0.40'], type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] }), [slice('d', ['10.0.0.4'])], node),
      compileService(svc('e', { clusterIPs: ['10.96.0.50'], externalIPs: ['192.168.77.10'], ports: [{ name: 'http', protocol: 'TCP', port: 30080, targetPort: 8080, nodePort: 0 }] }), [slice('e', ['10.0.0.5'])], node),
    ];
    const orders = [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 2, 0, 3, 4]];
    let first: string | undefined;
    for (const order of orders) {
      const t = new LbTable(big);
      const queue = order.map((i) => services[i]!);
      // What a caller does with stale Services: set them again.
      while (queue.length > 0) {
        const c = queue.shift()!;
        for (const k of t.set(c.key, c).stale) queue.push(services.find((s) => s.key === k)!);
      }
      const owners = [...t.renderedServices()].flatMap((r) => frontendsOf(r).map((f) => `${f.key}=${r.key}`)).sort();
      const refused = [...t.notServed()].map((n) => `${n.frontend}=${n.service}`).sort();
      const view = JSON.stringify({ owners, refused, markers: t.usage });
      if (first === undefined) first = view;
      assert.equal(view, first, `order ${order.join(',')}`);
    }
    const { owners, refused } = JSON.parse(first!) as { owners: string[]; refused: string[] };
    assert.ok(owners.includes('10.96.0.10:80/TCP=default/a'));
    assert.ok(owners.includes('198.51.100.1:80/TCP=default/b'), 'same created time: the lower name');
    assert.ok(owners.includes('192.168.77.10:30080/TCP=default/d'), 'the NodePort over an ExternalIP on the node address');
    assert.deepEqual(refused, ['10.96.0.10:80/TCP=default/b', '192.168.77.10:30080/TCP=default/e', '198.51.100.1:80/TCP=default/c']);
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
  test('a rendered Service gives back exactly the entries it wrote (packed form), and its backends by frontend', () => {
    const t = new LbTable(big);
    const twoPorts = svc('web', { type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }, { name: 'a-much-longer-port-name-of-sixty-three-characters-for-the-names-map-xx', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 }] });
    const eps = slice('web', ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    eps.ports = [{ name: 'http', protocol: 'TCP', port: 8080 }, { name: 'a-much-longer-port-name-of-sixty-three-characters-for-the-names-map-xx', protocol: 'UDP', port: 53 }];
    const a = t.set('default/web', compileService(twoPorts, [eps], node));
    const r = t.rendered('default/web')!;
    assert.equal(r.frontendCount, 3);
    // Read back from the packed entries: keys, kinds and ids as the names records and masters hold them.
    const names = new Map(decodeEntries(a.after).names.map((n) => [n.id, n.name]));
    assert.deepEqual(frontendsOf(r).map((f) => [f.key, f.kind, names.get(f.svcId)]), [
      ['10.96.0.10:80/TCP', 'ClusterIP', 'default/web:http'],
      ['192.168.77.10:30080/TCP', 'NodePort', 'default/web:http'],
      ['10.96.0.10:53/UDP', 'ClusterIP', 'default/web:a-much-longer-port-name-of-sixty-three-characters-for-the-names-map-xx'],
    ]);
    assert.equal(t.holder('192.168.77.10:30080/TCP'), r);
    const lb = new LbTable(big);
    lb.set('default/lb', compileService(svc('lb', { type: 'LoadBalancer', externalIPs: ['198.51.100.1'], loadBalancerIPs: ['203.0.113.7'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] }), [slice('lb', ['10.0.0.1'])], node));
    assert.deepEqual(frontendsOf(lb.rendered('default/lb')!).map((f) => [f.key, f.kind]).sort(), [
      ['10.96.0.10:80/TCP', 'ClusterIP'], ['192.168.77.10:30080/TCP', 'NodePort'], ['198.51.100.1:80/TCP', 'ExternalIP'], ['203.0.113.7:80/TCP', 'LoadBalancer'],
    ]);
    const gone = t.set('default/web', undefined);
    const marker = (e: string[]) => e.filter((_, i) => i % 2 === 0);
    assert.deepEqual(gone.before.backends, a.after.backends);
    assert.deepEqual(gone.before.names, a.after.names);
    assert.deepEqual(new Set(marker(gone.before.services)), new Set(marker(a.after.services)));
    assert.deepEqual(new Set(gone.before.services), new Set(a.after.services));
    const byFrontend = new Map(frontendsOf(r).map((f) => [f.key, backendsOf(r, f.svcId).map((b) => `${b.addr}:${b.port}`).sort()]));
    assert.deepEqual(byFrontend.get('10.96.0.10:53/UDP'), ['10.0.0.1:53', '10.0.0.2:53', '10.0.0.3:53']);
    assert.deepEqual(byFrontend.get('192.168.77.10:30080/TCP'), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
    const ids = new Map(decodeEntries(a.after).backends.map((b) => [`${b.value.addr}:${b.value.port}/${b.value.svc_id}`, b.id]));
    for (const f of frontendsOf(r)) for (const b of backendsOf(r, f.svcId)) assert.equal(ids.get(`${b.addr}:${b.port}/${f.svcId}`), b.id);
  });
});
