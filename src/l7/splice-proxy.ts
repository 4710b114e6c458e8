// The L7 proxy, spliced: the same policy and behaviours as proxy.ts
// (L7Proxy; read its header for what a client sees), without Node's http
// server and client in the path. Each client connection is a net socket
// whose requests Node's own parser (llhttp, through node:_http_common's
// HTTPParser) reads; each is judged (http-match.ts) and, allowed, its head
// re-serialized without hop-by-hop headers and written with its body to one
// upstream connection per client connection (made on the first allowed
// request with connectUpstream, 1:1, again after an idle upstream closed).
// Answers come back as raw bytes, parsed alongside by a response parser only
// to learn their status (access events, metrics), their end (ordering,
// timeouts) and whether they frame themselves (who closes).
//
// - Pipelining: allowed requests are forwarded as they are parsed. An answer
//   of the proxy's own (403, 400, 503 ...) or an upgrade is a barrier: the
//   client's further bytes wait, unparsed, until every earlier answer came
//   (so answers stay in order and an upgrade's answer is alone on the
//   upstream connection), then the proxy answers and goes on parsing (or
//   closes: a body left unread, a close asked for).
// - Request bodies: a Content-Length body is passed on as it comes; a
//   chunked one is re-chunked from the parser's slices (trailers dropped, as
//   Node's client drops them). Expect: 100-continue is judged first, then
//   sent on: the upstream's own 100 comes back.
// - HTTP/1.0 requests go upstream as HTTP/1.0 (the server then frames its
//   answer for a 1.0 client), and the connection is closed after the answer.
// - Upgrades: WebSocket only, when allowed, after the upstream's 101 the two
//   sockets are joined raw; any other answer is re-serialized with
//   'connection: close', its body decoded and close-delimited, and the
//   connection closed. Other upgrades (h2c) go on without Upgrade (a body
//   with one: 400). CONNECT, '*' and HTTP/2 prior knowledge: 400 and a close.
// - Deadlines (one sweep per interval for every connection, not a timer per
//   request): headersTimeoutMs from the accept (or a request's first byte)
//   to its headers (408), requestTimeoutMs to its end, keepAliveTimeoutMs idle,
//   connectTimeoutMs for the upstream's accept (503), upstreamAnswerTimeoutMs
//   for its answer to start once the request was sent (504).
// - Who closes: after a framed answer to a request asking to close, the
//   client closes first (the proxy closes after CLIENT_CLOSES_FIRST_MS), as
//   in proxy.ts (no TIME_WAIT of the pod's addresses at the node); an
//   unframed answer, HTTP/1.0 or a refusal with an unread body: the proxy
//   closes, fully (never a half-open socket). An upstream failing mid-answer
//   takes the client connection with it.
// - Where it differs from L7Proxy (no test tells them apart): answers keep
//   the upstream's own hop-by-hop headers and framing (L7Proxy re-frames
//   them through Node's server); HTTP/1.0 goes upstream as HTTP/1.0 (and an
//   HTTP/1.0 request without Host is served, as #view in proxy.ts means,
//   where Node's server answered 400); Connection: close goes upstream too;
//   pipelined requests are pipelined upstream; a request whose body breaks
//   or outlasts requestTimeoutMs after its head went upstream ends the
//   connection without a 408/400; a refusal with an unread body reads and
//   drops it for LINGER_MS before the close.
// - It rests on node:_http_common's HTTPParser (Node's own, not a
//   documented API): initialize(type, resource, maxHeaderSize, lenient),
//   the kOn* callbacks and execute()'s Error with .code, as in Node 24.
import { STATUS_CODES } from 'node:http';
import { createRequire } from 'node:module';
import { type Server, Socket, createServer } from 'node:net';
import { Counter, Gauge, Histogram } from 'prom-client';

import { hostOf, isTargetProblem, judge, parseTarget, pathOf, type Judgement } from './http-match.ts';
import type { AccessEvent, L7ProxyOptions } from './proxy.ts';
import { denyText, listenOn, listeningFd, resetUpstream } from './sockets.ts';
import type { FlowChecks } from './types.ts';

interface ParseError extends Error {
  code: string;
  bytesParsed: number;
}
/** Node's binding of llhttp (node:_http_common), as used here. */
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(b: Buffer): number | ParseError;
  finish(): number | ParseError | undefined;
  close(): void;
  [cb: number]: unknown;
}
interface ParserClass {
  new (): Parser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}
const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserClass; methods: string[] };
const kBegin = HTTPParser.kOnMessageBegin | 0;
const kHeaders = HTTPParser.kOnHeaders | 0;
const kHeadersComplete = HTTPParser.kOnHeadersComplete | 0;
const kBody = HTTPParser.kOnBody | 0;
const kComplete = HTTPParser.kOnMessageComplete | 0;

/** The parser's method numbers (llhttp's enum, not dense past the HTTP ones)
 *  to names: learnt once by parsing each method Node knows. */
const METHOD: string[] = (() => {
  const out: string[] = [];
  for (const m of methods) {
    const p = new HTTPParser();
    p.initialize(HTTPParser.REQUEST, {}, 0, 0);
    p[kHeadersComplete] = (_a: number, _b: number, _h: string[], i: number) => {
      out[i] = m;
      return 1;
    };
    p[kComplete] = () => {};
    p.execute(Buffer.from(`${m} /x HTTP/1.1\r\nhost: a\r\n\r\n`));
    p.close();
  }
  return out;
})();

