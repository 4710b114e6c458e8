// Plain-data view of what NetworkPolicy enforcement is computed from, and of
// what it computes. Inputs: cluster identities (from the identity module),
// this node's endpoints, every pod's named ports, and NetworkPolicy objects
// normalised by src/policy/normalize.ts. Output: per endpoint and direction,
// whether the direction is enforced (default deny) and the allow entries
// keyed by (peer identity, protocol, port range), each remembering the
// policies and rules that produced it. No Kubernetes client types, so every
// consumer can be tested with literals.

import { RESERVED_IDENTITIES as RESERVED } from '../identity/labels.ts';
import type { HttpRule } from '../l7/types.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type Direction = 'ingress' | 'egress';

// Reserved identities (Cilium's numbers), as src/identity defines them.
// Cluster identities are allocated above these; CIDR identities (ipBlock
// prefixes) are local to a node and start at CIDR_IDENTITY_BASE.
export const IDENTITY_HOST = RESERVED.host;
export const IDENTITY_WORLD = RESERVED.world;
export const IDENTITY_UNMANAGED = RESERVED.unmanaged;
export const IDENTITY_HEALTH = RESERVED.health;
export const IDENTITY_REMOTE_NODE = RESERVED['remote-node'];
export const CIDR_IDENTITY_BASE = 1 << 24;
/** Cluster identities (allocated by the operator) lie in this range, as Cilium's do. */
export const CLUSTER_IDENTITY_MIN = 256;
export const CLUSTER_IDENTITY_MAX = CIDR_IDENTITY_BASE - 1;

export const RESERVED_IDENTITIES: Readonly<Record<number, string>> = {
  [IDENTITY_HOST]: 'host',
  [IDENTITY_WORLD]: 'world',
  [IDENTITY_UNMANAGED]: 'unmanaged',
  [IDENTITY_HEALTH]: 'health',
  [IDENTITY_REMOTE_NODE]: 'remote-node',
};

/** The label the API server puts on every namespace (immutable since 1.21). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/** A cluster identity: one distinct set of security-relevant labels. */
export interface Identity {
  id: number;
  namespace: string;
  podLabels: Record<string, string>;
  namespaceLabels: Record<string, string>;
}

export interface NamedPort {
  name: string;
  port: number;
  protocol: Protocol;
}

/** A pod on this node whose traffic the datapath enforces policy for. */
export interface Endpoint {
  name: string;
  namespace: string;
  identity: number;
  /** Named container ports (ingress named ports resolve against these). */
  ports: NamedPort[];
  /** The pod's IPv4 addresses: trace() recognises them; ipBlocks match them. */
  addresses?: string[];
}

/** One pod anywhere in the cluster and its named container ports: egress
 *  named ports resolve against the pods of the destination identity. */
export interface PodNamedPorts {
  /** 'ns/name' */
  pod: string;
  identity: number;
  ports: NamedPort[];
}

// ---- NetworkPolicy, normalised (API defaults applied, indices kept) ----

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelRequirement {
  key: string;
  operator: SelectorOperator;
  values: string[];
}

/** matchLabels AND matchExpressions; both empty: matches everything. */
export interface LabelSelector {
  matchLabels: Record<string, string>;
  matchExpressions: LabelRequirement[];
}

/** A peer of a rule. `index` is its position in the object's from/to list,
 *  kept so that entries name it even when an earlier peer was invalid. */
export type Peer =
  | {
    index: number;
    kind: 'pods';
    /** Absent: every pod (of the namespaces below). */
    podSelector?: LabelSelector;
    /** Absent: the policy's own namespace. */
    namespaceSelector?: LabelSelector;
  }
  | {
    index: number;
    kind: 'ipBlock';
    /** Canonical prefix (host bits cleared), e.g. '10.0.0.0/8'. */
    cidr: string;
    /** Canonical prefixes, each strictly inside cidr. */
    except: string[];
    family: 4 | 6;
  };

/** http: set on HyphaNetworkPolicy ports with an `http` list; the port then
 *  allows only requests some rule matches ([]: none, fail closed). */
