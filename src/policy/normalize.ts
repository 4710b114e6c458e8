// NetworkPolicy objects (networking.k8s.io/v1, as parsed from YAML or served
// by the API server) to the plain model, validated and defaulted as the API
// server does:
//  - spec.podSelector absent is {} (every pod of the namespace);
//  - policyTypes absent or empty: [Ingress], plus Egress when spec.egress
//    has rules; a direction not in policyTypes ignores its rules;
//  - from/to absent or empty: every peer; ports absent or empty: every port
//    of every protocol; a port without protocol is TCP;
//  - a peer is ipBlock alone, or podSelector and/or namespaceSelector
//    (ANDed); endPort needs a numeric port no larger than it;
//  - ipBlock cidr is parsed as Go does (host bits cleared); each except
//    must be strictly inside it.
// The API server refuses objects with such problems; one that reaches us
// anyway (a file, an old server) is still used, failing closed: whatever
// part cannot be read allows nothing, and an unreadable podSelector or
// policyTypes makes the policy select more, never less. Every problem names
// the field and the value.
import { readHttpRules } from '../l7/http-rules.ts';
import { type Problem, problem } from '../services/problems.ts';
import { parsePrefix, prefixWithin } from './cidr.ts';
import type { Direction, LabelSelector, NetworkPolicy, Peer, PolicyPort, Protocol, Rule } from './model.ts';
import { type FieldProblem, parseSelector } from './selectors.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** null and undefined are both "not set", as Go's decoder reads them. */
function unset(v: unknown): v is null | undefined {
  return v === undefined || v === null;
}

function isPortNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** IANA_SVC_NAME, as container port names and named policy ports are validated. */
export function portNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 15) return 'is not a valid port name (1-15 characters)';
  if (!/^[a-z0-9-]+$/.test(name)) return 'is not a valid port name (lowercase letters, digits and -)';
  if (!/[a-z]/.test(name)) return 'is not a valid port name (must contain a letter; a number must be given as an integer)';
  if (name.startsWith('-') || name.endsWith('-') || name.includes('--')) {
    return 'is not a valid port name (no leading, trailing or doubled -)';
  }
  return undefined;
}

export function policyObjectName(raw: unknown): string {
  const meta = isObj(raw) && isObj(raw.metadata) ? raw.metadata : {};
  return `NetworkPolicy ${str(meta.namespace) ?? 'default'}/${str(meta.name) ?? '(unnamed)'}`;
}

export interface Normalized<T> {
  /** Undefined only when the object cannot be named (no metadata.name). */
  value?: T;
  /** Every problem found; the value then enforces less than it asks for, never more. */
  problems: Problem[];
}

export function normalizeNetworkPolicy(raw: unknown): Normalized<NetworkPolicy> {
  return normalizePolicy(raw, false);
}

/**
 * A HyphaNetworkPolicy (hypha.dev/v1alpha1): a NetworkPolicy whose ports may
 * carry `http` rules (read by readHttpRules, src/l7/http-rules.ts). A bad
 * http rule is dropped; a port whose rules were all bad keeps http: [] and
 * allows no request (fail closed). HttpRule.policy is 'hnp:ns/name'.
 */
export function normalizeHyphaNetworkPolicy(raw: unknown): Normalized<NetworkPolicy> {
  return normalizePolicy(raw, true);
}

