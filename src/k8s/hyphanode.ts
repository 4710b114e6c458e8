// HyphaNode (hypha.dev/v1alpha1, cluster-scoped, deploy/crds/hyphanodes.yaml):
// Hypha's per-node object, one per Node with the Node's name. The node's
// agent writes spec.addresses; the operator writes spec.ipam.podCIDRs (in
// cluster-pool IPAM mode) and status.ipam. This module is pure: the API
// shapes, a normaliser that names every bad field, the informer spec, and
// podCidrsOf, which tells an agent the pod CIDRs of its node in either mode.
import { isIP, isIPv6 } from 'node:net';
import { Address4 } from 'ip-address';
import type { Normalized } from '../services/normalize.ts';
import { type Problem, problem } from '../services/problems.ts';
import type { InformerSpec } from './informer.ts';

export const HYPHA_GROUP = 'hypha.dev';
export const HYPHANODE_VERSION = 'v1alpha1';
export const HYPHANODE_API_VERSION = `${HYPHA_GROUP}/${HYPHANODE_VERSION}`;
export const HYPHANODE_KIND = 'HyphaNode';
export const HYPHANODES_PATH = `/apis/${HYPHA_GROUP}/${HYPHANODE_VERSION}/hyphanodes`;

/** The condition the operator keeps on each HyphaNode in cluster-pool mode. */
export const POD_CIDR_CONDITION = 'PodCIDRAllocated';
/** Reasons of that condition: True with Allocated, False with one of the others. */
export type PodCidrReason = 'Allocated' | 'PoolExhausted' | 'Overlap' | 'OutOfPool' | 'InvalidCIDR';
/** False reasons under which the spec's CIDRs must not be used (another node may hold them). */
export const REFUSED_CLAIM_REASONS: readonly PodCidrReason[] = ['Overlap', 'OutOfPool', 'InvalidCIDR'];

/** Who hands out pod CIDRs: Hypha's operator from its pool, or Kubernetes (Node.spec.podCIDRs). */
export type IpamMode = 'cluster-pool' | 'kubernetes';

