// One Service plus its EndpointSlices to the frontends and backends the
// datapath serves. Pure: no I/O, no clock, no ids (src/services/lb-table.ts
// assigns those). kube-proxy's semantics where Kubernetes defines them:
//  - each (address, port, protocol) a Service answers on is a frontend:
//    ClusterIPs, node addresses at the NodePort, ExternalIPs, LoadBalancer IPs;
//  - the endpoints of a Service port are found through the slices' port of
//    the same name (the endpoints controller has resolved named targetPorts);
//  - ready endpoints take new flows (a ready one that terminates exists only
//    with publishNotReadyAddresses, which asks for it); when none is,
//    serving-and-terminating ones do (graceful termination); the rest take
//    none (conditions as kube-proxy reads them: see normalize.ts);
//  - internalTrafficPolicy Local limits ClusterIP traffic to this node's
//    endpoints, externalTrafficPolicy Local limits traffic from outside;
//  - what a Service asks for and this node cannot serve (an IPv6-only
//    Service, NodePorts on a node without an address, ExternalIPs outside
//    services.externalIPs.allowedCIDRs) is listed in notServed with the reason.
// Which of two Services claiming one address gets it is settled across all
// Services by the LB table (frontend-owners.ts), not here.
import type { CidrSet } from './cidr-set.ts';
import { CLAIM_RANK } from './frontend-owners.ts';
import type { Endpoint, EndpointSlice, NodeInfo, Protocol, Service, ServicePort } from './model.ts';
import { endpointCount, endpointsOf, serviceKey } from './model.ts';
import { type Problem, problem } from './problems.ts';

export type FrontendKind = 'ClusterIP' | 'NodePort' | 'ExternalIP' | 'LoadBalancer';

export const SCOPE_INTERNAL = 0;
export const SCOPE_EXTERNAL = 1;
export type Scope = typeof SCOPE_INTERNAL | typeof SCOPE_EXTERNAL;

export interface CompiledBackend {
  /** 'ip:port' */
  key: string;
  addr: string;
  port: number;
  terminating: boolean;
  local: boolean;
  /** Pod name or node, for people reading `hypha service list`. */
  nodeName: string;
}

export interface ScopeEntry {
  scope: Scope;
  /** Backend keys in slot order (slot 1 first); empty: the frontend rejects. */
  slots: string[];
  localOnly: boolean;
  /** No ready backend left: serving-but-terminating ones take the flows. */
  terminatingFallback: boolean;
}

export interface CompiledFrontend {
  /** 'addr:port/PROTO' */
  key: string;
  addr: string;
  port: number;
  protocol: Protocol;
  kind: FrontendKind;
  /** Name of the Service port ('' for a single unnamed port). */
  portName: string;
  affinityTimeout: number; // 0: no session affinity
  scopes: ScopeEntry[];
  /** Every backend a slot or a live flow may point at, sorted by key. */
  backends: CompiledBackend[];
}

/** A frontend a Service asks for that is not programmed, and why. */
export interface NotServed {
  /** 'addr:port/PROTO'; '*:port/PROTO' for a NodePort with no node address. */
  frontend: string;
  kind: FrontendKind;
  reason: string;
}

/** An address a Service claims as a whole (every port): its ClusterIPs and
 *  LoadBalancer IPs belong to it, which ExternalIPs of others cannot take. */
export interface ClaimedAddress {
  addr: string;
  kind: FrontendKind;
}

export interface CompiledService {
  key: string;
  frontends: CompiledFrontend[];
  /** Addresses owned by the Service (not node addresses): traffic to them on another port is refused. */
  vips: readonly string[];
  /** ClusterIPs, LoadBalancer IPs and (allowed) ExternalIPs, port-independent. */
  addresses: ClaimedAddress[];
  /** Orders two claimants of one frontend: the older Service, then the lower key, wins. */
  created: string;
  problems: Problem[];
  notServed: NotServed[];
  /** Why nothing is programmed for a Service the datapath leaves alone (headless, ExternalName, IPv6-only). */
  skipped?: string;
}

export interface CompileLimits {
  /** The slot count is 16 bits wide. */
  maxBackendsPerFrontend: number;
  /** services.externalIPs.allowedCIDRs: ExternalIPs outside are not served. Unset: any. */
  allowedExternalIPs?: CidrSet;
}

export const DEFAULT_LIMITS: CompileLimits = { maxBackendsPerFrontend: 65535 };

export const REASON_IPV6 = 'IPv6-only Service: the datapath serves IPv4 only';
export const REASON_NO_NODE_ADDRESS = 'this node has no address to serve NodePorts on (its Node object is gone or lists no IPv4 InternalIP/ExternalIP)';

export function frontendKey(addr: string, port: number, protocol: Protocol): string {
  // One flat string: a template makes a rope that every map keyed by the
  // frontend (owners, ids, the table) would keep.
  return [addr, ':', port, '/', protocol].join('');
}

