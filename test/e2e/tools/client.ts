// Traffic client for the datapath tests, run inside a pod (or host) netns. Every
// subcommand prints one JSON line:
//
//   node client.ts once   --to ip:port [--udp] [--timeout ms]
//       {"ok":true,"reply":"b1","ms":1.2} | {"ok":false,"error":"ECONNREFUSED","ms":..}
//   node client.ts loop   --to ip:port (--count N | --duration s) [--interval ms] [--udp] [--timeout ms]
//       {"attempts":..,"ok":..,"failed":..,"errors":{code:n},"replies":{id:n},"avgMs":..,"maxMs":..}
//   node client.ts stream --to ip:port --duration s [--interval ms] [--timeout ms]
//       {"ok":true,"reply":"b1","sent":n,"echoed":n,"maxGapMs":..} or the failure
//   node client.ts datagram --to ip:port [--size bytes] [--timeout ms]
//       one datagram from an unconnected socket; the first answer from anyone:
//       {"ok":true,"from":"10.96.0.53:53","bytes":4000,"reply":"b1 10","ms":..}
//   node client.ts udp-watch --to ip:port --from-port p --duration s [--interval ms]
//       a datagram every interval from one source port; a line per answer
//       {"t":<epoch ms>,"from":"ip:port","reply":"b1"}, then a summary
//       {"done":true,"sent":n,"answers":n,"replies":{id:n}}
//   node client.ts upload --to ip:port --bytes n [--timeout ms]
//       after the greeting, n bytes and a half-close; the server's last line
//       (echo-server --sink: `<name> <bytes it received>`):
//       {"ok":true,"reply":"b1","sent":n,"answer":"b1 8388608","ms":..}
//
// once, stream, datagram and upload take --from-port p (bind the local port);
// once takes --reset (TCP: close with an RST, SO_LINGER 0, after the reply) and
// reports the local port it used.
//
// `reply` is the first line the server sent (echo-server sends its --name).
// Errors are the socket's errno code, or TIMEOUT (no answer in time), EOF (closed
// before answering) and MISMATCH (stream: an echo differed from what was sent).
// Exit status: 0 when ok (loop: always 0 once it ran), 1 when not, 2 on bad usage.
// The same operations are exported as functions.

import dgram from 'node:dgram';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

export interface Target {
  host: string;
  port: number;
}

export class UsageError extends Error {
  readonly code = 'USAGE';
}

