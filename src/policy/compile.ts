// NetworkPolicies over the cluster's identities, compiled into what the
// datapath enforces for each local endpoint: per direction, whether it is
// enforced (some policy of that type selects the pod: default deny) and the
// allow entries (peer identity, protocol, port range), each carrying the
// policies and rules that produced it. Pure: tables in, entries out.
//
// Kubernetes semantics, and how identities carry them:
//  - a pod selected by no policy of a direction is open in it; selected by
//    any, it allows exactly the union of their rules;
//  - a pod-selector peer allows the identities whose labels match: pod
//    labels against podSelector, namespace labels against namespaceSelector
//    (absent: the policy's namespace). kubernetes.io/metadata.name is taken
//    as set on every namespace, as the API server sets it;
//  - a rule without peers allows any peer ('any'), without ports any port
//    of any protocol ('any'); TCP, UDP and SCTP entries never cover each other;
//  - an ipBlock matches addresses, whatever else they are (pods too). Every
//    ipBlock prefix, cidr or except, becomes a CIDR identity (table `cidrs`);
//    an address's CIDR identity is its most specific prefix in the table.
//    An ipBlock (C, except E) allows the CIDR identities of the prefixes
//    inside C and inside no prefix of E: exactly the addresses of C \ E,
//    however many policies' blocks nest or overlap. The datapath judges a
//    packet by its peer's identity and by its peer address's CIDR identity;
//    an entry for either allows it;
//  - named ports resolve on the destination pod: ingress against the
//    endpoint's own ports; egress against the pods of each peer identity
//    (PodNamedPorts). Pods sharing an identity but not a port number for a
//    name are reported, and only the numbers they all share are allowed;
//  - the node's own traffic to its pods is allowed (Kubernetes never lets
//    policy restrict it: kubelet probes), as an implicit host entry.
// What cannot be enforced as written (an IPv6 ipBlock, a named port towards
// an ipBlock, a direction with more entries than the map holds, an endpoint
// whose identity is unknown) is reported as a problem and fails closed.
import type { HttpRule } from '../l7/types.ts';
import { type Problem, problem } from '../services/problems.ts';
import { comparePrefix4, type Prefix4, parsePrefix, prefixWithin } from './cidr.ts';
import {
  CIDR_IDENTITY_BASE,
  type CidrIdentity,
  CLUSTER_IDENTITY_MAX,
  CLUSTER_IDENTITY_MIN,
  type Direction,
  type DirectionPolicy,
  type Endpoint,
  type EndpointPolicy,
  type Entry,
  endpointKey,
  IDENTITY_HOST,
  type Identity,
  type LabelSelector,
  NAMESPACE_NAME_LABEL,
  type NetworkPolicy,
  type Peer,
  type PodNamedPorts,
  type PolicyPort,
  policyKey,
  policyObject,
  type PortRange,
  type Protocol,
  type Provenance,
} from './model.ts';
import { isEmptySelector, matches } from './selectors.ts';

export interface PolicyTables {
  /** Cluster identities (reserved ones are constants, not listed). */
  identities: readonly Identity[];
  /** The endpoints to compile for (this node's pods; the CLI may pass all). */
  endpoints: readonly Endpoint[];
  policies: readonly NetworkPolicy[];
  /** Every pod's named ports, cluster-wide (endpoints are added when missing). */
  namedPorts?: readonly PodNamedPorts[];
}

export interface CompileOptions {
  /** Allow the node's own traffic to its pods (default true, as Kubernetes has it). */
  allowHostIngress?: boolean;
  /** More entries than this in one direction of one endpoint: none are
   *  programmed and the direction denies all (reported). Default: no limit. */
  maxEntriesPerDirection?: number;
  /** The CIDR identities of the previous compile: prefixes still in use keep
   *  their number (fewer map rewrites); new ones take the lowest free. */
  previousCidrs?: readonly CidrIdentity[];
}

export interface CompiledPolicy {
  /** Sorted by key. */
  endpoints: EndpointPolicy[];
  /** Every IPv4 ipBlock prefix in use, sorted by address then length. */
  cidrs: CidrIdentity[];
  /** What could not be enforced as written (normalize.ts reports malformed objects). */
  problems: Problem[];
}

type Proto = Protocol | 'any';

