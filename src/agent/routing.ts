// This node's view of the other nodes, kept in the kernel: routes to their
// pod CIDRs (native or over the VXLAN tunnel) and the ipcache entries that
// say what is inside the cluster. Every change (a node joins, leaves, gets a
// CIDR, this node's address changes) schedules one sync of the whole table:
// compiled (pure), then applied by the reconcilers, serialized, retried with
// backoff on failure, and repeated on every resync (drift repair).
import type { Logger } from 'pino';
import type { IpcacheReconciler } from '../datapath/ipcache-reconciler.ts';
import type { NodeRoutes } from '../datapath/node-routes.ts';
import { type ClusterNode, type CompiledNodes, compileNodes, tunnelAddressOf } from '../nodes/compile.ts';

export interface RoutingOptions {
  mode: 'native' | 'vxlan';
  self: () => ClusterNode;
  clusterCIDRs: string[];
  routes: NodeRoutes;
  ipcache: IpcacheReconciler;
  log: Logger;
  /** After each successful sync (metrics). */
  synced?: (c: CompiledNodes) => void;
}

export interface RoutingStatus {
  mode: 'native' | 'vxlan';
  nodes: number;
  routes: { dst: string; via: string; node: string }[];
  problems: string[];
  lastSync: string | null;
  lastError: string | null;
}

export class Routing {
  readonly #o: RoutingOptions;
  #others: ClusterNode[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #backoffMs = 500;
  #stopped = false;
  #last: CompiledNodes | undefined;
  #lastSync: Date | null = null;
  #lastError: string | null = null;
  #reported = new Set<string>();

  constructor(opts: RoutingOptions) {
    this.#o = opts;
  }

  /** The other nodes (this node's own row is always self()). */
  setNodes(nodes: readonly ClusterNode[]): void {
    const self = this.#o.self().name;
    this.#others = nodes.filter((n) => n.name !== self);
    this.request();
  }

  /** Schedule a sync soon (changes arriving together make one). */
  request(delayMs = 10): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run(), delayMs);
  }

  /** Sync now and wait for it (start-up, tests). */
  async syncNow(): Promise<void> {
    clearTimeout(this.#timer);
    if (this.#running) await this.#running;
    await this.#run();
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    const run = this.#sync();
    this.#running = run;
    try {
      await run;
      this.#backoffMs = 500;
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#o.log.warn({ err: this.#lastError, retryMs: this.#backoffMs }, 'routing sync failed; retrying');
      this.#again = false;
      this.#running = undefined;
      this.request(this.#backoffMs);
      this.#backoffMs = Math.min(this.#backoffMs * 2, 30_000);
      return;
    }
    this.#running = undefined;
    if (this.#again) {
      this.#again = false;
      this.request(0);
    }
  }

  async #sync(): Promise<void> {
    const self = this.#o.self();
    const c = compileNodes([self, ...this.#others], { mode: this.#o.mode, self: self.name, clusterCIDRs: this.#o.clusterCIDRs });
    for (const p of c.problems) {
      if (this.#reported.has(p)) continue;
      this.#reported.add(p);
      this.#o.log.warn({ reason: p }, 'node table problem');
    }
    const tunnelAddress = tunnelAddressOf(self.podCIDRs);
    const stats = await this.#o.routes.sync(c, { ...(self.addresses[0] ? { address: self.addresses[0] } : {}), ...(tunnelAddress ? { tunnelAddress } : {}) });
    await this.#o.ipcache.sync(c.ipcache);
    // What the status shows is what the kernel was given.
    this.#last = stats.waiting ? { ...c, routes: [], problems: [...c.problems, stats.waiting] } : c;
    this.#lastSync = new Date();
    this.#lastError = null;
    this.#o.synced?.(c);
  }

  status(): RoutingStatus {
    return {
      mode: this.#o.mode,
      nodes: this.#others.length + 1,
      routes: (this.#last?.routes ?? []).map((r) => ({ dst: r.dst, via: r.gateway, node: r.node })),
      problems: this.#last?.problems ?? [],
      lastSync: this.#lastSync?.toISOString() ?? null,
      lastError: this.#lastError,
    };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running?.catch(() => undefined);
  }
}
