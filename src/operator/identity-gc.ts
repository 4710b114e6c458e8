// The operator's identity collector: informers on HyphaIdentities, Pods and
// Namespaces (reduced to rows as they arrive), and a pass every
// identity.gc.intervalSeconds that plans (identity-gc-plan.ts) and deletes,
// only while this operator leads.
//
// The operator's view of pods lags the API server, and an agent allocates
// an identity for a pod the moment it sees it. So before a delete each
// candidate is checked against the API server with consistent reads:
//  - unused: the Namespace and the Pods of that namespace whose labels
//    include the identity's (a label-selector LIST) are read, and any pod of
//    that exact set keeps the identity;
//  - duplicate: the identities of its set are read, and it is deleted only if
//    one with a lower revision is there.
// and the delete carries the uid and resourceVersion it was planned with. A
// pod created between that check and the delete (a window of one request)
// finds its identity gone: its agent allocates it again, asking for the old
// number (src/agent/identities.ts).
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { type IdentityStore, winnerOf } from '../identity/allocator.ts';
import { KubeIdentityStore } from '../identity/kube-store.ts';
import { type Labels, labelsKey } from '../identity/labels.ts';
import { LabelInterner, namespaceLabelsOf, podNeedsIdentity, podRowOf } from '../identity/pods.ts';
import { type KubeClient, isConflict, isNotFound } from '../k8s/client.ts';
import { type StoredIdentity, hyphaIdentitiesInformerSpec, hyphaIdentityPath, identityIdOfName, normalizeHyphaIdentity } from '../k8s/hyphaidentity.ts';
import { type InformerOptions, type InformerStatus, Informer, type ListPage, type ObjectMeta } from '../k8s/informer.ts';
import { type GcCandidate, type GcPlan, planIdentityGc } from './identity-gc-plan.ts';

export interface IdentityGcConfig {
  graceSeconds: number;
  intervalSeconds: number;
}

export interface IdentityGcOptions {
  client: KubeClient;
  cfg: IdentityGcConfig;
  log: Logger;
  registry: Registry;
  informerOpts: InformerOptions;
  /** True while this operator may write (it leads). */
  acting: () => boolean;
  now?: () => number;
}

interface PodEntry {
  labels: Labels;
  needs: boolean;
  key: string;
}

export interface IdentityGcStatus {
  synced: boolean;
  graceSeconds: number;
  identities: number;
  lastPass: { at: string; counts: GcPlan['counts']; collected: number; kept: number } | null;
}

export class IdentityGc {
  readonly #o: IdentityGcOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #store: IdentityStore<StoredIdentity>;
  readonly #identities = new Map<number, StoredIdentity>();
  readonly #firstSeen = new Map<number, number>();
  readonly #pods = new Map<string, PodEntry>();
  readonly #namespaces = new Map<string, Labels>();
  readonly #lastUsed = new Map<string, number>();
  readonly #interner = new LabelInterner();
  readonly #synced = new Set<string>();
  #informers: Informer<ObjectMeta>[] = [];
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> | undefined;
  #stopped = false;
  #last: IdentityGcStatus['lastPass'] = null;
  readonly #m: { identities: Gauge<'state'>; allocated: Counter; collected: Counter<'reason'>; kept: Counter<'reason'>; passes: Counter<'result'> };

