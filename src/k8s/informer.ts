// A list-and-watch informer over the agent's API client (client.ts), built
// for an agent that must never stop following the cluster:
//  - the initial list is paged (no huge response in memory at once), in
//    protobuf where the spec gives a schema;
//  - the watch asks for bookmarks, resumes from the last resourceVersion it
//    saw after any interruption, and relists on 410 Gone;
//  - every other failure (API server down, a network error, a watch that has
//    heard nothing, not even a bookmark, for too long) restarts it after a
//    capped, jittered exponential backoff: it never gives up;
//  - a periodic relist compares with what it has and emits only differences,
//    repairing anything a watch could have missed.
// It keeps only each object's key and resourceVersion: consumers turn events
// into their own compact state.
import type { Logger } from 'pino';
import { isNotFound, type KubeClient, type WatchHandle } from './client.ts';
import type { Schema } from './protobuf.ts';

export interface ObjectMeta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export interface ListPage<R> {
  /** An array (JSON), or items decoded as they are iterated (protobuf.ts). */
  items: Iterable<R>;
  metadata?: { resourceVersion?: string; continue?: string };
}

export interface InformerSpec {
  /** For logs and metrics: 'services', 'endpointslices', 'nodes'. */
  resource: string;
  /** Collection path, e.g. '/api/v1/services'. */
  path: string;
  /** Extra query parameters of list and watch (fieldSelector, labelSelector). */
  query?: Record<string, string>;
  /** A resource that may not be installed (a CRD of an optional feature):
   *  a list answered 404 counts as a complete, empty list (a 'synced' event
   *  with absent: true; what was known is deleted), and the list is retried
   *  with backoff until the resource appears. */
  absentIsEmpty?: boolean;
  /** List in protobuf, read by this schema (protobuf.ts; built-in kinds
   *  only). Watches stay JSON: after the lists, events are few. */
  protobuf?: Schema;
  /** Objects a list page asks for (default: InformerOptions.pageSize). */
  pageSize?: number;
}

export type InformerEvent<R> =
  | { type: 'upsert'; key: string; obj: R }
  | { type: 'delete'; key: string }
  /** A complete list was applied: everything the API server holds is known. */
  | { type: 'synced'; relist: boolean; absent?: boolean };

export type InformerPhase = 'idle' | 'listing' | 'watching' | 'backoff' | 'stopped';

export interface InformerStatus {
  resource: string;
  phase: InformerPhase;
  synced: boolean;
  resourceVersion: string;
  objects: number;
  lastEventAt: Date | null;
  lastError: string | null;
  watchRestarts: number;
  relists: number;
}

export interface InformerHooks {
  /** A watch ended and is restarted (reason: 'closed', 'error', 'silent', 'gone'). */
  restarted?(resource: string, reason: string): void;
  event?(resource: string, type: string): void;
}

export interface InformerOptions {
  log?: Logger;
  hooks?: InformerHooks;
  /** Restart a watch that has delivered nothing (not even a bookmark) for this long. */
  silenceMs?: number;
  /** Relist this often, to repair what a watch could have missed. 0: never. */
  resyncMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  pageSize?: number;
}

export function objectKey(obj: ObjectMeta): string {
  const m = obj.metadata ?? {};
  // join makes one flat string; a template makes a rope of three that the
  // maps keyed by it (here and in the agent) keep for the object's life.
  return m.namespace ? [m.namespace, m.name ?? ''].join('/') : (m.name ?? '');
}

interface HttpLikeError {
  statusCode?: number;
  status?: { code?: number };
}

/** 410 Gone: the resourceVersion we resume from is older than the API server keeps. */
export function isGone(err: unknown): boolean {
  const e = (err ?? {}) as HttpLikeError;
  return e.statusCode === 410 || e.status?.code === 410;
}

/** A failure that keeps repeating is said at warn again this often. */
export const REPEAT_WARN_MS = 10 * 60_000;

/** A resourceVersion as the informer keeps it: the API server's are decimal
 *  counters (etcd revisions), kept as a number (no string per object at
 *  200 000 objects); anything else stays the opaque string it is. */
export function rvKey(rv: string): string | number {
  return /^[1-9]\d{0,14}$/.test(rv) ? Number(rv) : rv;
}

export class Informer<R extends ObjectMeta> {
  readonly spec: InformerSpec;
  readonly #client: KubeClient;
  readonly #log: Logger | undefined;
  readonly #hooks: InformerHooks;
  readonly #silenceMs: number;
  readonly #resyncMs: number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #pageSize: number;
  /** key -> resourceVersion of everything we know */
  readonly #known = new Map<string, string | number>();
  /** After each page of a list but the last: the objects listed so far. */
  onPage: ((listed: number) => void) | undefined;
  #handler: ((e: InformerEvent<R>) => void) | undefined;
  #abort: WatchHandle | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #backoff: number;
  #generation = 0;
  readonly #status: InformerStatus;
  /** The failure being retried ('list: 404 ...'), how often in a row, and
   *  when it was last said at warn: one failure that repeats (a CRD not
   *  installed) is a warn line at first and then every REPEAT_WARN_MS, the
   *  attempts between at debug, not a line per retry. */
  #failing = '';
  #attempts = 0;
  #warnedAt = 0;
  /** Failed attempts before the last success, for its line. */
  #recovered = 0;

