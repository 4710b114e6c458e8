// Backend for traffic tests, run inside a pod (or node, or host) netns.
//
//   node echo-server.ts --name b1 --port 8080[,8081...] [--udp | --both] [--host 0.0.0.0] [--peer]
//
// With --peer the greeting is `<name> <client address>` (what the server sees
// as the source: a masqueraded client shows the node's address).
// TCP: on each connection writes `<name>\n` at once, then echoes every byte it
// receives (a client can hold a long-lived stream and check every byte comes back).
// UDP: answers every datagram with `<name>\n`.
// Prints `{"ready":true,...}` on stdout once every socket listens; exits 0 on
// SIGTERM/SIGINT, 1 (with a JSON error line) when a socket cannot be opened.

import dgram from 'node:dgram';
import net from 'node:net';
import { parseArgs } from 'node:util';

export interface EchoServerOptions {
  name: string;
  ports: number[];
  tcp: boolean;
  udp: boolean;
  host: string;
  /** Greet with `<name> <peer address>`. */
  peer?: boolean;
}

export interface EchoServer {
  close(): Promise<void>;
}

export class UsageError extends Error {
  readonly code = 'USAGE';
}

export function parsePorts(value: string): number[] {
  const ports = value.split(',').map((p) => Number(p.trim()));
  for (const [i, p] of ports.entries()) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new UsageError(`--port "${value}": entry ${i} is not a port number (1-65535)`);
    }
  }
  return ports;
}

/** Listen on every port; resolves once all sockets are bound. */
export async function startEchoServer(opts: EchoServerOptions): Promise<EchoServer> {
  const greet = (peer: string | undefined): string => (opts.peer ? `${opts.name} ${peer ?? '?'}\n` : `${opts.name}\n`);
  const closers: Array<() => Promise<void>> = [];
  try {
    for (const port of opts.ports) {
      if (opts.tcp) {
        const conns = new Set<net.Socket>();
        const server = net.createServer((sock) => {
          conns.add(sock);
          sock.once('close', () => conns.delete(sock));
          sock.setNoDelay(true);
          sock.on('error', () => {}); // resets are the client's business
          sock.write(greet(sock.remoteAddress?.replace(/^::ffff:/, '')));
          sock.pipe(sock);
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ port, host: opts.host }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        closers.push(
          () =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              for (const c of conns) c.destroy();
            }),
        );
      }
      if (opts.udp) {
        const sock = dgram.createSocket('udp4');
        sock.on('message', (_msg, rinfo) => {
          sock.send(greet(rinfo.address), rinfo.port, rinfo.address);
        });
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind({ port, address: opts.host }, () => {
            sock.off('error', reject);
            resolve();
          });
        });
        sock.on('error', () => {});
        closers.push(() => new Promise<void>((resolve) => sock.close(() => resolve())));
      }
    }
  } catch (err) {
    await Promise.allSettled(closers.map((c) => c()));
    throw err;
  }
  return { close: async () => void (await Promise.allSettled(closers.map((c) => c()))) };
}

function parseCli(argv: string[]): EchoServerOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      port: { type: 'string' },
      udp: { type: 'boolean', default: false },
      both: { type: 'boolean', default: false },
      host: { type: 'string', default: '0.0.0.0' },
      peer: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.name === undefined || values.name === '' || values.name.includes('\n')) {
    throw new UsageError('--name is required (one line of text)');
  }
  if (values.port === undefined) throw new UsageError('--port is required');
  return {
    name: values.name,
    ports: parsePorts(values.port),
    tcp: values.both || !values.udp,
    udp: values.both || values.udp,
    host: values.host,
    peer: values.peer,
  };
}

async function main(): Promise<void> {
  let opts: EchoServerOptions;
  try {
    opts = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`echo-server: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  let server: EchoServer;
  try {
    server = await startEchoServer(opts);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stdout.write(`${JSON.stringify({ ready: false, error: e.code ?? e.message })}\n`);
    process.exitCode = 1;
    return;
  }
  const stop = (): void => {
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(
    `${JSON.stringify({ ready: true, name: opts.name, ports: opts.ports, tcp: opts.tcp, udp: opts.udp, pid: process.pid })}\n`,
  );
}

if (import.meta.main) await main();
