import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Logger, pino } from 'pino';
import { layouts } from '../abi/abi.gen.ts';
import { backendCodec, svcKeyCodec, svcValCodec, u32Codec } from '../abi/lb-codecs.ts';
import { BACKENDS_MAP, LbReconciler, SERVICES_MAP } from '../datapath/lb-reconciler.ts';
import { FaultyMapIO, MemoryMapIO } from '../datapath/map-io.ts';
import { slice, svc } from '../services/fixtures.ts';
import { LbTable } from '../services/lb-table.ts';
import { problem } from '../services/problems.ts';
import { LbSync } from './lb-sync.ts';
import { createMetrics } from './metrics.ts';

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

// Problems of objects: a line per kind and flush, not per object; only the
// ones present now are kept, listed and counted.
function setupProblems() {
  const services = new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, 10_000);
  const backends = new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, 10);
  // Room for many Services, but for 10 backends only.
  const table = new LbTable({ services: 10_000, backends: 10 });
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const metrics = createMetrics();
  const sync = new LbSync({ table, reconciler: new LbReconciler({ services, backends }), node: { name: 'n1', addresses: [] }, log, metrics });
  const at = (level: number) => lines.filter((l) => l.level === level);
  const gauge = async (kind: string) => (await metrics.objectProblemsPresent.get()).values.find((v) => v.labels.kind === kind)?.value;
  const counter = async (kind: string) => (await metrics.objectProblems.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;
  return { sync, lines, at, gauge, counter };
}