export type NodeAddressType = 'InternalIP' | 'ExternalIP';
export interface NodeAddress {
  type: NodeAddressType;
  ip: string;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** A HyphaNode as the API server sends it. */
export interface HyphaNodeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    ownerReferences?: OwnerReference[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: { addresses?: NodeAddress[]; ipam?: { podCIDRs?: string[] } };
  status?: { ipam?: { operatorError?: string; allocatedAt?: string }; conditions?: Condition[] };
}

/** The parts of a core v1 Node that Hypha reads. */
export interface KubeNodeObject {
  metadata?: { name?: string; uid?: string; resourceVersion?: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
}

/** A HyphaNode, validated. */
export interface HyphaNode {
  name: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  /** Being deleted (deletionTimestamp set). */
  deleting: boolean;
  /** The Node that owns it (an ownerReference of kind Node), if any. */
  owner?: { name: string; uid: string };
  /** Every ownerReference, as the object lists them. */
  ownerReferences: OwnerReference[];
  /** Valid addresses; a bad entry is left out (and reported). */
  addresses: NodeAddress[];
  /** The IPv4 network prefixes of spec.ipam.podCIDRs, as written (canonical). */
  podCIDRs: string[];
  /** spec.ipam.podCIDRs exactly as the object lists it (including IPv6 and bad entries). */
  declaredPodCIDRs: string[];
  ipam: { operatorError?: string; allocatedAt?: string };
  conditions: Condition[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The path of one HyphaNode. */
export function hyphaNodePath(name: string): string {
  return `${HYPHANODES_PATH}/${encodeURIComponent(name)}`;
}

/** What an informer of HyphaNodes lists and watches: all of them (the
 *  operator), or one node's (an agent, by field selector). */
export function hyphaNodesInformerSpec(nodeName?: string): InformerSpec {
  return {
    resource: 'hyphanodes',
    path: HYPHANODES_PATH,
    ...(nodeName === undefined ? {} : { query: { fieldSelector: `metadata.name=${nodeName}` } }),
  };
}

/** Undefined when `text` is an IPv4 network prefix in canonical form ("10.244.1.0/24"), else why not. */
export function ipv4PrefixProblem(text: string): string | undefined {
  let a: Address4;
  try {
    a = new Address4(text);
  } catch {
    return 'is not an IPv4 network prefix';
  }
  if (!text.includes('/')) return 'is not an IPv4 network prefix (no /length)';
  const network = a.startAddress().correctForm();
  if (`${network}/${a.subnetMask}` !== text) {
    return network === a.correctForm()
      ? `is not in canonical form (${network}/${a.subnetMask})`
      : `has host bits set (the network is ${network}/${a.subnetMask})`;
  }
  return undefined;
}

function cidrList(list: unknown, field: string, bad: (field: string, value: unknown, why: string) => void): { ipv4: string[]; declared: string[] } {
  const ipv4: string[] = [];
  const declared: string[] = [];
  if (list === undefined || list === null) return { ipv4, declared };
  if (!Array.isArray(list)) {
    bad(field, list, 'is not a list');
    return { ipv4, declared };
  }
  list.forEach((c, i) => {
    if (typeof c !== 'string') return bad(`${field}[${i}]`, c, 'is not a string');
    declared.push(c);
    const slash = c.indexOf('/');
    if (slash > 0 && isIPv6(c.slice(0, slash))) return; // IPv6 datapath is not built yet; the IPv4 family still works
    const why = ipv4PrefixProblem(c);
    if (why) return bad(`${field}[${i}]`, c, why);
    if (ipv4.includes(c)) return bad(`${field}[${i}]`, c, 'is listed twice');
    ipv4.push(c);
  });
  return { ipv4, declared };
}

const ADDRESS_TYPES: readonly string[] = ['InternalIP', 'ExternalIP'];
const CONDITION_STATUSES: readonly string[] = ['True', 'False', 'Unknown'];

/** Validate a HyphaNode from the API server. Without a name it is unusable;
 *  any other bad field is left out and reported. */
export function normalizeHyphaNode(raw: unknown): Normalized<HyphaNode> {
  const problems: Problem[] = [];
  const meta = isObj(raw) && isObj(raw.metadata) ? raw.metadata : undefined;
  const name = str(meta?.name);
  const obj = `HyphaNode ${name ?? '(unnamed)'}`;
  if (!isObj(raw) || !meta || !name) return { problems: [problem(obj, 'metadata.name', meta?.name, 'is required')] };
  const bad = (field: string, value: unknown, why: string): void => {
    problems.push(problem(obj, field, value, why));
  };
  const spec = isObj(raw.spec) ? raw.spec : {};
  const status = isObj(raw.status) ? raw.status : {};

  let owner: HyphaNode['owner'];
  const ownerReferences = Array.isArray(meta.ownerReferences) ? meta.ownerReferences.filter((r): r is OwnerReference => isObj(r)) : [];
  const ref = ownerReferences.find((r) => r.kind === 'Node' && r.apiVersion === 'v1');
  if (ref && str(ref.name) && str(ref.uid)) owner = { name: ref.name, uid: ref.uid };

  const addresses: NodeAddress[] = [];
  if (spec.addresses !== undefined) {
    if (!Array.isArray(spec.addresses)) bad('spec.addresses', spec.addresses, 'is not a list');
    else {
      spec.addresses.forEach((a, i) => {
        const f = `spec.addresses[${i}]`;
        if (!isObj(a)) return bad(f, a, 'is not an object');
        if (typeof a.type !== 'string' || !ADDRESS_TYPES.includes(a.type)) return bad(`${f}.type`, a.type, `is not one of ${ADDRESS_TYPES.join(', ')}`);
        if (typeof a.ip !== 'string' || isIP(a.ip) === 0) return bad(`${f}.ip`, a.ip, 'is not an IP address');
        addresses.push({ type: a.type as NodeAddressType, ip: a.ip });
      });
    }
  }

  const ipamSpec = isObj(spec.ipam) ? spec.ipam : {};
  const cidrs = cidrList(ipamSpec.podCIDRs, 'spec.ipam.podCIDRs', bad);

  const ipamStatus = isObj(status.ipam) ? status.ipam : {};
  const ipam: HyphaNode['ipam'] = {};
  if (typeof ipamStatus.operatorError === 'string' && ipamStatus.operatorError !== '') ipam.operatorError = ipamStatus.operatorError;
  if (ipamStatus.allocatedAt !== undefined) {
    if (typeof ipamStatus.allocatedAt === 'string' && !Number.isNaN(Date.parse(ipamStatus.allocatedAt))) ipam.allocatedAt = ipamStatus.allocatedAt;
    else bad('status.ipam.allocatedAt', ipamStatus.allocatedAt, 'is not a date-time');
  }

  const conditions: Condition[] = [];
  if (Array.isArray(status.conditions)) {
    status.conditions.forEach((c, i) => {
      const f = `status.conditions[${i}]`;
      if (!isObj(c) || typeof c.type !== 'string' || c.type === '') return bad(`${f}.type`, isObj(c) ? c.type : c, 'is required');
      if (typeof c.status !== 'string' || !CONDITION_STATUSES.includes(c.status)) return bad(`${f}.status`, c.status, 'is not one of True, False, Unknown');
      conditions.push({
        type: c.type,
        status: c.status as Condition['status'],
        reason: str(c.reason) ?? '',
        message: str(c.message) ?? '',
        lastTransitionTime: str(c.lastTransitionTime) ?? '',
        ...(typeof c.observedGeneration === 'number' ? { observedGeneration: c.observedGeneration } : {}),
      });
    });
  }

  return {
    value: {
      name,
      uid: str(meta.uid) ?? '',
      resourceVersion: str(meta.resourceVersion) ?? '',
      creationTimestamp: str(meta.creationTimestamp) ?? '',
      deleting: typeof meta.deletionTimestamp === 'string',
      ...(owner ? { owner } : {}),
      ownerReferences,
      addresses,
      podCIDRs: cidrs.ipv4,
      declaredPodCIDRs: cidrs.declared,
      ipam,
      conditions,
    },
    problems,
  };
}

export interface PodCidrs {
  /** IPv4 pod CIDRs the node may allocate pod addresses from. */
  cidrs: string[];
  /** Entries left out, and why (a bad entry, or a claim the operator refused). */
  problems: Problem[];
}

/**
 * The IPv4 pod CIDRs of a node, for its agent. In 'cluster-pool' mode they
 * are the HyphaNode's spec.ipam.podCIDRs, unless the operator refused that
 * claim (condition PodCIDRAllocated False for an overlapping, out-of-pool or
 * invalid CIDR: another node may hold those addresses); in 'kubernetes' mode
 * they are the Node's spec.podCIDRs (or spec.podCIDR). IPv6 entries are
 * skipped (no IPv6 datapath yet); a missing object has none.
 */
export function podCidrsOf(obj: HyphaNodeObject | undefined, mode: 'cluster-pool'): PodCidrs;
export function podCidrsOf(obj: KubeNodeObject | undefined, mode: 'kubernetes'): PodCidrs;
export function podCidrsOf(obj: HyphaNodeObject | KubeNodeObject | undefined, mode: IpamMode): PodCidrs {
  if (obj === undefined) return { cidrs: [], problems: [] };
  if (mode === 'kubernetes') {
    const node = obj as KubeNodeObject;
    const problems: Problem[] = [];
    const what = `Node ${node.metadata?.name ?? '(unnamed)'}`;
    const bad = (field: string, value: unknown, why: string): void => {
      problems.push(problem(what, field, value, why));
    };
    const spec = isObj(node.spec) ? node.spec : {};
    // podCIDRs is authoritative when present; podCIDR is its first element.
    if (spec.podCIDRs !== undefined) return { cidrs: cidrList(spec.podCIDRs, 'spec.podCIDRs', bad).ipv4, problems };
    if (spec.podCIDR === undefined || spec.podCIDR === '') return { cidrs: [], problems };
    const one = cidrList([spec.podCIDR], 'spec.podCIDR', (_f, value, why) => bad('spec.podCIDR', value, why));
    return { cidrs: one.ipv4, problems };
  }
  const n = normalizeHyphaNode(obj);
  if (!n.value) return { cidrs: [], problems: n.problems };
  const hn = n.value;
  const problems = n.problems.filter((p) => p.field.startsWith('spec.ipam.podCIDRs'));
  const cond = hn.conditions.find((c) => c.type === POD_CIDR_CONDITION);
  if (hn.podCIDRs.length > 0 && cond?.status === 'False' && (REFUSED_CLAIM_REASONS as readonly string[]).includes(cond.reason)) {
    problems.push(problem(`HyphaNode ${hn.name}`, 'spec.ipam.podCIDRs', hn.podCIDRs, `was refused by the operator (${cond.reason}): ${cond.message}`));
    return { cidrs: [], problems };
  }
  return { cidrs: hn.podCIDRs, problems };
}
