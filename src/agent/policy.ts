// NetworkPolicy on one node: every NetworkPolicy of the cluster (informer,
// normalised as it arrives, raw objects never kept), compiled by src/policy
// over the identity view and this node's endpoints, and written into the
// policy maps (src/datapath/policy-maps.ts) so that they always hold what the
// last compile says. The compile the maps were written from is kept: `hypha
// policy get` and `hypha policy trace` explain exactly what the datapath
// enforces.
//  - Any change (a policy, an identity, a namespace's labels, a pod's named
//    ports, a local endpoint) asks for a compile; changes within DEBOUNCE_MS
//    make one.
//  - Until the policy list and the identity view are complete after a start,
//    nothing is written: the maps keep what is pinned (the previous agent's
//    enforcement), as the ipcache does. After, a local pod whose identity is
//    still being looked up keeps the identity pinned for its address.
//  - What cannot be enforced as written is logged once (naming the object,
//    field and value), counted, and put on the NetworkPolicy's events
//    (Warning). A problem that goes away and comes back is reported again.
//  - A failed write is retried with backoff; the retry reads the maps back.
//  - A pod being added (CNI ADD) is closed both ways before its veth can
//    carry a packet, and ADD waits (bounded) for the first write that judges
//    it with its identity: a pod never starts open while policies select it.
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import {
  CLOSED_EP, POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, type PolicyMapEntries, type PolicyMapsIO, PolicyMapsReconciler, encodePolicyMaps,
  pinnedEndpointIdentities, programmedPolicy,
} from '../datapath/policy-maps.ts';
import { type KubeClient, isAlreadyExists } from '../k8s/client.ts';
import { Informer, type InformerEvent, type InformerHooks, type InformerStatus, type ObjectMeta } from '../k8s/informer.ts';
import { type CompiledPolicy, compilePolicies } from '../policy/compile.ts';
import { describe, type NameContext } from '../policy/describe.ts';
import type { FlowChecks, FlowParty } from '../l7/types.ts';
import { l7ChecksFor } from '../policy/l7.ts';
import { type DirectionPolicy, type Endpoint, IDENTITY_WORLD, type NetworkPolicy } from '../policy/model.ts';
import { normalizeHyphaNetworkPolicy, normalizeNetworkPolicy } from '../policy/normalize.ts';
import { type TraceParty, type TraceProto, type TraceResult, TraceInputError, formatTrace, trace } from '../policy/trace.ts';
import { type HttpTrace, formatHttpTrace, httpTraceQuery, traceHttp } from '../policy/trace-http.ts';
import { type LbTable, backendsOf, frontendsOf } from '../services/lb-table.ts';
import type { Problem } from '../services/problems.ts';
import type { AgentIdentities, LocalEndpoint } from './identities.ts';

const DEBOUNCE_MS = 50;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 30_000;
export const NETWORKPOLICIES_PATH = '/apis/networking.k8s.io/v1/networkpolicies';
export const HYPHANETWORKPOLICIES_PATH = '/apis/hypha.dev/v1alpha1/hyphanetworkpolicies';

export interface AgentPolicyOptions {
  /** Undefined: no API server (standalone): no NetworkPolicies, every endpoint open. */
  client?: KubeClient;
  nodeName: string;
  log: Logger;
  registry: Registry;
  hooks?: InformerHooks;
  silenceMs: number;
  resyncMs: number;
  maps: PolicyMapsIO;
  identities: () => AgentIdentities | undefined;
  /** This node's endpoints (records), for standalone mode. */
  endpoints: () => readonly LocalEndpoint[];
  /** The maps changed: open flows are judged again (Datapath.bumpPolicyGeneration). */
  changed: () => void;
  debounceMs?: number;
  /** Where entries with http rules send their flows (the L7 proxy's port). */
  proxyPort?: number;
  /** Whether any entry written carries http rules changed (ConfigFlags.L7). */
  l7Changed?: (on: boolean) => void;
}

interface StoredPolicy {
  kind: 'NetworkPolicy' | 'HyphaNetworkPolicy';
  value: NetworkPolicy;
  uid: string;
  generation: number;
  resourceVersion: string;
  problems: Problem[];
}

/** A problem and the NetworkPolicies its event goes on. */
interface Reported {
  problem: Problem;
  policies: string[];
  reason: 'PolicyNotEnforced' | 'PolicyMapFull';
}

/** What the maps were last written from. */
interface Written {
  compiled: CompiledPolicy;
  at: Date;
  entries: Record<string, number>;
}

