// The operator's wiring: informers on Nodes and HyphaNodes into two tables,
// leader election, and reconcile passes that run the planner (plan.ts) on
// the tables and carry out its writes, only while this operator leads.
//
//  - Every write carries a precondition (resourceVersion; uid and
//    resourceVersion for deletes; creates fail on AlreadyExists), so a write
//    made from a stale view, or by a leader that lost its Lease unawares,
//    fails instead of undoing someone else's.
//  - Each write's answer goes into the table at once, so the next pass sees
//    what this one did even before the watch delivers it.
//  - Passes are triggered by events, followed up after writes, retried with
//    backoff after failures, and run every sync.resyncSeconds regardless.
//  - A leader that loses the Lease stops acting and tells its owner (the CLI
//    exits, as client-go's users do); stop() hands the Lease back.
import type { Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { serverPort, startServer } from '../agent/server.ts';
import { KubeClient, isAlreadyExists, isConflict, isNotFound } from '../k8s/client.ts';
import {
  type HyphaNode, type HyphaNodeObject, HYPHANODE_API_VERSION, HYPHANODE_KIND, HYPHANODES_PATH, hyphaNodePath, hyphaNodesInformerSpec, normalizeHyphaNode,
} from '../k8s/hyphanode.ts';
import { Informer, type ObjectMeta } from '../k8s/informer.ts';
import type { OperatorConfig } from './config.ts';
import { IdentityGc } from './identity-gc.ts';
import { LeaderElector } from './leader.ts';
import { type OperatorMetrics, createOperatorMetrics } from './metrics.ts';
import { type NodeRow, type Plan, type Write, planHyphaNodes } from './plan.ts';

export interface OperatorOptions {
  log: Logger;
  /** Leadership was lost: the operator has stopped acting; its owner should exit. */
  onLostLeadership(reason: string): void;
}

interface NodeObject extends ObjectMeta {
  metadata?: ObjectMeta['metadata'] & { uid?: string };
}

type WriteResult = 'ok' | 'conflict' | 'error' | 'skipped';

/** Writes in flight at once during a pass. */
const WRITE_CONCURRENCY = 4;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** Passes in a row that all wrote something before the operator slows down (a write that never settles). */
const FOLLOW_UP_LIMIT = 20;

export class Operator {
  readonly cfg: OperatorConfig;
  readonly #log: Logger;
  readonly #opts: OperatorOptions;
  readonly metrics: OperatorMetrics;
  readonly #nodes = new Map<string, NodeRow>();
  readonly #hyphaNodes = new Map<string, HyphaNode>();
  readonly #synced = new Set<string>();
  #client: KubeClient | undefined;
  #informers: Informer<ObjectMeta>[] = [];
  #elector: LeaderElector | undefined;
  #identityGc: IdentityGc | undefined;
  #server: Server | undefined;
  #passTimer: NodeJS.Timeout | undefined;
  #passDueMs = Infinity;
  #pass: Promise<void> | undefined;
  #again = false;
  #backoffMs = BACKOFF_MIN_MS;
  #followUps = 0;
  #resyncTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  #onSynced: (() => void) | undefined;
  #last: { at: string; writes: number; failed: number; ms: number; plan: Plan['pool'] } | undefined;

  constructor(cfg: OperatorConfig, opts: OperatorOptions) {
    this.cfg = cfg;
    this.#opts = opts;
    this.#log = opts.log;
    this.metrics = createOperatorMetrics();
  }

  get port(): number | undefined {
    return this.#server ? serverPort(this.#server) : undefined;
  }

  get synced(): boolean {
    return this.#synced.size === 2;
  }

  get isLeader(): boolean {
    return this.#elector?.isLeader ?? false;
  }

  /** Serve health and metrics, start watching and campaigning; resolves once both tables are complete. */
  async start(): Promise<void> {
    const { cfg, metrics } = this;
    const log = this.#log;
    this.#server = await startServer(cfg.listen.address, cfg.listen.port, {
      ready: () => this.synced,
      status: () => this.status(),
      registry: metrics.registry,
    });
    const client = KubeClient.fromKubeconfig(cfg.kubernetes.kubeconfig, { userAgent: 'hypha-operator' });
    this.#client = client;
    const informerOpts = {
      log,
      silenceMs: cfg.kubernetes.silenceSeconds * 1000,
      resyncMs: cfg.kubernetes.resyncSeconds * 1000,
      hooks: {
        event: (resource: string, type: string) => metrics.k8sEvents.inc({ resource, type }),
        restarted: (resource: string, reason: string) => metrics.k8sWatchRestarts.inc({ resource, reason }),
      },
    };
    const synced = new Promise<void>((resolve) => {
      this.#onSynced = resolve;
    });
    const nodes = new Informer<NodeObject>(client, { resource: 'nodes', path: '/api/v1/nodes' }, informerOpts);
    const hyphaNodes = new Informer<HyphaNodeObject & ObjectMeta>(client, hyphaNodesInformerSpec(), informerOpts);
    this.#informers = [nodes, hyphaNodes] as Informer<ObjectMeta>[];
    nodes.start((e) => {
      if (e.type === 'synced') return this.#markSynced('nodes');
      if (e.type === 'delete') this.#nodes.delete(e.key);
      else this.#nodes.set(e.key, { name: e.key, uid: e.obj.metadata?.uid ?? '' });
      metrics.objects.set({ resource: 'nodes' }, this.#nodes.size);
      this.#schedule(0);
    });
    hyphaNodes.start((e) => {
      if (e.type === 'synced') return this.#markSynced('hyphanodes');
      if (e.type === 'delete') this.#hyphaNodes.delete(e.key);
      else this.#remember(e.obj);
      metrics.objects.set({ resource: 'hyphanodes' }, this.#hyphaNodes.size);
      this.#schedule(0);
    });

    const le = cfg.leaderElection;
    this.#elector = new LeaderElector(client, {
      namespace: le.namespace, name: le.name, identity: le.identity,
      leaseDurationSeconds: le.leaseDurationSeconds, renewDeadlineMs: le.renewDeadlineSeconds * 1000, retryPeriodMs: le.retryPeriodSeconds * 1000,
    }, {
      log,
      hooks: {
        started: () => {
          metrics.isLeader.set(1);
          this.#schedule(0);
        },
        stopped: (reason) => {
          metrics.isLeader.set(0);
          this.#halt();
          if (!this.#stopping) this.#opts.onLostLeadership(reason);
        },
      },
    });
    metrics.isLeader.set(0);
    this.#elector.start();
    // Identities no pod uses are collected by the leader (src/operator/identity-gc.ts).
    this.#identityGc = new IdentityGc({ client, cfg: cfg.identity.gc, log, registry: metrics.registry, informerOpts, acting: () => this.#acting() });
    this.#identityGc.start();
    this.#resyncTimer = setInterval(() => this.#schedule(0), cfg.sync.resyncSeconds * 1000);
    await synced;
  }

  #markSynced(resource: string): void {
    if (this.#synced.has(resource)) return;
    this.#synced.add(resource);
    if (this.synced) {
      this.#log.info({ nodes: this.#nodes.size, hyphanodes: this.#hyphaNodes.size }, 'Nodes and HyphaNodes listed');
      this.#onSynced?.();
      this.#schedule(0);
    }
  }

  /** Normalise and keep a HyphaNode; report its bad fields once per version. */
  #remember(obj: unknown): HyphaNode | undefined {
    const n = normalizeHyphaNode(obj);
    if (!n.value) {
      for (const p of n.problems) this.#log.warn({ kind: 'HyphaNode', field: p.field, reason: p.message }, 'object refused');
      this.metrics.objectProblems.inc({ kind: 'HyphaNode' }, n.problems.length);
      return undefined;
    }
    const before = this.#hyphaNodes.get(n.value.name);
    if (n.problems.length > 0 && before?.resourceVersion !== n.value.resourceVersion) {
      for (const p of n.problems) this.#log.warn({ hyphanode: n.value.name, field: p.field, reason: p.message }, 'bad field left out');
      this.metrics.objectProblems.inc({ kind: 'HyphaNode' }, n.problems.length);
    }
    this.#hyphaNodes.set(n.value.name, n.value);
    return n.value;
  }

  /** Run a pass in delayMs (or sooner, if one is already due sooner). */
  #schedule(delayMs: number): void {
    if (this.#stopping) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    const due = performance.now() + delayMs;
    if (this.#passTimer && this.#passDueMs <= due) return;
    clearTimeout(this.#passTimer);
    this.#passDueMs = due;
    this.#passTimer = setTimeout(() => {
      this.#passTimer = undefined;
      this.#passDueMs = Infinity;
      this.#pass = this.#runPass().then((next) => {
        this.#pass = undefined;
        // Something changed while an otherwise idle pass ran: plan again on
        // the newer view (a backoff or a slow-down the pass asked for stands).
        const delay = next ?? (this.#again ? 0 : undefined);
        this.#again = false;
        if (delay !== undefined) this.#schedule(delay);
      }, (err: unknown) => {
        this.#pass = undefined;
        this.#log.error({ err: (err as Error).message }, 'reconcile pass failed');
        this.#schedule(BACKOFF_MAX_MS);
      });
    }, Math.max(0, delayMs));
  }

  #halt(): void {
    clearTimeout(this.#passTimer);
    this.#passTimer = undefined;
    this.#passDueMs = Infinity;
    this.#again = false;
  }

  #acting(): boolean {
    return !this.#stopping && this.synced && this.isLeader;
  }

  /** One pass; resolves with when the next should run (undefined: when something changes). */
  async #runPass(): Promise<number | undefined> {
    if (!this.#acting()) return undefined;
    const t0 = performance.now();
    const { cfg, metrics } = this;
    const plan = planHyphaNodes({
      mode: cfg.ipam.mode,
      ...(cfg.ipam.clusterPool ? { pool: cfg.ipam.clusterPool } : {}),
      nodes: this.#nodes,
      hyphaNodes: this.#hyphaNodes,
      now: new Date(),
    });
    if (plan.pool) {
      metrics.ipamCidrs.set({ state: 'free' }, plan.pool.free);
      metrics.ipamCidrs.set({ state: 'used' }, plan.pool.used);
      metrics.ipamExhausted.set(plan.pool.waiting.length > 0 ? 1 : 0);
      metrics.ipamWaiting.set(plan.pool.waiting.length);
      metrics.ipamRefused.set(plan.pool.refused.length);
    }
    const results: WriteResult[] = [];
    const queue = [...plan.writes];
    await Promise.all(Array.from({ length: Math.min(WRITE_CONCURRENCY, queue.length) }, async () => {
      for (let w = queue.shift(); w; w = queue.shift()) results.push(await this.#execute(w));
    }));
    const ok = results.filter((r) => r === 'ok').length;
    const failed = results.filter((r) => r === 'conflict' || r === 'error').length;
    const ms = performance.now() - t0;
    metrics.passDuration.observe(ms / 1000);
    metrics.passes.inc({ result: failed > 0 ? 'retry' : 'ok' });
    this.#last = { at: new Date().toISOString(), writes: ok, failed, ms: Math.round(ms), plan: plan.pool };
    if (plan.writes.length > 0) this.#log.info({ writes: ok, failed, skipped: results.length - ok - failed, ms: Math.round(ms) }, 'reconcile pass');
    if (failed > 0) {
      // A conflict means our view was stale: the watch brings the newer object; retry after it.
      const delay = this.#backoffMs;
      this.#backoffMs = Math.min(this.#backoffMs * 2, BACKOFF_MAX_MS);
      return delay;
    }
    this.#backoffMs = BACKOFF_MIN_MS;
    if (ok === 0) {
      this.#followUps = 0;
      return undefined;
    }
    // Follow-ups (a status after a spec write) are planned by the next pass.
    this.#followUps++;
    if (this.#followUps === FOLLOW_UP_LIMIT) this.#log.warn({ passes: FOLLOW_UP_LIMIT }, 'every recent pass wrote something; slowing down');
    return this.#followUps >= FOLLOW_UP_LIMIT ? 1000 : 0;
  }

  async #execute(w: Write): Promise<WriteResult> {
    const client = this.#client;
    // Check before every write: leadership can end in the middle of a pass.
    if (!client || !this.#acting()) return 'skipped';
    const log = this.#log.child({ hyphanode: w.name, write: w.kind });
    let result: WriteResult = 'ok';
    try {
      switch (w.kind) {
        case 'create': {
          const body: HyphaNodeObject = {
            apiVersion: HYPHANODE_API_VERSION, kind: HYPHANODE_KIND,
            metadata: { name: w.name, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: w.owner.name, uid: w.owner.uid }] },
            spec: w.podCIDRs.length > 0 ? { ipam: { podCIDRs: w.podCIDRs } } : {},
          };
          this.#remember(await client.create<HyphaNodeObject>(HYPHANODES_PATH, body));
          log.info({ cidrs: w.podCIDRs }, w.podCIDRs.length > 0 ? `HyphaNode created with pod CIDR ${w.podCIDRs.join(', ')}` : 'HyphaNode created');
          break;
        }
        case 'update': {
          const patch: Record<string, unknown> = {};
          if (w.owner) {
            const others = (this.#hyphaNodes.get(w.name)?.ownerReferences ?? []).filter((r) => !(r.kind === 'Node' && r.apiVersion === 'v1'));
            patch.metadata = { ownerReferences: [...others, { apiVersion: 'v1', kind: 'Node', name: w.owner.name, uid: w.owner.uid }] };
          }
          if (w.podCIDRs) patch.spec = { ipam: { podCIDRs: w.podCIDRs } };
          this.#remember(await client.mergePatch<HyphaNodeObject>(hyphaNodePath(w.name), patch, { resourceVersion: w.resourceVersion }));
          log.info({ cidrs: w.podCIDRs, reason: w.why }, `HyphaNode updated: ${w.why}`);
          break;
        }
        case 'status': {
          const patch = { status: { ipam: { operatorError: w.ipam.operatorError ?? null, allocatedAt: w.ipam.allocatedAt ?? null }, conditions: w.conditions } };
          this.#remember(await client.mergePatchStatus<HyphaNodeObject>(hyphaNodePath(w.name), patch, { resourceVersion: w.resourceVersion }));
          if (w.ipam.operatorError) log.warn({ reason: w.ipam.operatorError }, `HyphaNode status: ${w.why}`);
          else log.info({ reason: w.why }, `HyphaNode status: ${w.why}`);
          break;
        }
        case 'delete': {
          try {
            await client.delete(hyphaNodePath(w.name), { preconditions: { uid: w.uid, resourceVersion: w.resourceVersion } });
          } catch (err) {
            if (!isNotFound(err)) throw err; // already gone is done
          }
          // Its CIDR is free for the next pass: the object no longer exists.
          this.#hyphaNodes.delete(w.name);
          log.info({ cidrs: w.podCIDRs }, `HyphaNode deleted: its Node is gone${w.podCIDRs.length > 0 ? `; ${w.podCIDRs.join(', ')} released` : ''}`);
          break;
        }
      }
    } catch (err) {
      const message = (err as Error).message;
      if (isConflict(err) || isAlreadyExists(err)) {
        result = 'conflict';
        log.info({ reason: message }, 'write lost a race (the object changed); retrying with a fresh view');
      } else if (isNotFound(err)) {
        result = 'conflict';
        this.#hyphaNodes.delete(w.name);
        log.info({ reason: message }, 'HyphaNode is gone; replanning');
      } else {
        result = 'error';
        log.warn({ reason: message, code: (err as { code?: string }).code }, 'write failed; retrying');
      }
    }
    this.metrics.writes.inc({ kind: w.kind, result });
    return result;
  }

  status(): unknown {
    const le = this.cfg.leaderElection;
    return {
      identity: le.identity,
      leader: this.isLeader,
      lease: { namespace: le.namespace, name: le.name, holder: this.#elector?.holder ?? '' },
      mode: this.cfg.ipam.mode,
      pool: this.cfg.ipam.clusterPool ?? null,
      synced: this.synced,
      objects: { nodes: this.#nodes.size, hyphanodes: this.#hyphaNodes.size },
      informers: [...this.#informers.map((i) => i.status), ...(this.#identityGc?.informerStatus() ?? [])],
      lastPass: this.#last ?? null,
      identities: this.#identityGc?.status() ?? null,
    };
  }

  /** Stop acting and watching; with release (the default), hand the Lease back. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.#stopping = true;
    this.#halt();
    clearInterval(this.#resyncTimer);
    await this.#pass;
    await this.#identityGc?.stop();
    for (const i of this.#informers) i.stop();
    if (opts.release === false) await this.#elector?.stop();
    else await this.#elector?.release();
    this.metrics.isLeader.set(0);
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server?.closeAllConnections();
    this.#client?.close();
    this.#log.info('operator stopped');
  }
}
