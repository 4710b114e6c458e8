// Listens on 127.0.0.1:<port> of the network namespace it runs in and relays
// every connection to a UNIX socket:
//
//   nsenter --net=/run/netns/X node tcp-to-unix.ts <port> <socket>
//
// bench-lb's beds are topologies of their own, without a route to the API
// server's namespace; the control plane's netns-forwarder
// (test/e2e/lib/netns-forwarder.ts) listens on a UNIX socket that reaches it,
// and a socket path is seen from every namespace. This is the other half:
// kube-proxy in a bed's node dials https://127.0.0.1:<port> (a name on the API
// server's certificate). Prints {"ready":true} once listening.
import { createConnection, createServer } from 'node:net';

function main(argv: readonly string[]): void {
  const [portText, socketPath] = argv;
  const port = Number(portText);
  if (!socketPath || !Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`usage: tcp-to-unix.ts <port> <socket>; got ${JSON.stringify(argv)}\n`);
    process.exit(2);
  }
  // No Nagle: relayed request/response exchanges would stall on delayed ACKs (40 ms).
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = createConnection(socketPath);
    client.pipe(upstream).pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  server.on('error', (err) => {
    process.stderr.write(`tcp-to-unix: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ ready: true, port, socket: socketPath })}\n`));
  const stop = (): void => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop).on('SIGINT', stop);
}

if (import.meta.main) main(process.argv.slice(2));
