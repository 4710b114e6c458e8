// Services + EndpointSlices in, load-balancer maps out, incrementally:
//  - changes mark Services dirty; a flush (coalescing a burst of changes)
//    recompiles only those and writes only the entries that changed;
//  - a full resync on start, on a slow timer and after any failure re-reads
//    the maps and repairs whatever drifted;
//  - a failure is retried with capped exponential backoff, never fatal.
import type { Logger } from 'pino';
import { collectGarbage } from './gc.ts';
import type { LbReconciler } from '../datapath/lb-reconciler.ts';
import { ReconcileError } from '../datapath/reconciler.ts';
import { type CompileLimits, type CompiledService, DEFAULT_LIMITS, compileService } from '../services/compile.ts';
import type { LbTable } from '../services/lb-table.ts';
import { type EndpointSlice, type NodeInfo, type Service, serviceKey } from '../services/model.ts';
import type { Problem } from '../services/problems.ts';
import type { Metrics } from './metrics.ts';

export interface SyncStatus {
  lastSync?: Date;
  lastFullSync?: Date;
  lastError?: string;
  synced: boolean;
  services: number;
}

const BACKOFF_MIN_MS = 200;
/** Services per chunk of a large flush between garbage collections. */
const GC_EVERY = 1000;
const BACKOFF_MAX_MS = 30_000;

export class LbSync {
  readonly #table: LbTable;
  readonly #rec: LbReconciler;
  readonly #log: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #limits: CompileLimits;
  #node: NodeInfo;
  readonly #services = new Map<string, Service>();
  /** slice key ('ns/name') -> slice */
  readonly #slices = new Map<string, EndpointSlice>();
  /** service key -> its slices' keys */
  readonly #slicesOf = new Map<string, Set<string>>();
  readonly #dirty = new Set<string>();
  readonly #reported = new Set<string>();
  #flushTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #backoff = BACKOFF_MIN_MS;
  #needFull = true;
  #stopped = false;
  /** Closed until the source has delivered a complete view (see open()). */
  #gated: boolean;
  /** When each dirty Service first changed, for the change-to-programmed latency. */
  readonly #changedAt = new Map<string, number>();
  readonly status: SyncStatus = { synced: false, services: 0 };
  /** Resolvers waiting for the next completed flush (tests, cold-start timing). */
  #waiters: (() => void)[] = [];

  constructor(opts: { table: LbTable; reconciler: LbReconciler; node: NodeInfo; log: Logger; metrics?: Metrics; limits?: CompileLimits; gated?: boolean }) {
    this.#gated = opts.gated ?? false;
    this.#table = opts.table;
    this.#rec = opts.reconciler;
    this.#node = opts.node;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#limits = opts.limits ?? DEFAULT_LIMITS;
  }

