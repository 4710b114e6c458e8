// The L7 proxy over loopback, with a real upstream server: what a client
// sees for allowed, denied and bad requests, and that nothing is buffered
// whole or left half-open.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type IncomingMessage, type Server, Agent, createServer, request } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';

import { type AccessEvent, L7Proxy } from './proxy.ts';
import { L7SpliceProxy } from './splice-proxy.ts';
import { rawExchange } from './test-client.ts';
import type { FlowChecks, HttpRule } from './types.ts';

const rule = (r: Partial<HttpRule>, i: number): HttpRule => ({ policy: 'hnp:ns/web', rule: `ingress[0].ports[0].http[${i}]`, ...r });
const RULES: HttpRule[] = [
  rule({ method: 'GET', path: { kind: 'prefix', value: '/public/' } }, 0),
  rule({ method: 'POST', path: { kind: 'exact', value: '/upload' } }, 1),
  rule({ method: 'GET', path: { kind: 'regex', value: '/items/[0-9]+' } }, 2),
  rule({ method: 'GET', host: 'admin.example', headers: [{ name: 'x-token' }] }, 3),
  rule({ method: 'GET', path: { kind: 'exact', value: '/ws' }, headers: [{ name: 'upgrade', value: 'websocket' }] }, 4),
  rule({ method: 'GET', path: { kind: 'exact', value: '/ws-no' } }, 5),
];

interface Res {
  status: number;
  body: string;
  headers: IncomingMessage['headers'];
}

function get(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; agent?: Agent; body?: Buffer } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (b: Buffer) => chunks.push(b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(opts.body);
  });
}

/** Raw bytes to the proxy; everything it answers until it closes (or timeoutMs). */
const raw = async (port: number, data: string | Buffer, timeoutMs = 2000): Promise<string> => (await rawExchange(port, data, timeoutMs)).text;

/** Both implementations, each against the same tests (a registry each). */
const IMPLS: [string, typeof L7Proxy | typeof L7SpliceProxy][] = [['L7Proxy', L7Proxy], ['L7SpliceProxy', L7SpliceProxy]];