/** Parse `ip:port`. */
export function parseTarget(value: string): Target {
  const i = value.lastIndexOf(':');
  const host = value.slice(0, i);
  const port = Number(value.slice(i + 1));
  if (i <= 0 || net.isIPv4(host) === false || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--to "${value}" is not an IPv4 address and port (ip:port)`);
  }
  return { host, port };
}

function targetOf(to: string | Target): Target {
  return typeof to === 'string' ? parseTarget(to) : to;
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

export type OnceResult =
  | { ok: true; reply: string; ms: number }
  | { ok: false; error: string; ms: number };

export interface OnceOptions {
  to: string | Target;
  udp?: boolean;
  /** Default 2000. */
  timeoutMs?: number;
  /** Bind this local port (a tuple chosen on purpose). */
  fromPort?: number;
  /** TCP: after the reply, close with an RST (SO_LINGER 0) instead of a FIN. */
  reset?: boolean;
}

function errorCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return typeof e?.code === 'string' ? e.code : String(e?.message ?? err);
}

/** One new connection (or datagram): resolves with the first line the server sends. */
export function once(opts: OnceOptions): Promise<OnceResult & { localPort?: number }> {
  const to = targetOf(opts.to);
  const timeoutMs = opts.timeoutMs ?? 2000;
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    let close = (): void => {};
    let localPort: () => number | undefined = () => undefined;
    const finish = (r: { ok: true; reply: string } | { ok: false; error: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const port = localPort();
      close();
      resolve({ ...r, ms: round(performance.now() - t0), ...(port === undefined ? {} : { localPort: port }) });
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'TIMEOUT' }), timeoutMs);
    let buf = '';
    const onData = (d: string | Buffer): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish({ ok: true, reply: buf.slice(0, nl) });
    };
    if (opts.udp === true) {
      const sock = dgram.createSocket('udp4');
      close = () => sock.close();
      localPort = () => {
        try {
          return sock.address().port;
        } catch {
          return undefined;
        }
      };
      sock.on('message', (m) => {
        buf = '';
        onData(m.toString().endsWith('\n') ? m : `${m.toString()}\n`);
      });
      // Connected, so an ICMP port unreachable comes back as ECONNREFUSED.
      sock.on('error', (e) => finish({ ok: false, error: errorCode(e) }));
      const connect = (): void => sock.connect(to.port, to.host, () => sock.send('ping\n'));
      if (opts.fromPort === undefined) connect();
      else sock.bind(opts.fromPort, connect);
    } else {
      const sock = net.connect({ host: to.host, port: to.port, ...(opts.fromPort === undefined ? {} : { localPort: opts.fromPort }) });
      close = () => {
        if (opts.reset === true && !sock.destroyed) sock.resetAndDestroy();
        else sock.destroy();
      };
      localPort = () => sock.localPort;
      sock.setNoDelay(true);
      sock.on('data', onData);
      sock.on('error', (e) => finish({ ok: false, error: errorCode(e) }));
      sock.on('close', () => finish({ ok: false, error: 'EOF' }));
    }
  });
}

export interface LoopOptions extends OnceOptions {
  /** Number of attempts; or */
  count?: number;
  /** keep going this many seconds. */
  durationS?: number;
  /** Pause between attempts. Default 0. */
  intervalMs?: number;
}

export interface LoopSummary {
  attempts: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  replies: Record<string, number>;
  avgMs: number;
  maxMs: number;
  durationMs: number;
}

/** Sequential new connections; counts answers per backend and failures per error. */
export async function loop(opts: LoopOptions): Promise<LoopSummary> {
  if ((opts.count === undefined) === (opts.durationS === undefined)) {
    throw new UsageError('pass exactly one of count (--count) and durationS (--duration)');
  }
  const s: LoopSummary = { attempts: 0, ok: 0, failed: 0, errors: {}, replies: {}, avgMs: 0, maxMs: 0, durationMs: 0 };
  const t0 = performance.now();
  const deadline = opts.durationS === undefined ? Infinity : t0 + opts.durationS * 1000;
  let total = 0;
  while (opts.count === undefined ? performance.now() < deadline : s.attempts < opts.count) {
    if (s.attempts > 0 && (opts.intervalMs ?? 0) > 0) await sleep(opts.intervalMs);
    const r = await once(opts);
    s.attempts++;
    total += r.ms;
    s.maxMs = Math.max(s.maxMs, r.ms);
    if (r.ok) {
      s.ok++;
      s.replies[r.reply] = (s.replies[r.reply] ?? 0) + 1;
    } else {
      s.failed++;
      s.errors[r.error] = (s.errors[r.error] ?? 0) + 1;
    }
  }
  s.avgMs = s.attempts === 0 ? 0 : round(total / s.attempts);
  s.durationMs = round(performance.now() - t0);
  return s;
}

export interface StreamOptions {
  to: string | Target;
  durationS: number;
  /** Between numbered lines. Default 10. */
  intervalMs?: number;
  /** For the greeting, and for the last echoes after sending stops. Default 2000. */
  timeoutMs?: number;
  /** Bind this local port. */
  fromPort?: number;
}

export interface StreamResult {
  ok: boolean;
  reply?: string;
  error?: string;
  sent: number;
  echoed: number;
  /** Longest wait between two consecutive echoes (disruption seen by the client). */
  maxGapMs: number;
  ms: number;
  expected?: string;
  got?: string;
}

/** One long-lived TCP connection sending a numbered line every intervalMs, checking every echo. */
export function stream(opts: StreamOptions): Promise<StreamResult> {
  const to = targetOf(opts.to);
  const intervalMs = opts.intervalMs ?? 10;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const r: StreamResult = { ok: false, sent: 0, echoed: 0, maxGapMs: 0, ms: 0 };
    let done = false;
    let lastEcho = 0;
    let sending: NodeJS.Timeout | undefined;
    let timer: NodeJS.Timeout | undefined;
    const sock = net.connect({ host: to.host, port: to.port, ...(opts.fromPort === undefined ? {} : { localPort: opts.fromPort }) });
    const finish = (error?: string, extra: Partial<StreamResult> = {}): void => {
      if (done) return;
      done = true;
      clearInterval(sending);
      clearTimeout(timer);
      sock.destroy();
      Object.assign(r, extra, { ok: error === undefined, ms: round(performance.now() - t0), maxGapMs: round(r.maxGapMs) });
      if (error !== undefined) r.error = error;
      resolve(r);
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish('TIMEOUT'), timeoutMs);
    };
    const stopSending = (): void => {
      clearInterval(sending);
      sending = undefined;
      if (r.echoed === r.sent) finish();
      else arm();
    };
    const startSending = (): void => {
      clearTimeout(timer);
      const end = performance.now() + opts.durationS * 1000;
      lastEcho = performance.now();
      sending = setInterval(() => {
        if (performance.now() >= end) {
          stopSending();
          return;
        }
        sock.write(`${r.sent}\n`);
        r.sent++;
      }, intervalMs);
    };
    let buf = '';
    sock.setNoDelay(true);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (r.reply === undefined) {
          r.reply = line;
          startSending();
          continue;
        }
        const expected = String(r.echoed);
        if (line !== expected) {
          finish('MISMATCH', { expected, got: line });
          return;
        }
        const now = performance.now();
        r.maxGapMs = Math.max(r.maxGapMs, now - lastEcho);
        lastEcho = now;
        r.echoed++;
        if (sending === undefined && r.echoed === r.sent) finish();
      }
    });
    sock.on('error', (e) => finish(errorCode(e)));
    sock.on('close', () => finish('EOF'));
    arm();
  });
}

export interface DatagramOptions {
  to: string | Target;
  /** Bytes in the datagram (at least 5: `ping\n`, padded with '.'). Default 5. */
  size?: number;
  fromPort?: number;
  /** Default 2000. */
  timeoutMs?: number;
}

export type DatagramResult =
  | { ok: true; from: string; bytes: number; reply: string; ms: number }
  | { ok: false; error: string; ms: number };

/** A datagram of `size` bytes, `ping\n` then padding. */
function payload(size: number): Buffer {
  const b = Buffer.alloc(Math.max(size, 5), '.');
  b.write('ping\n');
  return b;
}

/**
 * One datagram from an unconnected socket, so the answer is taken from
 * whichever address sends it (a connected socket would silently drop an
 * answer from an address it did not dial): resolves with its source, size
 * and first line.
 */
export function datagram(opts: DatagramOptions): Promise<DatagramResult> {
  const to = targetOf(opts.to);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    let done = false;
    const finish = (r: { ok: true; from: string; bytes: number; reply: string } | { ok: false; error: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve({ ...r, ms: round(performance.now() - t0) });
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'TIMEOUT' }), opts.timeoutMs ?? 2000);
    sock.on('message', (m, rinfo) => {
      const text = m.toString('latin1');
      const nl = text.indexOf('\n');
      finish({ ok: true, from: `${rinfo.address}:${rinfo.port}`, bytes: m.length, reply: nl >= 0 ? text.slice(0, nl) : text });
    });
    sock.on('error', (e) => finish({ ok: false, error: errorCode(e) }));
    sock.bind(opts.fromPort ?? 0, () => {
      sock.send(payload(opts.size ?? 5), to.port, to.host, (err) => {
        if (err) finish({ ok: false, error: errorCode(err) });
      });
    });
  });
}

export interface UdpWatchOptions {
  to: string | Target;
  fromPort: number;
  durationS: number;
  /** Between datagrams. Default 50. */
  intervalMs?: number;
  /** Called with every answer (the CLI prints it as a JSON line). */
  onAnswer?: (a: { t: number; from: string; reply: string }) => void;
}

export interface UdpWatchSummary {
  done: true;
  sent: number;
  answers: number;
  replies: Record<string, number>;
}

/** One UDP flow (a fixed source port, as DNS forwarders and statsd clients
 *  keep) sending every intervalMs; every answer is reported with its
 *  wall-clock time, so a test can see when the flow moved to another backend. */
export function udpWatch(opts: UdpWatchOptions): Promise<UdpWatchSummary> {
  const to = targetOf(opts.to);
  const s: UdpWatchSummary = { done: true, sent: 0, answers: 0, replies: {} };
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    let ticker: NodeJS.Timeout | undefined;
    sock.on('message', (m, rinfo) => {
      const text = m.toString();
      const reply = text.split('\n')[0] ?? '';
      s.answers++;
      s.replies[reply] = (s.replies[reply] ?? 0) + 1;
      opts.onAnswer?.({ t: Date.now(), from: `${rinfo.address}:${rinfo.port}`, reply });
    });
    // Unconnected: an ICMP error for one datagram does not end the flow.
    sock.on('error', () => {});
    sock.once('listening', () => {
      sock.off('error', reject);
      const end = performance.now() + opts.durationS * 1000;
      const tick = (): void => {
        if (performance.now() >= end) {
          clearInterval(ticker);
          // The last answers are in flight for a moment.
          setTimeout(() => sock.close(() => resolve(s)), 200);
          return;
        }
        s.sent++;
        sock.send('ping\n', to.port, to.host);
      };
      tick();
      ticker = setInterval(tick, opts.intervalMs ?? 50);
    });
    sock.once('error', reject);
    sock.bind(opts.fromPort);
  });
}

export interface UploadOptions {
  to: string | Target;
  bytes: number;
  fromPort?: number;
  /** For the whole transfer. Default 30000. */
  timeoutMs?: number;
}

export type UploadResult =
  | { ok: true; reply: string; sent: number; answer: string; ms: number }
  | { ok: false; error: string; reply?: string; sent: number; ms: number };

/**
 * One TCP connection: wait for the greeting, send `bytes` bytes, half-close,
 * and resolve with the line the server sends after that (echo-server --sink
 * answers with the number of bytes it received).
 */
export function upload(opts: UploadOptions): Promise<UploadResult> {
  const to = targetOf(opts.to);
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    let reply: string | undefined;
    let sent = 0;
    let buf = '';
    const sock = net.connect({ host: to.host, port: to.port, ...(opts.fromPort === undefined ? {} : { localPort: opts.fromPort }) });
    const finish = (r: { ok: true; answer: string } | { ok: false; error: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const ms = round(performance.now() - t0);
      if (r.ok) resolve({ ok: true, reply: reply ?? '', sent, answer: r.answer, ms });
      else resolve({ ok: false, error: r.error, ...(reply === undefined ? {} : { reply }), sent, ms });
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'TIMEOUT' }), opts.timeoutMs ?? 30_000);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const send = (): void => {
      while (sent < opts.bytes) {
        const n = Math.min(chunk.length, opts.bytes - sent);
        sent += n;
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          sock.once('drain', send);
          return;
        }
      }
      sock.end();
    };
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (reply === undefined) {
          reply = line;
          send();
        } else {
          finish({ ok: true, answer: line });
          return;
        }
      }
    });
    sock.on('error', (e) => finish({ ok: false, error: errorCode(e) }));
    sock.on('close', () => finish({ ok: false, error: 'EOF' }));
  });
}

function parseNumber(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) throw new UsageError(`${flag} "${value}" must be a number >= ${min}`);
  return n;
}

async function main(): Promise<number> {
  const [cmd, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({
    args: rest,
    options: {
      to: { type: 'string' },
      udp: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      count: { type: 'string' },
      duration: { type: 'string' },
      interval: { type: 'string' },
      'from-port': { type: 'string' },
      reset: { type: 'boolean', default: false },
      size: { type: 'string' },
      bytes: { type: 'string' },
    },
    strict: true,
  });
  if (values.to === undefined) throw new UsageError('--to ip:port is required');
  const to = parseTarget(values.to);
  const timeoutMs = parseNumber('--timeout', values.timeout, 1);
  const fromPort = parseNumber('--from-port', values['from-port'], 1);
  if (fromPort !== undefined && (!Number.isInteger(fromPort) || fromPort > 65535)) throw new UsageError(`--from-port "${values['from-port']}" is not a port number (1-65535)`);
  const bind = fromPort === undefined ? {} : { fromPort };
  const common = { to, udp: values.udp, ...(timeoutMs === undefined ? {} : { timeoutMs }) };
  const out = (v: object): void => void process.stdout.write(`${JSON.stringify(v)}\n`);
  switch (cmd) {
    case 'once': {
      const r = await once({ ...common, ...bind, reset: values.reset });
      out(r);
      return r.ok ? 0 : 1;
    }
    case 'loop': {
      const count = parseNumber('--count', values.count, 1);
      const durationS = parseNumber('--duration', values.duration, 0);
      const intervalMs = parseNumber('--interval', values.interval, 0);
      out(await loop({ ...common, ...(count === undefined ? {} : { count }), ...(durationS === undefined ? {} : { durationS }), ...(intervalMs === undefined ? {} : { intervalMs }) }));
      return 0;
    }
    case 'stream': {
      if (values.udp) throw new UsageError('stream is TCP only (drop --udp)');
      const durationS = parseNumber('--duration', values.duration, 0);
      if (durationS === undefined) throw new UsageError('--duration s is required');
      const intervalMs = parseNumber('--interval', values.interval, 1);
      const r = await stream({ to, durationS, ...bind, ...(intervalMs === undefined ? {} : { intervalMs }), ...(timeoutMs === undefined ? {} : { timeoutMs }) });
      out(r);
      return r.ok ? 0 : 1;
    }
    case 'datagram': {
      const size = parseNumber('--size', values.size, 0);
      if (size !== undefined && (!Number.isInteger(size) || size > 65507)) throw new UsageError(`--size "${values.size}" must be a whole number of bytes up to 65507`);
      const r = await datagram({ to, ...bind, ...(size === undefined ? {} : { size }), ...(timeoutMs === undefined ? {} : { timeoutMs }) });
      out(r);
      return r.ok ? 0 : 1;
    }
    case 'udp-watch': {
      if (fromPort === undefined) throw new UsageError('--from-port p is required (one flow, one source port)');
      const durationS = parseNumber('--duration', values.duration, 0);
      if (durationS === undefined) throw new UsageError('--duration s is required');
      const intervalMs = parseNumber('--interval', values.interval, 1);
      out(await udpWatch({ to, fromPort, durationS, ...(intervalMs === undefined ? {} : { intervalMs }), onAnswer: out }));
      return 0;
    }
    case 'upload': {
      const bytes = parseNumber('--bytes', values.bytes, 0);
      if (bytes === undefined || !Number.isInteger(bytes)) throw new UsageError('--bytes n (a whole number) is required');
      const r = await upload({ to, bytes, ...bind, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
      out(r);
      return r.ok ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown subcommand "${String(cmd)}" (once, loop, stream, datagram, udp-watch, upload)`);
  }
}

if (import.meta.main) {
  try {
    process.exitCode = await main();
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: 'USAGE', message: (err as Error).message })}\n`);
    process.exitCode = 2;
  }
}