  constructor(opts: IdentityGcOptions) {
    this.#o = opts;
    this.#log = opts.log.child({ component: 'identity-gc' });
    this.#now = opts.now ?? Date.now;
    this.#store = new KubeIdentityStore(opts.client, this.#log);
    const r = [opts.registry];
    this.#m = {
      identities: new Gauge({ name: 'hypha_operator_identities', help: 'HyphaIdentities by state as of the last collector pass (in-use, unused, duplicate)', labelNames: ['state'], registers: r }),
      allocated: new Counter({ name: 'hypha_operator_identities_allocated_total', help: 'HyphaIdentities created (by any allocator) since this operator listed them', registers: r }),
      collected: new Counter({ name: 'hypha_operator_identities_collected_total', help: 'HyphaIdentities deleted by the collector, by reason (unused, duplicate)', labelNames: ['reason'], registers: r }),
      kept: new Counter({ name: 'hypha_operator_identities_kept_total', help: 'Collection candidates kept after the check against the API server, by reason (pod-found, winner, changed)', labelNames: ['reason'], registers: r }),
      passes: new Counter({ name: 'hypha_operator_identity_gc_passes_total', help: 'Collector passes, by result (ok, error)', labelNames: ['result'], registers: r }),
    };
  }

  get synced(): boolean {
    return this.#synced.size === 3;
  }

  informerStatus(): InformerStatus[] {
    return this.#informers.map((i) => i.status);
  }

  status(): IdentityGcStatus {
    return { synced: this.synced, graceSeconds: this.#o.cfg.graceSeconds, identities: this.#identities.size, lastPass: this.#last };
  }

  start(): void {
    const { client, informerOpts } = this.#o;
    const identities = new Informer<ObjectMeta>(client, hyphaIdentitiesInformerSpec(), informerOpts);
    const namespaces = new Informer<ObjectMeta>(client, { resource: 'namespaces', path: '/api/v1/namespaces' }, informerOpts);
    const pods = new Informer<ObjectMeta>(client, { resource: 'pods', path: '/api/v1/pods' }, informerOpts);
    this.#informers = [identities, namespaces, pods];
    identities.start((e) => {
      if (e.type === 'synced') return void this.#synced.add('identities');
      if (e.type === 'delete') {
        const id = identityIdOfName(e.key);
        if (id !== undefined) {
          this.#identities.delete(id);
          this.#firstSeen.delete(id);
        }
        return;
      }
      const n = normalizeHyphaIdentity(e.obj);
      if (!n.value) {
        for (const p of n.problems) this.#log.warn({ kind: 'HyphaIdentity', field: p.field, reason: p.message }, 'identity object refused (left alone)');
        return;
      }
      const before = this.#identities.get(n.value.id);
      if (!before || before.uid !== n.value.uid) {
        this.#firstSeen.set(n.value.id, this.#now());
        if (this.#synced.has('identities')) this.#m.allocated.inc();
      }
      this.#identities.set(n.value.id, n.value);
    });
    namespaces.start((e) => {
      if (e.type === 'synced') return void this.#synced.add('namespaces');
      if (e.type === 'delete') this.#namespaces.delete(e.key);
      else this.#namespaces.set(e.key, namespaceLabelsOf(e.obj));
      for (const [k, p] of this.#pods) if (k.startsWith(`${e.key}/`)) this.#setKey(k, p);
    });
    pods.start((e) => {
      if (e.type === 'synced') return void this.#synced.add('pods');
      const before = this.#pods.get(e.key);
      if (before) {
        // The set was in use until now.
        if (before.key) this.#lastUsed.set(before.key, this.#now());
        this.#interner.release(before.labels);
      }
      if (e.type === 'delete') {
        this.#pods.delete(e.key);
        return;
      }
      const row = podRowOf(e.obj);
      const entry: PodEntry = { labels: this.#interner.intern(row.labels), needs: podNeedsIdentity(row), key: '' };
      this.#pods.set(e.key, entry);
      this.#setKey(e.key, entry);
    });
    this.#schedule();
  }

  #setKey(podKey: string, p: PodEntry): void {
    const namespace = podKey.slice(0, podKey.indexOf('/'));
    const ns = this.#namespaces.get(namespace);
    p.key = ns && p.needs ? labelsKey({ namespace, podLabels: p.labels, namespaceLabels: ns }) : '';
    if (p.key) this.#lastUsed.set(p.key, this.#now());
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#pass = this.#runPass().catch((err: Error) => {
        this.#m.passes.inc({ result: 'error' });
        this.#log.warn({ err: err.message }, 'identity collection pass failed; trying again next interval');
      }).finally(() => {
        this.#pass = undefined;
        this.#schedule();
      });
    }, this.#o.cfg.intervalSeconds * 1000);
    this.#timer.unref();
  }

  /** One pass (exported for tests through the timer; runs only when leading and synced). */
  async #runPass(): Promise<void> {
    if (!this.synced || !this.#o.acting()) return;
    const now = this.#now();
    const inUse = new Set<string>();
    for (const p of this.#pods.values()) if (p.key) inUse.add(p.key);
    for (const k of inUse) this.#lastUsed.set(k, now);
    const identities = [...this.#identities.values()];
    const plan = planIdentityGc({ identities, inUse, lastUsed: this.#lastUsed, firstSeen: this.#firstSeen, now, graceMs: this.#o.cfg.graceSeconds * 1000 });
    // Forget when sets were last used once nothing has them any more.
    const keys = new Set(identities.map((i) => i.key));
    for (const k of this.#lastUsed.keys()) if (!keys.has(k) && !inUse.has(k)) this.#lastUsed.delete(k);
    this.#m.identities.set({ state: 'in-use' }, plan.counts.inUse);
    this.#m.identities.set({ state: 'unused' }, plan.counts.unused);
    this.#m.identities.set({ state: 'duplicate' }, plan.counts.duplicate);
    let collected = 0;
    let kept = 0;
    for (const c of plan.collect) {
      if (!this.#o.acting()) break;
      if (await this.#collect(c)) collected++;
      else kept++;
    }
    this.#m.passes.inc({ result: 'ok' });
    this.#last = { at: new Date(now).toISOString(), counts: plan.counts, collected, kept };
  }

  /** Check a candidate against the API server, then delete it. True when deleted. */
  async #collect(c: GcCandidate): Promise<boolean> {
    const { identity: i, reason } = c;
    const log = this.#log.child({ identity: i.id, namespace: i.namespace, labels: i.podLabels, reason });
    if (reason === 'unused') {
      if (await this.#podUses(i)) {
        this.#lastUsed.set(i.key, this.#now());
        this.#m.kept.inc({ reason: 'pod-found' });
        log.info('identity looked unused, but the API server has a pod of its set: kept');
        return false;
      }
    } else {
      const w = winnerOf(await this.#store.listByKey(i.key), i);
      if (!w || w.id === i.id) {
        this.#m.kept.inc({ reason: 'winner' });
        log.info('identity looked like a duplicate, but it is its set\'s identity now: kept');
        return false;
      }
    }
    try {
      await this.#o.client.delete(hyphaIdentityPath(i.id), { preconditions: { uid: i.uid, resourceVersion: i.resourceVersion } });
    } catch (err) {
      if (isNotFound(err) || isConflict(err)) {
        this.#m.kept.inc({ reason: 'changed' });
        return false;
      }
      throw err;
    }
    this.#identities.delete(i.id);
    this.#m.collected.inc({ reason });
    log.info({ idleSeconds: Math.round(c.idleMs / 1000) }, reason === 'unused' ? 'unused identity collected' : 'duplicate identity collected (left by an allocator that lost a race)');
    return true;
  }

  /** A consistent read: does a pod of exactly this identity's set exist? */
  async #podUses(i: StoredIdentity): Promise<boolean> {
    const { client } = this.#o;
    let nsLabels: Labels;
    try {
      nsLabels = namespaceLabelsOf(await client.get(`/api/v1/namespaces/${encodeURIComponent(i.namespace)}`));
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    const selector = Object.entries(i.podLabels).map(([k, v]) => `${k}=${v}`).join(',');
    let cont: string | undefined;
    do {
      const page = await client.get<ListPage<unknown>>(`/api/v1/namespaces/${encodeURIComponent(i.namespace)}/pods`, { labelSelector: selector, limit: 500, continue: cont });
      for (const raw of page.items) {
        const row = podRowOf(raw);
        if (podNeedsIdentity(row) && labelsKey({ namespace: i.namespace, podLabels: row.labels, namespaceLabels: nsLabels }) === i.key) return true;
      }
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return false;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#pass;
    for (const i of this.#informers) i.stop();
  }
}