/** Hop-by-hop headers (RFC 9110 7.6.1), never forwarded (as proxy.ts). */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/** Headers Node keeps the first of (IncomingMessage): forwarded once. */
const SINGLE = new Set(['content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization', 'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires']);
/** How long a client told to close (Connection: close) has to close first. */
const CLIENT_CLOSES_FIRST_MS = 2000;
/** After a refusal whose body is unread: how long its bytes are read and
 *  dropped before the socket is destroyed (a destroy with unread bytes
 *  sends a reset that can overtake the answer). */
const LINGER_MS = 300;
/** A closing socket whose last bytes the client does not take: destroyed. */
const CLOSING_MAX_MS = 5000;


/** Names listed in Connection (for the next hop to drop), but never the
 *  ones that frame the body or Host. */
function connectionListed(v: string | undefined): Set<string> | undefined {
  if (v === undefined) return undefined;
  const s = new Set(v.toLowerCase().split(',').map((x) => x.trim()).filter(Boolean));
  s.delete('content-length');
  s.delete('host');
  s.delete('transfer-encoding');
  return s;
}

interface View {
  method: string;
  path: string;
  host: string;
}

/** A request sent upstream, its answer awaited (in order). */
interface Pending extends View {
  start: number;
  j: Judgement;
  /** HEAD: its answer has no body. */
  head: boolean;
  /** The client asked to close (or spoke HTTP/1.0). */
  close: boolean;
  http10: boolean;
  /** 1 websocket (joined on a 101), 2 another upgrade sent without it. */
  upgrade: 0 | 1 | 2;
  /** When the whole request was written upstream (0: not yet). */
  sentAt: number;
  /** Bytes of its answer came. */
  started: boolean;
}

/** What waits for the earlier answers: an answer of the proxy's own, or an
 *  upgrade request to send. */
type Barrier =
  | { kind: 'local'; data: string; close: 'keep' | 'client-first' | 'now' | 'linger' }
  | { kind: 'upgrade'; entry: Pending; head: string };

type Account = (flow: FlowChecks, r: View, verdict: AccessEvent['verdict'], status: number, j: Judgement | undefined, start: number) => void;

const NONE: View = { method: '', path: '', host: '' };

function refusal(status: number, text: string, close: boolean): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${close ? 'connection: close\r\n' : ''}\r\n${text}`;
}
function closingRefusal(status: number, text: string): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
}
function emptyRefusal(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`;
}

class Conn {
  readonly c: Socket;
  flow: FlowChecks;
  gen: number;
  readonly #p: L7SpliceProxy;
  readonly #o: L7ProxyOptions;
  readonly #account: Account;
  readonly #rp: Parser;
  #up: Socket | undefined;
  #sp: Parser | undefined;
  #upErr: (Error & { code?: string }) | undefined;
  connectAt = 0;
  /** Answers awaited, in order. */
  readonly q: Pending[] = [];
  // the request being parsed
  #hdrs: string[] = [];
  #url = '';
  /** First byte of the request being parsed (0: between requests). */
  reqAt = 0;
  headersDone = false;
  /** A request began on the connection (before: headersTimeoutMs runs from the accept, as in Node). */
  seen = false;
  /** The request whose body goes upstream now. */
  #cur: Pending | undefined;
  #curChunked = false;
  #closeAfterRequest = false;
  #barrier: Barrier | undefined;
  #held: Buffer | undefined;
  /** No request is read any more (the connection is ending or joined). */
  done = false;
  tunnel = false;
  clientEnded = false;
  idleAt: number;
  /** Closing: 'client-first' waits for the client's FIN; 'ending' the end of our writes. */
  closing: '' | 'client-first' | 'ending' = '';
  closingAt = 0;
  #out: (string | Buffer)[] = [];
  #feeding = false;
  #awaitingSwitch = false;
  // the answer being parsed
  #resStatus = 0;
  #resKeepAlive = true;
  #resFramed = false;
  #afterClose: '' | 'client-first' | 'now' = '';
  #switch = false;