/** One local endpoint's policy (GET /policy/endpoints). */
export interface PolicyEndpointView {
  key: string;
  identity: number;
  addresses: string[];
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
  /** `hypha policy get` prints these. */
  text: string[];
}

export interface PolicyStatusView {
  enabled: boolean;
  synced: boolean;
  /** Why nothing has been written yet. */
  waiting: string | null;
  lastSync: string | null;
  lastError: string | null;
  policies: number;
  entries: Record<string, number>;
  problems: string[];
}

export interface PolicyEndpointsDocument extends PolicyStatusView {
  endpoints: PolicyEndpointView[];
}

/** One judged flow of a trace; a Service destination has one per backend. */
export interface PolicyTraceItem {
  service?: string;
  frontend?: string;
  /** 'ip:port' of the backend traced. */
  backend?: string;
  result: TraceResult;
  /** With http= (trace --http): the request judged as the L7 proxy would. */
  http?: HttpTrace;
  text: string[];
  notes: string[];
}

export interface PolicyTraceDocument {
  verdict: 'allowed' | 'denied' | 'mixed' | 'none';
  synced: boolean;
  traces: PolicyTraceItem[];
  notes: string[];
}

/** What the agent knows of Services, for tracing to a ClusterIP: the backends
 *  programmed for a frontend. */
export type ServiceLookup = (ip: string, port: number, proto: string) => { service: string; frontend: string; backends: { ip: string; port: number }[] } | undefined;

export interface TraceContext {
  services?: ServiceLookup;
  /** The identity the ipcache gives an address (undefined: world). */
  ipcache?: (ip: string) => number | undefined;
}

export class AgentPolicy {
  readonly #o: AgentPolicyOptions;
  readonly #log: Logger;
  readonly #rec: PolicyMapsReconciler;
  readonly #policies = new Map<string, StoredPolicy>();
  #informer: Informer<ObjectMeta> | undefined;
  #hnpInformer: Informer<ObjectMeta> | undefined;
  #listed = false;
  #listedHnp = false;
  /** The HyphaNetworkPolicy CRD is not installed (its list answers 404). */
  #hnpAbsent = false;
  /** HyphaNetworkPolicy key -> the status this node last wrote on it. */
  readonly #statusWritten = new Map<string, string>();
  #l7 = false;
  /** Writes of the maps so far (what l7Flow answers changes only with one). */
  #writes = 0;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #again = false;
  #stopped = false;
  #backoff = RETRY_MIN_MS;
  #written: Written | undefined;
  #lastError: string | null = null;
  #pinned: Map<string, number> | undefined;
  /** Addresses of pods being added that no endpoint record names yet: closed both ways. */
  readonly #adding = new Set<string>();
  /** Compiles started. */
  #compiles = 0;
  #waiters = new Set<{ ip: string; after: number; done: (ok: boolean) => void }>();
  /** object -> message -> the problem as reported (present now). */
  #reported = new Map<string, Map<string, Reported>>();
  /** Events this agent made (name -> count), to count a recurrence. */
  readonly #events = new Map<string, number>();
  readonly #metrics: { problems: Counter<'kind'>; syncs: Counter<'outcome'>; duration: Histogram; events: Counter<'outcome'>; podWait: Histogram<'outcome'> };

