// Security identities: the numbers, and the label set an identity stands
// for. Pure.
//
// A pod's security-relevant label set is its namespace, its labels minus
// those that differ between replicas of one workload (DEFAULT_EXCLUDED_POD_LABELS:
// a pod-template-hash would give every ReplicaSet rollout, a StatefulSet's
// pod-name every pod, an identity of its own), and its namespace's labels
// (namespaceSelector selects by them). Every allocator and the operator's
// garbage collector must derive the same set from the same pod: the
// exclusion list is part of the identity format, not a setting.
//
// The canonical form of a set is one string (sorted keys, JSON), and its key
// a hash of that string: the value of the label hypha.dev/labels-key on the
// set's HyphaIdentity, so an allocator finds the identity of a set with one
// label-selector LIST. The key only narrows the search: a match is confirmed
// by comparing the whole set (a hash collision is never taken as the set).
import { createHash } from 'node:crypto';

/** Numeric security identity. */
export type IdentityId = number;

/** Reserved identities: never allocated, the same on every node. (5 is left
 *  unused, where Cilium has "init".) */
export const RESERVED_IDENTITIES = {
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  'remote-node': 6,
} as const;

export type ReservedIdentityName = keyof typeof RESERVED_IDENTITIES;

export const HOST_IDENTITY = RESERVED_IDENTITIES.host;
export const WORLD_IDENTITY = RESERVED_IDENTITIES.world;
export const REMOTE_NODE_IDENTITY = RESERVED_IDENTITIES['remote-node'];

/** What the reserved identities stand for (`hypha identity list`). */
export const RESERVED_DESCRIPTIONS: Readonly<Record<ReservedIdentityName, string>> = {
  host: 'this node (its own addresses)',
  world: 'anything outside the cluster',
  unmanaged: 'an endpoint Hypha does not manage',
  health: 'the agents\' health checks',
  'remote-node': 'another node of the cluster (its addresses)',
};

/** Cluster identities, allocated from HyphaIdentity objects. */
export const CLUSTER_IDENTITY_RANGE: Readonly<IdentityRange> = { min: 256, max: 65535 };

export interface IdentityRange {
  min: number;
  max: number;
}

export function reservedName(id: IdentityId): ReservedIdentityName | undefined {
  for (const [name, v] of Object.entries(RESERVED_IDENTITIES)) if (v === id) return name as ReservedIdentityName;
  return undefined;
}

/** Pod labels left out of identities: they differ between the pods of one workload. */
export const DEFAULT_EXCLUDED_POD_LABELS: readonly string[] = [
  'pod-template-hash',
  'controller-revision-hash',
  'pod-template-generation',
  'statefulset.kubernetes.io/pod-name',
  'apps.kubernetes.io/pod-index',
  'batch.kubernetes.io/job-completion-index',
  'batch.kubernetes.io/controller-uid',
  'controller-uid',
];

export type Labels = Readonly<Record<string, string>>;

/** The label set an identity stands for. The policy compiler's model uses
 *  the same shape, with the id: { id, namespace, podLabels, namespaceLabels }. */
export interface LabelSet {
  namespace: string;
  podLabels: Labels;
  namespaceLabels: Labels;
}

export interface Identity extends LabelSet {
  id: IdentityId;
}

/** String labels of an object's metadata.labels, sorted by key. */
export function stringLabels(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return out;
  for (const k of Object.keys(raw).sort()) {
    const v = (raw as Record<string, unknown>)[k];
    if (typeof v === 'string') out[k] = v;
  }
  return out;
}

/** A pod's labels without the excluded ones, sorted by key. */
export function securityPodLabels(labels: Labels, excluded: readonly string[] = DEFAULT_EXCLUDED_POD_LABELS): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(labels).sort()) if (!excluded.includes(k)) out[k] = labels[k]!;
  return out;
}

function sorted(labels: Labels): [string, string][] {
  return Object.keys(labels).sort().map((k) => [k, labels[k]!]);
}

/** The one string a label set is written as: equal sets, equal strings. */
export function canonicalLabelSet(set: LabelSet): string {
  return JSON.stringify([set.namespace, sorted(set.podLabels), sorted(set.namespaceLabels)]);
}

/** Hex characters of the key (160 bits of SHA-256; a label value holds at most 63). */
export const LABELS_KEY_LENGTH = 40;

/** The hash of the canonical form: hypha.dev/labels-key of the set's identity. */
export function labelsKey(set: LabelSet): string {
  return createHash('sha256').update(canonicalLabelSet(set)).digest('hex').slice(0, LABELS_KEY_LENGTH);
}

export function sameLabelSet(a: LabelSet, b: LabelSet): boolean {
  return canonicalLabelSet(a) === canonicalLabelSet(b);
}

/** 'app=web,tier=front' */
export function formatLabels(labels: Labels): string {
  return sorted(labels).map(([k, v]) => `${k}=${v}`).join(',');
}

// Label syntax (k8s.io/apimachinery validation): an optional DNS-subdomain
// prefix and '/', a name of at most 63 characters; values at most 63.
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** Undefined when `key` is a valid label key, else why not. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return 'has a prefix that is not a DNS subdomain';
  if (!LABEL_NAME.test(name)) return 'is not a label name (at most 63 letters, digits, "-", "_", ".", starting and ending alphanumeric)';
  return undefined;
}

/** Undefined when `value` is a valid label value, else why not. */
export function labelValueProblem(value: string): string | undefined {
  return value.length <= 63 && LABEL_VALUE.test(value) ? undefined : 'is not a label value (at most 63 letters, digits, "-", "_", ".", starting and ending alphanumeric)';
}

export interface LabelSetProblem {
  field: string;
  value: unknown;
  /** Why the value is bad ("is not a label value ..."). */
  why: string;
  /** `field: value why` */
  message: string;
}

/** Every bad field of a label set (field names as in HyphaIdentity spec). */
export function labelSetProblems(set: unknown, base = 'spec'): LabelSetProblem[] {
  const out: LabelSetProblem[] = [];
  const bad = (field: string, value: unknown, why: string): void => {
    out.push({ field, value, why, message: `${field}: ${JSON.stringify(value)} ${why}` });
  };
  if (typeof set !== 'object' || set === null || Array.isArray(set)) {
    bad(base, set, 'is not an object');
    return out;
  }
  const s = set as Record<string, unknown>;
  if (typeof s.namespace !== 'string' || !DNS_LABEL.test(s.namespace)) bad(`${base}.namespace`, s.namespace, 'is not a namespace name (a DNS label)');
  for (const f of ['podLabels', 'namespaceLabels'] as const) {
    const m = s[f];
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      bad(`${base}.${f}`, m, 'is not a map of labels');
      continue;
    }
    for (const [k, v] of Object.entries(m)) {
      const kp = labelKeyProblem(k);
      if (kp) bad(`${base}.${f}`, k, `(a key) ${kp}`);
      else if (typeof v !== 'string') bad(`${base}.${f}[${JSON.stringify(k)}]`, v, 'is not a string');
      else {
        const vp = labelValueProblem(v);
        if (vp) bad(`${base}.${f}[${JSON.stringify(k)}]`, v, vp);
      }
    }
  }
  return out;
}

/** The set of a pod: its namespace, its security labels, its namespace's labels. */
export function podLabelSet(namespace: string, podLabels: Labels, namespaceLabels: Labels): LabelSet {
  return { namespace, podLabels: securityPodLabels(podLabels), namespaceLabels: stringLabels(namespaceLabels) };
}
