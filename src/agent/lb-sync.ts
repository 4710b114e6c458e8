// Services + EndpointSlices in, load-balancer maps out, incrementally:
//  - changes mark Services dirty; a flush (coalescing a burst of changes)
//    recompiles only those and writes only the entries that changed;
//  - a full resync on start, on a slow timer and after any failure re-reads
//    the maps and repairs whatever drifted;
//  - a failure is retried with capped exponential backoff, never fatal;
//  - a frontend a Service asks for and does not get (refused to it in favour
//    of another Service, IPv6-only, no node address, ExternalIP outside the
//    allowed CIDRs) is logged once when it starts and when it ends, and
//    listed by notServed() for the status;
//  - problems of objects (a bad field, a Service that does not fit the maps)
//    are kept while they last and reported per flush, a line per kind, not
//    per object (object-problems.ts); problems() lists them for the status.
import type { Logger } from 'pino';
import { collectGarbage, maybeCollectGarbage } from './gc.ts';
import type { LbReconciler } from '../datapath/lb-reconciler.ts';
import { ReconcileError } from '../datapath/reconciler.ts';
import { CidrSet } from '../services/cidr-set.ts';
import { type CompileLimits, type CompiledService, DEFAULT_LIMITS, type NotServed, compileService, entriesUpperBound } from '../services/compile.ts';
import { type LbCapacity, type LbTable } from '../services/lb-table.ts';
import { type EndpointSlice, type NodeInfo, type Service, endpointsOf, serviceKey } from '../services/model.ts';
import type { Problem } from '../services/problems.ts';
import { MultiMap } from '../services/multimap.ts';
import type { Metrics } from './metrics.ts';
import { ObjectProblems, type ProblemKindSummary } from './object-problems.ts';

const NO_SLICE = { packed: '', nodes: [] };

/** One frontend a Service asks for that is not programmed (status document). */
export interface NotServedEntry extends NotServed {
  service: string;
}