  constructor(opts: AgentPolicyOptions) {
    this.#o = opts;
    this.#log = opts.log.child({ component: 'policy' });
    this.#rec = new PolicyMapsReconciler(opts.maps);
    const r = [opts.registry];
    const self = this;
    this.#metrics = {
      problems: new Counter({ name: 'hypha_policy_problems_reported_total', help: 'Problems of NetworkPolicy enforcement reported (each distinct problem once while it lasts), by kind of object', labelNames: ['kind'], registers: r }),
      syncs: new Counter({ name: 'hypha_policy_syncs_total', help: 'Writes of the policy maps from a compile, by outcome', labelNames: ['outcome'], registers: r }),
      duration: new Histogram({ name: 'hypha_policy_sync_duration_seconds', help: 'Compile and write of the policy maps', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: r }),
      podWait: new Histogram({
        name: 'hypha_policy_pod_start_wait_seconds', help: 'CNI ADD waiting for the first policy write that judges the new pod, by outcome (enforced, timeout: the pod stays closed until it comes)',
        labelNames: ['outcome'], buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: r,
      }),
      events: new Counter({ name: 'hypha_policy_events_total', help: 'Kubernetes Events about NetworkPolicies, by outcome (created, counted: a recurrence, exists: another node reported it, error)', labelNames: ['outcome'], registers: r }),
    };
    new Gauge({
      name: 'hypha_policy_problems', help: 'Problems of NetworkPolicy enforcement present now, by kind of object', labelNames: ['kind'], registers: r,
      collect() {
        const counts: Record<string, number> = { NetworkPolicy: 0, HyphaNetworkPolicy: 0, Endpoint: 0, 'policy map': 0 };
        for (const [obj, ps] of self.#reported) {
          const kind = kindOfObject(obj);
          counts[kind] = (counts[kind] ?? 0) + ps.size;
        }
        for (const [kind, n] of Object.entries(counts)) this.set({ kind }, n);
      },
    });
    new Gauge({
      name: 'hypha_policy_map_entries', help: 'Entries of the policy maps as last written', labelNames: ['map'], registers: r,
      collect() {
        for (const m of [POLICY_MAP, POLICY_EPS_MAP, POLICY_CIDR_MAP]) this.set({ map: m }, self.#written?.entries[m] ?? 0);
      },
    });
    new Gauge({
      name: 'hypha_policies', help: 'NetworkPolicies known', registers: r,
      collect() {
        this.set(self.#policies.size);
      },
    });
  }

  /** Follow NetworkPolicies through `client` (the options' unless given; none: standalone). */
  start(api?: { client: KubeClient; hooks?: InformerHooks }): void {
    if (api) {
      this.#o.client = api.client;
      if (api.hooks) this.#o.hooks = api.hooks;
    }
    const { client, log, hooks, silenceMs, resyncMs } = this.#o;
    if (!client) {
      this.#listed = true;
      this.#listedHnp = true;
      this.request();
      return;
    }
    const follow = (kind: StoredPolicy['kind']) => (e: InformerEvent<ObjectMeta>): void => {
      const hnp = kind === 'HyphaNetworkPolicy';
      // The key policyKey() gives the normalised object ('hnp:ns/name' for a HyphaNetworkPolicy).
      const key = (k: string): string => (hnp ? `hnp:${k}` : k);
      if (e.type === 'synced') {
        if (hnp) {
          this.#listedHnp = true;
          this.#hnpAbsent = e.absent === true;
        } else this.#listed = true;
        return this.request();
      }
      if (e.type === 'delete') {
        this.#statusWritten.delete(key(e.key));
        if (this.#policies.delete(key(e.key))) this.request();
        return;
      }
      const n = hnp ? normalizeHyphaNetworkPolicy(e.obj) : normalizeNetworkPolicy(e.obj);
      if (!n.value) {
        // Nameless: cannot be an object of the API server's; nothing to apply.
        for (const p of n.problems) this.#log.warn({ object: p.object, field: p.field, value: p.value }, p.message);
        return;
      }
      const meta = (e.obj as { metadata?: { uid?: string; generation?: number; resourceVersion?: string } }).metadata ?? {};
      const before = this.#policies.get(key(e.key));
      const stored: StoredPolicy = { kind, value: n.value, uid: meta.uid ?? '', generation: meta.generation ?? 0, resourceVersion: meta.resourceVersion ?? '', problems: n.problems };
      this.#policies.set(key(e.key), stored);
      // A change of metadata alone (labels, annotations, status) compiles to the same.
      if (before && before.uid === stored.uid && JSON.stringify(before.value) === JSON.stringify(stored.value) && before.problems.length === stored.problems.length) {
        if (before.generation !== stored.generation) this.#statusWritten.delete(key(e.key));
        return;
      }
      this.request();
    };
    this.#informer = new Informer<ObjectMeta>(client, { resource: 'networkpolicies', path: NETWORKPOLICIES_PATH }, { log, hooks, silenceMs, resyncMs });
    this.#informer.start(follow('NetworkPolicy'));
    // HyphaNetworkPolicies (L7 http rules): the CRD may not be installed,
    // which counts as none (retried until it is).
    this.#hnpInformer = new Informer<ObjectMeta>(client, { resource: 'hyphanetworkpolicies', path: HYPHANETWORKPOLICIES_PATH, absentIsEmpty: true }, { log, hooks, silenceMs, resyncMs });
    this.#hnpInformer.start(follow('HyphaNetworkPolicy'));
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#informer?.stop();
    this.#hnpInformer?.stop();
    for (const w of this.#waiters) w.done(false);
  }

  /**
   * A pod is being added at `ip` (CNI ADD, before its veth exists): its
   * endpoints-map entry denies both directions from now until a compile
   * judges it. Written at once, outside the debounce.
   */
  closeEndpoint(ip: string): void {
    if (this.#stopped) return;
    this.#adding.add(ip);
    this.#rec.writeEndpoint(ip, CLOSED_EP);
  }

  /** The ADD of `ip` failed, or its pod is gone before any compile named it: the closed entry goes. */
  releaseEndpoint(ip: string): void {
    if (!this.#adding.delete(ip) || this.#stopped) return;
    this.#rec.writeEndpoint(ip, undefined);
    this.request();
  }

  /**
   * Resolves true once a write that started after this call judged the pod
   * at `ip` by its identity (or as a pod without metadata), false after
   * `timeoutMs` (the pod stays as closed as the maps hold it).
   */
  whenEnforced(ip: string, timeoutMs: number): Promise<boolean> {
    if (this.#stopped) return Promise.resolve(false);
    const t0 = performance.now();
    return new Promise((resolve) => {
      const w = {
        ip, after: this.#compiles,
        done: (ok: boolean) => {
          if (!this.#waiters.delete(w)) return;
          clearTimeout(timer);
          this.#metrics.podWait.observe({ outcome: ok ? 'enforced' : 'timeout' }, (performance.now() - t0) / 1000);
          resolve(ok);
        },
      };
      const timer = setTimeout(() => w.done(false), timeoutMs);
      this.#waiters.add(w);
      this.request();
    });
  }

  status(): InformerStatus[] {
    return [this.#informer, this.#hnpInformer].filter((i) => i !== undefined).map((i) => i.status);
  }

  /** Something policy depends on changed: compile and write within DEBOUNCE_MS. */
  request(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run();
    }, this.#o.debounceMs ?? DEBOUNCE_MS);
  }

  /** Read the maps back and repair what drifted (the agent's slow timer). */
  resync(): void {
    this.#rec.requestFull();
    this.request();
  }

  /** Why the maps are not written yet (undefined: they are, or can be). */
  #waiting(): string | undefined {
    if (!this.#listed) return 'NetworkPolicies not listed yet';
    if (!this.#listedHnp) return 'HyphaNetworkPolicies not listed yet';
    const ids = this.#o.identities();
    if (ids?.expected && !ids.synced) return 'identities not listed yet';
    return undefined;
  }

  get synced(): boolean {
    return this.#written !== undefined;
  }

  /** The compile the maps were last written from. */
  get compiled(): CompiledPolicy | undefined {
    return this.#written?.compiled;
  }

  /** Counts the writes of the maps: the L7 proxy resolves a connection's
   *  checks again when it changed. */
  get writes(): number {
    return this.#writes;
  }

  /** Whether some entry written carries http rules (its flows go to the L7 proxy). */
  get l7(): boolean {
    return this.#l7;
  }

  /**
   * What the L7 proxy checks on one connection the datapath gave it: `src`
   * is the client (the accepted socket's remote end), `dst` the original
   * destination (its local end). Judged from the compile the maps hold, so
   * the proxy enforces what the datapath redirected for; before the first
   * write no check exists and every request is refused (fail closed).
   * Identities: a local endpoint's from that compile, any other address's
   * from the ipcache (none: world).
   */
  l7Flow(src: { ip: string; port: number }, dst: { ip: string; port: number }, ipcache?: (ip: string) => number | undefined): FlowChecks {
    const compiled = this.#written?.compiled;
    const ids = this.#o.identities();
    const party = (a: { ip: string; port: number }): FlowParty & { endpoint?: string } => {
      const local = compiled?.endpoints.find((e) => e.endpoint.addresses?.includes(a.ip));
      const identity = local ? local.endpoint.identity : (ipcache?.(a.ip) ?? IDENTITY_WORLD);
      const pod = local?.key ?? ids?.podByAddress(a.ip);
      return { ip: a.ip, port: a.port, identity, ...(pod ? { pod } : {}), ...(local ? { endpoint: local.key } : {}) };
    };
    const s = party(src);
    const d = party(dst);
    const checks = compiled ? l7ChecksFor(compiled, { src: s, dst: d, proto: 'TCP', port: dst.port }) : [];
    const strip = ({ endpoint: _e, ...p }: FlowParty & { endpoint?: string }): FlowParty => p;
    return { src: strip(s), dst: strip(d), checks };
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    const why = this.#waiting();
    if (why) return; // the informer's synced event or the identities' change asks again
    this.#running = true;
    this.#again = false;
    const t0 = performance.now();
    try {
      if (!this.#pinned) this.#pinned = await pinnedEndpointIdentities(this.#o.maps.eps);
      const seq = ++this.#compiles;
      const { compiled, open, judged } = this.#compile();
      const encoded = encodePolicyMaps(compiled, this.#rec.capacity, open, this.#adding, this.#o.proxyPort ? { proxyPort: this.#o.proxyPort } : {});
      const stats = await this.#rec.sync(encoded.maps);
      if (stats.upserts + stats.deletes > 0) this.#o.changed();
      const first = !this.#written;
      this.#writes++;
      this.#written = {
        compiled: programmedPolicy(compiled, encoded), at: new Date(),
        entries: Object.fromEntries([...encoded.maps].map(([m, e]) => [m, e.size])),
      };
      for (const w of this.#waiters) if (w.after < seq && judged.has(w.ip)) w.done(true);
      const l7 = this.#written.compiled.endpoints.some((e) => e.ingress.entries.some((x) => x.http) || e.egress.entries.some((x) => x.http));
      if (l7 !== this.#l7) {
        this.#l7 = l7;
        this.#o.l7Changed?.(l7);
      }
      this.#lastError = null;
      this.#backoff = RETRY_MIN_MS;
      this.#metrics.syncs.inc({ outcome: 'ok' });
      this.#metrics.duration.observe((performance.now() - t0) / 1000);
      this.#report(compiled, encoded);
      if (first || stats.upserts + stats.deletes > 0) {
        this.#log.info({
          full: stats.full, upserts: stats.upserts, deletes: stats.deletes, policies: this.#policies.size, endpoints: compiled.endpoints.length,
          entries: this.#written.entries[POLICY_MAP], ms: Math.round(performance.now() - t0),
        }, first ? 'policy maps written (first sync)' : 'policy maps written');
      }
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#metrics.syncs.inc({ outcome: 'error' });
      this.#log.error({ err: this.#lastError, retryMs: this.#backoff }, 'policy maps not written; retrying');
      this.#running = false;
      const t = setTimeout(() => this.request(), this.#backoff);
      t.unref();
      this.#backoff = Math.min(this.#backoff * 2, RETRY_MAX_MS);
      return;
    }
    this.#running = false;
    if (this.#again) this.request();
  }

  /** The tables, compiled. Local endpoints without pod metadata are open;
   *  `judged`: the local addresses compiled with their final identity. */
  #compile(): { compiled: CompiledPolicy; open: string[]; judged: Set<string> } {
    const ids = this.#o.identities();
    const locals = ids ? ids.localEndpoints() : this.#o.endpoints().map((e) => ({ ip: e.ip, ...(e.pod ? { pod: e.pod } : {}), ports: [] }));
    const settling = ids?.synced ? ids.settling() : new Set<string>();
    const byPod = new Map<string, Endpoint>();
    const open: string[] = [];
    const judged = new Set<string>();
    for (const l of locals) {
      // An endpoint record names it now: compiled from here on.
      this.#adding.delete(l.ip);
      if (!l.pod) {
        open.push(l.ip);
        judged.add(l.ip);
        continue;
      }
      const key = `${l.pod.namespace}/${l.pod.name}`;
      // Being looked up after a restart: the identity its address had.
      let identity = 'identity' in l && l.identity !== undefined ? l.identity : undefined;
      // Judged for good unless its identity is still being allocated (then
      // fail-closed for every policy that may select it).
      if (identity === undefined && settling.has(l.ip)) identity = this.#pinned?.get(l.ip);
      else {
        judged.add(l.ip);
        if (identity !== undefined) this.#pinned?.delete(l.ip);
      }
      const e = byPod.get(key);
      if (e) e.addresses!.push(l.ip);
      else byPod.set(key, { namespace: l.pod.namespace, name: l.pod.name, identity: identity ?? 0, ports: [...l.ports], addresses: [l.ip] });
    }
    const compiled = compilePolicies({
      identities: ids?.cache.list() ?? [],
      endpoints: [...byPod.values()].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1)),
      policies: [...this.#policies.values()].map((p) => p.value),
      namedPorts: ids?.namedPorts().map((n) => ({ pod: n.pod, identity: n.identity, ports: [...n.ports] })) ?? [],
    }, { maxEntriesPerDirection: this.#rec.capacity.policy, ...(this.#written ? { previousCidrs: this.#written.compiled.cidrs } : {}) });
    return { compiled, open, judged };
  }

  /** Log, count and put on the objects' events every problem that is new. */
  #report(compiled: CompiledPolicy, encoded: PolicyMapEntries): void {
    const now = new Map<string, Map<string, Reported>>();
    const add = (r: Reported): void => {
      let m = now.get(r.problem.object);
      if (!m) now.set(r.problem.object, (m = new Map()));
      m.set(r.problem.message, r);
    };
    for (const [key, p] of this.#policies) for (const problem of p.problems) add({ problem, policies: [key], reason: 'PolicyNotEnforced' });
    const byKey = new Map(compiled.endpoints.map((e) => [e.key, e]));
    for (const problem of compiled.problems) {
      const pol = policyOfObject(problem.object);
      if (pol !== undefined) {
        add({ problem, policies: [pol], reason: 'PolicyNotEnforced' });
        continue;
      }
      // An endpoint's direction over the per-direction limit: on the policies selecting it.
      const ep = problem.object.startsWith('Endpoint ') ? byKey.get(problem.object.slice('Endpoint '.length)) : undefined;
      const dir = problem.field === 'ingress entries' ? 'ingress' : problem.field === 'egress entries' ? 'egress' : undefined;
      add({ problem, policies: ep && dir ? ep[dir].selectedBy : [], reason: 'PolicyMapFull' });
    }
    for (const o of encoded.overflows) {
      const problem = encoded.problems.find((p) => p.object === `Endpoint ${o.endpoint}` && p.field === `${o.direction} entries`);
      if (problem) add({ problem, policies: o.policies, reason: 'PolicyMapFull' });
    }
    for (const problem of encoded.problems) if (problem.object === 'policy map') add({ problem, policies: [], reason: 'PolicyMapFull' });

    for (const [obj, ps] of now) {
      const was = this.#reported.get(obj);
      for (const [msg, r] of ps) {
        if (was?.has(msg)) continue;
        this.#metrics.problems.inc({ kind: kindOfObject(obj) });
        const fields = { object: r.problem.object, field: r.problem.field, value: r.problem.value, policies: r.policies };
        // A pod whose identity is being allocated is an ordinary moment of its start.
        if (r.problem.field === 'identity') this.#log.info(fields, r.problem.message);
        else this.#log.warn(fields, r.problem.message);
        for (const pol of r.policies) void this.#event(pol, r);
      }
    }
    this.#reported = now;
    this.#writeStatuses(now);
  }

  /**
   * Each HyphaNetworkPolicy's status says, per node, what this node could
   * not enforce of it (status.nodes.<node>: {enforcing, problems,
   * observedGeneration}); a merge patch of this node's key only, so the
   * agents of all nodes never conflict. Written when it changes.
   */
  #writeStatuses(now: Map<string, Map<string, Reported>>): void {
    const client = this.#o.client;
    if (!client) return;
    const problemsOf = new Map<string, string[]>();
    for (const ps of now.values()) {
      for (const r of ps.values()) {
        for (const pol of r.policies) {
          if (!pol.startsWith('hnp:')) continue;
          let l = problemsOf.get(pol);
          if (!l) problemsOf.set(pol, (l = []));
          l.push(r.problem.message);
        }
      }
    }
    for (const [key, p] of this.#policies) {
      if (p.kind !== 'HyphaNetworkPolicy') continue;
      const problems = [...new Set(problemsOf.get(key) ?? [])].sort().slice(0, 20);
      const state = JSON.stringify([p.generation, problems]);
      if (this.#statusWritten.get(key) === state) continue;
      this.#statusWritten.set(key, state);
      const path = `${HYPHANETWORKPOLICIES_PATH.replace('/hyphanetworkpolicies', '')}/namespaces/${p.value.namespace}/hyphanetworkpolicies/${p.value.name}/status`;
      const body = {
        status: {
          nodes: {
            [this.#o.nodeName]: {
              enforcing: problems.length === 0, observedGeneration: p.generation, problems, lastUpdated: new Date().toISOString(),
            },
          },
        },
      };
      client.mergePatch(path, body).catch((err: Error) => {
        // Written again at the next compile.
        this.#statusWritten.delete(key);
        this.#log.warn({ object: `HyphaNetworkPolicy ${p.value.namespace}/${p.value.name}`, err: err.message }, 'status of a HyphaNetworkPolicy not written');
      });
    }
  }

  /** A Warning Event on the NetworkPolicy. Named by the object's uid and
   *  generation and the message, so the agents of every node reporting the
   *  same problem make one Event; a recurrence this agent sees is counted on it. */
  async #event(policy: string, r: Reported): Promise<void> {
    const client = this.#o.client;
    const p = this.#policies.get(policy);
    if (!client || !p) return;
    const hash = createHash('sha256').update(`${p.uid}|${p.generation}|${r.reason}|${r.problem.message}`).digest('hex').slice(0, 16);
    const name = `${p.value.name.slice(0, 200)}.${hash}`;
    const involved = p.kind === 'HyphaNetworkPolicy' ? { apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNetworkPolicy' } : { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' };
    const ns = p.value.namespace;
    const now = new Date().toISOString();
    const seen = this.#events.get(name);
    if (this.#events.size > 10_000) this.#events.clear();
    try {
      if (seen !== undefined) {
        await client.mergePatch(`/api/v1/namespaces/${ns}/events/${name}`, { count: seen + 1, lastTimestamp: now });
        this.#events.set(name, seen + 1);
        this.#metrics.events.inc({ outcome: 'counted' });
        return;
      }
      await client.create(`/api/v1/namespaces/${ns}/events`, {
        apiVersion: 'v1', kind: 'Event',
        metadata: { name, namespace: ns },
        involvedObject: { ...involved, namespace: ns, name: p.value.name, uid: p.uid, resourceVersion: p.resourceVersion },
        reason: r.reason, type: 'Warning', message: r.problem.message.slice(0, 1024),
        source: { component: 'hypha-agent', host: this.#o.nodeName },
        firstTimestamp: now, lastTimestamp: now, count: 1,
      });
      this.#events.set(name, 1);
      this.#metrics.events.inc({ outcome: 'created' });
    } catch (err) {
      if (isAlreadyExists(err)) {
        this.#events.set(name, 1);
        this.#metrics.events.inc({ outcome: 'exists' });
        return;
      }
      this.#metrics.events.inc({ outcome: 'error' });
      this.#log.warn({ object: `${p.kind} ${p.value.namespace}/${p.value.name}`, event: name, err: (err as Error).message }, 'event about a NetworkPolicy not written');
    }
  }

  #nameContext(): NameContext {
    return { identities: this.#o.identities()?.cache.list() ?? [], cidrs: this.#written?.compiled.cidrs ?? [] };
  }

  statusView(): PolicyStatusView {
    const w = this.#written;
    return {
      enabled: true, synced: w !== undefined, waiting: w ? null : (this.#waiting() ?? 'first write pending'),
      lastSync: w?.at.toISOString() ?? null, lastError: this.#lastError, policies: this.#policies.size, entries: w?.entries ?? {},
      problems: [...this.#reported.values()].flatMap((m) => [...m.keys()]),
    };
  }

  /** GET /policy/endpoints[?pod=ns/name]: each local endpoint's policy, and in words. */
  endpointsDocument(q: URLSearchParams = new URLSearchParams()): PolicyEndpointsDocument {
    const pod = q.get('pod');
    const ctx = this.#nameContext();
    const eps = (this.#written?.compiled.endpoints ?? []).filter((e) => !pod || e.key === pod);
    return {
      ...this.statusView(),
      endpoints: eps.map((e) => ({
        key: e.key, identity: e.endpoint.identity, addresses: e.endpoint.addresses ?? [], ingress: e.ingress, egress: e.egress, text: describe(e, ctx),
      })),
    };
  }

  /** Where a party given as 'ns/name' or an address is, for trace(). */
  #party(text: string, field: 'from' | 'to', notes: string[]): TraceParty {
    if (isIPv4(text)) return { ip: text };
    const slash = text.indexOf('/');
    if (slash <= 0 || slash === text.length - 1 || text.indexOf('/', slash + 1) >= 0) {
      throw new TraceInputError(field, text, 'is neither namespace/pod nor an IPv4 address');
    }
    const compiled = this.#written?.compiled;
    if (compiled?.endpoints.some((e) => e.key === text)) return { endpoint: text };
    const pod = this.#o.identities()?.pod(text);
    if (!pod) throw new TraceInputError(field, text, 'is not a pod of this node, and no Pod of that name is known');
    const side = field === 'from' ? 'egress (at the source)' : 'ingress (at the destination)';
    notes.push(`${text} is on node ${pod.node || '(unscheduled)'}, not this one (${this.#o.nodeName}): its ${side} is judged there; ask that node's agent (hypha policy trace on ${pod.node || 'it'})`);
    if (pod.ips[0]) return { ip: pod.ips[0] };
    if (pod.identity !== undefined) return { identity: pod.identity };
    throw new TraceInputError(field, text, 'has no address and no identity yet');
  }

  /** GET /policy/trace?from=&to=&port=[&http=&header=&host=]: the verdict from the compile the maps hold. */
  traceDocument(q: URLSearchParams, ctx: TraceContext = {}): PolicyTraceDocument {
    const from = q.get('from') ?? '';
    const to = q.get('to') ?? '';
    const portText = q.get('port') ?? '';
    if (!from) throw new TraceInputError('from', from, 'is required (namespace/pod or an IPv4 address)');
    if (!to) throw new TraceInputError('to', to, 'is required (namespace/pod or an IPv4 address)');
    const { proto, port } = parsePortProto(portText, 'port');
    const http = httpTraceQuery(q, proto);
    const compiled = this.#written?.compiled;
    const notes: string[] = [];
    if (!compiled) {
      return { verdict: 'none', synced: false, traces: [], notes: [`policy maps not written yet: ${this.#waiting() ?? 'first write pending'}`] };
    }
    const src = this.#party(from, 'from', notes);
    const names = this.#nameContext();
    const env = ctx.ipcache ? { ipcache: ctx.ipcache } : {};
    const one = (dst: TraceParty, dport: number | undefined, extra: Partial<PolicyTraceItem> = {}): PolicyTraceItem => {
      const result = trace(compiled, { from: src, to: dst, proto, ...(dport !== undefined ? { port: dport } : {}) }, env);
      const itemNotes: string[] = [];
      for (const d of [result.egress, result.ingress]) {
        if (d.verdict !== 'elsewhere') continue;
        const party = d.direction === 'egress' ? result.from : result.to;
        if (party.identity === 2) itemNotes.push(`${d.direction}: ${party.address ?? 'the peer'} is outside the cluster (reserved:world): no policy of this cluster judges it there`);
      }
      const text = formatTrace(result, names);
      if (!http) return { ...extra, result, text, notes: itemNotes };
      const h = traceHttp(compiled, result, http);
      return { ...extra, result, http: h, text: [...text, ...formatHttpTrace(h)], notes: itemNotes };
    };
    const traces: PolicyTraceItem[] = [];
    const svc = isIPv4(to) && port !== undefined ? ctx.services?.(to, port, proto) : undefined;
    if (svc) {
      // The datapath judges the backend the Service address is translated to.
      if (svc.backends.length === 0) notes.push(`${svc.frontend} is Service ${svc.service} with no backend: connections are rejected before policy`);
      for (const b of svc.backends) {
        traces.push(one({ ip: b.ip }, b.port, { service: svc.service, frontend: svc.frontend, backend: `${b.ip}:${b.port}` }));
      }
    } else {
      traces.push(one(this.#party(to, 'to', notes), port));
    }
    const verdicts = new Set(traces.map((t) => t.result.verdict));
    const verdict = verdicts.size === 0 ? 'none' : verdicts.size > 1 ? 'mixed' : [...verdicts][0]!;
    return { verdict, synced: true, traces, notes };
  }
}

/** 'NetworkPolicy ns/n' -> 'ns/n', 'HyphaNetworkPolicy ns/n' -> 'hnp:ns/n' (policyKey); otherwise undefined. */
function policyOfObject(obj: string): string | undefined {
  if (obj.startsWith('NetworkPolicy ')) return obj.slice('NetworkPolicy '.length);
  if (obj.startsWith('HyphaNetworkPolicy ')) return `hnp:${obj.slice('HyphaNetworkPolicy '.length)}`;
  return undefined;
}

function kindOfObject(obj: string): string {
  for (const k of ['NetworkPolicy', 'HyphaNetworkPolicy', 'Endpoint']) if (obj.startsWith(`${k} `)) return k;
  return 'policy map';
}

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

/** '80/TCP' (protocol in any case), or 'ICMP'. */
export function parsePortProto(text: string, field: string): { proto: TraceProto; port?: number } {
  if (/^icmp$/i.test(text)) return { proto: 'ICMP' };
  const m = /^(\d{1,5})\/([A-Za-z]+)$/.exec(text);
  if (!m) throw new TraceInputError(field, text, 'is not PORT/PROTOCOL (e.g. 80/TCP) or ICMP');
  const proto = m[2]!.toUpperCase();
  if (!(PROTOCOLS as readonly string[]).includes(proto)) throw new TraceInputError(field, text, `has protocol ${m[2]}, not one of TCP, UDP, SCTP (or ICMP alone)`);
  const port = Number(m[1]);
  if (port < 1 || port > 65535) throw new TraceInputError(field, text, 'has a port outside 1-65535');
  return { proto: proto as TraceProto, port };
}

/** ClusterIP (or any frontend) address:port/proto -> the Service and the backends programmed for it. */
export function lbServiceLookup(table: LbTable | undefined): ServiceLookup {
  return (ip, port, proto) => {
    if (!table) return undefined;
    const key = `${ip}:${port}/${proto}`;
    const svc = table.holder(key);
    const f = svc && frontendsOf(svc).find((x) => x.key === key);
    if (!svc || !f) return undefined;
    const backends = backendsOf(svc, f.svcId).map((b) => ({ ip: b.addr, port: b.port })).sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
    return { service: svc.key, frontend: key, backends };
  };
}