/** An allow that is the same for every endpoint a policy selects. */
interface Template {
  identity: number | 'any';
  proto: Proto;
  ports: PortRange | 'any';
  prov: Provenance;
  /** HyphaNetworkPolicy port http rules; absent: a plain L3/L4 allow. */
  http?: HttpRule[];
}

/** An ingress allow whose port is named: resolved per destination endpoint. */
interface NamedTemplate {
  identity: number | 'any';
  proto: Protocol;
  name: string;
  prov: Provenance;
  http?: HttpRule[];
}

interface CompiledDirection {
  templates: Template[];
  named: NamedTemplate[];
}

/** Identities of one namespace with one set of namespace labels. */
interface NamespaceGroup {
  namespace: string;
  labels: Record<string, string>;
  identities: Identity[];
}

const PROTO_ORDER: Record<Proto, number> = { any: 0, TCP: 1, UDP: 2, SCTP: 3 };

function objName(p: NetworkPolicy): string {
  return policyObject(p);
}

function sortedKeys(labels: Record<string, string>): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

function compareProvenance(a: Provenance, b: Provenance): number {
  const idx = (v: number | 'all'): number => (v === 'all' ? -1 : v);
  return (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0) ||
    (a.direction < b.direction ? -1 : a.direction > b.direction ? 1 : 0) ||
    a.rule - b.rule || idx(a.peer) - idx(b.peer) || idx(a.port) - idx(b.port);
}

export function compareEntries(a: Entry, b: Entry): number {
  const id = (v: number | 'any'): number => (v === 'any' ? -1 : v);
  const from = (p: PortRange | 'any'): number => (p === 'any' ? -1 : p.from);
  const to = (p: PortRange | 'any'): number => (p === 'any' ? -1 : p.to);
  return id(a.identity) - id(b.identity) || PROTO_ORDER[a.proto] - PROTO_ORDER[b.proto] ||
    from(a.ports) - from(b.ports) || to(a.ports) - to(b.ports);
}

const PROTO_INDEX: Record<Proto, number> = PROTO_ORDER;

function withHttp<T extends object>(t: T, http: HttpRule[] | undefined): T & { http?: HttpRule[] } {
  return http === undefined ? t : { ...t, http };
}

/** Entries of one endpoint and direction, merged by key: (identity) then
 *  (protocol, port range) as one number, so adding allocates only new entries. */
class EntrySet {
  readonly #byIdentity = new Map<number | 'any', Map<number, Entry>>();
  #size = 0;

  /** http: the rules of a HyphaNetworkPolicy port (absent: plain). An entry
   *  carries http only while every allow behind it does: a plain allow of
   *  the same key drops it (every request allowed, as in Cilium); two http
   *  allows give the union of their rules. */
  add(identity: number | 'any', proto: Proto, ports: PortRange | 'any', prov: Provenance, http?: readonly HttpRule[]): void {
    let m = this.#byIdentity.get(identity);
    if (!m) this.#byIdentity.set(identity, (m = new Map()));
    const k = PROTO_INDEX[proto] * 0x100000000 + (ports === 'any' ? 0xffffffff : ports.from * 0x10000 + ports.to);
    const e = m.get(k);
    if (e) {
      e.because.push(prov);
      if (e.http === undefined) return;
      if (http === undefined) delete e.http;
      else {
        for (const r of http) if (!e.http.some((x) => x.policy === r.policy && x.rule === r.rule)) e.http.push(r);
      }
    } else {
      const entry: Entry = { identity, proto, ports, because: [prov] };
      if (http !== undefined) entry.http = [...http];
      m.set(k, entry);
      this.#size++;
    }
  }

  get size(): number {
    return this.#size;
  }

  entries(): Entry[] {
    const out: Entry[] = [];
    for (const m of this.#byIdentity.values()) {
      for (const e of m.values()) {
        if (e.because.length > 1) {
          e.because.sort(compareProvenance);
          // Two peers of one rule selecting one identity are two provenances;
          // the very same provenance (from two routes) is kept once.
          e.because = e.because.filter((p, i, all) => i === 0 || compareProvenance(all[i - 1]!, p) !== 0);
        }
        out.push(e);
      }
    }
    return out.sort(compareEntries);
  }
}

