// Backend for traffic tests, run inside a pod (or node, or host) netns.
//
//   node echo-server.ts --name b1 --port 8080[,8081...] [--udp | --both] [--host 0.0.0.0] [--peer]
//                       [--peer-port] [--sink] [--udp-answer-bytes n]
//
// With --peer the greeting is `<name> <client address>` (what the server sees
// as the source: a masqueraded client shows the node's address); --peer-port
// adds the source port (`<name> <address>:<port>`).
// TCP: on each connection writes `<name>\n` at once, then echoes every byte it
// receives (a client can hold a long-lived stream and check every byte comes back).
// With --sink it echoes nothing: it counts what it receives and, when the
// client half-closes, answers `<name> <bytes received>\n` and closes.
// UDP: answers every datagram with `<name>\n`. With --udp-answer-bytes n the
// answer is `<greeting> <bytes received>\n` padded with '.' to n bytes (a large
// answer, fragmented on its way back; and the size of the request as it arrived).
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
  /** Greet with `<name> <peer address>:<peer port>`. */
  peerPort?: boolean;
  /** TCP: count, do not echo; answer the count after the client's FIN. */
  sink?: boolean;
  /** UDP: answer `<greeting> <request bytes>` padded to this many bytes. */
  udpAnswerBytes?: number;
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
  const greet = (peer: string | undefined, port?: number): string =>
    opts.peerPort ? `${opts.name} ${peer ?? '?'}:${port ?? '?'}\n` : opts.peer ? `${opts.name} ${peer ?? '?'}\n` : `${opts.name}\n`;
  const udpAnswer = (msg: Buffer, peer: string, port: number): string | Buffer => {
    if (opts.udpAnswerBytes === undefined) return greet(peer, port);
    const line = `${greet(peer, port).slice(0, -1)} ${msg.length}\n`;
    const b = Buffer.alloc(Math.max(opts.udpAnswerBytes, Buffer.byteLength(line)), '.');
    b.write(line);
    return b;
  };
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
          sock.write(greet(sock.remoteAddress?.replace(/^::ffff:/, ''), sock.remotePort));
          if (opts.sink) {
            let received = 0;
            sock.on('data', (d: Buffer) => {
              received += d.length;
            });
            sock.on('end', () => sock.end(`${opts.name} ${received}\n`));
          } else {
            sock.pipe(sock);
          }
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
        sock.on('message', (msg, rinfo) => {
          sock.send(udpAnswer(msg, rinfo.address, rinfo.port), rinfo.port, rinfo.address);
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
      'peer-port': { type: 'boolean', default: false },
      sink: { type: 'boolean', default: false },
      'udp-answer-bytes': { type: 'string' },
    },
    strict: true,
  });
  if (values.name === undefined || values.name === '' || values.name.includes('\n')) {
    throw new UsageError('--name is required (one line of text)');
  }
  if (values.port === undefined) throw new UsageError('--port is required');
  const answer = values['udp-answer-bytes'];
  const udpAnswerBytes = answer === undefined ? undefined : Number(answer);
  if (udpAnswerBytes !== undefined && (!Number.isInteger(udpAnswerBytes) || udpAnswerBytes < 0 || udpAnswerBytes > 65507)) {
    throw new UsageError(`--udp-answer-bytes "${answer}" must be a whole number of bytes from 0 to 65507`);
  }
  return {
    peerPort: values['peer-port'],
    sink: values.sink,
    ...(udpAnswerBytes === undefined ? {} : { udpAnswerBytes }),
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
