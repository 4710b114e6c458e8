// The L7 proxy at its edges, over loopback with a real upstream: memory
// under large streamed bodies, header limits, what a transparent proxy must
// not add or let through (hop-by-hop headers, a denied request's body read
// as a request), targets other than origin-form, timeouts, the connection
// gauge. proxy.test.ts has the main paths.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { type IncomingMessage, type Server, createServer, request } from 'node:http';
import { connect as h2connect } from 'node:http2';
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
  rule({ method: 'POST', path: { kind: 'prefix', value: '/upload' } }, 1),
  rule({ method: 'GET', path: { kind: 'exact', value: '/' }, host: 'web.example' }, 2),
];

const raw = rawExchange;

/** Both implementations, each against the same tests (a registry each). */
const IMPLS: [string, typeof L7Proxy | typeof L7SpliceProxy][] = [['L7Proxy', L7Proxy], ['L7SpliceProxy', L7SpliceProxy]];

for (const [name, Impl] of IMPLS) describe(`L7 proxy edges (loopback): ${name}`, () => {
  let upstream: Server;
  let upPort = 0;
  let port = 0;
  let proxy: L7Proxy | L7SpliceProxy;
  /** What the upstream saw: 'METHOD url' and the headers. */
  const seen: { line: string; headers: IncomingMessage['headers']; raw: string[] }[] = [];
  const events: AccessEvent[] = [];
  const registry = new Registry();
  let dialTo: () => Socket;
  /** stall.up: the next /upload/stall request is not read until release(). */
  const stall: { up: boolean; release?: () => void } = { up: false };
  let downWritten = 0;
  /** The proxy's side of every client connection (seen from the test). */
  const serverSockets = new Set<Socket>();
  /** The next connection's flow is unknown to resolve. */
  let refuseNext = false;

  before(async () => {
    upstream = createServer((req, res) => {
      seen.push({ line: `${req.method} ${req.url}`, headers: req.headers, raw: req.rawHeaders });
      if (req.url?.startsWith('/public/big/')) {
        // a body of the size in the path, written with backpressure
        let left = Number(req.url.slice('/public/big/'.length));
        const chunk = Buffer.alloc(64 << 10, 'b');
        res.writeHead(200, { 'content-length': String(left) });
        const pump = (): void => {
          while (left > 0) {
            const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= c.length;
            downWritten += c.length;
            if (!res.write(c)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      if (req.url === '/public/silent') return; // never answers
      if (req.url === '/public/chunked') {
        res.writeHead(200, { 'transfer-encoding': 'chunked' });
        res.write('one,');
        setTimeout(() => res.end('two'), 20);
        return;
      }
      let n = 0;
      if (req.url === '/upload/stall' && stall.up) {
        stall.up = false;
        req.pause();
        stall.release = () => req.resume();
      }
      req.on('data', (b: Buffer) => (n += b.length));
      req.on('end', () => res.end(`${req.method} ${req.url} bytes=${n}`));
    });
    upstream.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      // a server that speaks h2c would switch here; after this the bytes are HTTP/2, which no rule judges
      seen.push({ line: `UPGRADE ${req.headers.upgrade} ${req.url}`, headers: req.headers, raw: req.rawHeaders });
      socket.end('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n');
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    upPort = (upstream.address() as AddressInfo).port;
    dialTo = () => connect(upPort, '127.0.0.1');
    const flow = (): FlowChecks => ({
      src: { ip: '10.244.0.5', port: 40000, identity: 1000, pod: 'ns/client' },
      dst: { ip: '127.0.0.1', port: upPort, identity: 1001, pod: 'ns/web' },
      checks: [{ direction: 'ingress', endpoint: 'ns/web', rules: RULES }],
    });
    proxy = new Impl({
      resolve: () => {
        if (!refuseNext) return flow();
        refuseNext = false;
        return undefined;
      },
      connectUpstream: () => dialTo(),
      log: pino({ level: 'silent' }),
      registry,
      onAccess: (e) => events.push(e),
      headersTimeoutMs: 1000,
      connectTimeoutMs: 300,
      upstreamAnswerTimeoutMs: 500,
      maxHeaderSize: 4096,
      maxHeadersCount: 20,
    });
    port = await proxy.listen(0, '127.0.0.1');
    proxy.server.on('connection', (sock: Socket) => {
      serverSockets.add(sock);
      sock.once('close', () => serverSockets.delete(sock));
    });
  });
  after(async () => {
    for (const sock of serverSockets) sock.destroy(); // what a test left open must not hold the proxy's close
    await proxy?.close();
    upstream?.close();
  });

  test('64 MiB up and 64 MiB down stream with backpressure: a side that stops reading stops the other', async (t) => {
    const size = 64 << 20;
    const chunk = Buffer.alloc(64 << 10, 'a');
    /** Writes until the socket stays blocked for 300 ms (or all is written); the bytes written. */
    const writeUntilStuck = async (s: Socket, total: number, from: number): Promise<number> => {
      let sent = from;
      while (sent < total) {
        sent += chunk.length;
        if (!s.write(chunk)) {
          const drained = await Promise.race([once(s, 'drain').then(() => true), new Promise((r) => setTimeout(() => r(false), 300))]);
          if (!drained) return sent;
        }
      }
      return sent;
    };

    // up: the upstream does not read; the client is held back
    stall.up = true;
    const c = connect(port, '127.0.0.1');
    await once(c, 'connect');
    let answer = '';
    c.on('data', (b: Buffer) => (answer += b));
    c.write(`POST /upload/stall HTTP/1.1\r\nhost: a\r\ncontent-length: ${size}\r\nconnection: close\r\n\r\n`);
    const before = await writeUntilStuck(c, size, 0);
    assert.ok(before < 32 << 20, `the client wrote ${(before / 2 ** 20).toFixed(1)} MiB before it was held back`);
    t.diagnostic(`upstream not reading: the client was held back after ${(before / 2 ** 20).toFixed(1)} MiB`);
    stall.release?.();
    let sent = before;
    while (sent < size) sent = await writeUntilStuck(c, size, sent);
    await once(c, 'close');
    assert.match(answer, new RegExp(`POST /upload/stall bytes=${size}$`));

    // down: the client does not read; the upstream is held back
    const d = connect(port, '127.0.0.1');
    await once(d, 'connect');
    d.pause();
    downWritten = 0;
    d.write(`GET /public/big/${size} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n`);
    let last = -1;
    while (downWritten !== last) {
      last = downWritten;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(downWritten < 32 << 20, `the upstream wrote ${(downWritten / 2 ** 20).toFixed(1)} MiB before it was held back`);
    t.diagnostic(`client not reading: the upstream was held back after ${(downWritten / 2 ** 20).toFixed(1)} MiB`);
    let got = 0;
    d.on('data', (b: Buffer) => (got += b.length));
    d.resume();
    await once(d, 'close');
    assert.ok(got > size && got < size + 1024, `the client read ${got} bytes`);
  });

  test('a chunked answer is passed on as it comes', async () => {
    const { text } = await raw(port, 'GET /public/chunked HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, /transfer-encoding: chunked/i);
    assert.match(text, /\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n$/);
  });

  test('hop-by-hop headers stop at the proxy; Host is kept as sent; nothing is added', async () => {
    seen.length = 0;
    const { text } = await raw(port, 'GET /public/h HTTP/1.1\r\nHost: Web.Example:8080\r\nConnection: x-secret, close\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200/);
    const h = seen[0]!.headers;
    assert.equal(h.host, 'Web.Example:8080');
    assert.equal(h['x-kept'], 'yes');
    assert.equal(h['x-secret'], undefined, 'a header the client named in Connection');
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h.te, undefined);
    assert.equal(h['x-forwarded-for'], undefined, 'transparent: no X-Forwarded-For');
    assert.equal(h.via, undefined);
  });

  test('a denied request with a body: the body is never read as a request', async () => {
    seen.length = 0;
    const inner = 'GET /public/smuggled HTTP/1.1\r\nhost: a\r\n\r\n';
    const { text } = await raw(port, `POST /denied HTTP/1.1\r\nhost: a\r\ncontent-length: ${inner.length}\r\n\r\n${inner}GET /public/after HTTP/1.1\r\nhost: a\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 403/);
    assert.ok(!seen.some((s) => s.line.includes('smuggled')), 'the body was not taken for a request');
  });

  // Transfer-Encoding is hop-by-hop, but a body it frames must stay framed:
  // Node's client sends a GET (DELETE, OPTIONS ...) body without a length
  // unless told how, and the upstream would read it as the next request.
  test('a chunked body on a GET stays a body upstream, never a request of its own', async () => {
    seen.length = 0;
    const inner = 'GET /secret HTTP/1.1\r\nhost: a\r\n\r\n';
    for (const method of ['GET', 'DELETE', 'OPTIONS']) {
      const { text } = await raw(port, `${method} /public/te HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`, 600);
      assert.match(text, /^HTTP\/1\.1 (200|400|403)/, method);
    }
    assert.ok(!seen.some((x) => x.line.includes('/secret')), `the upstream saw ${JSON.stringify(seen.map((x) => x.line))}`);
  });

  // Connection may name headers for the next hop to drop; never the ones
  // that frame the body (nor Host): dropping Content-Length leaves a GET's
  // body unframed, read upstream as the next request.
  test("Connection: content-length does not strip the body's framing", async () => {
    seen.length = 0;
    const inner = 'GET /secret HTTP/1.1\r\nhost: a\r\n\r\n';
    const { text } = await raw(port, `GET /public/cl HTTP/1.1\r\nhost: a\r\nconnection: content-length\r\ncontent-length: ${inner.length}\r\n\r\n${inner}`, 600);
    assert.match(text, /^HTTP\/1\.1 (200|400)/);
    assert.ok(!seen.some((x) => x.line.includes('/secret')), `the upstream saw ${JSON.stringify(seen.map((x) => x.line))}`);
  });

  test('a denied large upload gets its 403 (not a reset)', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = request({ host: '127.0.0.1', port, method: 'PUT', path: '/upload', headers: { 'content-length': String(8 << 20) }, agent: false }, (res) => {
        let s = '';
        res.on('data', (b: Buffer) => (s += b));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: s }));
      });
      r.on('error', reject);
      r.end(Buffer.alloc(8 << 20, 'x'));
    });
    assert.equal(res.status, 403);
  });

  test('Expect: 100-continue: an allowed one gets 100, then its answer; a denied one 403 and a close, unread', async () => {
    seen.length = 0;
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write('POST /upload/e HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n');
    const [first] = (await once(s, 'data')) as [Buffer];
    assert.match(first.toString(), /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    s.write('hello');
    const [second] = (await once(s, 'data')) as [Buffer];
    assert.match(second.toString(), /^HTTP\/1\.1 200[\s\S]*POST \/upload\/e bytes=5$/);
    s.destroy();
    const no = await raw(port, 'POST /nope HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n');
    assert.match(no.text, /^HTTP\/1\.1 403/);
    assert.doesNotMatch(no.text, /100 Continue/);
    assert.ok(no.closed, 'the connection is closed: the body it did not ask for is not read');
    assert.ok(!seen.some((x) => x.line === 'POST /nope'));
  });

  test('too many header fields: 431', async () => {
    const many = Array.from({ length: 30 }, (_, i) => `x-h${i}: ${i}\r\n`).join('');
    const { text } = await raw(port, `GET /public/many HTTP/1.1\r\nhost: a\r\n${many}\r\n`);
    assert.match(text, /^HTTP\/1\.1 431/);
    assert.ok(!seen.some((x) => x.line === 'GET /public/many'));
  });

  test('absolute-form http://host/path: judged on its authority, sent upstream origin-form', async () => {
    seen.length = 0;
    const { text } = await raw(port, 'GET http://web.example/ HTTP/1.1\r\nhost: other\r\nconnection: close\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.equal(seen[0]?.line, 'GET /');
    assert.equal(seen[0]?.headers.host, 'web.example');
  });

  test('CONNECT is refused with an answer, not a silent close', async () => {
    const { text, closed } = await raw(port, 'CONNECT web.example:443 HTTP/1.1\r\nhost: web.example:443\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 (400|403)/);
    assert.ok(closed);
  });

  test("OPTIONS * is refused", async () => {
    const { text } = await raw(port, 'OPTIONS * HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 (400|403)/);
  });

  test('HTTP/2 with prior knowledge: refused, and the connection closed', async () => {
    const { text, closed } = await raw(port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00');
    assert.ok(closed);
    assert.ok(/^HTTP\/1\.1 400/.test(text) || text.includes('\x07'), `answered ${JSON.stringify(text.slice(0, 40))}`);
    // a real HTTP/2 client gets an error, never a hang
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const stream = session.request({ ':path': '/public/h2' });
    stream.on('error', () => {});
    await Promise.race([new Promise((r) => session.on('close', r)), new Promise((_, rej) => setTimeout(() => rej(new Error('h2 client hung')), 2000))]);
    session.destroy();
  });

  test('an upstream that does not accept in time: 503 after the connect timeout', async () => {
    // a listener that never accepts, with its queue full: the next SYN goes unanswered
    const py: ChildProcess = spawn('python3', ['-c', [
      'import socket, sys, time',
      's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
      'print(s.getsockname()[1], flush=True)',
      'time.sleep(20)',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
    const fill: Socket[] = [];
    try {
      const [line] = (await once(py.stdout!, 'data')) as [Buffer];
      const stuck = Number(line.toString().trim());
      for (let i = 0; i < 3; i++) {
        const f = connect(stuck, '127.0.0.1');
        f.on('error', () => {});
        fill.push(f);
      }
      await new Promise((r) => setTimeout(r, 100));
      dialTo = () => connect(stuck, '127.0.0.1');
      const t0 = performance.now();
      const { text } = await raw(port, 'GET /public/stuck HTTP/1.1\r\nhost: a\r\n\r\n', 3000);
      assert.match(text, /^HTTP\/1\.1 503/);
      const took = performance.now() - t0;
      assert.ok(took >= 250 && took < 2500, `answered after ${took.toFixed(0)} ms`);
    } finally {
      dialTo = () => connect(upPort, '127.0.0.1');
      for (const f of fill) f.destroy();
      py.kill();
    }
  });

  // Were it passed on, after the upstream's 101 every HTTP/2 stream on the
  // connection (any method, any path) would go unjudged.
  test('an h2c upgrade is not passed on: after a 101 HTTP/2 would go unjudged', async () => {
    seen.length = 0;
    const { text } = await raw(port, 'GET /public/h2c HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n', 800);
    assert.doesNotMatch(text, /^HTTP\/1\.1 101/);
    assert.ok(!seen.some((x) => x.line.startsWith('UPGRADE')), `the upstream saw ${JSON.stringify(seen.map((x) => x.line))}`);
  });

  test('a flow resolve does not know is closed at once, unanswered', async () => {
    seen.length = 0;
    refuseNext = true;
    const { text, closed } = await raw(port, 'GET /public/unknown HTTP/1.1\r\nhost: a\r\n\r\n');
    assert.ok(closed);
    assert.equal(text, '');
    assert.equal(seen.length, 0);
  });

  test('an upstream that never answers: 504 after upstreamAnswerTimeoutMs', async () => {
    const t0 = performance.now();
    const { text } = await raw(port, 'GET /public/silent HTTP/1.1\r\nhost: a\r\n\r\n', 2000);
    assert.match(text, /^HTTP\/1\.1 504/);
    const took = performance.now() - t0;
    assert.ok(took >= 450 && took < 1500, `answered after ${took.toFixed(0)} ms`);
  });

  // After the proxy's own answer and its FIN, a client that never closes its
  // side must not keep the proxy's socket (a descriptor) open.
  test('refusals close fully: a client that keeps its side open is not kept half-open', async () => {
    const cases: [string, string][] = [
      ['malformed', 'GARBAGE\r\n\r\n'],
      ['CONNECT', 'CONNECT web.example:443 HTTP/1.1\r\nhost: web.example:443\r\n\r\n'],
      ['denied upgrade', 'GET /nope HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n'],
      ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
      ['denied with a body', 'POST /nope HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nabc'],
    ];
    const halfOpen: string[] = [];
    for (const [name, data] of cases) {
      const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      s.on('error', () => {});
      await once(s, 'connect');
      let mine: Socket | undefined;
      for (let i = 0; i < 20 && !mine; i++) {
        mine = [...serverSockets].find((x) => x.remotePort === s.localPort);
        if (!mine) await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(mine, name);
      s.on('data', () => {});
      s.write(data);
      await Promise.race([once(s, 'end'), new Promise((r) => setTimeout(r, 1500))]);
      for (let i = 0; i < 10 && !mine.destroyed; i++) await new Promise((r) => setTimeout(r, 100));
      if (!mine.destroyed) halfOpen.push(name);
      s.destroy();
    }
    assert.deepEqual(halfOpen, [], "the proxy's socket still open 1 s after its answer");
  });

  // dialTransparent throws when the client's address cannot be bound (the pod went away)
  test('a connectUpstream that throws: 503, and the proxy goes on', async () => {
    dialTo = () => {
      throw Object.assign(new Error('bind 10.244.0.5: address not available'), { code: 'EADDRNOTAVAIL' });
    };
    try {
      const { text } = await raw(port, 'GET /public/nobind HTTP/1.1\r\nhost: a\r\n\r\n', 1000);
      assert.match(text, /^HTTP\/1\.1 503/);
    } finally {
      dialTo = () => connect(upPort, '127.0.0.1');
    }
    assert.match((await raw(port, 'GET /public/after HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n')).text, /^HTTP\/1\.1 200/);
  });

  test('connections are counted while open, and not after', async () => {
    const gauge = async (): Promise<number> => Number(/hypha_l7_connections (\d+)/.exec(await registry.metrics())?.[1]);
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    await new Promise((r) => setTimeout(r, 50));
    assert.ok((await gauge()) >= 1);
    s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await gauge(), 0);
  });

  test('an HTTP/1.1 request without Host: 400, with its access event', async () => {
    events.length = 0;
    const { text } = await raw(port, 'GET /public/nohost HTTP/1.1\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 400/);
    assert.deepEqual(events.map((e) => [e.verdict, e.status, e.path]), [['error', 400, '/public/nohost']]);
  });

  test('access events: errors too, with the flow parties', async () => {
    events.length = 0;
    await raw(port, 'GET /public/../x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    await raw(port, 'GARBAGE\r\n\r\n');
    assert.deepEqual(events.map((e) => [e.verdict, e.status]), [['error', 400], ['error', 400]]);
    assert.equal(events[0]!.src.ip, '10.244.0.5');
    assert.equal(events[0]!.dst.port, upPort);
    const text = await registry.metrics();
    assert.match(text, /hypha_l7_requests_total\{verdict="error",policy=""\} \d+/);
    assert.match(text, /hypha_l7_request_duration_seconds_bucket\{le="[^"]+",verdict="allow"\} \d+/);
  });
});
