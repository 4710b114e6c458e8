// Security identities on one node: the identity of every pod on this node
// (allocated through src/identity/allocator.ts), a view of every identity in
// the cluster (HyphaIdentity informer), and the identity of every pod
// address in the cluster for the ipcache.
//
// Where pod addresses come from. This node's pods: the agent's own endpoint
// records (known at CNI ADD, before the kubelet writes the Pod's status).
// Other nodes' pods: a watch of every Pod (status.podIPs, labels, nodeName).
// The other choice, publishing each endpoint in an object of Hypha's own (as
// Cilium's CiliumEndpoint), costs a write per pod start and stop on top of
// the kubelet's; the Pod watch costs the agent a compact row per pod (its
// addresses, node, an interned label map shared by the pods of one workload,
// the set's key) and the watch traffic of pod changes. Raw Pod objects are
// never kept. Namespace labels come from a watch of Namespaces.
//
// The allocator's answers are what this node's pods get; the informer's view
// only names other nodes' pods' identities, and is never used to hand an id
// out. An identity of this node's pods that is deleted (the operator's
// collector saw no pod using it before this node's pod turned up) is
// allocated again, with its old number asked for first.
//
// Without the HyphaIdentity CRD (not installed) identities are off: the agent
// says so once, checks again every minute, and the ipcache holds only the
// reserved identities of the nodes.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { IPCACHE_MAP, IpcacheReconciler, ipcacheKeyCodec, ipcacheValCodec } from '../datapath/ipcache-reconciler.ts';
import type { MapIO } from '../datapath/map-io.ts';
import type { ApplyStats } from '../datapath/reconciler.ts';
import { IpcacheFlags } from '../abi/abi.gen.ts';
import { IdentityAllocator } from '../identity/allocator.ts';
import { IdentityCache } from '../identity/cache.ts';
import { type PodAddress, withIdentities } from '../identity/ipcache.ts';
import { KubeIdentityStore } from '../identity/kube-store.ts';
import {
  type LabelSet, type Labels, RESERVED_DESCRIPTIONS, RESERVED_IDENTITIES, type ReservedIdentityName, canonicalLabelSet, labelsKey,
} from '../identity/labels.ts';
import { LabelInterner, type PodPort, PortsInterner, namespaceLabelsOf, podNeedsIdentity, podRowOf } from '../identity/pods.ts';
import { type KubeClient, isInvalid, isNotFound } from '../k8s/client.ts';
import { HYPHAIDENTITIES_PATH, type StoredIdentity, hyphaIdentitiesInformerSpec, identityIdOfName, normalizeHyphaIdentity } from '../k8s/hyphaidentity.ts';
import { type InformerHooks, type InformerStatus, Informer, type ObjectMeta } from '../k8s/informer.ts';
import type { IpcacheEntry } from '../nodes/compile.ts';

/** A local endpoint as the agent's records have it. */
export interface LocalEndpoint {
  ip: string;
  pod?: { namespace: string; name: string; uid?: string };
}

export interface AgentIdentitiesOptions {
  client: KubeClient;
  nodeName: string;
  log: Logger;
  registry: Registry;
  hooks?: InformerHooks;
  silenceMs: number;
  resyncMs: number;
  /** This node's endpoints (the records, no kernel queries). */
  endpoints: () => readonly LocalEndpoint[];
  /** What the ipcache should hold changed. */
  onChange: () => void;
  /** How often to look again for the CRD while it is not installed. */
  probeMs?: number;
}

/** A row of `hypha identity list` (GET /identities). */
export interface IdentityView {
  id: number | null;
  /** Reserved identities: their name. */
  reserved?: ReservedIdentityName;
  description?: string;
  namespace?: string;
  podLabels?: Labels;
  namespaceLabels?: Labels;
  /** Pods on this node with this identity. */
  localPods: number;
  /** Local label sets without an id yet: allocating, or why not. */
  state?: 'allocating' | 'failed';
  error?: string;
}