  constructor(p: L7SpliceProxy, o: L7ProxyOptions, account: Account, c: Socket, flow: FlowChecks) {
    this.#p = p;
    this.#o = o;
    this.#account = account;
    this.c = c;
    this.flow = flow;
    this.gen = o.generation?.() ?? 0;
    this.idleAt = performance.now();
    const rp = new HTTPParser();
    rp.initialize(HTTPParser.REQUEST, {}, o.maxHeaderSize ?? 16384, 0);
    rp[kBegin] = () => {
      this.seen = true;
      this.reqAt = performance.now();
      this.headersDone = false;
    };
    rp[kHeaders] = (h: string[], url: string) => {
      for (const x of h) this.#hdrs.push(x);
      this.#url += url;
    };
    rp[kHeadersComplete] = (_maj: number, min: number, headers: string[] | undefined, method: number, url: string | undefined, _s: unknown, _m: unknown, upgrade: boolean, keepAlive: boolean): number =>
      this.#onRequestHead(min, headers, method, url, upgrade, keepAlive);
    rp[kBody] = (b: Buffer) => this.#onRequestBody(b);
    rp[kComplete] = () => this.#onRequestEnd();
    this.#rp = rp;
    c.on('data', (b: Buffer) => {
      try {
        this.#onClientData(b);
      } catch (err) {
        this.#fail(err);
      }
    });
    c.on('end', () => this.#onClientEnd());
    c.on('drain', () => this.#up?.resume());
    c.on('error', () => c.destroy());
  }

  /** A throw in a callback (onAccess, resolve ...): this connection ends, the proxy goes on. */
  #fail(err: unknown): void {
    this.#o.log.warn({ err }, 'l7 proxy: a connection failed');
    this.c.destroy();
  }

  /** Client gone: everything with it (the upstream reset: sockets.ts). */
  dispose(): void {
    const up = this.#up;
    this.#up = undefined;
    if (up) resetUpstream(up);
    this.#rp.close();
    this.#sp?.close();
  }

  // ---- client side

  /** To the upstream: while a client chunk is parsed, gathered and written
   *  once at its end (one write for a whole request, most often). */
  #send(x: string | Buffer): void {
    if (this.#feeding) this.#out.push(x);
    else {
      const up = this.#up;
      if (up && !up.destroyed) up.write(x as string, 'latin1');
    }
  }

  #flush(): void {
    const out = this.#out;
    if (out.length === 0) return;
    this.#out = [];
    const up = this.#up;
    if (!up || up.destroyed) return;
    if (out.length === 1) {
      up.write(out[0] as string, 'latin1');
      return;
    }
    up.cork();
    for (const x of out) up.write(x as string, 'latin1');
    up.uncork();
  }

