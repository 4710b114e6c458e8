// The L7 proxy: HTTP/1.1 through Node's own parser, each request judged
// against the checks of its flow (http-match.ts) and forwarded to the
// flow's original destination, or refused.
//
//   const proxy = new L7Proxy({ resolve, connectUpstream, log, registry });
//   const port = await proxy.listen(15001, '127.0.0.1');
//   makeTransparent(proxy.fd());             // src/l7/transparent.ts
//
// - resolve(socket) runs once per client connection: the flow's parties and
//   checks (the accepted socket's local address is the original
//   destination). undefined: the connection is closed.
// - Requests on a connection are judged one by one (keep-alive, pipelining:
//   Node answers them in order) and forwarded on one upstream connection per
//   client connection (connectUpstream; in the datapath a transparent socket
//   from the client's address). Bodies are streamed both ways, never held
//   whole; chunked encoding is Node's.
// - Answers of the proxy's own: 400 for a malformed request (Node's parser
//   refuses conflicting Content-Length and Transfer-Encoding: no smuggling),
//   a target that is not origin-form, or a path with dot segments or encoded
//   separators; 431 for headers past maxHeaderSize; 403 for a request no rule
//   allows, naming the policy and rule; 503 when the upstream cannot be
//   reached. Each closes the connection when the request's body was not
//   read. An upstream that fails mid-answer takes the client connection
//   with it: no connection is left half-open.
// - HTTP/2 with prior knowledge ('PRI * HTTP/2.0') is refused: Node's
//   HTTP/1 parser rejects the preface, and the client gets 400 and a close.
//   Upgrades: only WebSocket, when the upgrade request is allowed: it goes
//   upstream on a connection of its own, and the sockets are joined raw on
//   a 101 only (any other answer is passed on and the connection closed).
//   Other upgrades (h2c) are sent on without their Upgrade and answered in
//   HTTP/1.1. CONNECT is refused (400): a tunnel no rule could judge.
// - Timeouts: connectTimeoutMs for the upstream's accept (503),
//   upstreamAnswerTimeoutMs for its answer to start (504).
// - Expect: 100-continue: judged before the 100 is sent; refused requests
//   get 403 without their body being read.
// - Slow clients: headersTimeoutMs bounds the time to send the headers
//   (slowloris), requestTimeoutMs the whole request.
import { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse, Agent, type Server, createServer, request } from 'node:http';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import { hostOf, isTargetProblem, judge, parseTarget, pathOf, type Judgement } from './http-match.ts';
import { denyText, listenOn, listeningFd, resetUpstream } from './sockets.ts';
import type { FlowChecks, FlowParty } from './types.ts';

export interface AccessEvent {
  time: string;
  src: FlowParty;
  dst: FlowParty;
  method: string;
  path: string;
  host: string;
  verdict: 'allow' | 'deny' | 'error';
  status: number;
  policy?: string;
  rule?: string;
  latencyMs: number;
}

export interface L7ProxyOptions {
  resolve: (socket: Socket) => FlowChecks | undefined;
  /** Changes whenever what resolve() answers may have (a policy write): a
   *  connection's checks are resolved again before its next request, so a
   *  keep-alive connection follows policy changes. Absent: once per connection. */
  generation?: () => number;
  connectUpstream: (flow: FlowChecks) => Socket;
  log: Logger;
  registry: Registry;
  onAccess?: (e: AccessEvent) => void;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** How long the upstream may take to start its answer once the whole
   *  request was sent: 504 past it. Default 60000. */
  upstreamAnswerTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxHeaderSize?: number;
  maxHeadersCount?: number;
  /** Client connections open at once; past it a new one is closed at
   *  accept (Node's server.maxConnections). Default 16384. */
  maxConnections?: number;
}

/** Hop-by-hop headers (RFC 9110 7.6.1), never forwarded. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function forwardHeaders(h: IncomingHttpHeaders, keepUpgrade = false): OutgoingHttpHeaders {
  const listed = new Set(String(h.connection ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean));
  // framing and Host are end to end, whatever Connection names: dropping
  // Content-Length would send a body upstream unframed
  for (const k of ['content-length', 'host', 'transfer-encoding']) listed.delete(k);
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || listed.has(k) || HOP.has(k)) continue;
    out[k] = v;
  }
  if (keepUpgrade && h.upgrade !== undefined) {
    // an upgrade keeps its Upgrade header, and a Connection naming only it
    out.upgrade = h.upgrade;
    out.connection = 'Upgrade';
  }
  return out;
}


interface Conn {
  flow: FlowChecks;
  agent: Agent;
  /** generation() when flow was resolved. */
  gen: number;
  /** The last answer ends by its own framing (length, chunks, or no body):
   *  the client knows it is whole without the proxy closing. */
  framed: boolean;
}