interface PodEntry {
  node: string;
  ips: string[];
  uid: string;
  needs: boolean;
  /** Interned security labels. */
  labels: Labels;
  /** labelsKey of the pod's set ('' while its namespace is unknown). */
  key: string;
  /** Interned named container ports (NetworkPolicy named ports). */
  ports: readonly PodPort[];
}

/** A pod of this node as policy needs it: its address, and its identity once known. */
export interface LocalPolicyEndpoint {
  ip: string;
  pod?: { namespace: string; name: string };
  identity?: number;
  ports: readonly PodPort[];
}

interface LocalSet {
  set: LabelSet;
  key: string;
  pods: Set<string>;
  id?: number;
  /** The id to ask for first (the one it had). */
  prefer?: number;
  state: 'pending' | 'allocating' | 'ready' | 'failed';
  error?: string;
  retryMs: number;
  retryTimer?: NodeJS.Timeout;
  /** Bumped whenever the entry is re-requested: a stale allocation's answer is ignored. */
  generation: number;
}

const ALLOCATE_CONCURRENCY = 4;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** Longest wait before the ipcache hears of a change (changes within it make one sync). */
const NOTIFY_MS = 50;

export class AgentIdentities {
  readonly #o: AgentIdentitiesOptions;
  readonly #log: Logger;
  readonly cache = new IdentityCache<StoredIdentity>();
  readonly #allocator: IdentityAllocator<StoredIdentity>;
  readonly #interner = new LabelInterner();
  readonly #portsInterner = new PortsInterner();
  readonly #pods = new Map<string, PodEntry>();
  readonly #namespaces = new Map<string, Labels>();
  /** canonical -> this node's set */
  readonly #local = new Map<string, LocalSet>();
  /** 'namespace/name' of this node's pods -> canonical of their set */
  readonly #localPodSet = new Map<string, string>();
  #informers: Informer<ObjectMeta>[] = [];
  /** Pod address -> 'namespace/name' (any node), built when asked after a change. */
  #byAddress: Map<string, string> | undefined;
  readonly #synced = new Set<string>();
  /** A reconcile ran with all three lists complete. */
  #reconciledListed = false;
  #state: 'probing' | 'off' | 'on' | 'stopped' = 'probing';
  #probeTimer: NodeJS.Timeout | undefined;
  #reconcileTimer: NodeJS.Timeout | undefined;
  #notifyTimer: NodeJS.Timeout | undefined;
  #inFlight = 0;
  readonly #reported = new Set<string>();
  readonly #metrics: { allocations: Counter<'outcome'>; duration: Histogram };

  constructor(opts: AgentIdentitiesOptions) {
    this.#o = opts;
    this.#log = opts.log.child({ component: 'identities' });
    this.#allocator = new IdentityAllocator({ store: new KubeIdentityStore(opts.client, this.#log), log: this.#log, knownIds: () => this.cache.ids() });
    const r = [opts.registry];
    this.#metrics = {
      allocations: new Counter({
        name: 'hypha_identity_allocations_total', labelNames: ['outcome'], registers: r,
        help: 'Identities asked for this node\'s pods, by outcome (existing: found; created: made here; lost-race: another allocator made it first; error)',
      }),
      duration: new Histogram({ name: 'hypha_identity_allocation_duration_seconds', help: 'Time to allocate (or find) one identity', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: r }),
    };
    const self = this;
    new Gauge({
      name: 'hypha_identities', help: 'Identities known (cluster: every HyphaIdentity; local: label sets of this node\'s pods)', labelNames: ['scope'], registers: r,
      collect() {
        this.set({ scope: 'cluster' }, self.cache.size);
        this.set({ scope: 'local' }, self.#local.size);
      },
    });
  }

  /** Identities are in use (the CRD is served), or not known yet. */
  get expected(): boolean {
    return this.#state === 'probing' || this.#state === 'on';
  }

  /** Every watch has listed and this node's sets were worked out from the lists: the view is complete. */
  get synced(): boolean {
    return this.#state === 'on' && this.#reconciledListed && this.#informers.every((i) => i.status.phase !== 'listing');
  }