export type PolicyPort =
  | { index: number; protocol: Protocol; kind: 'all'; http?: HttpRule[] }
  | { index: number; protocol: Protocol; kind: 'range'; from: number; to: number; http?: HttpRule[] }
  | { index: number; protocol: Protocol; kind: 'named'; name: string; http?: HttpRule[] };

export interface Rule {
  /** Position in spec.ingress / spec.egress. */
  index: number;
  /** 'all': from/to absent or empty. []: every peer was invalid (nothing). */
  peers: Peer[] | 'all';
  /** 'all': ports absent or empty. []: every port was invalid (nothing). */
  ports: PolicyPort[] | 'all';
}

export interface NetworkPolicy {
  /** Set for a HyphaNetworkPolicy (hypha.dev/v1alpha1): its key is
   *  'hnp:ns/name', so that it never shares one with a NetworkPolicy of the
   *  same namespace and name. */
  kind?: 'HyphaNetworkPolicy';
  namespace: string;
  name: string;
  /** 'unreadable': the selector could not be read; it is taken to select every
   *  pod of the namespace, contributing deny and no allows (fail closed). */
  podSelector: LabelSelector | 'unreadable';
  /** After API defaulting: [ingress], plus egress when spec.egress is non-empty. */
  policyTypes: Direction[];
  ingress: Rule[];
  egress: Rule[];
}

/** 'ns/name' for a NetworkPolicy, 'hnp:ns/name' for a HyphaNetworkPolicy. */
export function policyKey(p: { kind?: 'HyphaNetworkPolicy'; namespace: string; name: string }): string {
  return p.kind === 'HyphaNetworkPolicy' ? `hnp:${p.namespace}/${p.name}` : `${p.namespace}/${p.name}`;
}

/** How problems name the object: 'NetworkPolicy ns/name' or 'HyphaNetworkPolicy ns/name'. */
export function policyObject(p: { kind?: 'HyphaNetworkPolicy'; namespace: string; name: string }): string {
  return `${p.kind ?? 'NetworkPolicy'} ${p.namespace}/${p.name}`;
}

// ---- Output ----

export interface PortRange {
  from: number;
  to: number;
}

/** Why an entry exists: one rule of one policy (and which peer and port of it). */
export interface Provenance {
  /** 'ns/name' of the NetworkPolicy; '' for an implicit allow. */
  policy: string;
  direction: Direction;
  /** Index into spec.ingress / spec.egress; -1 for an implicit allow. */
  rule: number;
  /** Index into the rule's from/to; 'all' when it has none. */
  peer: number | 'all';
  /** Index into the rule's ports; 'all' when it has none. */
  port: number | 'all';
  /** Set on allows no policy wrote: 'host' is the node's own traffic to its
   *  pods, which Kubernetes NetworkPolicy never restricts (kubelet probes). */
  implicit?: 'host';
}

export interface Entry {
  /** Peer identity: a cluster, reserved or CIDR identity; 'any' matches every peer. */
  identity: number | 'any';
  /** 'any' (every IP protocol) only together with ports 'any'. */
  proto: Protocol | 'any';
  ports: PortRange | 'any';
  because: Provenance[];
  /** Set when every rule behind the entry carries http rules: the flow goes
   *  to the L7 proxy, which allows only requests one of these matches. */
  http?: HttpRule[];
}

/** Endpoints selected alike share one DirectionPolicy object: read-only. */
export interface DirectionPolicy {
  /** Selected by some policy with this policy type: default deny, entries allow. */
  enforced: boolean;
  entries: Entry[];
  /** Policies that select the endpoint for this direction, sorted ('ns/name'). */
  selectedBy: string[];
  /** Set when the entries would exceed CompileOptions.maxEntriesPerDirection:
   *  how many there were. The direction then holds no entries (deny all). */
  overflow?: number;
}

export interface EndpointPolicy {
  /** 'ns/name' */
  key: string;
  endpoint: Endpoint;
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
}

/** An ipBlock prefix (a cidr or an except) and its node-local identity. */
export interface CidrIdentity {
  cidr: string;
  identity: number;
}

export function endpointKey(e: { namespace: string; name: string }): string {
  return `${e.namespace}/${e.name}`;
}
