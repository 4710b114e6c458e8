// The agent's HTTP endpoint: /healthz (alive), /readyz (first sync
// programmed, pods accepted), /metrics (Prometheus), /status (JSON for
// `hypha status`), /endpoints (`hypha endpoint list`), streams such as
// /monitor (`hypha monitor`).
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface ServerHooks {
  ready(): boolean;
  /** Said after 'ready' in the /readyz answer when there is something to say. */
  readyNote?(): string | undefined;
  status(): unknown;
  registry: Registry;
  /** Further JSON documents by path (GET /endpoints ...), given the query. */
  documents?: Record<string, (query: URLSearchParams) => unknown>;
  /** Paths answered by a handler that keeps the response (GET /monitor). */
  streams?: Record<string, (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => void>;
}

export async function startServer(address: string, port: number, hooks: ServerHooks): Promise<Server> {
  const server = createServer((req, res) => {
    const [url, search] = (req.url ?? '/').split('?');
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (url === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (url === '/readyz') {
      if (!hooks.ready()) return send(503, 'text/plain', 'not synced yet\n');
      const note = hooks.readyNote?.();
      return send(200, 'text/plain', note ? `ready; ${note}\n` : 'ready\n');
    }
    if (url === '/status') return send(200, 'application/json', `${JSON.stringify(hooks.status(), null, 2)}\n`);
    const doc = url === undefined ? undefined : hooks.documents?.[url];
    if (doc) {
      let body: unknown;
      try {
        body = doc(new URLSearchParams(search));
      } catch (err) {
        const code = (err as { code?: unknown }).code === 'EINVALID' ? 400 : 500;
        return send(code, 'application/json', `${JSON.stringify({ error: (err as Error).message })}\n`);
      }
      return send(200, 'application/json', `${JSON.stringify(body, null, 2)}\n`);
    }
    const stream = url === undefined ? undefined : hooks.streams?.[url];
    if (stream) return stream(req, res, new URLSearchParams(search ?? ''));
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