  setNode(node: NodeInfo): void {
    if (JSON.stringify(node) === JSON.stringify(this.#node)) return;
    this.#node = node;
    for (const k of this.#services.keys()) this.#markDirty(k);
    this.#schedule();
  }

  /** The source's view is complete: the first full sync may prune the maps. */
  open(): void {
    if (!this.#gated) return;
    this.#gated = false;
    this.#schedule();
  }

  #markDirty(key: string): void {
    this.#dirty.add(key);
    if (!this.#changedAt.has(key)) this.#changedAt.set(key, performance.now());
  }

  setService(key: string, svc: Service | undefined): void {
    if (svc) this.#services.set(key, svc);
    else this.#services.delete(key);
    this.#markDirty(key);
    this.#schedule();
  }

  setSlice(key: string, slice: EndpointSlice | undefined): void {
    const old = this.#slices.get(key);
    if (old) {
      const sk = serviceKey(old.namespace, old.serviceName);
      this.#slicesOf.get(sk)?.delete(key);
      this.#markDirty(sk);
    }
    if (slice) {
      this.#slices.set(key, slice);
      const sk = serviceKey(slice.namespace, slice.serviceName);
      let set = this.#slicesOf.get(sk);
      if (!set) this.#slicesOf.set(sk, (set = new Set()));
      set.add(key);
      this.#markDirty(sk);
    } else {
      this.#slices.delete(key);
    }
    this.#schedule();
  }

  /** Replace everything with a complete snapshot (file mode, relists). */
  replaceAll(services: Service[], slices: EndpointSlice[]): void {
    const svcKeys = new Set(services.map((s) => serviceKey(s.namespace, s.name)));
    for (const k of [...this.#services.keys()]) if (!svcKeys.has(k)) this.setService(k, undefined);
    for (const s of services) {
      const k = serviceKey(s.namespace, s.name);
      if (JSON.stringify(this.#services.get(k)) !== JSON.stringify(s)) this.setService(k, s);
    }
    const sliceKeys = new Set(slices.map((s) => serviceKey(s.namespace, s.name)));
    for (const k of [...this.#slices.keys()]) if (!sliceKeys.has(k)) this.setSlice(k, undefined);
    for (const s of slices) {
      const k = serviceKey(s.namespace, s.name);
      if (JSON.stringify(this.#slices.get(k)) !== JSON.stringify(s)) this.setSlice(k, s);
    }
  }

  /** Report problems found outside the compiler (parsing, normalising) once each. */
  report(problems: Problem[]): void {
    for (const p of problems) this.#reportOnce(p, 'object');
  }

  /** Wait until everything changed so far is in the maps (including the
   *  first full sync, even when there is nothing to program). */
  flushed(): Promise<void> {
    if (this.#dirty.size === 0 && !this.#needFull && !this.#flushTimer && !this.#retryTimer) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#schedule();
    return p;
  }

  requestFullSync(): void {
    this.#needFull = true;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#flushTimer);
    clearTimeout(this.#retryTimer);
  }

  #schedule(): void {
    if (this.#stopped || this.#gated || this.#flushTimer || this.#retryTimer) return;
    // setImmediate-like coalescing: a burst of watch events becomes one flush.
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.#flush();
    }, 0);
  }

  #reportOnce(p: Problem, kind: string): void {
    if (this.#reported.has(p.message)) return;
    this.#reported.add(p.message);
    this.#log.warn({ object: p.object, field: p.field, value: p.value }, p.message);
    this.#metrics?.objectProblems.inc({ kind: p.object.split(' ')[0] ?? kind });
  }

  #compile(key: string): CompiledService | undefined {
    const svc = this.#services.get(key);
    if (!svc) return undefined;
    const slices = [...(this.#slicesOf.get(key) ?? [])].map((k) => this.#slices.get(k)).filter((s): s is EndpointSlice => s !== undefined);
    return compileService(svc, slices, this.#node, this.#limits);
  }

  async #flush(): Promise<void> {
    const start = performance.now();
    const full = this.#needFull;
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    try {
      let upserts = 0;
      let deletes = 0;
      let n = 0;
      for (const key of dirty) {
        // A large batch (a cold start) collects as it goes, so its garbage
        // does not pile up in memory (see gc.ts).
        if (++n % GC_EVERY === 0) collectGarbage();
        // Recompiling and re-rendering a Service costs microseconds; only
        // entries whose value changed are written.
        const update = this.#table.set(key, this.#compile(key));
        for (const k of update.services) for (const p of this.#table.rendered(k)?.problems ?? []) this.#reportOnce(p, 'Service');
        if (!full) {
          const s = this.#rec.apply(update);
          upserts += s.upserts;
          deletes += s.deletes;
        }
      }
      if (full) {
        if (dirty.length >= GC_EVERY) collectGarbage();
        const s = await this.#rec.resync(this.#table);
        upserts += s.upserts;
        deletes += s.deletes;
        if (!this.status.synced) {
          const released = this.#table.releaseUnusedIds();
          if (released) this.#log.info({ released }, 'released ids no Service uses any more');
        }
        if (dirty.length >= GC_EVERY) collectGarbage();
        this.#needFull = false;
        this.status.lastFullSync = new Date();
      }
      const end = performance.now();
      const seconds = (end - start) / 1000;
      this.#metrics?.syncDuration.observe({ kind: full ? 'full' : 'incremental' }, seconds);
      for (const key of dirty) {
        const t = this.#changedAt.get(key);
        if (t !== undefined) this.#metrics?.changeLatency.observe((end - t) / 1000);
        this.#changedAt.delete(key);
      }
      this.status.lastSync = new Date();
      this.status.synced = true;
      this.status.lastError = undefined;
      this.status.services = this.#services.size;
      this.#backoff = BACKOFF_MIN_MS;
      if (full || upserts + deletes > 0) {
        this.#log.info({ kind: full ? 'full' : 'incremental', services: dirty.length, upserts, deletes, ms: Math.round(seconds * 1000) }, 'load balancer synced');
      }
    } catch (err) {
      // Whatever was half done, the next attempt starts from what the maps
      // really hold: a full resync.
      for (const k of dirty) this.#dirty.add(k);
      this.#needFull = true;
      this.status.lastError = (err as Error).message;
      this.#metrics?.reconcileErrors.inc({ map: err instanceof ReconcileError ? err.op.map : 'unknown' });
      this.#log.error({ err: (err as Error).message, retryMs: this.#backoff }, 'load balancer sync failed; retrying');
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#schedule();
      }, this.#backoff);
      this.#backoff = Math.min(this.#backoff * 2, BACKOFF_MAX_MS);
      return;
    }
    if (this.#dirty.size > 0 || this.#needFull) {
      this.#schedule();
      return;
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
