// The agent's CNI socket: the shim sends one request per connection; this
// validates it (spec.ts), hands it to the endpoint handler, renders the result
// in the request's cniVersion and answers. Requests run concurrently, except
// that operations on the same attachment (containerId, ifname) are serialised.
//
// The socket is root-only: its directory is created 0700, and the socket is
// bound under a temporary name, chmod 0600, then renamed into place, so it is
// never reachable with looser permissions.
import { chmod, lstat, mkdir, rename, stat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import { CNI_ERR, CniError, toCniError } from './errors.ts';
import { attachmentKey, deliverQueuedDel, queuedDelFor, replayDelQueueLocked, type ReplayResult } from './del-queue.ts';
import { MAX_REQUEST_BYTES, errorResponse, okResponse, parseAgentRequest, type AgentRequest, type AgentResponse } from './protocol.ts';
import { isCniCommand, renderResult, renderVersion } from './spec.ts';
import type { CniHandler } from './types.ts';

export { replayDelQueue, type ReplayResult } from './del-queue.ts';

export { DEFAULT_CNI_SOCKET } from './protocol.ts';

export interface CniServerOptions {
  socketPath: string;
  handler: CniHandler;
  log: Logger;
  /** Registry for hypha_cni_requests_total and hypha_cni_request_duration_seconds. */
  metrics?: Registry;
  /**
   * The shim's DEL queue. When set, an ADD for an attachment with a queued DEL
   * delivers that DEL first (a stale DEL never tears down a newer attachment),
   * and a DEL that succeeds removes the queued copy.
   */
  delQueueDir?: string;
  /** Largest request read (default 1 MiB). */
  maxRequestBytes?: number;
  /** A client that has not finished sending its request after this long is dropped (default 30 s). */
  requestTimeoutMs?: number;
}

export interface CniServer {
  /** Stop accepting, wait for requests in flight to be answered, remove the socket. */
  close(): Promise<void>;
  /** The socket path. */
  readonly address: string;
  /** Deliver the DEL queue (delQueueDir) under the server's attachment lock; {done: 0, failed: 0} without one. */
  replayDelQueue(): Promise<ReplayResult>;
}

interface CniMetrics {
  requests: Counter<'command' | 'code'>;
  duration: Histogram<'command'>;
}

function cniMetrics(registry: Registry | undefined): CniMetrics | undefined {
  if (!registry) return undefined;
  const existing = registry.getSingleMetric('hypha_cni_requests_total') as Counter<'command' | 'code'> | undefined;
  if (existing) {
    return { requests: existing, duration: registry.getSingleMetric('hypha_cni_request_duration_seconds') as Histogram<'command'> };
  }
  return {
    requests: new Counter({
      name: 'hypha_cni_requests_total', help: 'CNI requests answered, by command and CNI result code (0: success)',
      labelNames: ['command', 'code'], registers: [registry],
    }),
    duration: new Histogram({
      name: 'hypha_cni_request_duration_seconds', help: 'Time from a CNI request arriving to its answer',
      labelNames: ['command'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry],
    }),
  };
}

/** Serialises operations per key; unrelated keys run concurrently. */
class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>();
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return next;
  }
}

/** Is something answering on this UNIX socket? */
function socketAlive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function prepareSocketPath(socketPath: string, log: Logger): Promise<void> {
  const dir = path.dirname(socketPath);
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) {
    await chmod(dir, 0o700);
  } else {
    const st = await stat(dir);
    if ((st.mode & 0o022) !== 0) log.warn({ dir, mode: (st.mode & 0o777).toString(8) }, 'CNI socket directory is writable by others');
  }
  let st;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new CniError(CNI_ERR.IO, `CNI socket path ${socketPath} exists and is not a socket; refusing to replace it`);
  if (await socketAlive(socketPath)) throw new CniError(CNI_ERR.IO, `CNI socket ${socketPath} is in use by another process`);
  log.info({ socket: socketPath }, 'removing stale CNI socket');
  await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** Read one request: everything the client sends until it shuts down its side. */
