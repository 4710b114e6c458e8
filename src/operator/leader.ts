// Leader election over a coordination.k8s.io/v1 Lease, the way client-go's
// leaderelection package does it:
//  - every candidate reads the Lease; it may take it over when the holder is
//    empty or the Lease was not renewed for leaseDurationSeconds, measured on
//    the candidate's own monotonic clock from when it last saw the record
//    change (never from the holder's timestamps: clocks may disagree);
//  - every write is a PUT with the resourceVersion it read (or a create), so
//    of two candidates only one wins; the loser gets 409 and keeps waiting;
//  - the leader renews every retryPeriod; it counts as leader only while its
//    last successful renew is younger than renewDeadline (< leaseDuration), so
//    it stops acting before anyone else may take over; it loses leadership at
//    once when it sees another holder;
//  - release() (on SIGTERM) empties holderIdentity so a successor need not
//    wait out the lease.
// A candidate also watches the Lease, so it sees a renew when it happens and
// a dead leader's successor takes over about leaseDuration after the last
// renew (polling alone would add up to one retryPeriod).
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { KubeClient, isAlreadyExists, isConflict, isNotFound } from '../k8s/client.ts';
import { Informer } from '../k8s/informer.ts';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  /** This candidate, unique among them (e.g. hostname + random suffix). */
  identity: string;
  /** How long a Lease that is not renewed keeps others out (whole seconds, default 15). */
  leaseDurationSeconds: number;
  /** A leader that could not renew for this long stops (default 10 s; < leaseDuration). */
  renewDeadlineMs: number;
  /** Pause between attempts to acquire or renew (default 2 s). */
  retryPeriodMs: number;
}

export const LEADER_ELECTION_DEFAULTS = { leaseDurationSeconds: 15, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } as const;
/** Non-leaders wait retryPeriod x [1, JITTER): candidates do not move in lockstep. */
const JITTER = 1.2;
const WARN_EVERY_MS = 30_000;

/** Why a configuration cannot work, or undefined (client-go's rules). */
export function leaderElectionProblem(cfg: Pick<LeaderElectionConfig, 'leaseDurationSeconds' | 'renewDeadlineMs' | 'retryPeriodMs'>): string | undefined {
  if (!Number.isInteger(cfg.leaseDurationSeconds) || cfg.leaseDurationSeconds < 1) return `leaseDurationSeconds ${cfg.leaseDurationSeconds} is not a whole number of seconds >= 1`;
  if (cfg.renewDeadlineMs >= cfg.leaseDurationSeconds * 1000) {
    return `renewDeadlineSeconds ${cfg.renewDeadlineMs / 1000} must be shorter than leaseDurationSeconds ${cfg.leaseDurationSeconds}`;
  }
  if (cfg.renewDeadlineMs <= cfg.retryPeriodMs * JITTER) {
    return `renewDeadlineSeconds ${cfg.renewDeadlineMs / 1000} must be longer than ${JITTER} x retryPeriodSeconds ${cfg.retryPeriodMs / 1000}`;
  }
  return undefined;
}

/** A Lease MicroTime: RFC 3339 with exactly six fractional digits (the API server's format). */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export type LeaseDecision =
  | { action: 'create'; spec: LeaseSpec }
  | { action: 'update'; spec: LeaseSpec; takeover: boolean }
  /** Someone else holds a valid lease: try again at `retryAtMs` (monotonic). */
  | { action: 'wait'; holder: string; retryAtMs: number };

/**
 * What a candidate does with the Lease it just read (pure). `observedAtMs` is
 * when, on the candidate's monotonic clock, it first saw this record.
 */
