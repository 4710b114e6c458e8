// Health check node ports (kube-proxy's healthcheck server): for every
// Service with spec.healthCheckNodePort (a LoadBalancer with
// externalTrafficPolicy Local), an HTTP server on that port of every node
// address answers 200 while the node has a ready endpoint of it and 503
// when it has none, so a cloud load balancer sends traffic only to nodes
// that can serve it. The body is kube-proxy's:
//   {"service":{"namespace":"ns","name":"svc"},"localEndpoints":1,"serviceProxyHealthy":true}
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';

export interface HealthCheck { port: number; namespace: string; name: string; localEndpoints: number }

export class HealthCheckServers {
  readonly #servers = new Map<number, { server: Server; check: HealthCheck }>();
  readonly #log: Logger;
  readonly #address: string;

  constructor(log: Logger, address = '0.0.0.0') {
    this.#log = log;
    this.#address = address;
  }

  /** Make the listening ports match `checks` (one per port; a port two Services claim goes to the first). */
  update(checks: readonly HealthCheck[]): void {
    const want = new Map<number, HealthCheck>();
    for (const c of checks) if (!want.has(c.port)) want.set(c.port, c);
    for (const [port, s] of this.#servers) {
      if (!want.has(port)) {
        s.server.close();
        s.server.closeAllConnections();
        this.#servers.delete(port);
        this.#log.info({ port, service: `${s.check.namespace}/${s.check.name}` }, 'health check node port closed');
      }
    }
    for (const [port, check] of want) {
      const cur = this.#servers.get(port);
      if (cur) {
        cur.check = check;
        continue;
      }
      const entry = { server: createServer((_req, res) => {
        const c = entry.check;
        const body = JSON.stringify({ service: { namespace: c.namespace, name: c.name }, localEndpoints: c.localEndpoints, serviceProxyHealthy: true });
        res.writeHead(c.localEndpoints > 0 ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff', 'x-load-balancing-endpoint-weight': String(c.localEndpoints) });
        res.end(body);
      }), check };
      entry.server.on('error', (err) => {
        // Kept (not retried every update) until the Service lets go of the port.
        this.#log.warn({ port, service: `${check.namespace}/${check.name}`, err: err.message }, 'health check node port cannot listen');
      });
      entry.server.listen(port, this.#address, () => this.#log.info({ port, service: `${check.namespace}/${check.name}` }, 'health check node port listening'));
      this.#servers.set(port, entry);
    }
  }

  close(): void {
    for (const s of this.#servers.values()) {
      s.server.close();
      s.server.closeAllConnections();
    }
    this.#servers.clear();
  }
}
