// What both L7 proxies (proxy.ts, splice-proxy.ts) do with their sockets.
import type { Server as NetServer, Socket } from 'node:net';

import type { Judgement } from './http-match.ts';

/** Listen on host:port; resolves to the port bound (port 0: the kernel's choice). */
export function listenOn(server: NetServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}

/** The listening socket's descriptor (for IP_TRANSPARENT). */
export function listeningFd(server: NetServer): number {
  return (server as unknown as { _handle: { fd: number } })._handle.fd;
}

/** An upstream whose client is gone: reset, not closed. It carries the
 *  client's address, and its TIME_WAIT on the node would meet the client's
 *  next connection from the same port (the pod's kernel and the node's pick
 *  ports for the same addresses independently), stalling it. */
export function resetUpstream(up: Socket): void {
  if (up.destroyed) return;
  try {
    up.resetAndDestroy();
  } catch {
    up.destroy(); // not a TCP handle
  }
}

/** The 403 body: the policies and the direction that refused the request. */
export function denyText(j: Judgement, method: string, path: string): string {
  if (j.policies && j.policies.length > 0) {
    return `denied: no rule of ${j.policies.join(', ')} (${j.direction} of ${j.endpoint}) allows ${method} ${path}\n`;
  }
  return `denied: no L7 policy covers this flow now (${method} ${path})\n`;
}