interface Candidate extends CompiledBackend {
  ready: boolean;
}

/** Endpoints of one Service port across all slices, each ip:port once. */
function endpointsFor(port: ServicePort, slices: readonly EndpointSlice[], node: NodeInfo): Candidate[] {
  const byKey = new Map<string, Candidate>();
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4') continue;
    const sp = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (!sp) continue;
    for (const ep of endpointsOf(slice)) {
      // Ready: takes new flows (as kube-proxy, whatever `terminating` says:
      // only a Service with publishNotReadyAddresses has ready endpoints
      // that terminate, and it asks for them). Serving and terminating:
      // kept for its open flows, and the fallback when nothing is ready.
      // Anything else (not ready, not terminating) is not a backend.
      if (!ep.ready && !(ep.serving && ep.terminating)) continue;
      const cand = candidate(ep.address, sp.port, ep, node);
      const prev = byKey.get(cand.key);
      // The same endpoint in two slices (a slice being replaced): the most
      // available view wins, so a move between slices never drops it.
      if (!prev || (cand.ready && !prev.ready)) byKey.set(cand.key, cand);
    }
  }
  return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

function candidate(addr: string, port: number, ep: Endpoint, node: NodeInfo): Candidate {
  return {
    key: `${addr}:${port}`,
    addr,
    port,
    ready: ep.ready,
    terminating: !ep.ready,
    local: ep.nodeName !== '' && ep.nodeName === node.name,
    nodeName: ep.nodeName,
  };
}

function scopeEntry(scope: Scope, all: Candidate[], localOnly: boolean): ScopeEntry {
  const eligible = localOnly ? all.filter((c) => c.local) : all;
  const ready = eligible.filter((c) => c.ready);
  if (ready.length > 0) return { scope, slots: ready.map((c) => c.key), localOnly, terminatingFallback: false };
  return { scope, slots: eligible.map((c) => c.key), localOnly, terminatingFallback: eligible.length > 0 };
}