  constructor(client: KubeClient, spec: InformerSpec, opts: InformerOptions = {}) {
    this.#client = client;
    this.spec = spec;
    this.#log = opts.log?.child({ resource: spec.resource });
    this.#hooks = opts.hooks ?? {};
    this.#silenceMs = opts.silenceMs ?? 90_000;
    this.#resyncMs = opts.resyncMs ?? 10 * 60_000;
    this.#backoffMin = opts.backoffMinMs ?? 250;
    this.#backoffMax = opts.backoffMaxMs ?? 30_000;
    this.#pageSize = opts.pageSize ?? 500;
    this.#backoff = this.#backoffMin;
    this.#status = {
      resource: spec.resource, phase: 'idle', synced: false, resourceVersion: '', objects: 0,
      lastEventAt: null, lastError: null, watchRestarts: 0, relists: 0,
    };
  }

  get status(): Readonly<InformerStatus> {
    return { ...this.#status, objects: this.#known.size };
  }

  start(handler: (e: InformerEvent<R>) => void): void {
    if (this.#handler) throw new Error(`informer ${this.spec.resource} already started`);
    this.#handler = handler;
    void this.#list(false);
    if (this.#resyncMs > 0) {
      this.#resyncTimer = setInterval(() => {
        if (this.#status.phase === 'watching') this.#restart('resync', 'relist');
      }, this.#resyncMs);
      this.#resyncTimer.unref();
    }
  }

  stop(): void {
    this.#generation++;
    this.#status.phase = 'stopped';
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#silenceTimer);
    this.#abort?.abort();
    this.#abort = undefined;
  }

  #emit(e: InformerEvent<R>): void {
    try {
      this.#handler?.(e);
    } catch (err) {
      // A consumer's bug must not stop the informer.
      this.#log?.error({ err: (err as Error).message }, 'informer event handler threw');
    }
  }

  /** Abandon the current list/watch and go again: 'watch' resumes from the
   *  last resourceVersion, 'relist' lists everything first. */
  #restart(reason: string, how: 'watch' | 'relist', delayMs = 0): void {
    const gen = ++this.#generation;
    clearTimeout(this.#silenceTimer);
    clearTimeout(this.#retryTimer);
    const old = this.#abort;
    this.#abort = undefined;
    old?.abort();
    this.#status.watchRestarts++;
    this.#hooks.restarted?.(this.spec.resource, reason);
    const go = (): void => {
      if (gen !== this.#generation) return;
      if (how === 'relist') void this.#list(true);
      else this.#watch();
    };
    if (delayMs > 0) {
      this.#status.phase = 'backoff';
      this.#retryTimer = setTimeout(go, delayMs);
    } else {
      go();
    }
  }

  #nextBackoff(): number {
    const d = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, this.#backoffMax);
    return Math.round(d * (0.8 + Math.random() * 0.4));
  }

  #failed(stage: string, err: unknown, how: 'watch' | 'relist'): void {
    const message = (err as Error)?.message ?? String(err);
    this.#status.lastError = `${stage}: ${message}`;
    const delay = this.#nextBackoff();
    const what = `${stage}: ${message}`;
    if (what !== this.#failing) {
      this.#failing = what;
      this.#attempts = 0;
      this.#warnedAt = 0;
    }
    this.#attempts++;
    this.#recovered++;
    const now = Date.now();
    const fields = { stage, err: message, retryMs: delay, attempts: this.#attempts };
    if (this.#attempts === 1) {
      this.#warnedAt = now;
      this.#log?.warn(fields, `${this.spec.resource}: ${stage} failed; retrying`);
    } else if (now - this.#warnedAt >= REPEAT_WARN_MS) {
      this.#warnedAt = now;
      this.#log?.warn(fields, `${this.spec.resource}: ${stage} still failing after ${this.#attempts} attempts; retrying (each attempt at debug level)`);
    } else {
      this.#log?.debug(fields, `${this.spec.resource}: ${stage} failed again; retrying`);
    }
    this.#restart('error', how, delay);
  }

  async #list(relist: boolean): Promise<void> {
    const gen = this.#generation;
    this.#status.phase = 'listing';
    // Pages are handed on as they arrive (only changed objects), keeping
    // just the keys: a large cluster's list is never in memory at once.
    const seen = new Set<string>();
    let rv = '';
    const fetch = (cont: string | undefined): Promise<ListPage<R>> => {
      const query = { limit: this.spec.pageSize ?? this.#pageSize, continue: cont, ...this.spec.query };
      const page = this.spec.protobuf
        ? this.#client.getProtobuf<ListPage<R>>(this.spec.protobuf, this.spec.path, query)
        : this.#client.get<ListPage<R>>(this.spec.path, query);
      // Awaited below; if the list is abandoned first, its failure is nobody's.
      page.catch(() => {});
      return page;
    };
    try {
      let cont: string | undefined;
      let next = fetch(undefined);
      do {
        const page = await next;
        if (gen !== this.#generation) return;
        rv = page.metadata?.resourceVersion ?? rv;
        cont = page.metadata?.continue || undefined;
        // The next page is asked for before this one is read: the API
        // server encodes it while the agent takes this one in (100 000
        // Services: the agent sat idle 2.7 s of its 9 s of listing, waiting).
        if (cont) next = fetch(cont);
        for (const obj of page.items) {
          const key = objectKey(obj);
          const objRv = rvKey(obj.metadata?.resourceVersion ?? '');
          seen.add(key);
          if (this.#known.get(key) !== objRv) {
            this.#known.set(key, objRv);
            this.#emit({ type: 'upsert', key, obj });
          }
        }
        if (cont) this.onPage?.(seen.size);
      } while (cont);
    } catch (err) {
      if (gen !== this.#generation) return;
      if (this.spec.absentIsEmpty && isNotFound(err)) {
        for (const key of [...this.#known.keys()]) {
          this.#known.delete(key);
          this.#emit({ type: 'delete', key });
        }
        this.#status.synced = true;
        this.#emit({ type: 'synced', relist, absent: true });
      }
      // A continue token can expire (410) mid-list: start the list over.
      this.#failed('list', err, 'relist');
      return;
    }
    for (const key of [...this.#known.keys()]) {
      if (!seen.has(key)) {
        this.#known.delete(key);
        this.#emit({ type: 'delete', key });
      }
    }
    this.#status.resourceVersion = rv;
    this.#status.relists += relist ? 1 : 0;
    this.#status.synced = true;
    this.#status.lastError = null;
    this.#backoff = this.#backoffMin;
    const after = this.#recovered;
    this.#failing = '';
    this.#attempts = 0;
    this.#recovered = 0;
    this.#log?.info({ objects: this.#known.size, resourceVersion: rv, relist, ...(after ? { failedAttempts: after } : {}) },
      after ? `${this.spec.resource}: listed after ${after} failed attempts` : `${this.spec.resource}: listed`);
    this.#emit({ type: 'synced', relist });
    this.#watch();
  }

  #armSilence(gen: number): void {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      if (gen !== this.#generation) return;
      this.#log?.warn({ silentMs: this.#silenceMs }, `${this.spec.resource}: watch silent (not even a bookmark); restarting`);
      this.#restart('silent', 'watch');
    }, this.#silenceMs);
    this.#silenceTimer.unref();
  }

  #watch(): void {
    const gen = this.#generation;
    this.#status.phase = 'watching';
    let gone = false;
    this.#armSilence(gen);
    this.#abort = this.#client.watch(
      this.spec.path,
      {
        resourceVersion: this.#status.resourceVersion,
        allowWatchBookmarks: true,
        // Server-side end with jitter, so many agents do not reconnect at once.
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
        ...this.spec.query,
      },
      (type, obj) => {
        if (gen !== this.#generation) return;
        this.#status.lastEventAt = new Date();
        this.#armSilence(gen);
        this.#hooks.event?.(this.spec.resource, type);
        const o = obj as R & { code?: number; message?: string };
        const rv = o?.metadata?.resourceVersion;
        switch (type) {
          case 'ADDED':
          case 'MODIFIED': {
            const key = objectKey(o);
            this.#known.set(key, rvKey(rv ?? ''));
            if (rv) this.#status.resourceVersion = rv;
            this.#emit({ type: 'upsert', key, obj: o });
            break;
          }
          case 'DELETED': {
            const key = objectKey(o);
            if (rv) this.#status.resourceVersion = rv;
            if (this.#known.delete(key)) this.#emit({ type: 'delete', key });
            break;
          }
          case 'BOOKMARK':
            if (rv) this.#status.resourceVersion = rv;
            break;
          case 'ERROR':
            if (o?.code === 410) gone = true;
            else this.#status.lastError = `watch: ${o?.message ?? 'error event'}`;
            break;
        }
        this.#backoff = this.#backoffMin;
      },
      (err) => {
        if (gen !== this.#generation) return;
        if (gone || isGone(err)) {
          this.#log?.info({ resourceVersion: this.#status.resourceVersion }, `${this.spec.resource}: resourceVersion too old (410); relisting`);
          this.#restart('gone', 'relist');
        } else if (err) {
          this.#failed('watch', err, 'watch');
        } else {
          // The server ended the watch (timeoutSeconds): resume at once.
          this.#restart('closed', 'watch');
        }
      },
    );
  }
}