function readRequest(sock: Socket, limit: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => reject(new CniError(CNI_ERR.IO, `no complete request within ${timeoutMs} ms`)), timeoutMs);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      sock.removeAllListeners('data');
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    sock.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        done(new CniError(CNI_ERR.IO, `request larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    sock.once('end', () => done());
    sock.once('error', (err) => done(err));
    sock.once('close', () => done(new CniError(CNI_ERR.IO, 'client closed the connection before sending a request')));
  });
}

export async function startCniServer(opts: CniServerOptions): Promise<CniServer> {
  const { socketPath, handler, log } = opts;
  const limit = opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
  const timeoutMs = opts.requestTimeoutMs ?? 30_000;
  const metrics = cniMetrics(opts.metrics);
  const lock = new KeyedLock();
  const inFlight = new Set<Promise<void>>();

  const dispatch = async (parsed: AgentRequest): Promise<AgentResponse> => {
    switch (parsed.command) {
      case 'VERSION':
        return okResponse(renderVersion(parsed.cniVersion));
      case 'STATUS':
        await handler.status(parsed.config);
        return okResponse();
      case 'GC':
        await handler.gc(parsed.gc);
        return okResponse();
      case 'ADD':
      case 'DEL':
      case 'CHECK': {
        const { req } = parsed;
        return lock.run(attachmentKey(req.containerId, req.ifname), async () => {
          const queued = opts.delQueueDir ? await queuedDelFor(opts.delQueueDir, req.containerId, req.ifname) : undefined;
          if (parsed.command === 'ADD') {
            if (queued) {
              // The runtime DELeted this attachment while the agent was away; finish that first.
              const outcome = await deliverQueuedDel(queued, handler, log);
              if (outcome === 'kept') throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `a queued DEL of ${req.containerId}/${req.ifname} has not completed yet`);
            }
            const result = await handler.add(req);
            return okResponse(renderResult(result, parsed.cniVersion));
          }
          if (parsed.command === 'DEL') {
            await handler.del(req);
            if (queued) await unlink(queued).catch(() => undefined);
            return okResponse();
          }
          await handler.check(req);
          return okResponse();
        });
      }
    }
  };

  const serve = async (sock: Socket): Promise<void> => {
    const t0 = performance.now();
    sock.on('error', () => undefined); // a shim killed mid-request: nothing to answer
    let command = 'unknown';
    let fields: Record<string, unknown> = {};
    let response: AgentResponse;
    let warning: string | undefined;
    try {
      const body = await readRequest(sock, limit, timeoutMs);
      let raw: unknown;
      try {
        raw = JSON.parse(body.toString('utf8'));
      } catch (err) {
        throw new CniError(CNI_ERR.DECODE, `the request is not JSON: ${(err as Error).message}`);
      }
      const r = raw as Record<string, unknown>;
      // A metric label: only the known commands, whatever a client sends.
      command = isCniCommand(r?.command) ? r.command : 'invalid';
      fields = { containerId: r?.containerId, netns: r?.netns, ifname: r?.ifname };
      const parsed = parseAgentRequest(raw, { onWarning: (m) => (warning = m) });
      response = await dispatch(parsed);
    } catch (err) {
      const e = toCniError(err);
      if (!(err instanceof CniError)) log.error({ command, ...fields, err }, 'CNI handler threw');
      response = errorResponse(e);
    }
    const code = response.ok ? 0 : response.error.code;
    const ms = +(performance.now() - t0).toFixed(1);
    metrics?.requests.inc({ command, code: String(code) });
    metrics?.duration.observe({ command }, ms / 1000);
    const line = { command, ...fields, code, ms, ...(response.ok ? {} : { reason: response.error.msg }), ...(warning ? { warning } : {}) };
    // A runtime asks STATUS every few seconds (containerd: every 5 s): only
    // ADD, DEL and CHECK are worth a line at info.
    if (response.ok) log[command === 'STATUS' || command === 'VERSION' ? 'debug' : 'info'](line, 'cni request');
    else log.warn(line, 'cni request failed');
    if (!sock.destroyed) sock.end(`${JSON.stringify(response)}\n`);
  };

  await prepareSocketPath(socketPath, log);
  const server: Server = createServer({ allowHalfOpen: true }, (sock) => {
    const p = serve(sock).catch((err: unknown) => log.error({ err }, 'CNI connection failed'));
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  });
  // Bind under a temporary name, restrict it, then move it into place.
  const tmp = path.join(path.dirname(socketPath), `.${path.basename(socketPath)}.${process.pid}.tmp`);
  await unlink(tmp).catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(tmp, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let ino: number;
  try {
    await chmod(tmp, 0o600);
    await rename(tmp, socketPath);
    ino = (await lstat(socketPath)).ino;
  } catch (err) {
    server.close();
    throw err;
  }
  server.on('error', (err) => log.error({ err, socket: socketPath }, 'CNI socket error'));
  log.info({ socket: socketPath }, 'CNI socket listening');

  let closing: Promise<void> | undefined;
  return {
    address: socketPath,
    replayDelQueue: () =>
      opts.delQueueDir ? replayDelQueueLocked(opts.delQueueDir, handler, log, (key, fn) => lock.run(key, fn)) : Promise.resolve({ done: 0, failed: 0 }),
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.allSettled([...inFlight]);
        // Only our socket: a newer agent may already have bound its own at this path.
        const st = await lstat(socketPath).catch(() => undefined);
        if (st?.ino === ino) await unlink(socketPath).catch(() => undefined);
      })();
      return closing;
    },
  };
}