export function compileService(
  svc: Service,
  slices: readonly EndpointSlice[],
  node: NodeInfo,
  limits: CompileLimits = DEFAULT_LIMITS,
): CompiledService {
  const key = serviceKey(svc.namespace, svc.name);
  const out: CompiledService = { key, frontends: [], vips: [], addresses: [], created: svc.created ?? '', problems: [], notServed: [] };
  const obj = `Service ${key}`;
  if (svc.type === 'ExternalName') return { ...out, skipped: 'ExternalName Services are resolved by DNS' };
  if (svc.headless) return { ...out, skipped: 'headless Services are resolved by DNS' };
  const nodePorts = (svc.type === 'NodePort' || svc.type === 'LoadBalancer') ? svc.ports.filter((p) => p.nodePort > 0) : [];
  if (svc.ipv6Only) {
    for (const ip of svc.ipv6ClusterIPs ?? []) {
      for (const p of svc.ports) out.notServed.push({ frontend: `[${ip}]:${p.port}/${p.protocol}`, kind: 'ClusterIP', reason: REASON_IPV6 });
    }
    // ipFamilies [IPv6] before the API server has given it an address.
    if ((svc.ipv6ClusterIPs ?? []).length === 0) out.notServed.push({ frontend: 'ipFamilies [IPv6]', kind: 'ClusterIP', reason: REASON_IPV6 });
    for (const p of nodePorts) out.notServed.push({ frontend: `*:${p.nodePort}/${p.protocol}`, kind: 'NodePort', reason: REASON_IPV6 });
    return { ...out, skipped: REASON_IPV6 };
  }

  const external: { addr: string; kind: FrontendKind }[] = [];
  const allowed = limits.allowedExternalIPs;
  for (const a of svc.externalIPs) {
    if (allowed && !allowed.has(a)) {
      for (const p of svc.ports) {
        out.notServed.push({ frontend: frontendKey(a, p.port, p.protocol), kind: 'ExternalIP', reason: `${a} is outside services.externalIPs.allowedCIDRs (${allowed})` });
      }
      continue;
    }
    external.push({ addr: a, kind: 'ExternalIP' });
  }
  if (svc.type === 'LoadBalancer') external.push(...svc.loadBalancerIPs.map((a) => ({ addr: a, kind: 'LoadBalancer' as const })));
  // A node's own address is never a Service address: an ExternalIP on it
  // must not make the node refuse its other ports.
  const vips = [...new Set([...svc.clusterIPs, ...external.map((e) => e.addr)])].filter((a) => !node.addresses.includes(a)).sort();
  // The LB table keeps this list for as long as the Service: usually the
  // Service's own ClusterIPs, else an exact-size copy (a list grown by push
  // keeps room for 16).
  out.vips = vips.length === svc.clusterIPs.length && vips.every((v, i) => v === svc.clusterIPs[i]) ? svc.clusterIPs : vips.slice();
  out.addresses = [...svc.clusterIPs.map((addr) => ({ addr, kind: 'ClusterIP' as const })), ...external];
  if (nodePorts.length > 0 && node.addresses.length === 0) {
    for (const p of nodePorts) out.notServed.push({ frontend: `*:${p.nodePort}/${p.protocol}`, kind: 'NodePort', reason: REASON_NO_NODE_ADDRESS });
  }
  const affinityTimeout = svc.sessionAffinity === 'ClientIP' ? svc.affinityTimeoutSeconds : 0;
  const seen = new Map<string, CompiledFrontend>();

  svc.ports.forEach((port, i) => {
    if (port.protocol === 'SCTP') {
      out.problems.push(problem(obj, `spec.ports[${i}].protocol`, 'SCTP', 'is not supported by the datapath yet; port skipped'));
      return;
    }
    const all = endpointsFor(port, slices, node);
    if (all.length > limits.maxBackendsPerFrontend) {
      out.problems.push(
        problem(obj, `spec.ports[${i}] (${port.name || port.port}) endpoints`, all.length,
          `exceed the ${limits.maxBackendsPerFrontend} backends one frontend can hold; port not programmed`),
      );
      return;
    }
    const backends: CompiledBackend[] = all.map(({ ready: _ready, ...b }) => b);
    const internal = scopeEntry(SCOPE_INTERNAL, all, svc.internalTrafficPolicy === 'Local');
    // Pods reaching an external frontend are "internal" traffic and use every
    // endpoint, as kube-proxy short-circuits them; outside traffic follows
    // externalTrafficPolicy.
    const cluster = scopeEntry(SCOPE_INTERNAL, all, false);
    const ext = scopeEntry(SCOPE_EXTERNAL, all, svc.externalTrafficPolicy === 'Local');
    const add = (addr: string, p: number, kind: FrontendKind, scopes: ScopeEntry[]): void => {
      const fk = frontendKey(addr, p, port.protocol);
      // Its own ClusterIP (or LoadBalancer IP) listed again as an ExternalIP:
      // one frontend, of the kind the API server allocated, that outside
      // traffic reaches too.
      const had = seen.get(fk);
      if (had) {
        if (CLAIM_RANK[kind] < CLAIM_RANK[had.kind]) had.kind = kind;
        const outside = scopes.find((x) => x.scope === SCOPE_EXTERNAL);
        if (outside && !had.scopes.some((x) => x.scope === SCOPE_EXTERNAL)) had.scopes = [...had.scopes, outside];
        return;
      }
      const f: CompiledFrontend = { key: fk, addr, port: p, protocol: port.protocol, kind, portName: port.name, affinityTimeout, scopes, backends };
      seen.set(fk, f);
      out.frontends.push(f);
    };
    for (const ip of svc.clusterIPs) add(ip, port.port, 'ClusterIP', [internal]);
    if ((svc.type === 'NodePort' || svc.type === 'LoadBalancer') && port.nodePort > 0) {
      for (const ip of node.addresses) add(ip, port.nodePort, 'NodePort', [cluster, ext]);
    }
    for (const e of external) add(e.addr, port.port, e.kind, [cluster, ext]);
  });
  return out;
}

/**
 * At least as many entries as compileService(svc, slices, node) would need
 * (entriesNeeded in lb-table.ts), counted without compiling: what a batch
 * reserves map room for before it is programmed. Every endpoint counts as a
 * slot in every scope, every ExternalIP and LoadBalancer IP as a frontend of
 * its own. (Compiling a cold start's 100 000 Services once more only to
 * count took 0.8 s.)
 */
export function entriesUpperBound(svc: Service, slices: readonly EndpointSlice[], node: NodeInfo): { services: number; backends: number } {
  if (svc.type === 'ExternalName' || svc.headless || svc.ipv6Only) return { services: 0, backends: 0 };
  const external = svc.externalIPs.length + (svc.type === 'LoadBalancer' ? svc.loadBalancerIPs.length : 0);
  // A marker entry per Service address.
  let services = svc.clusterIPs.length + external;
  let backends = 0;
  for (const port of svc.ports) {
    if (port.protocol === 'SCTP') continue;
    let endpoints = 0;
    for (const s of slices) {
      if (s.addressType === 'IPv4' && s.ports.some((p) => p.name === port.name && p.protocol === port.protocol)) endpoints += endpointCount(s);
    }
    const nodePorts = (svc.type === 'NodePort' || svc.type === 'LoadBalancer') && port.nodePort > 0 ? node.addresses.length : 0;
    // ClusterIP frontends have one scope; node ports and outside addresses two.
    const oneScope = svc.clusterIPs.length;
    const twoScopes = nodePorts + external;
    services += (oneScope + 2 * twoScopes) * (1 + endpoints);
    backends += (oneScope + twoScopes) * endpoints;
  }
  return { services, backends };
}