for (const [name, Impl] of IMPLS) describe(`L7 proxy (loopback): ${name}`, () => {
  let upstream: Server;
  let upPort = 0;
  let port = 0;
  let proxy: L7Proxy | L7SpliceProxy;
  const seen: string[] = [];
  const events: AccessEvent[] = [];
  const registry = new Registry();
  let upstreamDown = false;

  before(async () => {
    upstream = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url === '/public/big') {
        // 16 MiB answer, written with backpressure
        let left = 16 << 20;
        const chunk = Buffer.alloc(64 << 10, 'b');
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const pump = (): void => {
          while (left > 0) {
            left -= chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      if (req.url === '/public/silent') return; // never answers
      if (req.url === '/public/die') {
        res.writeHead(200, { 'content-length': '1000' });
        res.write('partial');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      let n = 0;
      req.on('data', (b: Buffer) => (n += b.length));
      req.on('end', () => res.end(`${req.method} ${req.url} host=${req.headers.host} bytes=${n} te=${req.headers['transfer-encoding'] ?? ''}`));
    });
    upstream.on('upgrade', (req, socket: Socket, head: Buffer) => {
      seen.push(`UPGRADE ${req.url}`);
      if (req.url === '/ws-no') {
        // declines the upgrade and would go on reading: whatever reaches it now is recorded
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno');
        socket.on('data', (b: Buffer) => seen.push(`RAW ${b.toString()}`));
        socket.on('end', () => socket.destroy());
        socket.on('error', () => {});
        return;
      }
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
      if (head.length) socket.write(head);
      socket.pipe(socket);
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    upPort = (upstream.address() as AddressInfo).port;
    const flow = (): FlowChecks => ({
      src: { ip: '10.244.0.5', port: 40000, identity: 1000, pod: 'ns/client' },
      dst: { ip: '127.0.0.1', port: upPort, identity: 1001, pod: 'ns/web' },
      checks: [{ direction: 'ingress', endpoint: 'ns/web', rules: RULES }],
    });
    proxy = new Impl({
      resolve: () => flow(),
      connectUpstream: () => connect(upstreamDown ? 1 : upPort, '127.0.0.1'),
      log: pino({ level: 'silent' }),
      registry,
      onAccess: (e) => events.push(e),
      headersTimeoutMs: 400,
      maxHeaderSize: 4096,
      upstreamAnswerTimeoutMs: 1500,
    });
    port = await proxy.listen(0, '127.0.0.1');
  });
  after(async () => {
    await proxy?.close();
    upstream?.close();
    upstream?.closeAllConnections();
  });

  test('allowed requests are forwarded with their Host; others get 403 naming the policy', async () => {
    const ok = await get(port, '/public/a?q=1', { headers: { host: 'web.example' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'GET /public/a?q=1 host=web.example bytes=0 te=');
    assert.equal((await get(port, '/items/42')).status, 200, 'regex');
    assert.equal((await get(port, '/items/x')).status, 403);
    const denied = await get(port, '/admin');
    assert.equal(denied.status, 403);
    assert.match(denied.body, /no rule of hnp:ns\/web \(ingress of ns\/web\) allows GET \/admin/);
    assert.equal((await get(port, '/', { headers: { host: 'admin.example' } })).status, 403, 'host without the header');
    assert.equal((await get(port, '/', { headers: { host: 'admin.example:80', 'x-token': 't' } })).status, 200, 'host and header');
    assert.equal((await get(port, '/upload', { method: 'PUT', body: Buffer.from('x') })).status, 403, 'method');
    assert.ok(!seen.includes('GET /admin'), 'a denied request never reaches the server');
  });

  test('keep-alive: allowed, denied, allowed on one connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    agent.on('free', (s: Socket) => ports.add(s.localPort ?? 0));
    assert.equal((await get(port, '/public/1', { agent })).status, 200);
    assert.equal((await get(port, '/secret', { agent })).status, 403);
    assert.equal((await get(port, '/public/2', { agent })).status, 200);
    assert.equal(ports.size, 1, 'one client connection throughout');
    agent.destroy();
  });

  test('pipelined requests are answered in order', async () => {
    const out = await raw(port, 'GET /public/p1 HTTP/1.1\r\nhost: a\r\n\r\nGET /nope HTTP/1.1\r\nhost: a\r\n\r\nGET /public/p2 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '403', '200']);
    assert.ok(out.indexOf('/public/p1') < out.indexOf('/public/p2'));
  });

  test('bodies stream both ways: 16 MiB up, 16 MiB down, chunked kept chunked', async () => {
    const up = await get(port, '/upload', { method: 'POST', body: Buffer.alloc(16 << 20, 'a') });
    assert.equal(up.body, `POST /upload host=127.0.0.1:${port} bytes=${16 << 20} te=`);
    const down = await get(port, '/public/big');
    assert.equal(down.body.length, 16 << 20);
    const chunked = await raw(port, 'POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    assert.match(chunked, /bytes=5 te=chunked/);
    const inner = 'GET /admin HTTP/1.1\r\nhost: a\r\n\r\n';
    const getBody = await raw(port, `GET /public/te HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`);
    assert.match(getBody, new RegExp(`GET /public/te host=a bytes=${inner.length} te=chunked`), 'a chunked GET body stays a body');
    const clBody = await raw(port, `GET /public/cl HTTP/1.1\r\nhost: a\r\nconnection: content-length, close\r\ncontent-length: ${inner.length}\r\n\r\n${inner}`);
    assert.match(clBody, new RegExp(`GET /public/cl host=a bytes=${inner.length} `), 'Connection naming Content-Length does not unframe the body');
    assert.ok(!seen.includes('GET /admin'), 'never a request of its own');
  });

  test('Expect: 100-continue is judged before the 100; a refused one gets 403 and its body is never read', async () => {
    const ok = await raw(port, 'POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n', 300);
    assert.match(ok, /^HTTP\/1\.1 100 Continue/);
    const no = await raw(port, 'POST /other HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n');
    assert.match(no, /^HTTP\/1\.1 403/);
    assert.doesNotMatch(no, /100 Continue/);
  });

  test('an upgrade the rules allow is joined raw; one they deny is refused; one declined or not websocket is never joined', async () => {
    const ok = await raw(port, 'GET /ws HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nping', 300);
    assert.match(ok, /^HTTP\/1\.1 101/);
    assert.match(ok, /ping$/, 'bytes after the 101 are echoed through');
    const no = await raw(port, 'GET /chat HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
    assert.match(no, /^HTTP\/1\.1 403/);
    assert.ok(!seen.includes('UPGRADE /chat'));
    const declined = await raw(port, 'GET /ws-no HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n', 300);
    assert.match(declined, /^HTTP\/1\.1 200 OK\r\nconnection: close\r\n/);
    assert.match(declined, /\r\n\r\nno$/);
    const sneak = connect(port, '127.0.0.1');
    sneak.on('error', () => {});
    sneak.write('GET /ws-no HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    sneak.write('GET /admin HTTP/1.1\r\nhost: a\r\n\r\n');
    await Promise.race([once(sneak, 'close'), new Promise((r) => setTimeout(r, 500))]);
    sneak.destroy();
    assert.ok(!seen.some((x) => x.startsWith('RAW')), 'after a declined upgrade, nothing more reaches the server unjudged');
    const h2c = await raw(port, 'GET /public/h2c HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n', 500);
    assert.match(h2c, /^HTTP\/1\.1 200 OK\r\nconnection: close\r\n/, 'h2c: answered in HTTP/1.1, never switched');
    assert.match(h2c, /GET \/public\/h2c host=a/);
    assert.ok(seen.includes('GET /public/h2c') && !seen.includes('UPGRADE /public/h2c'), 'sent on without its Upgrade');
    assert.match(await raw(port, 'POST /upload HTTP/1.1\r\nhost: a\r\nconnection: Upgrade\r\nupgrade: h2c\r\ncontent-length: 3\r\n\r\nabc'), /^HTTP\/1\.1 400/);
  });

  test('bad input: malformed, smuggling, oversize headers, dot segments, HTTP/2 preface', async () => {
    assert.match(await raw(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
    const before = seen.length;
    const smuggle = await raw(port, 'POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nhost: a\r\n\r\n');
    assert.match(smuggle, /^HTTP\/1\.1 400/);
    assert.equal(seen.length, before, 'the server saw neither request');
    assert.match(await raw(port, `GET /public/a HTTP/1.1\r\nhost: a\r\nx-big: ${'x'.repeat(8000)}\r\n\r\n`), /^HTTP\/1\.1 431/);
    const dots = await get(port, '/public/../admin');
    assert.equal(dots.status, 400);
    assert.match(dots.body, /dot.segment/);
    assert.equal((await get(port, '/public/%2e%2e/admin')).status, 400);
    assert.match(await raw(port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(await raw(port, 'CONNECT web.example:443 HTTP/1.1\r\nhost: web.example:443\r\n\r\n'), /^HTTP\/1\.1 400[^]*CONNECT is not passed on/);
  });

  test('a slow client sending headers byte by byte is cut off while others are served', async () => {
    const slow = connect(port, '127.0.0.1');
    await once(slow, 'connect');
    const text = 'GET /public/slow HTTP/1.1\r\nhost: a\r\nx-pad: ' + 'y'.repeat(40);
    let i = 0;
    const t = setInterval(() => {
      if (!slow.destroyed && i < text.length) slow.write(text[i++]!);
    }, 50);
    const got: Buffer[] = [];
    slow.on('data', (b: Buffer) => got.push(b));
    slow.on('error', () => {});
    assert.equal((await get(port, '/public/fast')).status, 200, 'another client is served meanwhile');
    await Promise.race([once(slow, 'close'), new Promise((r) => setTimeout(r, 3000))]);
    clearInterval(t);
    assert.ok(slow.destroyed || slow.readableEnded, 'the slow client was cut off');
    assert.match(Buffer.concat(got).toString(), /^(HTTP\/1\.1 408|$)/);
    assert.ok(!seen.includes('GET /public/slow'));
    slow.destroy();
  });

  test('upstream unreachable: 503; upstream dying mid-answer: the client connection is closed', async () => {
    upstreamDown = true;
    try {
      const r = await get(port, '/public/x');
      assert.equal(r.status, 503);
      assert.match(r.body, /unreachable/);
    } finally {
      upstreamDown = false;
    }
    await assert.rejects(get(port, '/public/die'), 'a cut answer is an error, not a short body');
    const t0 = performance.now();
    const silent = await get(port, '/public/silent');
    assert.equal(silent.status, 504);
    assert.match(silent.body, /did not answer within 1500 ms/);
    assert.ok(performance.now() - t0 < 3000);
  });

  test('a connectUpstream that throws: 503, and the proxy goes on', async () => {
    const p2 = new Impl({
      resolve: () => ({ src: { ip: '10.244.0.5', port: 1, identity: 1 }, dst: { ip: '127.0.0.1', port: upPort, identity: 2 }, checks: [{ direction: 'ingress', endpoint: 'ns/web', rules: 'all' }] }),
      connectUpstream: () => { throw new Error('no route'); },
      log: pino({ level: 'silent' }),
      registry: new Registry(),
    });
    const p2port = await p2.listen(0, '127.0.0.1');
    try {
      const r = await get(p2port, '/x');
      assert.equal(r.status, 503);
      assert.match(r.body, /no route/);
      assert.equal((await get(p2port, '/y')).status, 503, 'still serving');
    } finally {
      await p2.close();
    }
  });

  test('a keep-alive connection follows a policy change: its checks are resolved again before the next request', async () => {
    let gen = 1;
    let rules: HttpRule[] | 'all' = [rule({ method: 'GET', path: { kind: 'prefix', value: '/a' } }, 0)];
    let resolved = 0;
    const p2 = new Impl({
      resolve: () => {
        resolved++;
        return { src: { ip: '10.244.0.5', port: 1, identity: 1 }, dst: { ip: '127.0.0.1', port: upPort, identity: 2 }, checks: [{ direction: 'ingress', endpoint: 'ns/web', rules }] };
      },
      generation: () => gen,
      connectUpstream: () => connect(upPort, '127.0.0.1'),
      log: pino({ level: 'silent' }),
      registry: new Registry(),
    });
    const p2port = await p2.listen(0, '127.0.0.1');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await get(p2port, '/a1', { agent })).status, 200);
      assert.equal((await get(p2port, '/b1', { agent })).status, 403);
      assert.equal(resolved, 1, 'same generation: resolved once for the connection');
      rules = [rule({ method: 'GET', path: { kind: 'prefix', value: '/b' } }, 0)];
      gen = 2;
      const denied = await get(p2port, '/a2', { agent });
      assert.equal(denied.status, 403, 'the new rules apply on the same connection');
      assert.equal((await get(p2port, '/b2', { agent })).status, 200);
      assert.equal(resolved, 2);
      gen = 3;
      rules = [];
      assert.equal((await get(p2port, '/b3', { agent })).status, 403, 'no rule left: refused');
    } finally {
      agent.destroy();
      await p2.close();
    }
  });

  test('past maxConnections a new client connection is closed at accept and counted; the open ones are served', async () => {
    const reg = new Registry();
    const p2 = new Impl({
      resolve: () => ({ src: { ip: '10.244.0.5', port: 1, identity: 1 }, dst: { ip: '127.0.0.1', port: upPort, identity: 2 }, checks: [{ direction: 'ingress', endpoint: 'ns/web', rules: 'all' }] }),
      connectUpstream: () => connect(upPort, '127.0.0.1'),
      log: pino({ level: 'silent' }),
      registry: reg,
      maxConnections: 1,
    });
    const p2port = await p2.listen(0, '127.0.0.1');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await get(p2port, '/one', { agent })).status, 200);
      await assert.rejects(get(p2port, '/two'), /ECONNRESET|socket hang up/);
      assert.equal((await get(p2port, '/three', { agent })).status, 200, 'the open connection still served');
      assert.match(await reg.metrics(), /hypha_l7_connections_refused_total 1/);
    } finally {
      agent.destroy();
      await p2.close();
    }
  });

  test('Connection: close: the client closes first (no TIME_WAIT at the node); a client that does not is closed after 2 s', async () => {
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write('GET /public/c HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    let text = '';
    let endedAt = 0;
    s.on('data', (b: Buffer) => (text += b.toString()));
    s.on('end', () => (endedAt = performance.now()));
    await new Promise((r) => setTimeout(r, 400));
    assert.match(text, /^HTTP\/1\.1 200[\s\S]*GET \/public\/c/, 'the whole answer came');
    assert.equal(endedAt, 0, 'and no FIN from the proxy: it waits for the client to close');
    const t0 = performance.now();
    s.end();
    await once(s, 'close');
    assert.ok(endedAt > 0 && endedAt - t0 < 300, 'the proxy closes right after the client');
    // A client that keeps its side open: closed by the proxy after 2 s.
    const lazy = connect(port, '127.0.0.1');
    await once(lazy, 'connect');
    const t1 = performance.now();
    lazy.write('GET /public/lazy HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    lazy.resume();
    await once(lazy, 'end');
    const waited = performance.now() - t1;
    lazy.destroy();
    assert.ok(waited > 1500 && waited < 4000, `closed by the proxy after ${Math.round(waited)} ms`);
    // An HTTP/1.0 client may read to the close: closed at once.
    const old = await rawExchange(port, 'GET /public/old HTTP/1.0\r\nhost: a\r\n\r\n', 1500);
    assert.ok(old.closed, 'closed by the proxy at once');
    assert.match(old.text, /GET \/public\/old/);
  });

  test('access events and counters', async () => {
    events.length = 0;
    await get(port, '/public/e');
    await get(port, '/denied');
    assert.deepEqual(events.map((e) => [e.method, e.path, e.verdict, e.status, e.rule ?? '']), [
      ['GET', '/public/e', 'allow', 200, 'ingress[0].ports[0].http[0]'],
      ['GET', '/denied', 'deny', 403, ''],
    ]);
    assert.equal(events[0]!.src.pod, 'ns/client');
    const text = await registry.metrics();
    assert.match(text, /hypha_l7_requests_total\{verdict="deny",policy="hnp:ns\/web"\} \d+/);
    assert.match(text, /hypha_l7_requests_total\{verdict="allow",policy="hnp:ns\/web"\} \d+/);
  });
});