function normalizePolicy(raw: unknown, hnp: boolean): Normalized<NetworkPolicy> {
  const kind = hnp ? 'HyphaNetworkPolicy' : 'NetworkPolicy';
  const apiVersion = hnp ? 'hypha.dev/v1alpha1' : 'networking.k8s.io/v1';
  const obj = hnp ? policyObjectName(raw).replace(/^NetworkPolicy /, 'HyphaNetworkPolicy ') : policyObjectName(raw);
  if (!isObj(raw) || !isObj(raw.metadata) || !str(raw.metadata.name)) {
    return { problems: [problem(obj, 'metadata.name', isObj(raw) && isObj(raw.metadata) ? raw.metadata.name : undefined, 'is required')] };
  }
  const problems: Problem[] = [];
  const bad = (field: string, value: unknown, why: string): void => {
    problems.push(problem(obj, field, value, why));
  };
  const badAll = (ps: FieldProblem[]): void => {
    for (const p of ps) bad(p.field, p.value, p.why);
  };
  if (raw.kind !== undefined && raw.kind !== kind) bad('kind', raw.kind, `is not ${kind}`);
  if (raw.apiVersion !== undefined && raw.apiVersion !== apiVersion) {
    bad('apiVersion', raw.apiVersion, `is not ${apiVersion}`);
  }
  const namespace = str(raw.metadata.namespace) || 'default';
  const name = raw.metadata.name as string;
  let spec: Obj = {};
  if (isObj(raw.spec)) spec = raw.spec;
  else if (!unset(raw.spec)) bad('spec', raw.spec, 'is not an object; read as {} (deny all ingress to every pod of the namespace)');

  // The pods the policy applies to. Unreadable: every pod of the namespace
  // (it may be any of them), with no allows from this policy.
  let podSelector: LabelSelector | 'unreadable' = { matchLabels: {}, matchExpressions: [] };
  if (!unset(spec.podSelector)) {
    const r = parseSelector(spec.podSelector, 'spec.podSelector');
    if (r.selector) podSelector = r.selector;
    else {
      badAll(r.problems);
      bad('spec.podSelector', spec.podSelector, 'cannot be read: the policy is applied to every pod of the namespace, allowing nothing');
      podSelector = 'unreadable';
    }
  }

  const rulesOf = (key: 'ingress' | 'egress', peerKey: 'from' | 'to'): Rule[] => {
    const list = spec[key];
    if (unset(list)) return [];
    if (!Array.isArray(list)) {
      bad(`spec.${key}`, list, 'is not a list of rules; no traffic is allowed by it');
      return [];
    }
    return list.map((r, i) => rule(r, `spec.${key}[${i}]`, peerKey, i));
  };

  const rule = (raw: unknown, field: string, peerKey: 'from' | 'to', index: number): Rule => {
    if (!isObj(raw)) {
      bad(field, raw, 'is not a rule object; it allows nothing');
      return { index, peers: [], ports: [] };
    }
    let peers: Peer[] | 'all' = 'all';
    const rawPeers = raw[peerKey];
    if (!unset(rawPeers)) {
      if (!Array.isArray(rawPeers)) {
        bad(`${field}.${peerKey}`, rawPeers, 'is not a list of peers; the rule allows nothing');
        peers = [];
      } else if (rawPeers.length > 0) {
        peers = [];
        rawPeers.forEach((p, j) => {
          const peerv = peer(p, `${field}.${peerKey}[${j}]`, j);
          if (peerv) (peers as Peer[]).push(peerv);
        });
      }
    }
    let ports: PolicyPort[] | 'all' = 'all';
    if (!unset(raw.ports)) {
      if (!Array.isArray(raw.ports)) {
        bad(`${field}.ports`, raw.ports, 'is not a list of ports; the rule allows nothing');
        ports = [];
      } else if (raw.ports.length > 0) {
        ports = [];
        raw.ports.forEach((p, j) => {
          const pv = port(p, `${field}.ports[${j}]`, j);
          if (pv) (ports as PolicyPort[]).push(pv);
        });
      }
    }
    return { index, peers, ports };
  };

  const peer = (raw: unknown, field: string, index: number): Peer | undefined => {
    const dropped = 'this peer is left out (allows nothing)';
    if (!isObj(raw)) {
      bad(field, raw, `is not a peer object; ${dropped}`);
      return undefined;
    }
    const hasPod = !unset(raw.podSelector);
    const hasNs = !unset(raw.namespaceSelector);
    const hasBlock = !unset(raw.ipBlock);
    if (hasBlock && (hasPod || hasNs)) {
      bad(field, raw, `may not specify ipBlock together with podSelector or namespaceSelector; ${dropped}`);
      return undefined;
    }
    if (!hasBlock && !hasPod && !hasNs) {
      bad(field, raw, `must specify a peer (podSelector, namespaceSelector or ipBlock); ${dropped}`);
      return undefined;
    }
    if (hasBlock) return ipBlock(raw.ipBlock, `${field}.ipBlock`, index, dropped);
    const out: Peer = { index, kind: 'pods' };
    let ok = true;
    if (hasPod) {
      const r = parseSelector(raw.podSelector, `${field}.podSelector`);
      if (r.selector) out.podSelector = r.selector;
      else {
        badAll(r.problems);
        ok = false;
      }
    }
    if (hasNs) {
      const r = parseSelector(raw.namespaceSelector, `${field}.namespaceSelector`);
      if (r.selector) out.namespaceSelector = r.selector;
      else {
        badAll(r.problems);
        ok = false;
      }
    }
    if (!ok) {
      bad(field, raw, `has a selector that cannot be read; ${dropped}`);
      return undefined;
    }
    return out;
  };

  const ipBlock = (raw: unknown, field: string, index: number, dropped: string): Peer | undefined => {
    if (!isObj(raw)) {
      bad(field, raw, `is not an object with cidr and except; ${dropped}`);
      return undefined;
    }
    const cidr = typeof raw.cidr === 'string' ? parsePrefix(raw.cidr) : undefined;
    if (!cidr) {
      bad(`${field}.cidr`, raw.cidr, `is not a valid CIDR (address/length, e.g. 10.0.0.0/8); ${dropped}`);
      return undefined;
    }
    const except: string[] = [];
    let ok = true;
    if (!unset(raw.except)) {
      if (!Array.isArray(raw.except)) {
        bad(`${field}.except`, raw.except, `is not a list of CIDRs; ${dropped}`);
        return undefined;
      }
      raw.except.forEach((e, k) => {
        const f = `${field}.except[${k}]`;
        const p = typeof e === 'string' ? parsePrefix(e) : undefined;
        if (!p) {
          bad(f, e, `is not a valid CIDR; ${dropped}`);
          ok = false;
        } else if (!prefixWithin(p, cidr) || p.len <= cidr.len) {
          bad(f, e, `must be a strict subset of cidr ${JSON.stringify(cidr.text)}; ${dropped}`);
          ok = false;
        } else if (!except.includes(p.text)) {
          except.push(p.text);
        }
      });
    }
    // An except we cannot read could be any part of the block: the block
    // is not allowed at all rather than allowing what it excepts.
    if (!ok) return undefined;
    return { index, kind: 'ipBlock', cidr: cidr.text, except, family: cidr.family };
  };

  const port = (raw: unknown, field: string, index: number): PolicyPort | undefined => {
    const pv = l4port(raw, field, index);
    if (!pv || !isObj(raw)) return pv;
    if (!hnp) return pv;
    const r = readHttpRules(raw.http, { object: obj, field: `${field}.http`, policy: `hnp:${namespace}/${name}`, protocol: pv.protocol });
    problems.push(...r.problems);
    return r.rules === undefined ? pv : { ...pv, http: r.rules };
  };

  const l4port = (raw: unknown, field: string, index: number): PolicyPort | undefined => {
    const dropped = 'this port is left out (allows nothing)';
    if (!isObj(raw)) {
      bad(field, raw, `is not a port object; ${dropped}`);
      return undefined;
    }
    let protocol: Protocol = 'TCP';
    if (!unset(raw.protocol)) {
      if (raw.protocol !== 'TCP' && raw.protocol !== 'UDP' && raw.protocol !== 'SCTP') {
        bad(`${field}.protocol`, raw.protocol, `is not one of TCP, UDP, SCTP; ${dropped}`);
        return undefined;
      }
      protocol = raw.protocol;
    }
    const p = raw.port;
    const endPort = raw.endPort;
    if (unset(p)) {
      if (!unset(endPort)) {
        bad(`${field}.endPort`, endPort, `may not be specified when port is not specified; ${dropped}`);
        return undefined;
      }
      return { index, protocol, kind: 'all' };
    }
    if (typeof p === 'string') {
      const why = portNameProblem(p);
      if (why) {
        bad(`${field}.port`, p, `${why}; ${dropped}`);
        return undefined;
      }
      if (!unset(endPort)) {
        bad(`${field}.endPort`, endPort, `may not be specified when port is a named port (${JSON.stringify(p)}); ${dropped}`);
        return undefined;
      }
      return { index, protocol, kind: 'named', name: p };
    }
    if (!isPortNumber(p)) {
      bad(`${field}.port`, p, `is not a valid port number (1-65535) or port name; ${dropped}`);
      return undefined;
    }
    if (unset(endPort)) return { index, protocol, kind: 'range', from: p, to: p };
    if (!isPortNumber(endPort)) {
      bad(`${field}.endPort`, endPort, `is not a valid port number (1-65535); ${dropped}`);
      return undefined;
    }
    if (endPort < p) {
      bad(`${field}.endPort`, endPort, `must be greater than or equal to port (${p}); ${dropped}`);
      return undefined;
    }
    return { index, protocol, kind: 'range', from: p, to: endPort };
  };

  // policyTypes: defaulted as the API server does. An entry we cannot read
  // might have been either direction: both are enforced.
  let policyTypes: Direction[] = [];
  const rawTypes = spec.policyTypes;
  const egressListed = Array.isArray(spec.egress) && spec.egress.length > 0;
  if (unset(rawTypes) || (Array.isArray(rawTypes) && rawTypes.length === 0)) {
    policyTypes = egressListed ? ['ingress', 'egress'] : ['ingress'];
  } else if (!Array.isArray(rawTypes)) {
    bad('spec.policyTypes', rawTypes, 'is not a list of Ingress, Egress; both directions are enforced');
    policyTypes = ['ingress', 'egress'];
  } else {
    const seen = new Set<Direction>();
    let unreadable = false;
    rawTypes.forEach((t, i) => {
      if (t === 'Ingress') seen.add('ingress');
      else if (t === 'Egress') seen.add('egress');
      else {
        bad(`spec.policyTypes[${i}]`, t, 'is not one of Ingress, Egress; both directions are enforced');
        unreadable = true;
      }
    });
    if (rawTypes.length > 2) bad('spec.policyTypes', rawTypes, 'may not list more than two types');
    policyTypes = unreadable ? ['ingress', 'egress'] : (['ingress', 'egress'] as const).filter((d) => seen.has(d));
  }

  const ingress = rulesOf('ingress', 'from');
  const egress = rulesOf('egress', 'to');
  return {
    problems,
    value: {
      ...(hnp ? { kind: 'HyphaNetworkPolicy' as const } : {}),
      namespace,
      name,
      podSelector,
      policyTypes,
      ingress: policyTypes.includes('ingress') ? ingress : [],
      egress: policyTypes.includes('egress') ? egress : [],
    },
  };
}
