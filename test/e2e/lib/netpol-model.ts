// An independent model of Kubernetes NetworkPolicy (networking.k8s.io/v1) for
// the reachability-matrix suite, in the spirit of upstream's
// test/e2e/network/netpol (model.go, truthtable.go): given the pods, the
// namespaces and the NetworkPolicy objects as written, may a new connection
// from one pod reach another on a port and protocol? Deliberately written
// straight from the API documentation, without src/policy, so that the suite
// checks Hypha's compiler and datapath against a second reading.
//
// Semantics (the API reference's, and what upstream's specs expect):
// - a pod is isolated for a direction when a policy of its namespace selects it
//   (spec.podSelector) and lists that direction in policyTypes (absent:
//   Ingress, plus Egress when spec.egress has rules);
// - an isolated direction allows what at least one rule of one selecting
//   policy allows (union); a connection needs egress at the source and ingress
//   at the destination;
// - a rule without peers matches every peer, without ports every port;
// - a peer: ipBlock (address in cidr and in no except), or podSelector alone
//   (pods of the policy's namespace), namespaceSelector alone (every pod of
//   matching namespaces), or both (AND);
// - a port: protocol (default TCP), number (with endPort a range), name
//   (resolved on the destination pod's container ports of that protocol), or
//   absent (every port of the protocol).
//
// A connection to a Service's ClusterIP is modelled as one to its backend pod,
// as Hypha judges it (after translation).

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

export interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface PolicyPort {
  protocol?: Protocol;
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string };
  spec: {
    podSelector: LabelSelector;
    policyTypes?: ('Ingress' | 'Egress')[];
    ingress?: { from?: PolicyPeer[]; ports?: PolicyPort[] }[];
    egress?: { to?: PolicyPeer[]; ports?: PolicyPort[] }[];
  };
}

export interface ContainerPort {
  name: string;
  containerPort: number;
  protocol: Protocol;
}

export interface ModelPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ip: string;
  ports: ContainerPort[];
}

export interface ModelNamespace {
  name: string;
  labels: Record<string, string>;
}

export interface ClusterState {
  namespaces: ModelNamespace[];
  pods: ModelPod[];
  policies: NetworkPolicy[];
}

export function selectorMatches(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(labels[e.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new Error(`label selector operator ${JSON.stringify(e.operator)} is not one of In, NotIn, Exists, DoesNotExist`);
    }
  }
  return true;
}