/** How long a client told to close (Connection: close) has to close first. */
const CLIENT_CLOSES_FIRST_MS = 2000;

export class L7Proxy {
  readonly server: Server;
  readonly #o: L7ProxyOptions;
  readonly #conns = new WeakMap<Socket, Conn>();
  /** Client sockets taken over by an upgrade: Node no longer tracks them. */
  readonly #upgraded = new Set<Socket>();
  readonly #requests: Counter<'verdict' | 'policy'>;
  readonly #latency: Histogram<'verdict'>;
  readonly #open: Gauge;
  readonly #dropped: Counter;

  constructor(o: L7ProxyOptions) {
    this.#o = o;
    this.#requests = new Counter({ name: 'hypha_l7_requests_total', help: 'HTTP requests the L7 proxy judged, by verdict and deciding policy', labelNames: ['verdict', 'policy'] as const, registers: [o.registry] });
    this.#latency = new Histogram({ name: 'hypha_l7_request_duration_seconds', help: 'Time from a request to its answer through the L7 proxy', labelNames: ['verdict'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5], registers: [o.registry] });
    this.#dropped = new Counter({ name: 'hypha_l7_connections_refused_total', help: 'Client connections the L7 proxy closed at accept: maxConnections were open', registers: [o.registry] });
    this.#open = new Gauge({ name: 'hypha_l7_connections', help: 'Client connections open at the L7 proxy', registers: [o.registry] });
    this.server = createServer({
      maxHeaderSize: o.maxHeaderSize ?? 16384,
      headersTimeout: o.headersTimeoutMs ?? 10_000,
      requestTimeout: o.requestTimeoutMs ?? 300_000,
      keepAliveTimeout: o.keepAliveTimeoutMs ?? 60_000,
      // how often the header and request deadlines are checked (Node's default is 30 s)
      connectionsCheckingInterval: Math.max(50, Math.min(1000, (o.headersTimeoutMs ?? 10_000) / 4)),
      insecureHTTPParser: false,
      // answered here (400 with its access event), not by Node without one
      requireHostHeader: false,
    });
    this.server.maxHeadersCount = o.maxHeadersCount ?? 100;
    this.server.maxConnections = o.maxConnections ?? 16384;
    this.server.on('drop', () => this.#dropped.inc());
    this.server.on('connection', (s: Socket) => this.#onConnection(s));
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res, false));
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res, true));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket as Socket, head));
    // CONNECT would open a tunnel no rule judges: refused with an answer
    // (without a listener Node closes the socket silently).
    this.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      const conn = this.#conns.get(socket as Socket);
      const v = { method: req.method ?? 'CONNECT', path: req.url ?? '', host: hostOf(req.headers.host) };
      if (conn) this.#account(conn.flow, v, 'error', 400, undefined, performance.now());
      const text = 'bad request: CONNECT is not passed on (only origin-form requests are)\n';
      socket.on('error', () => socket.destroy());
      socket.end(`HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`, () => socket.destroy()); // a full close: a client holding its side open is not kept half-open
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const text = code === 431 ? 'Request Header Fields Too Large' : code === 408 ? 'Request Timeout' : 'Bad Request';
      const conn = this.#conns.get(socket as Socket);
      if (conn) this.#account(conn.flow, { method: '', path: '', host: '' }, 'error', code, undefined, performance.now());
      if (socket.writable && !(socket as Socket).destroyed) socket.end(`HTTP/1.1 ${code} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () => socket.destroy()); // a full close: a client holding its side open is not kept half-open
      else socket.destroy();
    });
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  /** The listening socket's descriptor (for IP_TRANSPARENT). */
  fd(): number {
    return listeningFd(this.server);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const s of this.#upgraded) s.destroy();
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
    const f = flow;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const upstreams = new Set<Socket>();
    (agent as unknown as { createConnection: () => Socket }).createConnection = () => {
      const up = this.#dial(f);
      upstreams.add(up);
      up.once('close', () => upstreams.delete(up));
      return up;
    };
    const conn: Conn = { flow: f, agent, gen: this.#o.generation?.() ?? 0, framed: false };
    this.#conns.set(s, conn);
    // The client closes first. After an answer that ends the connection,
    // Node's server would close its side at once (destroySoon), leaving the
    // node a TIME_WAIT socket for the pod's addresses: a later SYN with the
    // same addresses and port (a client reusing its port, or the same flow
    // once by ClusterIP and once by pod address) is handed to the listener by
    // bpf_sk_assign, and the kernel drops the new request as a duplicate of
    // that TIME_WAIT for 60 s. So an answer the client can see the end of is
    // left for the client to close (Node's server then closes its side: a
    // passive close, no TIME_WAIT here, as without the proxy), and the proxy
    // closes only if it has not within CLIENT_CLOSES_FIRST_MS.
    const ownDestroySoon = s.destroySoon.bind(s);
    s.destroySoon = () => {
      if (!conn.framed || s.readableEnded) return ownDestroySoon();
      const t = setTimeout(() => ownDestroySoon(), CLIENT_CLOSES_FIRST_MS);
      t.unref();
      s.once('close', () => clearTimeout(t));
    };
    this.#open.inc();
    s.once('close', () => {
      this.#open.dec();
      for (const up of upstreams) resetUpstream(up); // (sockets.ts says why)
      agent.destroy();
    });
  }

  /** A connection to the flow's destination, destroyed with ETIMEDOUT when
   *  it is not made within connectTimeoutMs. */
  #dial(flow: FlowChecks): Socket {
    let up: Socket;
    try {
      up = this.#o.connectUpstream(flow);
    } catch (err) {
      // a throw would come out of http.request uncaught: a socket that fails instead (503)
      const dead = new Socket();
      process.nextTick(() => dead.destroy(err as Error));
      return dead;
    }
    up.setTimeout(this.#o.connectTimeoutMs ?? 5000, () => {
      if (up.connecting) up.destroy(Object.assign(new Error('upstream connect timed out'), { code: 'ETIMEDOUT' }));
    });
    up.once('connect', () => up.setTimeout(0));
    return up;
  }

  #account(flow: FlowChecks, r: { method: string; path: string; host: string }, verdict: AccessEvent['verdict'], status: number, j: Judgement | undefined, start: number): void {
    const latencyMs = performance.now() - start;
    this.#requests.inc({ verdict, policy: j?.policy ?? (j?.policies?.join(',') ?? '') });
    this.#latency.observe({ verdict }, latencyMs / 1000);
    const e: AccessEvent = { time: new Date().toISOString(), src: flow.src, dst: flow.dst, method: r.method, path: r.path, host: r.host, verdict, status, latencyMs };
    if (j?.policy) e.policy = j.policy;
    if (j?.rule) e.rule = j.rule;
    this.#o.onAccess?.(e);
  }

  /** The request as judged: an absolute-form target is judged on its
   *  authority (it stands for Host, RFC 9112 3.2.2) and goes upstream
   *  origin-form with that authority as its Host. */
  #view(req: IncomingMessage): { method: string; path: string; host: string; target: string; authority?: string; problem?: string } {
    const url = req.url ?? '';
    const method = req.method ?? '';
    const t = parseTarget(method, url);
    if (isTargetProblem(t)) return { method, path: pathOf(url), host: hostOf(req.headers.host), target: url, problem: t.reason };
    // RFC 9112 3.2: an HTTP/1.1 request without Host is refused with 400
    if (t.authority === undefined && req.headers.host === undefined && req.httpVersionMinor >= 1) {
      return { method, path: t.path, host: '', target: t.originForm, problem: 'an HTTP/1.1 request without a Host header' };
    }
    return { method, path: t.path, host: t.authority ?? hostOf(req.headers.host), target: t.originForm, ...(t.rawAuthority !== undefined ? { authority: t.rawAuthority } : {}) };
  }

  #refuse(res: ServerResponse, status: number, text: string, bodyUnread: boolean): void {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), ...(bodyUnread ? { connection: 'close' } : {}) });
    // a body left unread: the proxy closes (the client may go on sending it)
    const conn = this.#conns.get(res.socket as Socket);
    if (conn) conn.framed = !bodyUnread && (res.req?.httpVersionMinor ?? 0) >= 1;
    res.end(text);
    if (bodyUnread) res.once('finish', () => res.socket?.destroySoon?.());
  }

  /** The policy changed since conn's checks were resolved: resolved again
   *  (none found: no check, every request refused). */
  #refresh(conn: Conn, s: Socket): void {
    const g = this.#o.generation?.();
    if (g === undefined || g === conn.gen) return;
    conn.gen = g;
    let flow: FlowChecks | undefined;
    try {
      flow = this.#o.resolve(s);
    } catch (err) {
      this.#o.log.warn({ err }, 'l7 proxy: could not resolve a connection again');
    }
    conn.flow = flow ? { ...flow, src: conn.flow.src, dst: conn.flow.dst } : { ...conn.flow, checks: [] };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    const start = performance.now();
    const conn = this.#conns.get(req.socket);
    if (!conn) {
      req.socket.destroy();
      return;
    }
    this.#refresh(conn, req.socket);
    const v = this.#view(req);
    const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined;
    if (v.problem) {
      this.#account(conn.flow, v, 'error', 400, undefined, start);
      this.#refuse(res, 400, `bad request: ${v.problem}\n`, hasBody);
      return;
    }
    const j = judge(conn.flow.checks, { method: v.method, path: v.path, host: v.host, headers: req.headers });
    if (j.verdict === 'deny') {
      this.#account(conn.flow, v, 'deny', 403, j, start);
      this.#refuse(res, 403, denyText(j, v.method, v.path), hasBody || expectsContinue);
      return;
    }
    if (expectsContinue) res.writeContinue();
    const headers = forwardHeaders(req.headers);
    delete headers.expect;
    if (v.authority !== undefined) headers.host = v.authority;
    // A body Node read as chunked goes upstream chunked, whatever the method:
    // Node's client frames GET, DELETE, OPTIONS bodies only when told, and an
    // unframed body would be read upstream as a request no rule judged.
    if (req.headers['transfer-encoding'] !== undefined) {
      delete headers['content-length'];
      headers['transfer-encoding'] = 'chunked';
    } else if (req.headers['content-length'] !== undefined) {
      headers['content-length'] = req.headers['content-length'];
    }
    const idleMs = this.#o.upstreamAnswerTimeoutMs ?? 60_000;
    const up = request({ agent: conn.agent, method: req.method, path: v.target, headers, setHost: false });
    let answerTimer: NodeJS.Timeout | undefined;
    up.once('finish', () => {
      answerTimer = setTimeout(() => up.destroy(Object.assign(new Error(`no answer within ${idleMs} ms`), { code: 'UPSTREAM_IDLE' })), idleMs);
    });
    const stopTimer = (): void => clearTimeout(answerTimer);
    up.once('response', stopTimer);
    up.once('close', stopTimer);
    let answered = false;
    up.on('response', (ur: IncomingMessage) => {
      answered = true;
      const answer = forwardHeaders(ur.headers);
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, answer);
      // (an HTTP/1.0 client may read to the close whatever the framing)
      conn.framed = req.httpVersionMinor >= 1 && (answer['content-length'] !== undefined || res.chunkedEncoding || !(res as unknown as { _hasBody: boolean })._hasBody);
      ur.pipe(res);
      ur.on('aborted', () => res.destroy());
      ur.on('error', () => res.destroy());
      res.once('finish', () => this.#account(conn.flow, v, 'allow', ur.statusCode ?? 0, j, start));
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (answered || res.headersSent) {
        res.destroy(); // mid-answer: the client must not take a cut answer for a whole one
        return;
      }
      this.#o.log.debug({ err: err.message, dst: conn.flow.dst }, 'l7 proxy: upstream failed');
      req.unpipe(up);
      if (err.code === 'UPSTREAM_IDLE') {
        this.#account(conn.flow, v, 'error', 504, j, start);
        this.#refuse(res, 504, `upstream ${conn.flow.dst.ip}:${conn.flow.dst.port} did not answer within ${idleMs} ms\n`, true);
        return;
      }
      this.#account(conn.flow, v, 'error', 503, j, start);
      this.#refuse(res, 503, `upstream ${conn.flow.dst.ip}:${conn.flow.dst.port} unreachable: ${err.code ?? err.message}\n`, true);
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const start = performance.now();
    const conn = this.#conns.get(socket);
    if (!conn) {
      socket.destroy();
      return;
    }
    this.#refresh(conn, socket);
    const v = this.#view(req);
    const j = v.problem ? undefined : judge(conn.flow.checks, { method: v.method, path: v.path, host: v.host, headers: req.headers });
    if (!j || j.verdict === 'deny') {
      const status = j ? 403 : 400;
      const text = j ? denyText(j, v.method, v.path) : `bad request: ${v.problem}\n`;
      this.#account(conn.flow, v, j ? 'deny' : 'error', status, j, start);
      socket.end(`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Bad Request'}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`, () => socket.destroy()); // a full close: a client holding its side open is not kept half-open
      return;
    }
    // Sent upstream through Node's client, on a connection of its own: the
    // sockets are joined only on a 101. Any other answer is passed on with
    // its body and the client connection closed after it, so nothing the
    // client sends after an upgrade that did not happen escapes the judge.
    //
    // Only WebSocket is joined: after any other upgrade (h2c above all) the
    // bytes would be a protocol no rule judges. Such a request is sent on
    // without its Upgrade (RFC 9110 7.8 lets a server ignore it: an h2c
    // client goes on in HTTP/1.1), and one with a body is refused.
    const websocket = String(req.headers.upgrade ?? '').toLowerCase().split(',').some((p) => p.trim() === 'websocket');
    if (!websocket && (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0')) {
      const text = `bad request: upgrade to ${String(req.headers.upgrade)} with a body (only websocket upgrades are passed on)\n`;
      this.#account(conn.flow, v, 'error', 400, j, start);
      socket.end(`HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`, () => socket.destroy()); // a full close: a client holding its side open is not kept half-open
      return;
    }
    const upHeaders = forwardHeaders(req.headers, websocket);
    if (v.authority !== undefined) upHeaders.host = v.authority;
    const up = request({ method: req.method, path: v.target, headers: upHeaders, setHost: false, createConnection: () => this.#dial(conn.flow) });
    this.#upgraded.add(socket);
    let answered = false;
    let upSock: Socket | undefined;
    up.on('socket', (x: Socket) => (upSock = x));
    const close = (): void => {
      up.destroy();
      upSock?.destroy();
      socket.destroy();
    };
    socket.on('error', close);
    socket.on('close', () => {
      this.#upgraded.delete(socket);
      up.destroy();
      upSock?.destroy();
    });
    up.on('upgrade', (ur: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      answered = true;
      if (!websocket) {
        upSocket.destroy();
        return close();
      }
      let h = `HTTP/1.1 ${ur.statusCode ?? 101} ${ur.statusMessage ?? 'Switching Protocols'}\r\n`;
      for (let i = 0; i < ur.rawHeaders.length; i += 2) h += `${ur.rawHeaders[i]}: ${ur.rawHeaders[i + 1]}\r\n`;
      socket.write(`${h}\r\n`);
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      upSocket.on('error', close);
      upSocket.on('close', close);
      socket.on('close', () => upSocket.destroy());
      this.#account(conn.flow, v, 'allow', 101, j, start);
    });
    up.on('response', (ur: IncomingMessage) => {
      answered = true;
      const out = forwardHeaders(ur.headers);
      delete out['content-length'];
      let h = `HTTP/1.1 ${ur.statusCode ?? 502} ${ur.statusMessage ?? ''}\r\nconnection: close\r\n`;
      for (const [k, val] of Object.entries(out)) for (const x of Array.isArray(val) ? val : [String(val)]) h += `${k}: ${x}\r\n`;
      socket.write(`${h}\r\n`);
      ur.pipe(socket); // close-delimited: the client connection ends with the body
      ur.on('end', () => {
        upSock?.destroy();
        socket.destroySoon();
      });
      ur.on('error', close);
      ur.on('aborted', close);
      this.#account(conn.flow, v, 'allow', ur.statusCode ?? 0, j, start);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (answered) return close();
      this.#account(conn.flow, v, 'error', 503, j, start);
      const text = `upstream ${conn.flow.dst.ip}:${conn.flow.dst.port} unreachable: ${err.code ?? err.message}\n`;
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`, () => socket.destroy()); // a full close: a client holding its side open is not kept half-open
    });
    up.end();
  }
}
