// For the proxy's tests: raw bytes to a listener on loopback.
import { once } from 'node:events';
import { connect } from 'node:net';

/** Sends `data`; everything answered until the peer closes (or timeoutMs), and whether it closed. */
export async function rawExchange(port: number, data: string | Buffer, timeoutMs = 1500): Promise<{ text: string; closed: boolean }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(data);
  const chunks: Buffer[] = [];
  s.on('data', (b: Buffer) => chunks.push(b));
  let closed = false;
  await Promise.race([once(s, 'close').then(() => (closed = true)), new Promise((r) => setTimeout(r, timeoutMs))]);
  s.destroy();
  return { text: Buffer.concat(chunks).toString('latin1'), closed };
}
