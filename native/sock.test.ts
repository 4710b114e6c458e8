// sockSetOpts and tcpSocket4: the socket options the L7 proxy needs and Node
// does not offer. Nothing here sends a packet off loopback: the transparent
// socket is bound to an address no interface has and never connects.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync } from 'node:fs';
import { type AddressInfo, Server, Socket, createServer } from 'node:net';
import { describe, test } from 'node:test';

import { hasNativeCode, sockSetOpts, tcpSocket4 } from './index.ts';

const NON_LOCAL = '198.51.100.7'; // TEST-NET-2: on no interface here

function listener(): Promise<Server> {
  const server = createServer((s) => s.end('hello'));
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => server);
}

describe('sockets for the L7 proxy', () => {
  test('an address no interface has: bound only with IP_TRANSPARENT', () => {
    assert.throws(() => tcpSocket4({ bind: { address: NON_LOCAL } }), (err: unknown) =>
      hasNativeCode(err, 'EADDRNOTAVAIL') && (err as Error).message.includes(NON_LOCAL));
    const fd = tcpSocket4({ transparent: true, mark: 0x00100000, bind: { address: NON_LOCAL } });
    assert.ok(fd > 2);
    closeSync(fd);
  });

  test('a socket made here, bound, is wrapped and connected by Node', async () => {
    const server = await listener();
    const port = (server.address() as AddressInfo).port;
    const fd = tcpSocket4({ mark: 0x00100000, bind: { address: '127.0.0.1', port: 0 } });
    const sock = new Socket({ fd, readable: true, writable: true });
    const chunks: Buffer[] = [];
    sock.on('data', (b: Buffer) => chunks.push(b));
    sock.connect(port, '127.0.0.1');
    await once(sock, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'hello');
    assert.equal(sock.localAddress, '127.0.0.1');
    sock.destroy();
    server.close();
  });

  test("options on a Node server's own socket", async () => {
    const server = await listener();
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    sockSetOpts(fd, { transparent: true, mark: 7 });
    server.close();
  });

  test('bad arguments name the argument', () => {
    assert.throws(() => tcpSocket4({ bind: { address: 'not-an-ip' } }), /opts\.bind\.address "not-an-ip"/);
    assert.throws(() => tcpSocket4({ bind: { address: '127.0.0.1', port: 70000 } }), /opts\.bind\.port 70000/);
    assert.throws(() => tcpSocket4({ mark: -1 }), /opts\.mark/);
    assert.throws(() => sockSetOpts(999_999, { mark: 1 }), (err: unknown) => hasNativeCode(err, 'EBADF') && /SO_MARK/.test(String(err)));
  });
});
