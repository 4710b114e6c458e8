// Many probes at once from inside one pod netns, asked for over a UNIX socket
// (the socket lives in the file system, so the test reaches it from any
// netns). The reachability-matrix suite runs one per source pod.
//
//   node prober.ts --socket /path/probe.sock
//
// Protocol: newline-delimited JSON. A request
//   {"id":1,"probes":[{"host":"10.244.1.5","port":80,"proto":"TCP","timeoutMs":1000}, ...]}
// is answered, once every probe of it has finished (all run concurrently), with
//   {"id":1,"results":[{"ok":true,"reply":"x-a","ms":1.2} | {"ok":false,"error":"TIMEOUT","ms":1000}, ...]}
// in the order of the probes. A probe is client.ts's `once`: a new TCP
// connection read up to the server's first line, or one datagram from a new
// connected socket and its answer (an ICMP port unreachable is ECONNREFUSED).
// Prints {"ready":true,...} once listening; exits 0 on SIGTERM/SIGINT.

import { rmSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { once, type OnceResult } from './client.ts';

export interface ProbeRequest {
  host: string;
  port: number;
  proto: 'TCP' | 'UDP';
  timeoutMs: number;
}

export interface ProbeBatch {
  id: number;
  probes: ProbeRequest[];
}

export interface ProbeAnswer {
  id: number;
  results?: OnceResult[];
  error?: string;
}

function probe(p: ProbeRequest): Promise<OnceResult> {
  return once({ to: { host: p.host, port: p.port }, udp: p.proto === 'UDP', timeoutMs: p.timeoutMs });
}

async function answer(line: string): Promise<ProbeAnswer> {
  let batch: ProbeBatch;
  try {
    batch = JSON.parse(line) as ProbeBatch;
  } catch (err) {
    return { id: -1, error: `request is not JSON: ${(err as Error).message}` };
  }
  if (!Array.isArray(batch.probes)) return { id: batch.id, error: 'request has no probes array' };
  for (const [i, p] of batch.probes.entries()) {
    if (!net.isIPv4(p.host) || !Number.isInteger(p.port) || (p.proto !== 'TCP' && p.proto !== 'UDP') || !(p.timeoutMs > 0)) {
      return { id: batch.id, error: `probes[${i}] ${JSON.stringify(p)} needs an IPv4 host, a port, proto TCP or UDP and timeoutMs > 0` };
    }
  }
  return { id: batch.id, results: (await Promise.all(batch.probes.map(probe))).map(({ localPort: _, ...r }: OnceResult & { localPort?: number }) => r) };
}

function main(): void {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { socket: { type: 'string' } }, strict: true });
  const socket = values.socket;
  if (socket === undefined || socket === '') {
    process.stderr.write('prober: --socket path is required\n');
    process.exitCode = 2;
    return;
  }
  rmSync(socket, { force: true });
  const server = net.createServer((conn) => {
    conn.setEncoding('utf8');
    conn.on('error', () => {});
    let buf = '';
    conn.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim() === '') continue;
        void answer(line).then((a) => {
          if (!conn.destroyed) conn.write(`${JSON.stringify(a)}\n`);
        });
      }
    });
  });
  server.on('error', (err) => {
    process.stdout.write(`${JSON.stringify({ ready: false, error: (err as NodeJS.ErrnoException).code ?? err.message })}\n`);
    process.exit(1);
  });
  server.listen(socket, () => process.stdout.write(`${JSON.stringify({ ready: true, socket, pid: process.pid })}\n`));
  const stop = (): void => {
    server.close();
    rmSync(socket, { force: true });
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (import.meta.main) main();