function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`"${ip}" is not an IPv4 address`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function cidrContains(cidr: string, ip: string): boolean {
  const [net, lenText] = cidr.split('/');
  const len = Number(lenText);
  if (net === undefined || !Number.isInteger(len) || len < 0 || len > 32) throw new Error(`"${cidr}" is not an IPv4 prefix`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return ((ipToInt(ip) & mask) >>> 0) === ((ipToInt(net) & mask) >>> 0);
}

function policyTypes(p: NetworkPolicy): ('Ingress' | 'Egress')[] {
  if (p.spec.policyTypes !== undefined) return p.spec.policyTypes;
  return (p.spec.egress?.length ?? 0) > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

export class NetpolModel {
  readonly state: ClusterState;
  readonly #nsLabels = new Map<string, Record<string, string>>();

  constructor(state: ClusterState) {
    this.state = state;
    for (const ns of state.namespaces) this.#nsLabels.set(ns.name, ns.labels);
  }

  #namespaceLabels(ns: string): Record<string, string> {
    // The API server sets kubernetes.io/metadata.name on every namespace.
    return { ...this.#nsLabels.get(ns), 'kubernetes.io/metadata.name': ns };
  }

  /** Policies of `pod`'s namespace selecting it for `direction`. */
  selecting(pod: ModelPod, direction: 'Ingress' | 'Egress'): NetworkPolicy[] {
    return this.state.policies.filter((p) => p.metadata.namespace === pod.namespace && policyTypes(p).includes(direction) && selectorMatches(p.spec.podSelector, pod.labels));
  }

  #peerMatches(policyNs: string, peer: PolicyPeer, other: ModelPod): boolean {
    if (peer.ipBlock) return cidrContains(peer.ipBlock.cidr, other.ip) && !(peer.ipBlock.except ?? []).some((e) => cidrContains(e, other.ip));
    if (peer.podSelector === undefined && peer.namespaceSelector === undefined) return false; // an empty peer is invalid
    const nsOk = peer.namespaceSelector === undefined ? other.namespace === policyNs : selectorMatches(peer.namespaceSelector, this.#namespaceLabels(other.namespace));
    const podOk = peer.podSelector === undefined || selectorMatches(peer.podSelector, other.labels);
    return nsOk && podOk;
  }

  static #portMatches(p: PolicyPort, dst: ModelPod, port: number, proto: Protocol): boolean {
    if ((p.protocol ?? 'TCP') !== proto) return false;
    if (p.port === undefined) return true;
    if (typeof p.port === 'string') return dst.ports.some((cp) => cp.name === p.port && cp.protocol === proto && cp.containerPort === port);
    return p.endPort === undefined ? p.port === port : port >= p.port && port <= p.endPort;
  }

  #allows(policies: NetworkPolicy[], direction: 'Ingress' | 'Egress', peer: ModelPod, dst: ModelPod, port: number, proto: Protocol): boolean {
    return policies.some((pol) => {
      const rules = direction === 'Ingress' ? (pol.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports })) : (pol.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
      return rules.some((r) =>
        ((r.peers ?? []).length === 0 || r.peers!.some((pe) => this.#peerMatches(pol.metadata.namespace, pe, peer)))
        && ((r.ports ?? []).length === 0 || r.ports!.some((pp) => NetpolModel.#portMatches(pp, dst, port, proto))));
    });
  }

  /** May a new connection from `src` reach `dst` on port/proto? */
  allowed(src: ModelPod, dst: ModelPod, port: number, proto: Protocol): boolean {
    const egress = this.selecting(src, 'Egress');
    if (egress.length > 0 && !this.#allows(egress, 'Egress', dst, dst, port, proto)) return false;
    const ingress = this.selecting(dst, 'Ingress');
    if (ingress.length > 0 && !this.#allows(ingress, 'Ingress', src, dst, port, proto)) return false;
    return true;
  }
}

/** A square table of pods (`ns/name`) to a value, printed as upstream's truth tables are. */
export class TruthTable {
  readonly keys: string[];
  readonly #cells = new Map<string, boolean>();

  constructor(keys: string[], fill?: boolean) {
    this.keys = keys;
    if (fill !== undefined) for (const f of keys) for (const t of keys) this.set(f, t, fill);
  }

  set(from: string, to: string, v: boolean): void {
    this.#cells.set(`${from}>${to}`, v);
  }

  get(from: string, to: string): boolean | undefined {
    return this.#cells.get(`${from}>${to}`);
  }

  /** The cells that differ (loopback left out when `ignoreLoopback`). */
  diff(other: TruthTable, ignoreLoopback: boolean): { from: string; to: string }[] {
    const out: { from: string; to: string }[] = [];
    for (const f of this.keys) for (const t of this.keys) {
      if (ignoreLoopback && f === t) continue;
      if (this.get(f, t) !== other.get(f, t)) out.push({ from: f, to: t });
    }
    return out;
  }
}

/** The expected table of a probe case from the model. */
export function expectedTable(model: NetpolModel, port: number, proto: Protocol): TruthTable {
  const pods = model.state.pods;
  const t = new TruthTable(pods.map((p) => `${p.namespace}/${p.name}`));
  for (const s of pods) for (const d of pods) t.set(`${s.namespace}/${s.name}`, `${d.namespace}/${d.name}`, model.allowed(s, d, port, proto));
  return t;
}

/**
 * Expected and observed side by side: `.` connected, `X` blocked, `-` a
 * loopback cell (not judged, as upstream), and a cell that differs in
 * brackets on both sides.
 */
export function formatSideBySide(expected: TruthTable, observed: TruthTable, opts: { ignoreLoopback: boolean; left?: string; right?: string; notes?: Map<string, string> }): string {
  const keys = expected.keys;
  const w = Math.max(...keys.map((k) => k.length));
  const differ = new Set(expected.diff(observed, opts.ignoreLoopback).map((d) => `${d.from}>${d.to}`));
  const cell = (t: TruthTable, f: string, to: string): string => {
    const v = t.get(f, to);
    const c = v === undefined ? '?' : v ? '.' : 'X';
    if (opts.ignoreLoopback && f === to) return ` ${v === undefined ? '?' : '-'} `;
    return differ.has(`${f}>${to}`) ? `[${c}]` : ` ${c} `;
  };
  const header = `${' '.repeat(w)} ${keys.map((k) => k.padStart(3).slice(-3)).join(' ')}`;
  const rows = (t: TruthTable) => keys.map((f) => `${f.padEnd(w)} ${keys.map((to) => cell(t, f, to)).join(' ')}`);
  const l = rows(expected);
  const r = rows(observed);
  const width = header.length;
  const lines = [`${(opts.left ?? 'expected').padEnd(width)}   ${opts.right ?? 'observed'}`, `${header}   ${header}`];
  for (let i = 0; i < l.length; i++) lines.push(`${l[i]!.padEnd(width)}   ${r[i]}`);
  // What the probes saw where a cell expected to connect did not.
  const seen = [...differ].filter((d) => opts.notes?.has(d));
  if (seen.length > 0) lines.push(`not connected: ${seen.map((d) => `${d.replace('>', ' -> ')} ${opts.notes!.get(d)}`).join('; ')}`);
  return lines.join('\n');
}