/** Samples of frontends named in one log line. */
const LOG_SAMPLES = 10;

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
  readonly #slicesOf = new MultiMap<string, string>();
  readonly #dirty = new Set<string>();
  /** Services with a healthCheckNodePort (healthChecks()). */
  readonly #healthChecked = new Set<string>();
  readonly #reserve: ((need: LbCapacity) => Promise<void>) | undefined;
  #flushing = false;
  #again = false;
  /** Problems present now: compiled ones by Service ('compiled ns/name'),
   *  the source's by the scope it reports them in ('source ...'). */
  readonly #problems: ObjectProblems;
  /** service -> its not-served frontends as last logged, by kind, frontend and reason */
  readonly #notServedLogged = new Map<string, Map<string, NotServed>>();
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

  constructor(opts: {
    table: LbTable; reconciler: LbReconciler; node: NodeInfo; log: Logger; metrics?: Metrics; limits?: CompileLimits; gated?: boolean;
    /** services.externalIPs of the agent's config: allowedCIDRs unset means any. */
    externalIPs?: { allowedCIDRs?: string[] };
    /** Asked before a batch is programmed with the entries the maps will
     *  hold at most after it; resolves once they have room (MapGrowth.ensure). */
    reserve?: (need: LbCapacity) => Promise<void>;
  }) {
    this.#reserve = opts.reserve;
    this.#gated = opts.gated ?? false;
    this.#table = opts.table;
    this.#rec = opts.reconciler;
    this.#node = opts.node;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#problems = new ObjectProblems({ log: opts.log, counter: opts.metrics?.objectProblems, gauge: opts.metrics?.objectProblemsPresent });
    const allowed = opts.externalIPs?.allowedCIDRs;
    this.#limits = { ...(opts.limits ?? DEFAULT_LIMITS), ...(allowed ? { allowedExternalIPs: new CidrSet(allowed) } : {}) };
  }

  /** Every frontend a Service asks for and is not programmed, with the reason. */
  notServed(): NotServedEntry[] {
    return [...this.#table.notServed()];
  }

  /** Every problem of an object present now (a bad field, a Service that
   *  does not fit the maps), by object and field. */
  problems(): Problem[] {
    return this.#problems.list().map(({ object, field, value, message }) => ({ object, field, value, message }))
      .sort((a, b) => a.object.localeCompare(b.object) || a.field.localeCompare(b.field));
  }

  /** The problems present now by kind, with how many Services of each have nothing programmed. */
  problemKinds(): ProblemKindSummary[] {
    return this.#problems.summary((object) => this.#notProgrammed(object));
  }

  /** Services with a problem of which nothing is programmed (refused as
   *  invalid, or not fitting the maps). */
  notProgrammed(): number {
    return new Set(this.#problems.list().map((p) => p.object).filter((o) => this.#notProgrammed(o))).size;
  }

  #notProgrammed(object: string): boolean {
    if (!object.startsWith('Service ')) return false;
    const key = object.slice('Service '.length);
    return !this.#services.has(key) || (this.#table.rendered(key)?.frontendCount ?? 0) === 0;
  }

  setNode(node: NodeInfo): void {
    if (JSON.stringify(node) === JSON.stringify(this.#node)) return;
    this.#node = node;
    for (const k of this.#services.keys()) this.#markDirty(k);
    this.#schedule();
  }

  /**
   * While gated (a cold start's lists): make room early for what the lists
   * will bring, the entries of the Services listed so far times `scale`
   * (the whole list over what came), so the maps grow while the rest of the
   * lists arrives rather than after it. The first sync still reserves what
   * it needs, and grows again only if this fell short.
   */
  anticipate(scale: number): void {
    if (!this.#reserve || !this.#gated || !(scale > 1) || this.#services.size === 0) return;
    const need = this.#projected([...this.#services.keys()]);
    this.#log.debug({ scale, need }, 'reserving room for the lists before they end');
    void this.#reserve({ services: Math.ceil(need.services * scale), backends: Math.ceil(need.backends * scale) }).catch(() => {});
  }

  /** The source's view is complete: the first full sync may prune the maps. */
  open(): void {
    if (!this.#gated) return;
    this.#gated = false;
    this.#schedule();
  }

  #markDirty(key: string): void {
    this.#dirty.add(key);
    // What a cold start lists is not a change: its latency is the first
    // sync's (hypha_lb_sync_duration_seconds), and timing each of 100 000
    // objects would cost 5 MB until then.
    if (!this.#gated && !this.#changedAt.has(key)) this.#changedAt.set(key, performance.now());
  }

  setService(key: string, svc: Service | undefined): void {
    if (svc) {
      this.#services.set(key, svc);
      for (const sk of this.#slicesOf.get(key)) {
        const slice = this.#slices.get(sk);
        if (slice?.serviceName === svc.name) slice.serviceName = svc.name;
      }
    } else {
      this.#services.delete(key);
    }
    if (svc?.healthCheckNodePort) this.#healthChecked.add(key);
    else this.#healthChecked.delete(key);
    this.#markDirty(key);
    this.#schedule();
  }

  /**
   * Every Service with a healthCheckNodePort and its ready endpoints on this
   * node, as kube-proxy's health check server counts them.
   */
  healthChecks(): { port: number; namespace: string; name: string; localEndpoints: number }[] {
    const out = [];
    for (const key of this.#healthChecked) {
      const svc = this.#services.get(key);
      if (!svc?.healthCheckNodePort) continue;
      const local = new Set<string>();
      for (const sk of this.#slicesOf.get(key)) {
        for (const e of endpointsOf(this.#slices.get(sk) ?? NO_SLICE)) {
          if (e.nodeName === this.#node.name && e.ready) local.add(e.address);
        }
      }
      out.push({ port: svc.healthCheckNodePort, namespace: svc.namespace, name: svc.name, localEndpoints: local.size });
    }
    return out;
  }

  setSlice(key: string, slice: EndpointSlice | undefined): void {
    const old = this.#slices.get(key);
    if (old) {
      const sk = serviceKey(old.namespace, old.serviceName);
      this.#slicesOf.delete(sk, key);
      this.#markDirty(sk);
    }
    if (slice) {
      this.#slices.set(key, slice);
      const sk = serviceKey(slice.namespace, slice.serviceName);
      // One copy of the Service's name for it and its slices (the list
      // parsed each on its own: 24 bytes a slice).
      const svc = this.#services.get(sk);
      if (svc?.name === slice.serviceName) slice.serviceName = svc.name;
      this.#slicesOf.add(sk, key);
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

  /** The problems found outside the compiler (parsing, normalising) in one
   *  scope: one object's normalising ('services default/web'), one read of
   *  the files. They replace what the same scope reported before; [] when it
   *  has none, or is gone. Logged at the next flush. */
  report(scope: string, problems: Problem[]): void {
    if (this.#problems.set(`source ${scope}`, problems)) this.#schedule();
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

  /** Log what stopped or started being served among the Services a flush
   *  touched: one line per reason (a Node going away is one line, not one
   *  per NodePort), never again while nothing changes. */
  #logNotServed(touched: Iterable<string>): void {
    const started = new Map<string, NotServedEntry[]>();
    const ended: NotServedEntry[] = [];
    for (const key of touched) {
      const now = new Map((this.#table.rendered(key)?.notServed ?? []).map((n) => [JSON.stringify([n.kind, n.frontend, n.reason]), n]));
      const was = this.#notServedLogged.get(key) ?? new Map<string, NotServed>();
      for (const [id, n] of now) {
        if (was.has(id)) continue;
        let list = started.get(n.reason);
        if (!list) started.set(n.reason, (list = []));
        list.push({ service: key, ...n });
      }
      for (const [id, n] of was) if (!now.has(id)) ended.push({ service: key, ...n });
      if (now.size > 0) this.#notServedLogged.set(key, now);
      else this.#notServedLogged.delete(key);
    }
    const sample = (l: NotServedEntry[]) => l.slice(0, LOG_SAMPLES).map((n) => `${n.service} ${n.kind} ${n.frontend}`);
    for (const [reason, list] of started) {
      const services = [...new Set(list.map((n) => n.service))];
      this.#log.warn({ reason, frontends: list.length, services: services.length, sample: sample(list) }, `not served: ${reason}`);
    }
    if (ended.length > 0) this.#log.info({ frontends: ended.length, sample: sample(ended) }, 'frontends no longer refused (served now, or no longer asked for)');
  }

  #slicesFor(key: string): EndpointSlice[] {
    return [...this.#slicesOf.get(key)].map((k) => this.#slices.get(k)).filter((s): s is EndpointSlice => s !== undefined);
  }

  #compile(key: string): CompiledService | undefined {
    const svc = this.#services.get(key);
    if (!svc) return undefined;
    return compileService(svc, this.#slicesFor(key), this.#node, this.#limits);
  }

  /** The maps grew: Services refused for room are compiled again. */
  capacityChanged(capacity: LbCapacity): void {
    this.#table.setCapacity(capacity);
    for (const k of this.#services.keys()) {
      if ((this.#table.rendered(k)?.problems ?? []).some((p) => /do not fit the maps/.test(p.message))) this.#markDirty(k);
    }
    this.#schedule();
  }

  /** The entries the maps hold at most once `keys` are programmed (their current entries counted twice: an upper bound). */
  #projected(keys: string[]): LbCapacity {
    const u = this.#table.usage;
    const need = { services: u.services, backends: u.backends };
    let n = 0;
    for (const k of keys) {
      if (++n % GC_EVERY === 0) maybeCollectGarbage();
      const svc = this.#services.get(k);
      const e = svc ? entriesUpperBound(svc, this.#slicesFor(k), this.#node) : { services: 0, backends: 0 };
      need.services += e.services;
      need.backends += e.backends;
    }
    return need;
  }

  /** One flush at a time: a flush waiting for the maps to grow holds later changes for the next. */
  async #flush(): Promise<void> {
    if (this.#flushing) {
      this.#again = true;
      return;
    }
    this.#flushing = true;
    try {
      await this.#flushOnce();
    } finally {
      this.#flushing = false;
    }
    if (this.#again) {
      this.#again = false;
      this.#schedule();
    }
  }

  async #flushOnce(): Promise<void> {
    const start = performance.now();
    const full = this.#needFull;
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    try {
      if (this.#reserve && dirty.length > 0) await this.#reserve(this.#projected(dirty));
      let upserts = 0;
      let deletes = 0;
      let n = 0;
      const touched = new Set<string>();
      // Services that lost a frontend to another one are compiled again in
      // the same flush (the table keeps no compiled form of them).
      const queue = [...dirty];
      for (let i = 0; i < queue.length; i++) {
        const key = queue[i]!;
        // A large batch (a cold start) collects as it goes, so its garbage
        // does not pile up in memory (see gc.ts).
        if (++n % GC_EVERY === 0) maybeCollectGarbage();
        // Recompiling and re-rendering a Service costs microseconds; only
        // entries whose value changed are written.
        const update = this.#table.set(key, this.#compile(key));
        for (const k of update.services) touched.add(k);
        queue.push(...update.stale);
        if (!full) {
          const s = this.#rec.apply(update);
          upserts += s.upserts;
          deletes += s.deletes;
        }
      }
      this.#logNotServed(touched);
      // A Service's compiled problems are what its rendering holds now
      // (none once it is gone).
      for (const k of new Set([...dirty, ...touched])) this.#problems.set(`compiled ${k}`, this.#table.rendered(k)?.problems ?? []);
      this.#problems.report();
      if (full) {
        // A plain collection before the resync, the page-returning one
        // after: two of those in a row made the peak (the second one's
        // compaction needs room of its own), 100 000 Services: 297-299 MB
        // against 298-311.
        if (dirty.length >= GC_EVERY) collectGarbage(false);
        const s = await this.#rec.resync(this.#table);
        upserts += s.upserts;
        deletes += s.deletes;
        if (!this.status.synced) {
          const released = this.#table.releaseUnusedIds();
          if (released) this.#log.info({ released }, 'released ids no Service uses any more');
        }
        // The first one's is the agent's, once it said it is ready (a
        // last-resort collection takes 0.3-0.4 s at 100 000 Services).
        if (dirty.length >= GC_EVERY && this.status.synced) collectGarbage();
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