  /** Addresses of this node's pods whose identity is being allocated (not
   *  known yet, and not refused): the ipcache keeps what it has for them. */
  settling(): Set<string> {
    const out = new Set<string>();
    for (const e of this.#o.endpoints()) {
      if (!e.pod) continue;
      const canon = this.#localPodSet.get(`${e.pod.namespace}/${e.pod.name}`);
      const l = canon === undefined ? undefined : this.#local.get(canon);
      if (l && (l.state === 'pending' || l.state === 'allocating')) out.add(e.ip);
    }
    return out;
  }

  status(): InformerStatus[] {
    return this.#informers.map((i) => i.status);
  }

  start(): void {
    void this.#probe();
  }

  #isStopped(): boolean {
    return this.#state === 'stopped';
  }

  async #probe(): Promise<void> {
    if (this.#isStopped()) return;
    try {
      await this.#o.client.get(HYPHAIDENTITIES_PATH, { limit: 1 });
    } catch (err) {
      const off = isNotFound(err);
      const retry = off ? (this.#o.probeMs ?? 60_000) : 5000;
      if (off && this.#state !== 'off') {
        this.#log.info({ retrySeconds: retry / 1000 }, 'HyphaIdentity is not served (deploy/crds/hyphaidentities.yaml not installed): pod identities off; the ipcache has node identities only');
        this.#state = 'off';
        this.#notify();
      } else if (!off) {
        this.#log.warn({ err: (err as Error).message, retrySeconds: retry / 1000 }, 'cannot tell whether HyphaIdentity is served; asking again');
      }
      this.#probeTimer = setTimeout(() => void this.#probe(), retry);
      this.#probeTimer.unref();
      return;
    }
    // stop() may have run while the probe was out.
    if (this.#isStopped()) return;
    this.#state = 'on';
    this.#log.info('HyphaIdentity served: following identities, Namespaces and every Pod');
    this.#startInformers();
  }

  #startInformers(): void {
    const { client, log, hooks, silenceMs, resyncMs } = this.#o;
    const opts = { log, hooks, silenceMs, resyncMs };
    const identities = new Informer<ObjectMeta>(client, hyphaIdentitiesInformerSpec(), opts);
    const namespaces = new Informer<ObjectMeta>(client, { resource: 'namespaces', path: '/api/v1/namespaces' }, opts);
    const pods = new Informer<ObjectMeta>(client, { resource: 'pods (all)', path: '/api/v1/pods' }, opts);
    this.#informers = [identities, namespaces, pods];
    const synced = (name: string): void => {
      this.#synced.add(name);
      this.#changed();
    };
    identities.start((e) => {
      if (e.type === 'synced') return synced('identities');
      if (e.type === 'delete') return this.#identityGone(e.key);
      this.#identityUpsert(e.obj);
    });
    namespaces.start((e) => {
      if (e.type === 'synced') return synced('namespaces');
      const before = this.#namespaces.get(e.key);
      if (e.type === 'delete') this.#namespaces.delete(e.key);
      else this.#namespaces.set(e.key, namespaceLabelsOf(e.obj));
      const after = this.#namespaces.get(e.key);
      if (JSON.stringify(before) === JSON.stringify(after)) return;
      // The namespace's labels are part of every one of its pods' sets.
      let changed = false;
      for (const [k, p] of this.#pods) {
        if (!k.startsWith(`${e.key}/`)) continue;
        p.key = this.#keyOf(e.key, p.labels);
        changed = true;
      }
      if (changed || after === undefined) this.#changed();
    });
    pods.start((e) => {
      if (e.type === 'synced') return synced('pods');
      const before = this.#pods.get(e.key);
      if (e.type === 'delete') {
        if (!before) return;
        this.#interner.release(before.labels);
        this.#portsInterner.release(before.ports);
        this.#pods.delete(e.key);
        this.#changed();
        return;
      }
      const row = podRowOf(e.obj);
      const labels = this.#interner.intern(row.labels);
      const ports = this.#portsInterner.intern(row.ports);
      if (before) {
        this.#interner.release(before.labels);
        this.#portsInterner.release(before.ports);
      }
      const entry: PodEntry = { node: row.node, ips: row.ips, uid: row.uid, needs: podNeedsIdentity(row), labels, key: this.#keyOf(row.namespace, labels), ports };
      this.#pods.set(e.key, entry);
      // Most Pod updates (conditions, container statuses) change nothing here.
      if (before && before.key === entry.key && before.node === entry.node && before.needs === entry.needs && before.uid === entry.uid && before.ips.join() === entry.ips.join() && before.ports === entry.ports) return;
      this.#changed();
    });
  }

  #keyOf(namespace: string, labels: Labels): string {
    const ns = this.#namespaces.get(namespace);
    return ns ? labelsKey({ namespace, podLabels: labels, namespaceLabels: ns }) : '';
  }

  #identityUpsert(obj: unknown): void {
    const n = normalizeHyphaIdentity(obj);
    if (!n.value) {
      for (const p of n.problems) this.#reportOnce(`identity ${p.message}`, { kind: 'HyphaIdentity', field: p.field, reason: p.message }, 'identity object refused');
      return;
    }
    this.cache.upsert(n.value);
    // A view that disagrees with what the allocator told us (it should not):
    // ask the allocator again, which reads the API server.
    for (const l of this.#local.values()) {
      if (l.key !== n.value.key || l.state !== 'ready') continue;
      const w = this.cache.winner(l.key);
      if (w && w.id !== l.id && this.#informers[0]?.status.phase === 'watching') this.#request(l, l.id);
    }
    this.#notify();
  }

  #identityGone(name: string): void {
    const id = identityIdOfName(name);
    if (id === undefined) return;
    this.cache.delete(id);
    for (const l of this.#local.values()) {
      if (l.id !== id) continue;
      this.#log.warn({ identity: id, namespace: l.set.namespace, labels: l.set.podLabels }, 'identity of pods on this node was deleted; allocating it again');
      this.#request(l, id);
    }
    this.#notify();
  }

  /** Tell the ipcache, at most every NOTIFY_MS: each sync reads and diffs the
   *  whole map, and a large cluster's pods start and stop many times a second. */
  #notify(): void {
    if (this.#notifyTimer || this.#isStopped()) return;
    this.#notifyTimer = setTimeout(() => {
      this.#notifyTimer = undefined;
      this.#o.onChange();
    }, NOTIFY_MS);
  }

  /** This node's endpoints changed (the CNI plugin added or removed a pod). */
  endpointsChanged(): void {
    this.#changed();
  }

  /** Pods, namespaces or endpoints changed: recompute this node's sets soon, and the ipcache. */
  #changed(): void {
    this.#byAddress = undefined;
    if (this.#reconcileTimer) return;
    this.#reconcileTimer = setTimeout(() => {
      this.#reconcileTimer = undefined;
      this.#reconcile();
      this.#notify();
    }, 5);
  }

  /** The label sets of this node's pods: new ones allocated, unused ones forgotten. */
  #reconcile(): void {
    if (this.#state !== 'on') return;
    if (this.#synced.size === 3) this.#reconciledListed = true;
    const self = this.#o.nodeName;
    const want = new Map<string, { set: LabelSet; pods: Set<string> }>();
    const podSet = new Map<string, string>();
    const add = (podKey: string, namespace: string, p: PodEntry): void => {
      const ns = this.#namespaces.get(namespace);
      if (!ns || !p.needs) return;
      const set: LabelSet = { namespace, podLabels: p.labels, namespaceLabels: ns };
      const canon = canonicalLabelSet(set);
      let w = want.get(canon);
      if (!w) want.set(canon, (w = { set, pods: new Set() }));
      w.pods.add(podKey);
      podSet.set(podKey, canon);
    };
    // Pods scheduled here (their identity can be ready before the CNI ADD) ...
    for (const [k, p] of this.#pods) if (p.node === self) add(k, k.slice(0, k.indexOf('/')), p);
    // ... and pods this agent made (the records name them).
    for (const e of this.#o.endpoints()) {
      if (!e.pod) continue;
      const k = `${e.pod.namespace}/${e.pod.name}`;
      const p = this.#pods.get(k);
      if (p && (!e.pod.uid || !p.uid || e.pod.uid === p.uid)) add(k, e.pod.namespace, p);
    }
    this.#localPodSet.clear();
    for (const [k, c] of podSet) this.#localPodSet.set(k, c);
    for (const [canon, l] of this.#local) {
      if (want.has(canon)) continue;
      clearTimeout(l.retryTimer);
      l.generation++;
      this.#local.delete(canon);
    }
    for (const [canon, w] of want) {
      const l = this.#local.get(canon);
      if (l) {
        l.pods = w.pods;
        continue;
      }
      const entry: LocalSet = { set: w.set, key: labelsKey(w.set), pods: w.pods, state: 'pending', retryMs: RETRY_MIN_MS, generation: 0 };
      this.#local.set(canon, entry);
    }
    this.#pump();
  }

  #request(l: LocalSet, prefer: number | undefined): void {
    clearTimeout(l.retryTimer);
    l.retryTimer = undefined;
    l.generation++;
    if (prefer !== undefined) l.prefer = prefer;
    delete l.id;
    l.state = 'pending';
    this.#pump();
  }

  #pump(): void {
    if (this.#state !== 'on') return;
    for (const l of this.#local.values()) {
      if (this.#inFlight >= ALLOCATE_CONCURRENCY) return;
      if (l.state !== 'pending') continue;
      void this.#allocate(l);
    }
  }

  async #allocate(l: LocalSet): Promise<void> {
    l.state = 'allocating';
    const gen = l.generation;
    this.#inFlight++;
    const t0 = performance.now();
    try {
      const a = await this.#allocator.allocate(l.set, l.prefer === undefined ? {} : { prefer: l.prefer });
      this.#metrics.allocations.inc({ outcome: a.outcome });
      this.#metrics.duration.observe((performance.now() - t0) / 1000);
      if (gen !== l.generation || this.#local.get(canonicalLabelSet(l.set)) !== l) return;
      l.id = a.identity.id;
      l.state = 'ready';
      l.retryMs = RETRY_MIN_MS;
      delete l.error;
      delete l.prefer;
      this.cache.upsert(a.identity);
      this.#log.info({ identity: l.id, outcome: a.outcome, namespace: l.set.namespace, labels: l.set.podLabels, pods: l.pods.size }, 'identity of pods on this node');
      this.#notify();
    } catch (err) {
      this.#metrics.allocations.inc({ outcome: 'error' });
      if (gen !== l.generation || this.#local.get(canonicalLabelSet(l.set)) !== l) return;
      const message = (err as Error).message;
      l.state = 'failed';
      l.error = message;
      // The API server refusing the object is not fixed by asking again:
      // only a change of the set (a new entry) is.
      const invalid = isInvalid(err);
      this.#reportOnce(`alloc ${l.key} ${message}`, { namespace: l.set.namespace, labels: l.set.podLabels, err: message, retrySeconds: invalid ? null : l.retryMs / 1000 }, invalid ? 'identity refused by the API server; pods of this label set have none' : 'identity not allocated; retrying');
      if (!invalid) {
        l.retryTimer = setTimeout(() => {
          if (l.state === 'failed' && l.generation === gen) {
            l.state = 'pending';
            this.#pump();
          }
        }, l.retryMs);
        l.retryTimer.unref();
        l.retryMs = Math.min(l.retryMs * 2, RETRY_MAX_MS);
      }
    } finally {
      this.#inFlight--;
      this.#pump();
    }
  }

  #reportOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    if (this.#reported.has(key)) return;
    if (this.#reported.size > 1000) this.#reported.clear();
    this.#reported.add(key);
    this.#log.warn(fields, msg);
  }

  /** Every pod address in the cluster whose identity is known. */
  podAddresses(): PodAddress[] {
    const out: PodAddress[] = [];
    if (this.#state !== 'on') return out;
    const self = this.#o.nodeName;
    const localIps = new Set<string>();
    for (const e of this.#o.endpoints()) {
      if (!e.pod) continue;
      const pod = `${e.pod.namespace}/${e.pod.name}`;
      const canon = this.#localPodSet.get(pod);
      const id = canon === undefined ? undefined : this.#local.get(canon)?.id;
      localIps.add(e.ip);
      if (id !== undefined) out.push({ ip: e.ip, identity: id, local: true, pod });
    }
    for (const [pod, p] of this.#pods) {
      if (p.node === self || !p.needs || p.key === '' || p.ips.length === 0) continue;
      const id = this.cache.winner(p.key)?.id;
      if (id === undefined) continue;
      for (const ip of p.ips) if (!localIps.has(ip)) out.push({ ip, identity: id, local: false, pod });
    }
    return out;
  }

  /** The running pod ('namespace/name') with this address, on any node, from the Pod watch (`hypha monitor`). */
  podByAddress(ip: string): string | undefined {
    if (!this.#byAddress) {
      this.#byAddress = new Map();
      for (const [pod, p] of this.#pods) if (p.needs) for (const a of p.ips) this.#byAddress.set(a, pod);
    }
    return this.#byAddress.get(ip);
  }

  /** This node's endpoints with their pod's identity (undefined while it is
   *  being allocated, or the Pod is not seen yet) and named ports. */
  localEndpoints(): LocalPolicyEndpoint[] {
    const on = this.#state === 'on';
    return this.#o.endpoints().map((e) => {
      if (!e.pod) return { ip: e.ip, ports: [] };
      const key = `${e.pod.namespace}/${e.pod.name}`;
      const canon = on ? this.#localPodSet.get(key) : undefined;
      const id = canon === undefined ? undefined : this.#local.get(canon)?.id;
      const row = this.#pods.get(key);
      const ports = row && (!e.pod.uid || !row.uid || e.pod.uid === row.uid) ? row.ports : [];
      return { ip: e.ip, pod: { namespace: e.pod.namespace, name: e.pod.name }, ...(id !== undefined ? { identity: id } : {}), ports };
    });
  }

  /** Every pod of the cluster with named ports and a known identity ('ns/name'). */
  namedPorts(): { pod: string; identity: number; ports: readonly PodPort[] }[] {
    const out: { pod: string; identity: number; ports: readonly PodPort[] }[] = [];
    if (this.#state !== 'on') return out;
    for (const [pod, p] of this.#pods) {
      if (p.ports.length === 0 || !p.needs || p.key === '') continue;
      const canon = this.#localPodSet.get(pod);
      const id = (canon === undefined ? undefined : this.#local.get(canon)?.id) ?? this.cache.winner(p.key)?.id;
      if (id !== undefined) out.push({ pod, identity: id, ports: p.ports });
    }
    return out;
  }

  /** Where a pod of the cluster is, by 'ns/name': its node, addresses and identity (if known). */
  pod(key: string): { node: string; ips: string[]; identity?: number } | undefined {
    const p = this.#pods.get(key);
    if (!p) return undefined;
    const canon = this.#localPodSet.get(key);
    const id = (canon === undefined ? undefined : this.#local.get(canon)?.id) ?? (p.key ? this.cache.winner(p.key)?.id : undefined);
    return { node: p.node, ips: p.ips, ...(id !== undefined ? { identity: id } : {}) };
  }

  /** The rows of `hypha identity list`: reserved, then every cluster identity, then local sets waiting for one. */
  list(): IdentityView[] {
    const localById = new Map<number, number>();
    const waiting: IdentityView[] = [];
    for (const l of this.#local.values()) {
      if (l.id !== undefined) localById.set(l.id, (localById.get(l.id) ?? 0) + l.pods.size);
      else {
        waiting.push({
          id: null, namespace: l.set.namespace, podLabels: l.set.podLabels, namespaceLabels: l.set.namespaceLabels, localPods: l.pods.size,
          state: l.state === 'failed' ? 'failed' : 'allocating', ...(l.error ? { error: l.error } : {}),
        });
      }
    }
    const reserved: IdentityView[] = Object.entries(RESERVED_IDENTITIES).map(([name, id]) => ({
      id, reserved: name as ReservedIdentityName, description: RESERVED_DESCRIPTIONS[name as ReservedIdentityName], localPods: 0,
    }));
    const cluster: IdentityView[] = this.cache.list().map((i) => ({
      id: i.id, namespace: i.namespace, podLabels: i.podLabels, namespaceLabels: i.namespaceLabels, localPods: localById.get(i.id) ?? 0,
    }));
    // An id the allocator gave that the view has not caught up with yet.
    for (const [id, n] of localById) {
      if (this.cache.get(id)) continue;
      const l = [...this.#local.values()].find((x) => x.id === id)!;
      cluster.push({ id, namespace: l.set.namespace, podLabels: l.set.podLabels, namespaceLabels: l.set.namespaceLabels, localPods: n });
    }
    return [...reserved, ...cluster.sort((a, b) => (a.id ?? 0) - (b.id ?? 0)), ...waiting];
  }

  stop(): void {
    this.#state = 'stopped';
    clearTimeout(this.#probeTimer);
    clearTimeout(this.#reconcileTimer);
    clearTimeout(this.#notifyTimer);
    for (const l of this.#local.values()) clearTimeout(l.retryTimer);
    for (const i of this.#informers) i.stop();
  }
}

/**
 * The ipcache with identities: the nodes compiler's entries (given to sync()
 * by Routing) with node identities and every pod address of known identity
 * added. Until the identity view is complete after a start, the pod entries
 * already in the pinned map are kept, and after it those of this node's pods
 * whose identity is being looked up: a restarted agent does not wipe the
 * identities the datapath is using while it lists and asks again.
 */
export class IdentityIpcache extends IpcacheReconciler {
  readonly #io: MapIO;
  readonly #identities: () => AgentIdentities | undefined;
  readonly #log: Logger;
  readonly #reported = new Set<string>();

  constructor(io: MapIO, opts: { identities: () => AgentIdentities | undefined; log: Logger }) {
    super(io);
    this.#io = io;
    this.#identities = opts.identities;
    this.#log = opts.log;
  }

  override async sync(entries: readonly IpcacheEntry[]): Promise<ApplyStats> {
    const ids = this.#identities();
    const merged = withIdentities(entries, ids?.podAddresses() ?? []);
    for (const p of merged.problems) {
      if (this.#reported.has(p)) continue;
      if (this.#reported.size > 1000) this.#reported.clear();
      this.#reported.add(p);
      this.#log.warn({ map: IPCACHE_MAP, reason: p }, 'ipcache: address claimed twice');
    }
    let out = merged.entries;
    if (ids?.expected) {
      // Before the lists are complete: every pod entry pinned; after, those
      // of this node's pods whose identity is being allocated right now.
      const all = !ids.synced;
      const settling = all ? undefined : ids.settling();
      if (all || settling!.size > 0) {
        const have = new Set(out.map((e) => e.cidr));
        out = [...out, ...(await this.#pinnedPodEntries((cidr) => !have.has(cidr) && (all || settling!.has(cidr.slice(0, -3)))))];
      }
    }
    return super.sync(out);
  }

  /** Pod /32 entries with an identity in the pinned map that `keep` keeps. */
  async #pinnedPodEntries(keep: (cidr: string) => boolean): Promise<IpcacheEntry[]> {
    const d = await this.#io.dump();
    const out: IpcacheEntry[] = [];
    const ks = this.#io.keySize;
    const vs = this.#io.valueSize;
    for (let i = 0; i < d.count; i++) {
      const k = ipcacheKeyCodec.decode(d.keys, i * ks);
      const v = ipcacheValCodec.decode(d.values, i * vs);
      const cidr = `${k.addr}/${k.prefixlen}`;
      if (k.prefixlen !== 32 || v.identity === 0 || !(v.flags & IpcacheFlags.POD) || !keep(cidr)) continue;
      out.push({
        cidr, nodeAddr: v.node_addr === '0.0.0.0' ? '' : v.node_addr, identity: v.identity,
        flags: { cluster: (v.flags & IpcacheFlags.CLUSTER) !== 0, pod: true, node: false, local: (v.flags & IpcacheFlags.LOCAL) !== 0 },
      });
    }
    return out;
  }
}