/** Assigns CIDR identities: kept from `previous` where still in use, else the lowest free. */
function assignCidrIdentities(prefixes: Prefix4[], previous: readonly CidrIdentity[]): Map<string, number> {
  const prev = new Map(previous.map((c) => [c.cidr, c.identity]));
  const out = new Map<string, number>();
  const used = new Set<number>();
  for (const p of prefixes) {
    const id = prev.get(p.text);
    if (id !== undefined && id >= CIDR_IDENTITY_BASE && !used.has(id)) {
      out.set(p.text, id);
      used.add(id);
    }
  }
  let next = CIDR_IDENTITY_BASE;
  for (const p of prefixes) {
    if (out.has(p.text)) continue;
    while (used.has(next)) next++;
    out.set(p.text, next);
    used.add(next);
  }
  return out;
}

export function compilePolicies(tables: PolicyTables, options: CompileOptions = {}): CompiledPolicy {
  const problems: Problem[] = [];
  const reported = new Set<string>();
  const report = (p: Problem): void => {
    if (reported.has(p.message)) return;
    reported.add(p.message);
    problems.push(p);
  };
  const policies = [...tables.policies].sort((a, b) => (policyKey(a) < policyKey(b) ? -1 : policyKey(a) > policyKey(b) ? 1 : 0));

  // ---- identities, grouped by namespace and namespace labels ----
  // An id outside the cluster range, or one id given two label sets, cannot
  // be matched against selectors safely: it is left out (matches nothing).
  const identityById = new Map<number, Identity>();
  const duplicated = new Set<number>();
  for (const id of tables.identities) {
    if (!Number.isInteger(id.id) || id.id < CLUSTER_IDENTITY_MIN || id.id > CLUSTER_IDENTITY_MAX) {
      report(problem(`Identity ${id.id}`, 'id', id.id,
        `is outside the cluster identity range ${CLUSTER_IDENTITY_MIN}-${CLUSTER_IDENTITY_MAX} (reserved below, CIDR identities above): no selector matches it`));
      continue;
    }
    const prev = identityById.get(id.id);
    if (prev && (prev.namespace !== id.namespace || sortedKeys(prev.podLabels) !== sortedKeys(id.podLabels) || sortedKeys(prev.namespaceLabels) !== sortedKeys(id.namespaceLabels))) {
      duplicated.add(id.id);
      report(problem(`Identity ${id.id}`, 'id', id.id, 'names two different label sets: no selector matches it, and its endpoints are treated as unknown'));
    }
    identityById.set(id.id, id);
  }
  for (const d of duplicated) identityById.delete(d);
  const groups = new Map<string, NamespaceGroup>();
  for (const id of [...identityById.values()].sort((a, b) => a.id - b.id)) {
    const gk = `${id.namespace}\n${sortedKeys(id.namespaceLabels)}`;
    let g = groups.get(gk);
    if (!g) {
      g = { namespace: id.namespace, labels: { [NAMESPACE_NAME_LABEL]: id.namespace, ...id.namespaceLabels }, identities: [] };
      groups.set(gk, g);
    }
    g.identities.push(id);
  }
  const groupList = [...groups.values()];
  const selectionMemo = new Map<string, number[]>();
  const selectIdentities = (peer: Extract<Peer, { kind: 'pods' }>, policyNs: string): number[] => {
    const key = `${policyNs}\n${JSON.stringify(peer.podSelector ?? null)}\n${JSON.stringify(peer.namespaceSelector ?? null)}`;
    const hit = selectionMemo.get(key);
    if (hit) return hit;
    const out: number[] = [];
    const podSel = peer.podSelector && !isEmptySelector(peer.podSelector) ? peer.podSelector : undefined;
    for (const g of groupList) {
      const nsOk = peer.namespaceSelector ? matches(peer.namespaceSelector, g.labels) : g.namespace === policyNs;
      if (!nsOk) continue;
      for (const id of g.identities) if (!podSel || matches(podSel, id.podLabels)) out.push(id.id);
    }
    out.sort((a, b) => a - b);
    selectionMemo.set(key, out);
    return out;
  };

  // ---- CIDR identities: every IPv4 ipBlock prefix, cidr and except ----
  const prefixByText = new Map<string, Prefix4>();
  for (const pol of policies) {
    for (const rule of [...pol.ingress, ...pol.egress]) {
      if (rule.peers === 'all') continue;
      for (const peer of rule.peers) {
        if (peer.kind !== 'ipBlock' || peer.family !== 4) continue;
        for (const text of [peer.cidr, ...peer.except]) {
          const p = parsePrefix(text);
          if (p?.family === 4) prefixByText.set(p.text, p);
        }
      }
    }
  }
  const prefixes = [...prefixByText.values()].sort(comparePrefix4);
  const cidrIds = assignCidrIdentities(prefixes, options.previousCidrs ?? []);
  const cidrs: CidrIdentity[] = prefixes.map((p) => ({ cidr: p.text, identity: cidrIds.get(p.text)! }));
  const blockMemo = new Map<string, number[]>();
  const blockIdentities = (peer: Extract<Peer, { kind: 'ipBlock' }>): number[] => {
    const key = `${peer.cidr} ${peer.except.join(' ')}`;
    const hit = blockMemo.get(key);
    if (hit) return hit;
    const c = prefixByText.get(peer.cidr)!;
    const ex = peer.except.map((e) => prefixByText.get(e)!);
    const out = prefixes.filter((x) => prefixWithin(x, c) && !ex.some((e) => prefixWithin(x, e))).map((x) => cidrIds.get(x.text)!);
    blockMemo.set(key, out);
    return out;
  };

  // ---- named ports of every pod, by identity ----
  const podsByIdentity = new Map<number, Map<string, PodNamedPorts>>();
  const addPod = (p: PodNamedPorts): void => {
    let m = podsByIdentity.get(p.identity);
    if (!m) podsByIdentity.set(p.identity, (m = new Map()));
    if (!m.has(p.pod)) m.set(p.pod, p);
  };
  for (const p of tables.namedPorts ?? []) addPod(p);
  for (const e of tables.endpoints) addPod({ pod: endpointKey(e), identity: e.identity, ports: e.ports });
  const identitiesByPortName = new Map<string, number[]>();
  for (const [identity, pods] of podsByIdentity) {
    const names = new Set<string>();
    for (const pod of pods.values()) for (const np of pod.ports) names.add(`${np.name}/${np.protocol}`);
    for (const n of names) {
      let l = identitiesByPortName.get(n);
      if (!l) identitiesByPortName.set(n, (l = []));
      l.push(identity);
    }
  }
  for (const l of identitiesByPortName.values()) l.sort((a, b) => a - b);
  /** Port numbers `name` has on every pod of `identity`; `conflict` when the pods disagree. */
  const namedMemo = new Map<string, { ports: number[]; conflict?: string }>();
  const resolveNamed = (identity: number, name: string, proto: Protocol): { ports: number[]; conflict?: string } => {
    const key = `${identity}|${name}|${proto}`;
    const hit = namedMemo.get(key);
    if (hit) return hit;
    const pods = [...(podsByIdentity.get(identity)?.values() ?? [])].sort((a, b) => (a.pod < b.pod ? -1 : 1));
    let common: Set<number> | undefined;
    const union = new Set<number>();
    const each: string[] = [];
    for (const pod of pods) {
      const ports = new Set(pod.ports.filter((p) => p.name === name && p.protocol === proto).map((p) => p.port));
      each.push(`${pod.pod}: ${ports.size ? [...ports].sort((a, b) => a - b).join(', ') : 'none'}`);
      for (const p of ports) union.add(p);
      common = common ? new Set([...common].filter((p) => ports.has(p))) : ports;
    }
    const ports = [...(common ?? [])].sort((a, b) => a - b);
    const r = union.size === ports.length ? { ports } : { ports, conflict: each.join('; ') };
    namedMemo.set(key, r);
    return r;
  };

  // ---- each policy's directions, compiled once ----
  const compileDirection = (pol: NetworkPolicy, dir: Direction): CompiledDirection => {
    const out: CompiledDirection = { templates: [], named: [] };
    const rules = dir === 'ingress' ? pol.ingress : pol.egress;
    const peerKey = dir === 'ingress' ? 'from' : 'to';
    const obj = objName(pol);
    for (const rule of rules) {
      const base = `spec.${dir}[${rule.index}]`;
      // Peers as (identities, peer index); 'any' for a rule without peers.
      const peers: { ids: (number | 'any')[]; peer: number | 'all'; cidr: boolean }[] = [];
      if (rule.peers === 'all') peers.push({ ids: ['any'], peer: 'all', cidr: false });
      else {
        for (const peer of rule.peers) {
          if (peer.kind === 'pods') peers.push({ ids: selectIdentities(peer, pol.namespace), peer: peer.index, cidr: false });
          else if (peer.family === 6) {
            report(problem(obj, `${base}.${peerKey}[${peer.index}].ipBlock.cidr`, peer.cidr,
              'is an IPv6 block and the datapath enforces IPv4 only: this peer allows nothing'));
          } else peers.push({ ids: blockIdentities(peer), peer: peer.index, cidr: true });
        }
      }
      const ports: PolicyPort[] | 'all' = rule.ports;
      for (const pr of peers) {
        const prov = (port: number | 'all'): Provenance => ({ policy: policyKey(pol), direction: dir, rule: rule.index, peer: pr.peer, port });
        if (ports === 'all') {
          for (const id of pr.ids) out.templates.push({ identity: id, proto: 'any', ports: 'any', prov: prov('all') });
          continue;
        }
        for (const port of ports) {
          if (port.kind === 'all') {
            for (const id of pr.ids) out.templates.push(withHttp({ identity: id, proto: port.protocol, ports: 'any', prov: prov(port.index) }, port.http));
          } else if (port.kind === 'range') {
            const range = { from: port.from, to: port.to };
            for (const id of pr.ids) out.templates.push(withHttp({ identity: id, proto: port.protocol, ports: range, prov: prov(port.index) }, port.http));
          } else if (dir === 'ingress') {
            // The destination is the endpoint itself: resolved per endpoint.
            for (const id of pr.ids) out.named.push(withHttp({ identity: id, proto: port.protocol, name: port.name, prov: prov(port.index) }, port.http));
          } else if (pr.cidr) {
            report(problem(obj, `${base}.ports[${port.index}].port`, port.name,
              `is a named port towards an ipBlock (${base}.to[${pr.peer}]): a named port resolves on the destination pod, ` +
                'which an address block does not name, so Hypha cannot enforce it; this pair allows nothing'));
          } else {
            // Egress: the port number the name has on the pods of each peer identity.
            const ids = pr.ids[0] === 'any' ? identitiesByPortName.get(`${port.name}/${port.protocol}`) ?? [] : pr.ids as number[];
            for (const id of ids) {
              const r = resolveNamed(id, port.name, port.protocol);
              if (r.conflict) {
                report(problem(obj, `${base}.ports[${port.index}].port`, port.name,
                  `resolves to different ${port.protocol} ports on the pods of identity ${id} (${r.conflict}): ` +
                    `only ports they all have are allowed (${r.ports.length ? r.ports.join(', ') : 'none'})`));
              }
              for (const n of r.ports) out.templates.push(withHttp({ identity: id, proto: port.protocol, ports: { from: n, to: n }, prov: prov(port.index) }, port.http));
            }
          }
        }
      }
    }
    return out;
  };

  // ---- which endpoints each policy selects ----
  const endpoints: Endpoint[] = [];
  for (const e of [...tables.endpoints].sort((a, b) => (endpointKey(a) < endpointKey(b) ? -1 : endpointKey(a) > endpointKey(b) ? 1 : 0))) {
    if (endpoints.length > 0 && endpointKey(endpoints[endpoints.length - 1]!) === endpointKey(e)) {
      report(problem(`Endpoint ${endpointKey(e)}`, 'name', e.name, 'is listed twice: only the first is compiled'));
      continue;
    }
    endpoints.push(e);
  }
  const byNamespace = new Map<string, Endpoint[]>();
  for (const e of endpoints) {
    let l = byNamespace.get(e.namespace);
    if (!l) byNamespace.set(e.namespace, (l = []));
    l.push(e);
  }
  // Per endpoint and direction: the policies that select it for certain
  // (deny + their allows) and those that may (deny only), by index.
  interface Selection {
    certain: Record<Direction, number[]>;
    maybe: Record<Direction, number[]>;
  }
  const selection = new Map<string, Selection>();
  for (const e of endpoints) {
    selection.set(endpointKey(e), { certain: { ingress: [], egress: [] }, maybe: { ingress: [], egress: [] } });
    if (!identityById.has(e.identity)) {
      report(problem(`Endpoint ${endpointKey(e)}`, 'identity', e.identity,
        `is not a known identity: its labels are unknown, so every policy of namespace ${e.namespace} that might select it ` +
          'is applied as deny, and only policies selecting every pod of the namespace allow'));
    }
  }
  policies.forEach((pol, pi) => {
    const sel: LabelSelector | 'unreadable' = pol.podSelector;
    const selectsAll = sel !== 'unreadable' && isEmptySelector(sel);
    for (const e of byNamespace.get(pol.namespace) ?? []) {
      const id = identityById.get(e.identity);
      const s = selection.get(endpointKey(e))!;
      const kind = selectsAll ? s.certain : sel === 'unreadable' || !id ? s.maybe : matches(sel, id.podLabels) ? s.certain : undefined;
      if (kind) for (const dir of pol.policyTypes) kind[dir].push(pi);
    }
  });

  // Endpoints selected alike (replicas of one workload, above all) get the
  // same entries: computed once per selection, and shared (read-only).
  const compiledDirs = new Map<string, CompiledDirection>();
  const compiledDir = (pi: number, dir: Direction): CompiledDirection => {
    const key = `${pi}/${dir}`;
    let c = compiledDirs.get(key);
    if (!c) compiledDirs.set(key, (c = compileDirection(policies[pi]!, dir)));
    return c;
  };
  const allowHost = options.allowHostIngress ?? true;
  const max = options.maxEntriesPerDirection;
  const hostEntry = (): Entry => ({
    identity: IDENTITY_HOST, proto: 'any', ports: 'any',
    because: [{ policy: '', direction: 'ingress', rule: -1, peer: 'all', port: 'all', implicit: 'host' }],
  });
  const shared = new Map<string, DirectionPolicy>();
  const OPEN: DirectionPolicy = { enforced: false, entries: [], selectedBy: [] };
  const direction = (e: Endpoint, s: Selection, dir: Direction): DirectionPolicy => {
    const certain = s.certain[dir];
    const maybe = s.maybe[dir];
    if (certain.length === 0 && maybe.length === 0) return { ...OPEN, entries: [], selectedBy: [] };
    const named = certain.some((pi) => compiledDir(pi, dir).named.length > 0);
    const sig = `${dir} ${certain.join(',')} ${maybe.join(',')}${named ? ` ${JSON.stringify(e.ports)}` : ''}`;
    let result = shared.get(sig);
    if (!result) {
      const set = new EntrySet();
      for (const pi of certain) {
        const c = compiledDir(pi, dir);
        for (const t of c.templates) set.add(t.identity, t.proto, t.ports, t.prov, t.http);
        for (const t of c.named) {
          const seen = new Set<number>();
          for (const np of e.ports) {
            if (np.name !== t.name || np.protocol !== t.proto || seen.has(np.port)) continue;
            seen.add(np.port);
            set.add(t.identity, t.proto, { from: np.port, to: np.port }, t.prov, t.http);
          }
        }
      }
      const selectedBy = [...new Set([...certain, ...maybe].map((pi) => policyKey(policies[pi]!)))].sort();
      result = { enforced: true, entries: set.entries(), selectedBy };
      if (max !== undefined && result.entries.length > max) {
        result.overflow = result.entries.length;
        result.entries = [];
      }
      // Kubernetes never lets policy restrict the node's own traffic to its
      // pods, so the host entry stays even when the rest overflowed.
      if (dir === 'ingress' && allowHost) result.entries = [...result.entries, hostEntry()].sort(compareEntries);
      shared.set(sig, result);
    }
    if (result.overflow !== undefined) {
      report(problem(`Endpoint ${endpointKey(e)}`, `${dir} entries`, result.overflow,
        `exceed the ${max} entries one direction can hold: none are programmed and ${dir} traffic is denied (policies: ${result.selectedBy.join(', ')})`));
    }
    return result;
  };
  const out: EndpointPolicy[] = endpoints.map((e) => {
    const key = endpointKey(e);
    const s = selection.get(key)!;
    return { key, endpoint: e, ingress: direction(e, s, 'ingress'), egress: direction(e, s, 'egress') };
  });
  return { endpoints: out, cidrs, problems };
}

/** The CIDR identity of an IPv4 address: its most specific prefix in `cidrs`. */
export function cidrIdentityOf(cidrs: readonly CidrIdentity[], ip: string): CidrIdentity | undefined {
  const addr = parsePrefix(`${ip}/32`);
  if (!addr || addr.family !== 4) return undefined;
  let best: { c: CidrIdentity; len: number } | undefined;
  for (const c of cidrs) {
    const p = parsePrefix(c.cidr);
    if (p?.family === 4 && prefixWithin(addr, p) && (!best || p.len > best.len)) best = { c, len: p.len };
  }
  return best?.c;
}