export function decideLease(lease: LeaseObject | undefined, me: string, leaseDurationSeconds: number, nowMs: number, observedAtMs: number, wall: Date): LeaseDecision {
  const t = microTime(wall);
  if (!lease) {
    return { action: 'create', spec: { holderIdentity: me, leaseDurationSeconds, acquireTime: t, renewTime: t, leaseTransitions: 0 } };
  }
  const spec = lease.spec ?? {};
  const holder = spec.holderIdentity ?? '';
  if (holder === me) {
    return { action: 'update', takeover: false, spec: { ...spec, holderIdentity: me, leaseDurationSeconds, acquireTime: spec.acquireTime ?? t, renewTime: t } };
  }
  const validUntil = observedAtMs + (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
  if (holder !== '' && nowMs < validUntil) return { action: 'wait', holder, retryAtMs: validUntil };
  return {
    action: 'update', takeover: true,
    spec: { holderIdentity: me, leaseDurationSeconds, acquireTime: t, renewTime: t, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 },
  };
}

export interface LeaderHooks {
  /** This candidate became the leader. */
  started(): void;
  /** This candidate was the leader and is no more (it must stop acting). */
  stopped(reason: string): void;
  /** The holder seen in the Lease changed ('' when none). */
  newLeader?(identity: string): void;
}

export class LeaderElector {
  readonly cfg: LeaderElectionConfig;
  readonly #client: KubeClient;
  readonly #log: Logger;
  readonly #hooks: LeaderHooks;
  readonly #path: string;
  readonly #collection: string;
  readonly #watch: Informer<LeaseObject>;
  /** The record last seen, and when (monotonic ms) its resourceVersion was first seen. */
  #observed: { lease: LeaseObject; atMs: number } | undefined;
  #leader = false;
  #renewedAtMs = 0;
  #holder = '';
  #timer: NodeJS.Timeout | undefined;
  /** When (monotonic ms) #timer fires. */
  #timerAtMs = Infinity;
  #deadline: NodeJS.Timeout | undefined;
  #running = false;
  #attempt: Promise<void> | undefined;
  /** Failures not logged since the last warning (one warning per WARN_EVERY_MS while they last). */
  #quietFailures = 0;
  #lastWarnMs = -Infinity;

  constructor(client: KubeClient, cfg: LeaderElectionConfig, opts: { log: Logger; hooks: LeaderHooks }) {
    const problem = leaderElectionProblem(cfg);
    if (problem) throw new TypeError(`leader election: ${problem}`);
    this.cfg = cfg;
    this.#client = client;
    this.#log = opts.log.child({ lease: `${cfg.namespace}/${cfg.name}`, identity: cfg.identity });
    this.#hooks = opts.hooks;
    this.#collection = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(cfg.namespace)}/leases`;
    this.#path = `${this.#collection}/${encodeURIComponent(cfg.name)}`;
    this.#watch = new Informer<LeaseObject>(client, {
      resource: 'leases', path: this.#collection, query: { fieldSelector: `metadata.name=${cfg.name}` },
    }, { log: opts.log, resyncMs: 0, silenceMs: 120_000 });
  }

  /** Leader, and the last renew is younger than renewDeadline. */
  get isLeader(): boolean {
    return this.#leader && performance.now() - this.#renewedAtMs < this.cfg.renewDeadlineMs;
  }

  /** The holder as last seen in the Lease ('' when none). */
  get holder(): string {
    return this.#holder;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#watch.start((e) => {
      // A leader learns from its own reads and writes only: a lagging watch
      // can still deliver the record from before its takeover.
      if (e.type !== 'upsert' || this.#leader) return;
      this.#observe(e.obj);
      // Try again when this record allows a takeover (or now, if it has no holder).
      const spec = this.#observed?.lease.spec;
      const at = spec?.holderIdentity ? this.#observed!.atMs + (spec.leaseDurationSeconds ?? this.cfg.leaseDurationSeconds) * 1000 : performance.now();
      this.#schedule(at - performance.now(), true);
    });
    this.#schedule(0);
  }

  /** Stop trying (without releasing: a stopped leader's lease runs out). */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    clearTimeout(this.#deadline);
    this.#watch.stop();
    await this.#attempt;
  }

  /** Stop and, when leading, hand the Lease back (holder emptied) so a successor need not wait. */
  async release(): Promise<void> {
    await this.stop();
    const wasLeader = this.#leader;
    const observed = this.#observed?.lease;
    if (!wasLeader || !observed || observed.spec?.holderIdentity !== this.cfg.identity) return;
    this.#setLeader(false, 'released');
    const t = microTime(new Date());
    const { holderIdentity: _h, ...rest } = observed.spec ?? {};
    try {
      await this.#client.replace<LeaseObject>(this.#path, { ...observed, spec: { ...rest, leaseDurationSeconds: 1, acquireTime: t, renewTime: t } }, { timeoutMs: this.cfg.retryPeriodMs });
      this.#log.info('released the lease');
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not release the lease; it runs out after leaseDurationSeconds');
    }
  }

  /** Attempt in delayMs; with onlyEarlier, keep an attempt already planned sooner. */
  #schedule(delayMs: number, onlyEarlier = false): void {
    if (!this.#running) return;
    const at = performance.now() + Math.max(0, delayMs);
    if (onlyEarlier && this.#timer && this.#timerAtMs <= at) return;
    clearTimeout(this.#timer);
    this.#timerAtMs = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAtMs = Infinity;
      if (this.#attempt) return; // the running attempt schedules the next one
      this.#attempt = this.#tryAcquireOrRenew().finally(() => {
        this.#attempt = undefined;
      });
    }, Math.max(0, delayMs));
  }

  #observe(lease: LeaseObject | undefined): void {
    const rv = lease?.metadata.resourceVersion;
    if (lease && rv !== this.#observed?.lease.metadata.resourceVersion) this.#observed = { lease, atMs: performance.now() };
    else if (lease && this.#observed) this.#observed.lease = lease;
    else if (!lease) this.#observed = undefined;
    const holder = lease?.spec?.holderIdentity ?? '';
    if (holder !== this.#holder) {
      this.#holder = holder;
      this.#log.info({ holder: holder || null }, holder ? `lease held by ${holder}` : 'lease has no holder');
      this.#hooks.newLeader?.(holder);
    }
  }

  #setLeader(leader: boolean, reason: string): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    clearTimeout(this.#deadline);
    if (leader) {
      this.#log.info({ reason }, 'became the leader');
      this.#hooks.started();
    } else {
      this.#log.warn({ reason }, 'no longer the leader');
      this.#hooks.stopped(reason);
    }
  }

  /** A leader whose renew is overdue (a request hanging, the API server away) stops at the deadline. */
  #armDeadline(): void {
    clearTimeout(this.#deadline);
    this.#deadline = setTimeout(() => {
      if (this.#leader && !this.isLeader) this.#setLeader(false, `not renewed within renewDeadline (${this.cfg.renewDeadlineMs} ms)`);
    }, this.cfg.renewDeadlineMs + 1);
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const startedMs = performance.now();
    const jittered = () => this.cfg.retryPeriodMs * (this.#leader ? 1 : 1 + Math.random() * (JITTER - 1));
    try {
      let lease: LeaseObject | undefined;
      try {
        lease = await this.#client.get<LeaseObject>(this.#path, {}, this.cfg.retryPeriodMs);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (!this.#running) return;
      this.#observe(lease);
      const d = decideLease(lease, this.cfg.identity, this.cfg.leaseDurationSeconds, performance.now(), this.#observed?.atMs ?? performance.now(), new Date());
      if (d.action === 'wait') {
        if (this.#leader) this.#setLeader(false, `lease taken by ${d.holder}`);
        this.#schedule(Math.max(0, Math.min(jittered(), d.retryAtMs - performance.now())));
        return;
      }
      const body: LeaseObject = d.action === 'create'
        ? { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.cfg.name, namespace: this.cfg.namespace }, spec: d.spec }
        : { ...lease!, spec: d.spec };
      const written = d.action === 'create'
        ? await this.#client.create<LeaseObject>(this.#collection, body, { timeoutMs: this.cfg.retryPeriodMs })
        : await this.#client.replace<LeaseObject>(this.#path, body, { timeoutMs: this.cfg.retryPeriodMs });
      this.#renewedAtMs = startedMs;
      this.#observe(written);
      if (!this.#running) return;
      if (d.action === 'create' || (d.action === 'update' && d.takeover)) {
        this.#log.info({ transitions: d.spec.leaseTransitions }, d.action === 'create' ? 'created the lease' : 'took over the lease');
      }
      this.#setLeader(true, d.action === 'create' ? 'created' : d.action === 'update' && d.takeover ? 'took over' : 'renewed');
      this.#armDeadline();
      this.#schedule(this.cfg.retryPeriodMs);
    } catch (err) {
      if (!this.#running) return;
      const lostRace = isConflict(err) || isAlreadyExists(err);
      if (this.#leader && !this.isLeader) {
        this.#setLeader(false, `not renewed within renewDeadline (${this.cfg.renewDeadlineMs} ms): ${(err as Error).message}`);
      } else if (this.#leader || !lostRace) {
        // Every retryPeriod while the API server is away: warn now and then, with the count.
        if (this.#leader || performance.now() - this.#lastWarnMs >= WARN_EVERY_MS) {
          this.#log.warn({ err: (err as Error).message, leader: this.#leader, failuresSinceLastWarning: this.#quietFailures }, this.#leader ? 'lease renew failed; retrying' : 'lease read or write failed; retrying');
          this.#lastWarnMs = performance.now();
          this.#quietFailures = 0;
        } else {
          this.#quietFailures++;
        }
      }
      // Lost a race: someone else wrote first; read again after a pause.
      this.#schedule(jittered());
    }
  }
}
