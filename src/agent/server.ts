// The agent's HTTP endpoint: /healthz (alive), /readyz (first sync
// programmed, pods accepted), /metrics (Prometheus), /status (JSON for
// `hypha status`), /endpoints (`hypha endpoint list`).
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface ServerHooks {
  ready(): boolean;
  status(): unknown;
  registry: Registry;
  /** Further JSON documents by path (GET /endpoints ...). */
  documents?: Record<string, () => unknown>;
}

export async function startServer(address: string, port: number, hooks: ServerHooks): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (url === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (url === '/readyz') return hooks.ready() ? send(200, 'text/plain', 'ready\n') : send(503, 'text/plain', 'not synced yet\n');
    if (url === '/status') return send(200, 'application/json', `${JSON.stringify(hooks.status(), null, 2)}\n`);
    const doc = url === undefined ? undefined : hooks.documents?.[url];
    if (doc) return send(200, 'application/json', `${JSON.stringify(doc(), null, 2)}\n`);
    if (url === '/metrics') {
      hooks.registry.metrics().then(
        (text) => send(200, hooks.registry.contentType, text),
        (err: Error) => send(500, 'text/plain', `${err.message}\n`),
      );
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve());
  });
  return server;
}

export function serverPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
