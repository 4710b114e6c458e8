// Node side of test/e2e/l7-transparent.test.ts, run inside a node netns:
//   l7-transparent-probe.ts dial <src ip> <dst ip> <dst port>
//     a transparent, marked connection from src (an address of a pod, not of
//     this namespace) to dst; prints {"greeting": first line, "local": addr}
//   l7-transparent-probe.ts listen <port>
//     the proxy's listener on 127.0.0.1:<port> made transparent, the proxy
//     routing in place; prints {"ready":true} then, for the first connection,
//     {"local": "ip:port", "remote": "ip"} and answers "proxy\n"
import { createServer } from 'node:net';
import { Rtnl } from '../../../src/datapath/rtnl.ts';
import { dialTransparent, ensureProxyRouting, makeTransparent } from '../../../src/l7/transparent.ts';

const [mode, ...args] = process.argv.slice(2);
const rtnl = Rtnl.open();
await ensureProxyRouting(rtnl);
rtnl.close();

if (mode === 'dial') {
  const [src = '', dst = '', port = '0'] = args;
  const sock = dialTransparent({ ip: src }, { ip: dst, port: Number(port) });
  sock.setTimeout(5000, () => {
    console.log(JSON.stringify({ error: 'timeout' }));
    process.exit(1);
  });
  sock.on('error', (err) => {
    console.log(JSON.stringify({ error: err.message }));
    process.exit(1);
  });
  let buf = '';
  sock.on('data', (b: Buffer) => {
    buf += b.toString();
    if (buf.includes('\n')) {
      console.log(JSON.stringify({ greeting: buf.split('\n')[0], local: sock.localAddress }));
      sock.destroy();
    }
  });
} else if (mode === 'listen') {
  const server = createServer((s) => {
    console.log(JSON.stringify({ local: `${s.localAddress}:${s.localPort}`, remote: s.remoteAddress }));
    s.end('proxy\n', () => server.close());
  });
  server.listen(Number(args[0]), '127.0.0.1', () => {
    makeTransparent((server as unknown as { _handle: { fd: number } })._handle.fd);
    console.log(JSON.stringify({ ready: true }));
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
