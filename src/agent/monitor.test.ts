// The agent's monitor stream over a real HTTP server, with records pushed in
// place of the ring buffer: events reach clients by type, the datapath's drop
// events are on exactly while a client is attached, a client that does not
// read gets no more than a bounded backlog and is told how many it missed,
// and ring overruns are passed on; the L7 proxy's access events (emitL7)
// reach clients of l7 and all only, without switching drop events on.
import assert from 'node:assert/strict';
import { type IncomingMessage, get } from 'node:http';
import type { Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { type DropEvent, DropReason, Hook } from '../abi/abi.gen.ts';
import { Monitor } from './monitor.ts';
import type { AccessEvent } from '../l7/proxy.ts';
import { type DropMonitorEvent, type L7MonitorEvent, type MonitorEvent, type MonitorLine, dropEventCodec, formatLine } from './monitor-event.ts';
import { serverPort, startServer } from './server.ts';

function record(reason: number, sport: number): Uint8Array {
  const e: DropEvent = {
    ts_ns: process.hrtime.bigint(), reason, ifindex: 3, saddr: '10.244.1.5', daddr: '10.244.2.7', sport, dport: 80, proto: 6,
    hook: Hook.FROM_POD, svc_id: 0, src_identity: 0, dst_identity: 0,
  };
  return dropEventCodec.encode(e);
}

/** A client of GET /monitor: its lines as they come. */
class Reader {
  readonly lines: MonitorLine[] = [];
  res!: IncomingMessage;
  #rest = '';
  static async open(port: number, query: string): Promise<Reader> {
    const r = new Reader();
    r.res = await new Promise((resolve, reject) => get({ host: '127.0.0.1', port, path: `/monitor${query}` }, resolve).on('error', reject));
    r.res.setEncoding('utf8');
    r.res.on('data', (chunk: string) => {
      r.#rest += chunk;
      let nl: number;
      while ((nl = r.#rest.indexOf('\n')) >= 0) {
        r.lines.push(JSON.parse(r.#rest.slice(0, nl)) as MonitorLine);
        r.#rest = r.#rest.slice(nl + 1);
      }
    });
    return r;
  }
  events(): DropMonitorEvent[] {
    return this.lines.filter((l): l is DropMonitorEvent => 'type' in l && l.type === 'drop');
  }
  l7(): L7MonitorEvent[] {
    return this.lines.filter((l): l is L7MonitorEvent => 'type' in l && l.type === 'l7');
  }
  all(): MonitorEvent[] {
    return this.lines.filter((l): l is MonitorEvent => 'type' in l);
  }
  close(): void {
    this.res.destroy();
  }
}

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('monitor stream', () => {
  let server: Server;
  let monitor: Monitor;
  let push: (data: Uint8Array) => void = () => {};
  let ringLost = 0n;
  const active: boolean[] = [];
  const registry = new Registry();
  let port = 0;

  before(async () => {
    monitor = new Monitor({
      records: (onRecord) => {
        push = onRecord;
        return { close: () => (push = () => {}) };
      },
      ringLost: () => ringLost,
      sources: { node: 'n1', pod: (ip) => (ip === '10.244.1.5' ? 'x/b' : undefined), identity: () => undefined, service: () => undefined },
      onActiveChange: (a) => active.push(a),
      log: pino({ level: 'silent' }),
      registry,
      clientBufferBytes: 64 << 10,
      ringLossPollMs: 20,
    });
    monitor.start();
    server = await startServer('127.0.0.1', 0, {
      ready: () => true, status: () => ({}), registry,
      streams: { '/monitor': (req, res, q) => monitor.handle(req, res, q) },
    });
    port = serverPort(server);
  });

  after(async () => {
    monitor.stop();
    await new Promise((r) => server.close(r));
  });

  test('events reach clients by type; events are on while a client is attached', async () => {
    assert.equal(monitor.active, false);
    const all = await Reader.open(port, '?type=drop');
    await until('start line', () => all.lines.length === 1);
    assert.deepEqual(all.lines[0], { monitor: { node: 'n1', type: 'drop' } });
    assert.deepEqual(active, [true], 'switched on before the first line');
    const pol = await Reader.open(port, '?type=policy-drop');
    await until('start line', () => pol.lines.length === 1);
    assert.deepEqual(active, [true], 'a second client changes nothing');
    push(record(DropReason.NO_BACKEND, 1));
    push(record(DropReason.POLICY_EGRESS, 2));
    await until('events', () => all.events().length === 2 && pol.events().length === 1);
    assert.deepEqual(all.events().map((e) => [e.reason, e.src.port, e.src.pod]), [['NO_BACKEND', 1, 'x/b'], ['POLICY_EGRESS', 2, 'x/b']]);
    assert.deepEqual(pol.events().map((e) => e.reason), ['POLICY_EGRESS']);
    all.close();
    await until('one client left', () => monitor.clients === 1);
    assert.deepEqual(active, [true]);
    pol.close();
    await until('no client', () => !monitor.active);
    assert.deepEqual(active, [true, false]);
  });

  test('a bad type is refused with the field named', async () => {
    const res = await new Promise<IncomingMessage>((resolve) => get({ host: '127.0.0.1', port, path: '/monitor?type=l8' }, resolve));
    let body = '';
    for await (const c of res) body += String(c);
    assert.deepEqual([res.statusCode, body], [400, 'type "l8" is not one of drop, policy-drop, l7, all\n']);
    assert.equal(monitor.active, false);
  });

  test('a client that stops reading gets a bounded backlog, then how many it missed', async () => {
    const r = await Reader.open(port, '');
    await until('start line', () => r.lines.length === 1);
    r.res.pause();
    const total = 50_000; // about 18 MB of lines
    for (let i = 0; i < total; i++) push(record(DropReason.NO_BACKEND, i % 65536));
    r.res.resume();
    await until('every event or its loss accounted for', () => {
      const lost = r.lines.reduce((n, l) => n + ('lost' in l && l.cause === 'client' ? l.lost : 0), 0);
      return r.events().length + lost === total;
    }, 20_000);
    const lost = r.lines.filter((l) => 'lost' in l);
    assert.ok(lost.length >= 1, 'told it missed events');
    assert.ok(r.events().length < total / 2, `${r.events().length} of ${total} sent: the backlog was bounded`);
    const metrics = await registry.getSingleMetricAsString('hypha_monitor_events_lost_total');
    assert.match(metrics, new RegExp(`cause="client"} ${total - r.events().length}\\b`));
    r.close();
    await until('no client', () => !monitor.active);
  });

  test('events the ring had no room for are passed on to the clients attached', async () => {
    ringLost = 100n; // before this client: not its loss
    const r = await Reader.open(port, '?type=all');
    await until('start line', () => r.lines.length === 1);
    ringLost = 107n;
    await until('ring loss line', () => r.lines.some((l) => 'lost' in l));
    assert.deepEqual(r.lines.filter((l) => 'lost' in l), [{ lost: 7, cause: 'ring' }]);
    assert.match(await registry.getSingleMetricAsString('hypha_monitor_events_lost_total'), /cause="ring"} 107\b/);
    r.close();
    await until('no client', () => !monitor.active);
  });

  const access = (path: string, verdict: AccessEvent['verdict'], status: number): AccessEvent => ({
    time: new Date().toISOString(), src: { ip: '10.244.1.5', port: 40000, identity: 1001 }, dst: { ip: '10.244.2.7', port: 80, identity: 1003, pod: 'y/a' },
    method: 'GET', path, host: 'web.y', verdict, status, policy: 'hnp:y/web', ...(verdict === 'allow' ? { rule: 'ingress[0].ports[0].http[0]' } : {}), latencyMs: 0.5,
  });

  test('access events reach clients of l7 and all, not of drop or policy-drop; an l7 client does not switch drop events on', async () => {
    const countL7 = async () => /type="l7"} (\d+)/.exec(await registry.getSingleMetricAsString('hypha_monitor_events_total'))?.[1] ?? '0';
    const before = await countL7();
    monitor.emitL7(access('/nobody', 'allow', 200)); // no client: nothing sent, nothing counted
    assert.equal(await countL7(), before);
    active.length = 0;
    const l7 = await Reader.open(port, '?type=l7');
    await until('start line', () => l7.lines.length === 1);
    assert.deepEqual(l7.lines[0], { monitor: { node: 'n1', type: 'l7' } });
    assert.deepEqual([monitor.active, monitor.clients, active], [false, 1, []], 'drop events stay off for an l7 client alone');
    const pol = await Reader.open(port, '?type=policy-drop');
    const drop = await Reader.open(port, '?type=drop');
    const all = await Reader.open(port, '?type=all');
    await until('start lines', () => pol.lines.length === 1 && drop.lines.length === 1 && all.lines.length === 1);
    assert.deepEqual(active, [true]);
    monitor.emitL7(access('/api/v1', 'allow', 200));
    monitor.emitL7(access('/admin', 'deny', 403));
    push(record(DropReason.POLICY_INGRESS, 3));
    await until('events', () => l7.l7().length === 2 && all.all().length === 3 && pol.events().length === 1 && drop.events().length === 1);
    assert.deepEqual(l7.l7().map((e) => [e.path, e.verdict, e.status, e.src.pod, e.dst.pod]), [['/api/v1', 'allow', 200, 'x/b', 'y/a'], ['/admin', 'deny', 403, 'x/b', 'y/a']]);
    assert.equal(l7.events().length, 0, 'no drops for an l7 client');
    assert.deepEqual(all.all().map((e) => e.type).sort(), ['drop', 'l7', 'l7']);
    assert.deepEqual([pol.l7().length, drop.l7().length], [0, 0], 'no access events for drop and policy-drop clients');
    assert.match(formatLine(l7.l7()[1]!), /L7 DENY 403 x\/b 10\.244\.1\.5:40000 \[identity 1001\] -> y\/a 10\.244\.2\.7:80 \[identity 1003\]  GET web\.y\/admin  denied: no rule of hnp:y\/web allows it/);
    assert.equal(Number(await countL7()) - Number(before), 2);
    for (const r of [pol, drop, all]) r.close();
    await until('drop clients gone', () => !monitor.active && monitor.clients === 1);
    assert.deepEqual(active, [true, false], 'switched off when the last drop client left, the l7 client still attached');
    monitor.emitL7(access('/later', 'allow', 204));
    await until('event after', () => l7.l7().length === 3);
    l7.close();
    await until('no client', () => monitor.clients === 0);
  });
});
