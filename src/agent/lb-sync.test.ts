import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Logger, pino } from 'pino';
import { layouts } from '../abi/abi.gen.ts';
import { backendCodec, svcKeyCodec, svcValCodec, u32Codec } from '../abi/lb-codecs.ts';
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

// What the maps send a new flow to: the first slot's backend of a frontend.
function firstBackend(services: MemoryMapIO, backends: MemoryMapIO, addr: string, port: number): string | undefined {
  const slot = services.entries.get(svcKeyCodec.encodeString({ addr, dport: port, proto: 6, scope: 0, slot: 1 }));
  if (!slot) return undefined;
  const id = svcValCodec.decode(slot).backend_id;
  const b = backends.entries.get(u32Codec.encodeString({ value: id }));
  return b ? backendCodec.decode(b).addr : undefined;
}

function logged(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }) };
}

function setupLogged(node = { name: 'n1', addresses: ['192.168.77.10'] }, externalIPs?: { allowedCIDRs?: string[] }) {
  const services = new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, 1000);
  const backends = new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, 1000);
  const table = new LbTable({ services: 1000, backends: 1000 });
  const { log, lines } = logged();
  const sync = new LbSync({ table, reconciler: new LbReconciler({ services, backends }), node, log, ...(externalIPs ? { externalIPs } : {}) });
  return { services, backends, sync, lines };
}

const notServedLines = (lines: Record<string, unknown>[]) => lines.filter((l) => String(l.msg).startsWith('not served'));

test('an ExternalIP listing another Service\'s ClusterIP never takes it: A is recreated after B, in one flush or two', async () => {
  for (const together of [false, true]) {
    const { sync, services, backends, lines } = setupLogged();
    const a = svc('a', { created: '2024-02-01T00:00:00Z' });
    const b = svc('b', { clusterIPs: ['10.96.0.20'], externalIPs: ['10.96.0.10'], created: '2024-01-01T00:00:00Z' });
    sync.setSlice('default/a-1', slice('a', ['10.0.0.1']));
    sync.setSlice('default/b-1', slice('b', ['10.0.0.2']));
    sync.setService('default/b', b);
    if (!together) {
      // Only B: nobody else owns the address, its ExternalIP is served.
      await sync.flushed();
      assert.equal(firstBackend(services, backends, '10.96.0.10', 80), '10.0.0.2');
      assert.deepEqual(sync.notServed(), []);
    }
    sync.setService('default/a', a);
    await sync.flushed();
    assert.equal(firstBackend(services, backends, '10.96.0.10', 80), '10.0.0.1', `together=${together}`);
    assert.equal(firstBackend(services, backends, '10.96.0.20', 80), '10.0.0.2');
    assert.deepEqual(sync.notServed(), [
      { service: 'default/b', frontend: '10.96.0.10:80/TCP', kind: 'ExternalIP', reason: 'address 10.96.0.10 is the ClusterIP of Service default/a' },
    ]);
    // Logged once, not again at a resync or an unrelated change of B.
    sync.requestFullSync();
    sync.setSlice('default/b-1', slice('b', ['10.0.0.2', '10.0.0.3']));
    await sync.flushed();
    assert.equal(notServedLines(lines).length, 1);
    assert.match(String(notServedLines(lines)[0]?.msg), /not served: address 10\.96\.0\.10 is the ClusterIP of Service default\/a/);
    sync.stop();
  }
});

test('NodePorts on a node that lost its address: listed as not served, logged in one line for all Services, once', async () => {
  const { sync, lines } = setupLogged();
  for (const [i, name] of ['x', 'y', 'z'].entries()) {
    sync.setService(`default/${name}`, svc(name, { type: 'NodePort', clusterIPs: [`10.96.1.${i + 1}`], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 + i }] }));
  }
  await sync.flushed();
  assert.deepEqual(sync.notServed(), []);
  sync.setNode({ name: 'n1', addresses: [] });
  await sync.flushed();
  assert.deepEqual(sync.notServed().map((n) => `${n.service} ${n.frontend}`), ['default/x *:30080/TCP', 'default/y *:30081/TCP', 'default/z *:30082/TCP']);
  sync.requestFullSync();
  await sync.flushed();
  sync.setNode({ name: 'n1', addresses: [] });
  await sync.flushed();
  const warned = notServedLines(lines);
  assert.equal(warned.length, 1);
  assert.deepEqual([warned[0]?.frontends, warned[0]?.services], [3, 3]);
  sync.setNode({ name: 'n1', addresses: ['192.168.77.10'] });
  await sync.flushed();
  assert.deepEqual(sync.notServed(), []);
  assert.ok(lines.some((l) => /no longer refused/.test(String(l.msg)) && l.frontends === 3));
  sync.stop();
});

test('services.externalIPs.allowedCIDRs: ExternalIPs outside are not programmed and listed', async () => {
  const { sync, services, backends } = setupLogged(undefined, { allowedCIDRs: ['198.51.100.0/24'] });
  sync.setService('default/web', svc('web', { externalIPs: ['198.51.100.7', '8.8.8.8'] }));
  sync.setSlice('default/web-1', slice('web', ['10.0.0.1']));
  await sync.flushed();
  assert.equal(firstBackend(services, backends, '198.51.100.7', 80), '10.0.0.1');
  assert.equal(firstBackend(services, backends, '8.8.8.8', 80), undefined);
  assert.equal(services.entries.has(svcKeyCodec.encodeString({ addr: '8.8.8.8', dport: 0, proto: 0, scope: 0, slot: 0 })), false, 'no Service-address marker either');
  assert.deepEqual(sync.notServed().map((n) => [n.frontend, n.reason]), [['8.8.8.8:80/TCP', '8.8.8.8 is outside services.externalIPs.allowedCIDRs (198.51.100.0/24)']]);
  sync.stop();
});
