// Forwards a UNIX socket to a TCP address, run inside a network namespace:
//
//   nsenter --net=/run/netns/X node netns-forwarder.ts <socket> <host> <port>
//
// The TCP side is dialled from inside the namespace; the UNIX socket is a
// filesystem path, which every namespace sees. With a TCP listener in the test
// process on the other end (see bridgeIntoNetns in apiserver.ts), this lets a
// test reach 127.0.0.1:6443 of a namespace without giving the root namespace
// an address or a route. socat would do the same; it is not installed here,
// and this is the whole of it.

import { createConnection, createServer } from 'node:net';
import { rmSync } from 'node:fs';

function main(argv: readonly string[]): void {
  const [socketPath, host, portText] = argv;
  const port = Number(portText);
  if (!socketPath || !host || !Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`usage: netns-forwarder.ts <socket> <host> <port>; got ${JSON.stringify(argv)}\n`);
    process.exit(2);
  }
  rmSync(socketPath, { force: true });
  // No Nagle: relayed request/response exchanges would stall on delayed ACKs (40 ms).
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = createConnection({ host, port, noDelay: true });
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  server.on('error', (err) => {
    process.stderr.write(`netns-forwarder: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(socketPath, () => process.stdout.write(`forwarding ${socketPath} -> ${host}:${port}\n`));
  const stop = () => {
    server.close();
    rmSync(socketPath, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', stop).on('SIGINT', stop);
}

if (import.meta.main) main(process.argv.slice(2));