const N = 1000;
const name = (i: number) => `s${i}`;
const clusterIP = (i: number) => `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
// 11 backends each: none fits a table of 10.
const eleven = Array.from({ length: 11 }, (_, i) => `10.0.0.${i + 1}`);

test(`${N} Services that do not fit: one warn line, ${N} at debug; fixed: one info line; bad again: reported again`, async () => {
  const { sync, lines, at, gauge, counter } = setupProblems();
  for (let i = 0; i < N; i++) {
    sync.setService(`default/${name(i)}`, svc(name(i), { clusterIPs: [clusterIP(i)] }));
    sync.setSlice(`default/${name(i)}-abc`, slice(name(i), eleven));
  }
  await sync.flushed();
  const warn = at(40);
  assert.equal(warn.length, 1, JSON.stringify(warn));
  assert.match(String(warn[0]?.msg), /^1000 Services: endpoints do not fit the maps \(e\.g\. Service default\/s0: endpoints: 11 do not fit the maps: the Service needs 11 backend entries, 10 of 10 are free; not programmed\)/);
  assert.deepEqual([warn[0]?.problems, warn[0]?.objects, warn[0]?.sample], [N, N, ['Service default/s0', 'Service default/s1', 'Service default/s2', 'Service default/s3', 'Service default/s4']]);
  const debug = at(20).filter((l) => /do not fit the maps/.test(String(l.msg)));
  assert.equal(debug.length, N);
  assert.equal(sync.problems().length, N);
  assert.equal(sync.notProgrammed(), N);
  assert.deepEqual(sync.problemKinds().map((k) => [k.kind, k.objects, k.notProgrammed]), [['Service endpoints do not fit the maps', N, N]]);
  assert.equal(await gauge('Service'), N);
  assert.equal(await counter('Service'), N);
  console.log(`log lines for ${N} Services that do not fit: warn ${warn.length}, debug ${debug.length}, info ${at(30).length}`);

  // A resync, unrelated changes: nothing new to say.
  const before = lines.length;
  sync.requestFullSync();
  sync.setSlice('default/s7-abc', slice('s7', eleven.slice(1).concat('10.0.1.1')));
  await sync.flushed();
  assert.equal(lines.slice(before).filter((l) => Number(l.level) >= 40).length, 0);

  // Fixed (no endpoints left to program): one info line, nothing current.
  lines.length = 0;
  for (let i = 0; i < N; i++) sync.setSlice(`default/${name(i)}-abc`, slice(name(i), []));
  await sync.flushed();
  assert.equal(at(40).length, 0);
  const gone = at(30).filter((l) => /gone/.test(String(l.msg)));
  assert.equal(gone.length, 1);
  assert.equal(gone[0]?.msg, '1000 problems of objects gone (fixed or deleted)');
  assert.equal((gone[0]?.sample as string[]).length, 5);
  assert.deepEqual(sync.problems(), []);
  assert.equal(sync.notProgrammed(), 0);
  assert.equal(await gauge('Service'), 0);
  console.log(`log lines when fixed: warn ${at(40).length}, info ${at(30).length} (of them 'gone' ${gone.length})`);

  // Bad again: reported again, counted again.
  lines.length = 0;
  for (let i = 0; i < N; i++) sync.setSlice(`default/${name(i)}-abc`, slice(name(i), eleven));
  await sync.flushed();
  assert.equal(at(40).length, 1);
  assert.equal(at(20).filter((l) => /do not fit the maps/.test(String(l.msg))).length, N);
  assert.equal(await gauge('Service'), N);
  assert.equal(await counter('Service'), 2 * N);
  sync.stop();
});

test('a bad Service deleted and recreated is reported again; problems() lists exactly the current ones', async () => {
  const { sync, lines, at, gauge } = setupProblems();
  sync.setService('default/ok', svc('ok', { clusterIPs: ['10.96.9.1'] }));
  sync.setSlice('default/ok-abc', slice('ok', ['10.0.0.1']));
  sync.setService('default/big', svc('big', { clusterIPs: ['10.96.9.2'] }));
  sync.setSlice('default/big-abc', slice('big', eleven));
  await sync.flushed();
  // One problem: its own message is the line, as it always was.
  assert.deepEqual(at(40).map((l) => l.msg), ['Service default/big: endpoints: 11 do not fit the maps: the Service needs 11 backend entries, 9 of 10 are free; not programmed']);
  assert.deepEqual(sync.problems().map((p) => [p.object, p.field, p.value]), [['Service default/big', 'endpoints', 11]]);

  // Its particulars change (more entries free), the problem stays: listed
  // as it is now, not logged again.
  lines.length = 0;
  sync.setSlice('default/ok-abc', slice('ok', []));
  sync.setSlice('default/big-abc', slice('big', [...eleven].reverse()));
  await sync.flushed();
  assert.equal(at(40).length + lines.filter((l) => /gone/.test(String(l.msg))).length, 0);
  assert.match(sync.problems()[0]?.message ?? '', /10 of 10 are free/);

  lines.length = 0;
  sync.setService('default/big', undefined);
  await sync.flushed();
  assert.deepEqual(sync.problems(), []);
  assert.equal(await gauge('Service'), 0);
  assert.deepEqual(at(30).filter((l) => /gone/.test(String(l.msg))).map((l) => l.msg), ['1 problem of objects gone (fixed or deleted)']);

  lines.length = 0;
  sync.setService('default/big', svc('big', { clusterIPs: ['10.96.9.2'] }));
  await sync.flushed();
  assert.equal(at(40).length, 1, 'recreated with the same fault: reported again');
  assert.equal(sync.problems().length, 1);
  assert.equal(sync.notProgrammed(), 1);

  // Deleted and recreated within one flush: the problem never went away.
  lines.length = 0;
  sync.setService('default/big', undefined);
  sync.setService('default/big', svc('big', { clusterIPs: ['10.96.9.2'] }));
  await sync.flushed();
  assert.equal(lines.filter((l) => Number(l.level) >= 30 && /problem|fit/.test(String(l.msg))).length, 0);
  sync.stop();
});

test('problems the source reports: per scope, replaced by its next report, summarised per kind', async () => {
  const { sync, lines, at, gauge } = setupProblems();
  const bad = (i: number) => problem(`Service default/p${i}`, 'spec.ports[0].port', 70000 + i, 'is not a valid port number (1-65535)');
  for (let i = 0; i < 50; i++) sync.report(`services default/p${i}`, [bad(i)]);
  sync.report('endpointslices default/e-1', [problem('EndpointSlice default/e-1', 'endpoints[1].addresses[0]', '10.0.0.x', 'is not an IPv4 address')]);
  await sync.flushed();
  assert.deepEqual(at(40).map((l) => l.msg).sort(), [
    '50 Services: spec.ports[*].port is not a valid port number (1-65535) (e.g. Service default/p0: spec.ports[0].port: 70000 is not a valid port number (1-65535)); each at debug level, all: hypha service list --problems',
    'EndpointSlice default/e-1: endpoints[1].addresses[0]: "10.0.0.x" is not an IPv4 address',
  ]);
  assert.equal(await gauge('Service'), 50);
  assert.equal(await gauge('EndpointSlice'), 1);
  // Normalising refused these Services: none is in the store, none programmed.
  assert.equal(sync.notProgrammed(), 50);
  const kinds = sync.problemKinds();
  assert.deepEqual(kinds.map((k) => [k.kind, k.objects, k.notProgrammed]), [
    ['Service spec.ports[*].port is not a valid port number (1-65535)', 50, 50],
    ['EndpointSlice endpoints[*].addresses[*] is not an IPv4 address', 1, 0],
  ]);

  // The same problems reported again (a relist, a re-read): nothing logged.
  lines.length = 0;
  for (let i = 0; i < 50; i++) sync.report(`services default/p${i}`, [bad(i)]);
  await sync.flushed();
  assert.equal(lines.length, 0);

  // Ten fixed: one info line; the rest stay listed.
  for (let i = 0; i < 10; i++) sync.report(`services default/p${i}`, []);
  await sync.flushed();
  assert.deepEqual(lines.map((l) => l.msg), ['10 problems of objects gone (fixed or deleted)']);
  assert.deepEqual(sync.problems().map((p) => p.object), ['EndpointSlice default/e-1', ...Array.from({ length: 40 }, (_, i) => `Service default/p${i + 10}`).sort()]);
  assert.equal(await gauge('Service'), 40);
  sync.stop();
});

test('with a growable table, a batch larger than the maps grows them once, before programming: every Service programmed, no "do not fit" problem', async () => {
  const { MapGrowth, grownSize } = await import('./map-growth.ts');
  const { Registry } = await import('prom-client');
  const services = new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, 100_000);
  const backends = new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, 100_000);
  const sizes = { services: 64, backends: 64, affinity: 64, ct: 64 };
  const table = new LbTable({ services: sizes.services, backends: sizes.backends });
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const growths: object[] = [];
  let sync: LbSync | undefined;
  const growth = new MapGrowth({
    sizes: () => ({ ...sizes }),
    grow: async (target) => {
      growths.push(target);
      Object.assign(sizes, target);
      return { maps: [], ms: 0, carried: 0 };
    },
    fixed: {}, highWater: 0.8, log, registry: new Registry(),
    grown: (s) => sync!.capacityChanged({ services: s.services, backends: s.backends }),
  });
  sync = new LbSync({ table, reconciler: new LbReconciler({ services, backends }), node: { name: 'n1', addresses: [] }, log, reserve: (need) => growth.ensure(need) });
  const svcs = Array.from({ length: 500 }, (_, i) => svc(`s${i}`, { clusterIPs: [`10.96.${i >> 8}.${i & 255}`] }));
  const slices = svcs.map((s, i) => slice(s.name, [`10.1.${i >> 8}.${i & 255}`, `10.2.${i >> 8}.${i & 255}`]));
  sync.replaceAll(svcs, slices);
  await sync.flushed();
  // 500 Services: a master, 2 slots and a VIP marker each = 2 000 service entries; 1 000 backends.
  assert.deepEqual(growths, [{ services: grownSize(64, 2000, 0.8), backends: grownSize(64, 1000, 0.8) }], 'one growth, sized for the whole batch');
  assert.deepEqual([sizes.services, sizes.backends], [4096, 2048]);
  assert.equal(backends.entries.size, 1000);
  assert.equal(services.entries.size, 2000);
  assert.equal(lines.filter((l) => /do not fit/.test(l.msg ?? '')).length, 0, 'nothing was refused');
  // A later Service that fits adds no growth; one that passes the mark grows again.
  sync.setService('default/big', svc('big', { clusterIPs: ['10.97.0.1'] }));
  sync.setSlice('default/big-1', slice('big', Array.from({ length: 700 }, (_, i) => `10.3.${i >> 8}.${i & 255}`)));
  await sync.flushed();
  assert.equal(growths.length, 2);
  assert.equal(sizes.backends, 4096);
  assert.equal(backends.entries.size, 1700);
  sync.stop();
});

test('anticipate: while gated, room for the Services listed so far times the scale is reserved at once; not once open', async () => {
  const services = new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, 1000);
  const backends = new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, 1000);
  const asked: { services: number; backends: number }[] = [];
  const sync = new LbSync({
    table: new LbTable({ services: 1000, backends: 1000 }), reconciler: new LbReconciler({ services, backends }), node: { name: 'n1', addresses: [] },
    log: pino({ level: 'silent' }), gated: true, reserve: async (need) => void asked.push(need),
  });
  // A tenth of the lists: 10 Services of 2 endpoints (a master, 2 slots and a VIP marker each).
  for (let i = 0; i < 10; i++) {
    sync.setService(`default/s${i}`, svc(`s${i}`, { clusterIPs: [`10.96.0.${i + 1}`] }));
    sync.setSlice(`default/s${i}-1`, slice(`s${i}`, [`10.1.0.${i + 1}`, `10.2.0.${i + 1}`]));
  }
  sync.anticipate(10);
  assert.deepEqual(asked, [{ services: 400, backends: 200 }]);
  assert.equal(services.entries.size, 0, 'nothing written');
  sync.open();
  await sync.flushed();
  sync.anticipate(10);
  assert.equal(asked.length, 2, 'only the first sync\'s own reserve');
  assert.deepEqual(asked[1], { services: 40, backends: 20 });
  sync.stop();
});