  #onClientData(b: Buffer): void {
    if (this.tunnel) {
      const up = this.#up;
      if (up && !up.write(b)) this.c.pause();
      return;
    }
    if (this.#awaitingSwitch) {
      this.#held = this.#held ? Buffer.concat([this.#held, b]) : b;
      return;
    }
    if (this.done) return; // after the last request: dropped
    if (this.#barrier) {
      this.#held = this.#held ? Buffer.concat([this.#held, b]) : b;
      return;
    }
    this.#feed(b);
  }

  #feed(b: Buffer): void {
    this.#feeding = true;
    try {
      for (;;) {
        const r = this.#rp.execute(b);
        if (typeof r !== 'number') {
          this.#onParseError(r);
          return;
        }
        if (!this.#barrier) return;
        const rest = b.subarray(r);
        this.#held = rest;
        if (this.q.length > 0) {
          // earlier answers first: the rest waits, unparsed
          this.c.pause();
          return;
        }
        if (!this.#runBarrier()) return; // (an upgrade's head stays held)
        this.#held = undefined;
        b = rest;
        if (b.length === 0) return;
      }
    } finally {
      this.#feeding = false;
      this.#flush();
      const u = this.#up;
      if (u && u.writableNeedDrain && !this.tunnel) this.c.pause();
    }
  }

  /** Runs the barrier (no answer is awaited now); true: parsing goes on. */
  #runBarrier(): boolean {
    const b = this.#barrier;
    this.#barrier = undefined;
    if (!b) return true;
    if (b.kind === 'local') {
      if (b.close === 'keep') {
        this.c.write(b.data);
        return true;
      }
      this.done = true;
      this.#dropUpstream();
      this.c.write(b.data);
      this.closeClient(b.close);
      return false;
    }
    this.done = true;
    const up = this.#ensureUpstream();
    if (!up) {
      this.#upstreamFailed(b.entry);
      return false;
    }
    this.q.push(b.entry);
    this.#send(b.head);
    b.entry.sentAt = performance.now();
    if (b.entry.upgrade === 1) {
      // what the client sends next waits for the 101 (and is dropped without one)
      this.#awaitingSwitch = true;
      this.c.pause();
    }
    return false;
  }

  /** The barrier once the earlier answers came; then the held bytes. */
  #drained(): void {
    if (!this.#barrier) return;
    if (!this.#runBarrier()) return; // (an upgrade's head stays held)
    const held = this.#held;
    this.#held = undefined;
    this.c.resume();
    if (held && held.length > 0) this.#feed(held);
    if (this.clientEnded && !this.done && this.q.length === 0 && this.reqAt === 0) this.closeClient('now');
  }

  #onClientEnd(): void {
    this.clientEnded = true;
    if (this.closing === 'client-first' || this.closing === 'ending') return this.closeClient('now');
    if (this.tunnel) {
      this.#up?.end();
      return;
    }
    if (this.reqAt !== 0 && !this.done || this.#cur) {
      // a request cut short: nothing sensible to answer
      this.c.destroy();
      return;
    }
    if (this.q.length === 0 && !this.#barrier) this.closeClient('now');
    // else: the awaited answers first, then the close (#afterAnswer)
  }

  /** 'now': the end of our writes, then a full close; 'linger': the same,
   *  reading and dropping what the client still sends for a moment;
   *  'client-first': the client's FIN awaited (at most CLIENT_CLOSES_FIRST_MS). */
  closeClient(mode: 'client-first' | 'now' | 'linger'): void {
    this.done = true;
    const c = this.c;
    if (c.destroyed) return;
    if (mode === 'client-first' && !this.clientEnded) {
      if (this.closing === '') {
        this.closing = 'client-first';
        this.closingAt = performance.now();
      }
      return;
    }
    if (this.closing === 'ending') {
      if (this.clientEnded && c.writableFinished) c.destroy();
      return;
    }
    this.closing = 'ending';
    this.closingAt = performance.now();
    this.#dropUpstream();
    c.resume();
    const linger = mode === 'linger' && !this.clientEnded;
    c.end(() => {
      if (!linger) return void c.destroy();
      const t = setTimeout(() => c.destroy(), LINGER_MS);
      t.unref();
      c.once('close', () => clearTimeout(t));
    });
  }

  // ---- requests

  #refresh(): void {
    const g = this.#o.generation?.();
    if (g === undefined || g === this.gen) return;
    this.gen = g;
    let flow: FlowChecks | undefined;
    try {
      flow = this.#o.resolve(this.c);
    } catch (err) {
      this.#o.log.warn({ err }, 'l7 proxy: could not resolve a connection again');
    }
    this.flow = flow ? { ...flow, src: this.flow.src, dst: this.flow.dst } : { ...this.flow, checks: [] };
  }

  /** An answer of the proxy's own, after the earlier ones: the parser stops
   *  after this request's head (2: as an upgrade, no body). */
  #refuse(data: string, close: 'keep' | 'client-first' | 'now' | 'linger'): number {
    this.#barrier = { kind: 'local', data, close };
    return 2;
  }

  #onRequestHead(min: number, headers: string[] | undefined, methodIdx: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    if (this.done || this.#barrier) return 2;
    this.headersDone = true;
    if (headers === undefined) {
      headers = this.#hdrs;
      this.#hdrs = [];
    }
    if (url === undefined) {
      url = this.#url;
      this.#url = '';
    }
    const start = this.reqAt || performance.now();
    this.#refresh();
    const flow = this.flow;
    const method = METHOD[methodIdx] ?? '';
    if (headers.length > (this.#o.maxHeadersCount ?? 100) * 2) {
      this.#account(flow, NONE, 'error', 431, undefined, start);
      return this.#refuse(emptyRefusal(431), 'now');
    }
    // lower-case names, values of repeated ones joined with ', ' (as Node's IncomingHttpHeaders)
    const n = headers.length >> 1;
    const lower: string[] = new Array<string>(n);
    const h: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      const k = headers[2 * i]!.toLowerCase();
      lower[i] = k;
      const v = headers[2 * i + 1]!;
      const had = h[k];
      if (had === undefined) h[k] = v;
      else if (!SINGLE.has(k)) h[k] = `${had}${k === 'cookie' ? '; ' : ', '}${v}`;
    }
    const http10 = min === 0;
    const closing = !keepAlive || http10;
    const te = h['transfer-encoding'];
    const cl = h['content-length'];
    const hasBody = cl !== undefined && cl !== '0' || te !== undefined;
    if (method === 'CONNECT') {
      this.#account(flow, { method, path: url, host: hostOf(h.host) }, 'error', 400, undefined, start);
      return this.#refuse(closingRefusal(400, 'bad request: CONNECT is not passed on (only origin-form requests are)\n'), 'now');
    }
    const t = parseTarget(method, url);
    let v: View;
    let target: string;
    let authority: string | undefined;
    let problem: string | undefined;
    if (isTargetProblem(t)) {
      v = { method, path: pathOf(url), host: hostOf(h.host) };
      target = url;
      problem = t.reason;
    } else if (t.authority === undefined && h.host === undefined && !http10) {
      // RFC 9112 3.2: an HTTP/1.1 request without Host is refused with 400
      v = { method, path: t.path, host: '' };
      target = t.originForm;
      problem = 'an HTTP/1.1 request without a Host header';
    } else {
      v = { method, path: t.path, host: t.authority ?? hostOf(h.host) };
      target = t.originForm;
      authority = t.rawAuthority;
    }
    if (problem !== undefined) {
      this.#account(flow, v, 'error', 400, undefined, start);
      const text = `bad request: ${problem}\n`;
      if (upgrade) return this.#refuse(closingRefusal(400, text), 'now');
      return this.#refuse(refusal(400, text, hasBody || closing), hasBody ? 'linger' : closing ? (http10 ? 'now' : 'client-first') : 'keep');
    }
    const j = judge(flow.checks, { method: v.method, path: v.path, host: v.host, headers: h });
    if (j.verdict === 'deny') {
      this.#account(flow, v, 'deny', 403, j, start);
      const text = denyText(j, v.method, v.path);
      if (upgrade) return this.#refuse(closingRefusal(403, text), 'now');
      const unread = hasBody || h.expect !== undefined && h.expect.toLowerCase() === '100-continue';
      return this.#refuse(refusal(403, text, unread || closing), unread ? 'linger' : closing ? (http10 ? 'now' : 'client-first') : 'keep');
    }
    let websocket = false;
    if (upgrade) {
      websocket = h.upgrade !== undefined && h.upgrade.toLowerCase().split(',').some((p) => p.trim() === 'websocket');
      if (!websocket && hasBody) {
        this.#account(flow, v, 'error', 400, j, start);
        return this.#refuse(closingRefusal(400, `bad request: upgrade to ${h.upgrade} with a body (only websocket upgrades are passed on)\n`), 'now');
      }
    }
    // the head upstream: as sent, without hop-by-hop headers (nor those
    // Connection names), framing kept; a chunked body goes on chunked
    const listed = connectionListed(h.connection);
    let out = `${method} ${target} HTTP/1.${http10 ? 0 : 1}\r\n`;
    let host = authority !== undefined;
    let len = false;
    let once: Set<string> | undefined;
    if (authority !== undefined) out += `host: ${authority}\r\n`;
    for (let i = 0; i < n; i++) {
      const k = lower[i]!;
      if (HOP.has(k) || listed?.has(k)) continue;
      if (k === 'host') {
        if (host) continue;
        host = true;
      } else if (k === 'content-length') {
        if (len || te !== undefined) continue;
        len = true;
      } else if (SINGLE.has(k)) {
        // a repeat Node would drop
        if (once?.has(k)) continue;
        (once ??= new Set()).add(k);
      }
      out += `${headers[2 * i]}: ${headers[2 * i + 1]}\r\n`;
    }
    if (te !== undefined) out += 'transfer-encoding: chunked\r\n';
    // asked to close: the upstream is told so, and its answer (passed on
    // as it is) tells the client the same (an HTTP/1.0 request goes on as
    // one: the same without it)
    if (closing && !http10 && !upgrade) out += 'connection: close\r\n';
    const entry: Pending = { method: v.method, path: v.path, host: v.host, start, j, head: method === 'HEAD', close: closing, http10, upgrade: upgrade ? (websocket ? 1 : 2) : 0, sentAt: 0, started: false };
    if (upgrade) {
      if (websocket) out += `upgrade: ${h.upgrade}\r\nconnection: Upgrade\r\n`;
      this.#barrier = { kind: 'upgrade', entry, head: `${out}\r\n` };
      return 2;
    }
    if (this.q.length === 0 || this.#up && !this.#up.destroyed) {
      const up = this.#ensureUpstream();
      if (!up) {
        const text = this.#unreachable(entry);
        return this.#refuse(refusal(503, text, true), hasBody ? 'linger' : 'now');
      }
      this.#send(`${out}\r\n`);
    } else {
      return this.#refuse(refusal(503, `upstream ${flow.dst.ip}:${flow.dst.port} unreachable\n`, true), 'now');
    }
    this.q.push(entry);
    this.#cur = entry;
    this.#curChunked = te !== undefined;
    this.#closeAfterRequest = closing;
    return 0;
  }

  #onRequestBody(b: Buffer): void {
    if (!this.#cur) return;
    if (this.#curChunked) {
      this.#send(`${b.length.toString(16)}\r\n`);
      this.#send(b);
      this.#send('\r\n');
    } else this.#send(b);
  }

  #onRequestEnd(): void {
    this.reqAt = 0;
    this.headersDone = false;
    const cur = this.#cur;
    if (!cur) return;
    this.#cur = undefined;
    if (this.#curChunked) this.#send('0\r\n\r\n');
    cur.sentAt = performance.now();
    this.idleAt = cur.sentAt;
    if (this.#closeAfterRequest) this.done = true;
  }

  #onParseError(err: ParseError): void {
    if (this.done) return;
    if (this.#cur) {
      // its head went upstream: no answer can be given cleanly
      this.c.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.#account(this.flow, NONE, 'error', status, undefined, performance.now());
    this.#barrier = { kind: 'local', data: emptyRefusal(status), close: 'now' };
    this.c.pause();
    if (this.q.length === 0) this.#runBarrier();
  }

  /** A request's headers or the whole request took too long: 408 (or, with
   *  an answer already under way, a destroy). */
  timeout(): void {
    if (this.done) return;
    if (this.q.length > 0 || this.#cur) {
      this.c.destroy();
      return;
    }
    this.#account(this.flow, NONE, 'error', 408, undefined, performance.now());
    this.done = true;
    this.#dropUpstream();
    this.c.write(emptyRefusal(408));
    this.closeClient('now');
  }

  // ---- upstream

  upConnecting(): boolean {
    return this.#up !== undefined && this.#up.connecting;
  }

  upFail(err: Error & { code?: string }): void {
    this.#upErr = err;
    this.#up?.destroy();
  }

  #dropUpstream(): void {
    const up = this.#up;
    this.#up = undefined;
    up?.destroy();
  }

  #ensureUpstream(): Socket | undefined {
    const have = this.#up;
    if (have && !have.destroyed) return have;
    let up: Socket;
    this.#upErr = undefined;
    try {
      up = this.#o.connectUpstream(this.flow);
    } catch (err) {
      this.#upErr = err as Error;
      return undefined;
    }
    this.#up = up;
    this.connectAt = performance.now();
    up.setNoDelay(true);
    if (this.#sp) this.#sp.close();
    const sp = new HTTPParser();
    sp.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    this.#resInMsg = false;
    sp[kBegin] = () => {
      this.#resInMsg = true;
      const e = this.q[0];
      if (e) e.started = true;
    };
    sp[kHeadersComplete] = (_maj: number, minor: number, headers: string[] | undefined, _m: unknown, _u: unknown, status: number, msg: string, _up: boolean, keepAlive: boolean): number =>
      this.#onAnswerHead(minor, headers, status, msg, keepAlive);
    sp[kHeaders] = (h: string[]) => {
      if (this.#answerHdrs) for (const x of h) this.#answerHdrs.push(x);
    };
    sp[kBody] = (b: Buffer) => {
      if (this.#rewriting) this.c.write(b);
    };
    sp[kComplete] = () => this.#onAnswerEnd();
    this.#sp = sp;
    up.on('data', (b: Buffer) => {
      try {
        this.#onUpData(up, sp, b);
      } catch (err) {
        this.#fail(err);
      }
    });
    up.on('end', () => {
      if (up !== this.#up || this.tunnel) return;
      sp.finish(); // a close-delimited answer ends here
      this.#afterAnswer();
    });
    up.on('drain', () => {
      if (up === this.#up && !this.#barrier && !this.#awaitingSwitch) this.c.resume();
    });
    up.on('error', (err: Error) => {
      if (up === this.#up) this.#upErr ??= err;
    });
    up.on('close', () => this.#onUpClose(up));
    return up;
  }

  #answerHdrs: string[] | undefined = [];
  /** The response parser is inside an answer. */
  #resInMsg = false;

  /** The common answers, read without the parser: whole in b from its
   *  start, 'HTTP/1.1 2xx' (not 204), one Content-Length, no
   *  Transfer-Encoding, no Connection: close, plain header lines. Anything
   *  else (and what follows it) is the parser's. The offset read up to. */
  #fastAnswers(b: Buffer): number {
    let off = 0;
    for (;;) {
      const e = this.q[0];
      if (!e || e.upgrade !== 0 || e.head || b.length - off < 19) return off;
      if (b[off] !== 0x48 || b[off + 5] !== 0x31 || b[off + 7] !== 0x31 || b[off + 9] !== 0x32 || b[off + 12] !== 0x20 || b.toString('latin1', off, off + 9) !== 'HTTP/1.1 ') return off;
      const d1 = b[off + 10]! - 48;
      const d2 = b[off + 11]! - 48;
      if (d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return off;
      const status = 200 + d1 * 10 + d2;
      if (status === 204) return off;
      const end = b.indexOf('\r\n\r\n', off);
      if (end < 0) return off;
      const head = b.toString('latin1', off, end + 2);
      let pos = head.indexOf('\r\n') + 2;
      if (head.lastIndexOf('\n', pos - 3) >= 0 || head.indexOf('\r') !== pos - 2) return off;
      let len = -1;
      while (pos < head.length) {
        const nl = head.indexOf('\r\n', pos);
        const colon = head.indexOf(':', pos);
        const c0 = head.charCodeAt(pos) | 0x20;
        if (colon < 0 || colon > nl || c0 < 0x61 || c0 > 0x7a) return off;
        const c1 = head.charCodeAt(colon - 1);
        if (c1 === 0x20 || c1 === 0x09) return off;
        const lf = head.indexOf('\n', pos);
        const cr = head.indexOf('\r', pos);
        if (lf !== nl + 1 || cr !== nl) return off; // a bare CR or LF
        if (c0 === 0x63 || c0 === 0x74) {
          const name = head.slice(pos, colon).toLowerCase();
          if (name === 'transfer-encoding') return off;
          if (name === 'content-length') {
            if (len >= 0) return off;
            const v = head.slice(colon + 1, nl).trim();
            if (!/^[0-9]{1,15}$/.test(v)) return off;
            len = Number(v);
          } else if (name === 'connection' && head.slice(colon + 1, nl).toLowerCase().includes('close')) return off;
        }
        pos = nl + 2;
      }
      if (len < 0 || end + 4 + len > b.length) return off;
      // a whole answer
      off = end + 4 + len;
      this.q.shift();
      e.started = true;
      this.#account(this.flow, e, 'allow', status, e.j, e.start);
      if (e.close) {
        this.#afterClose = e.http10 ? 'now' : 'client-first';
        return off; // nothing more is read
      }
    }
  }
  #rewriting = false;

  #onAnswerHead(minor: number, headers: string[] | undefined, status: number, msg: string, keepAlive: boolean): number {
    const e = this.q[0];
    this.#resStatus = status;
    if (headers === undefined) {
      headers = this.#answerHdrs ?? [];
    }
    this.#answerHdrs = [];
    if (!e || status < 200 && status !== 101) return 0; // 1xx: passed on, not the answer
    let framed = e.head || status === 204 || status === 304;
    if (framed) {
      // no body whatever the headers say: the parser's keep-alive took a
      // HEAD answer without a length for one read to the close
      keepAlive = minor !== 0;
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i]!.toLowerCase() !== 'connection') continue;
        const v = headers[i + 1]!.toLowerCase();
        if (v.includes('close')) keepAlive = false;
        else if (v.includes('keep-alive')) keepAlive = true;
      }
    }
    this.#resKeepAlive = keepAlive;
    for (let i = 0; i < headers.length && !framed; i += 2) {
      const k = headers[i]!.toLowerCase();
      if (k === 'content-length' || k === 'transfer-encoding' && /chunked\s*$/i.test(headers[i + 1]!)) framed = true;
    }
    this.#resFramed = framed;
    if (e.upgrade !== 0) {
      if (status === 101) {
        this.#switch = e.upgrade === 1;
        return 0;
      }
      // any other answer to an upgrade: passed on re-serialized, close-delimited
      const listed = new Set<string>();
      for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === 'connection') for (const x of headers[i + 1]!.toLowerCase().split(',')) listed.add(x.trim());
      let out = `HTTP/1.1 ${status} ${msg}\r\nconnection: close\r\n`;
      for (let i = 0; i < headers.length; i += 2) {
        const k = headers[i]!.toLowerCase();
        if (HOP.has(k) || listed.has(k) || k === 'content-length') continue;
        out += `${headers[i]}: ${headers[i + 1]}\r\n`;
      }
      this.#rewriting = true;
      this.c.write(`${out}\r\n`, 'latin1');
    }
    return e.head ? 1 : 0;
  }

  #onAnswerEnd(): void {
    this.#resInMsg = false;
    const status = this.#resStatus;
    if (status < 200 && status !== 101) return;
    const e = this.q.shift();
    if (!e) return;
    this.#account(this.flow, e, 'allow', status, e.j, e.start);
    if (e.upgrade !== 0) {
      if (this.#switch) return; // joined in #onUpData
      this.#rewriting = false;
      this.#afterClose = 'now';
      return;
    }
    if (e.close || !this.#resKeepAlive) this.#afterClose = this.#resFramed && !e.http10 ? 'client-first' : 'now';
  }

  #onUpData(up: Socket, sp: Parser, b: Buffer): void {
    if (this.tunnel) {
      if (!this.c.write(b)) up.pause();
      return;
    }
    if (up !== this.#up) return;
    if (this.q.length === 0) {
      // bytes no request asked for: the upstream is out of step
      this.#dropUpstream();
      return;
    }
    const rewrite = this.q[0]!.upgrade !== 0;
    const off = rewrite || this.#resInMsg ? 0 : this.#fastAnswers(b);
    const r = off === b.length ? 0 : sp.execute(off === 0 ? b : b.subarray(off));
    if (typeof r !== 'number') {
      this.#o.log.debug({ err: r.code, dst: this.flow.dst }, 'l7 proxy: a malformed answer');
      this.c.destroy();
      return;
    }
    if (this.#switch) {
      // the 101 and what follows it: raw both ways from now on
      this.#switch = false;
      this.#awaitingSwitch = false;
      this.tunnel = true;
      this.c.write(b);
      const held = this.#held;
      this.#held = undefined;
      if (held && held.length > 0) up.write(held);
      this.c.resume();
      return;
    }
    if (!rewrite && !this.c.write(b)) up.pause();
    this.#afterAnswer();
  }

  /** After answers came: the close they call for, or the barrier waiting. */
  #afterAnswer(): void {
    const a = this.#afterClose;
    if (a !== '') {
      this.#afterClose = '';
      this.done = true;
      this.#dropUpstream();
      this.closeClient(a);
      return;
    }
    if (this.q.length > 0) return;
    this.idleAt = performance.now();
    if (this.#barrier) return this.#drained();
    if (this.clientEnded && !this.done && this.reqAt === 0) this.closeClient('now');
  }

  #unreachable(e: Pending): string {
    const err = this.#upErr;
    const code = err ? (err.code ?? err.message) : 'ECONNRESET';
    this.#account(this.flow, e, 'error', 503, e.j, e.start);
    return `upstream ${this.flow.dst.ip}:${this.flow.dst.port} unreachable: ${code}\n`;
  }

  /** The upstream could not be reached for e (no byte of its answer came). */
  #upstreamFailed(e: Pending): void {
    this.done = true;
    if (this.#upErr?.code === 'UPSTREAM_IDLE') {
      const ms = this.#o.upstreamAnswerTimeoutMs ?? 60_000;
      this.#account(this.flow, e, 'error', 504, e.j, e.start);
      this.c.write(refusal(504, `upstream ${this.flow.dst.ip}:${this.flow.dst.port} did not answer within ${ms} ms\n`, true));
    } else {
      this.c.write(refusal(503, this.#unreachable(e), true));
    }
    this.closeClient(this.#cur ? 'linger' : 'now');
  }

  #onUpClose(up: Socket): void {
    if (this.tunnel) {
      this.closeClient('now');
      return;
    }
    if (up !== this.#up) return;
    this.#up = undefined;
    this.#afterAnswer();
    if (this.done && this.closing !== '' || this.c.destroyed) return;
    const e = this.q[0];
    if (!e) return; // an idle upstream closed: another one for the next request
    if (e.started || e.upgrade !== 0 && this.#rewriting) {
      this.c.destroy(); // mid-answer: the client must not take a cut answer for a whole one
      return;
    }
    this.#o.log.debug({ err: this.#upErr?.message, dst: this.flow.dst }, 'l7 proxy: upstream failed');
    this.q.length = 0;
    this.#upstreamFailed(e);
  }
}

export class L7SpliceProxy {
  readonly server: Server;
  readonly #o: L7ProxyOptions;
  readonly #conns = new Set<Conn>();
  readonly #requests: Counter<'verdict' | 'policy'>;
  readonly #latency: Histogram<'verdict'>;
  readonly #open: Gauge;
  readonly #dropped: Counter;
  readonly #sweep: NodeJS.Timeout;
  /** Requests counted since the last scrape (added to the counter on it). */
  readonly #counts = new Map<string, { labels: { verdict: string; policy: string }; n: number }>();
  readonly #latLabels = new Map<string, { verdict: string }>();
  #isoAt = 0;
  #iso = '';

  constructor(o: L7ProxyOptions) {
    this.#o = o;
    const counts = this.#counts;
    this.#requests = new Counter({
      name: 'hypha_l7_requests_total', help: 'HTTP requests the L7 proxy judged, by verdict and deciding policy', labelNames: ['verdict', 'policy'] as const, registers: [o.registry],
      collect(this: Counter<'verdict' | 'policy'>) {
        for (const x of counts.values()) {
          if (x.n > 0) this.inc(x.labels, x.n);
          x.n = 0;
        }
      },
    });
    this.#latency = new Histogram({ name: 'hypha_l7_request_duration_seconds', help: 'Time from a request to its answer through the L7 proxy', labelNames: ['verdict'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5], registers: [o.registry] });
    this.#dropped = new Counter({ name: 'hypha_l7_connections_refused_total', help: 'Client connections the L7 proxy closed at accept: maxConnections were open', registers: [o.registry] });
    this.#open = new Gauge({ name: 'hypha_l7_connections', help: 'Client connections open at the L7 proxy', registers: [o.registry] });
    this.server = createServer({ noDelay: true, allowHalfOpen: true });
    this.server.maxConnections = o.maxConnections ?? 16384;
    this.server.on('drop', () => this.#dropped.inc());
    this.server.on('connection', (s: Socket) => this.#onConnection(s));
    const every = Math.min(o.headersTimeoutMs ?? 10_000, o.requestTimeoutMs ?? 300_000, o.keepAliveTimeoutMs ?? 60_000, o.connectTimeoutMs ?? 5000, o.upstreamAnswerTimeoutMs ?? 60_000) / 4;
    this.#sweep = setInterval(() => this.#check(), Math.max(50, Math.min(500, every)));
    this.#sweep.unref();
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  /** The listening socket's descriptor (for IP_TRANSPARENT). */
  fd(): number {
    return listeningFd(this.server);
  }

  close(): Promise<void> {
    clearInterval(this.#sweep);
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const c of this.#conns) c.c.destroy();
    });
  }

  #onConnection(s: Socket): void {
    let flow: FlowChecks | undefined;
    try {
      flow = this.#o.resolve(s);
    } catch (err) {
      this.#o.log.warn({ err }, 'l7 proxy: could not resolve a connection');
    }
    if (!flow) {
      s.destroy();
      return;
    }
    const conn = new Conn(this, this.#o, (f, r, verdict, status, j, start) => this.#account(f, r, verdict, status, j, start), s, flow);
    this.#conns.add(conn);
    this.#open.inc();
    s.once('close', () => {
      this.#conns.delete(conn);
      this.#open.dec();
      conn.dispose();
    });
  }

  #check(): void {
    const now = performance.now();
    const o = this.#o;
    const headersMs = o.headersTimeoutMs ?? 10_000;
    const requestMs = o.requestTimeoutMs ?? 300_000;
    const idleMs = o.keepAliveTimeoutMs ?? 60_000;
    const connectMs = o.connectTimeoutMs ?? 5000;
    const answerMs = o.upstreamAnswerTimeoutMs ?? 60_000;
    for (const c of this.#conns) {
      if (c.closing !== '') {
        if (c.closing === 'client-first' && now - c.closingAt > CLIENT_CLOSES_FIRST_MS) c.closeClient('now');
        else if (c.closing === 'ending' && now - c.closingAt > CLOSING_MAX_MS) c.c.destroy();
        continue;
      }
      if (c.tunnel) continue;
      if (c.upConnecting() && now - c.connectAt > connectMs) {
        c.upFail(Object.assign(new Error('upstream connect timed out'), { code: 'ETIMEDOUT' }));
        continue;
      }
      const front = c.q[0];
      if (front && front.sentAt !== 0 && !front.started && now - front.sentAt > answerMs) {
        c.upFail(Object.assign(new Error(`no answer within ${answerMs} ms`), { code: 'UPSTREAM_IDLE' }));
        continue;
      }
      if (c.done) continue;
      if (c.reqAt !== 0 && (!c.headersDone && now - c.reqAt > headersMs || now - c.reqAt > requestMs)) {
        c.timeout();
        continue;
      }
      if (!c.seen && now - c.idleAt > headersMs) c.timeout();
      else if (c.reqAt === 0 && c.q.length === 0 && now - c.idleAt > idleMs) c.closeClient('now');
    }
  }

  #account(flow: FlowChecks, r: View, verdict: AccessEvent['verdict'], status: number, j: Judgement | undefined, start: number): void {
    const latencyMs = performance.now() - start;
    const policy = j?.policy ?? (j?.policies?.join(',') ?? '');
    const key = `${verdict}\0${policy}`;
    const n = this.#counts.get(key);
    if (n) n.n++;
    else this.#counts.set(key, { labels: { verdict, policy }, n: 1 });
    let lat = this.#latLabels.get(verdict);
    if (!lat) {
      lat = { verdict };
      this.#latLabels.set(verdict, lat);
    }
    this.#latency.observe(lat, latencyMs / 1000);
    const on = this.#o.onAccess;
    if (!on) return;
    const ms = Date.now();
    if (ms !== this.#isoAt) {
      this.#isoAt = ms;
      this.#iso = new Date(ms).toISOString();
    }
    const e: AccessEvent = { time: this.#iso, src: flow.src, dst: flow.dst, method: r.method, path: r.path, host: r.host, verdict, status, latencyMs };
    if (j?.policy) e.policy = j.policy;
    if (j?.rule) e.rule = j.rule;
    on(e);
  }
}
