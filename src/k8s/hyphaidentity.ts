// HyphaIdentity (hypha.dev/v1alpha1, cluster-scoped, deploy/crds/hyphaidentities.yaml):
// one cluster-wide security identity. The name is the numeric id in decimal,
// the spec the label set it stands for, the label hypha.dev/labels-key the
// hash of that set (src/identity/labels.ts). Objects are never changed after
// creation (the CRD refuses spec changes, deploy/hyphaidentities-policy.yaml
// any change): the allocator (src/identity/allocator.ts) relies on an
// object's resourceVersion being its creation revision. Pure: shapes, paths,
// the body of a new identity, and a normaliser that names every bad field.
import { CLUSTER_IDENTITY_RANGE, type Identity, type LabelSet, labelSetProblems, labelsKey, stringLabels } from '../identity/labels.ts';
import type { Normalized } from '../services/normalize.ts';
import { type Problem, problem } from '../services/problems.ts';
import { HYPHA_GROUP } from './hyphanode.ts';
import type { InformerSpec } from './informer.ts';

export const HYPHAIDENTITY_VERSION = 'v1alpha1';
export const HYPHAIDENTITY_API_VERSION = `${HYPHA_GROUP}/${HYPHAIDENTITY_VERSION}`;
export const HYPHAIDENTITY_KIND = 'HyphaIdentity';
export const HYPHAIDENTITIES_PATH = `/apis/${HYPHA_GROUP}/${HYPHAIDENTITY_VERSION}/hyphaidentities`;
/** Label: the hash of the identity's label set (labelsKey). */
export const LABELS_KEY_LABEL = 'hypha.dev/labels-key';

/** A HyphaIdentity as the API server sends it. */
export interface HyphaIdentityObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
  };
  spec: { namespace: string; podLabels: Record<string, string>; namespaceLabels: Record<string, string> };
}

/** A HyphaIdentity, validated. */
export interface StoredIdentity extends Identity {
  /** labelsKey of the set (computed, not trusted from the label). */
  key: string;
  uid: string;
  resourceVersion: string;
  /** resourceVersion as a number: the creation revision of an object never changed. */
  revision: bigint;
  creationTimestamp: string;
  /** Being deleted (deletionTimestamp set): as good as gone. */
  deleting: boolean;
}

export function hyphaIdentityPath(id: number): string {
  return `${HYPHAIDENTITIES_PATH}/${id}`;
}

export function hyphaIdentitiesInformerSpec(): InformerSpec {
  return { resource: 'hyphaidentities', path: HYPHAIDENTITIES_PATH };
}

/** The body that creates identity `id` for `set`. */
export function hyphaIdentityBody(id: number, set: LabelSet): HyphaIdentityObject {
  return {
    apiVersion: HYPHAIDENTITY_API_VERSION,
    kind: HYPHAIDENTITY_KIND,
    metadata: { name: String(id), labels: { [LABELS_KEY_LABEL]: labelsKey(set) } },
    spec: { namespace: set.namespace, podLabels: { ...set.podLabels }, namespaceLabels: { ...set.namespaceLabels } },
  };
}

/** The id a name stands for, or undefined when it is not a cluster id in decimal. */
export function identityIdOfName(name: string): number | undefined {
  if (!/^[1-9][0-9]{0,9}$/.test(name)) return undefined;
  const n = Number(name);
  return n >= CLUSTER_IDENTITY_RANGE.min && n <= CLUSTER_IDENTITY_RANGE.max ? n : undefined;
}

/** A decimal resourceVersion as a number (KEP-5504: comparable within one resource). */
export function revisionOf(rv: unknown): bigint | undefined {
  return typeof rv === 'string' && /^[1-9][0-9]*$/.test(rv) ? BigInt(rv) : undefined;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validate a HyphaIdentity. Any bad field makes it unusable (an identity
 *  is all or nothing); every one is reported. */
export function normalizeHyphaIdentity(raw: unknown): Normalized<StoredIdentity> {
  const meta = isObj(raw) && isObj(raw.metadata) ? raw.metadata : undefined;
  const name = typeof meta?.name === 'string' ? meta.name : undefined;
  const what = `HyphaIdentity ${name ?? '(unnamed)'}`;
  if (!meta || name === undefined) return { problems: [problem(what, 'metadata.name', meta?.name, 'is required')] };
  const problems: Problem[] = [];
  const id = identityIdOfName(name);
  if (id === undefined) problems.push(problem(what, 'metadata.name', name, `is not an identity in ${CLUSTER_IDENTITY_RANGE.min}..${CLUSTER_IDENTITY_RANGE.max} written in decimal`));
  const revision = revisionOf(meta.resourceVersion);
  if (revision === undefined) problems.push(problem(what, 'metadata.resourceVersion', meta.resourceVersion, 'is not a decimal revision'));
  const spec = (raw as Obj).spec;
  for (const p of labelSetProblems(spec)) problems.push(problem(what, p.field, p.value, p.why));
  if (problems.length > 0 || id === undefined || revision === undefined || !isObj(spec)) return { problems };
  const set: LabelSet = { namespace: spec.namespace as string, podLabels: stringLabels(spec.podLabels), namespaceLabels: stringLabels(spec.namespaceLabels) };
  return {
    value: {
      id,
      ...set,
      key: labelsKey(set),
      uid: typeof meta.uid === 'string' ? meta.uid : '',
      resourceVersion: meta.resourceVersion as string,
      revision,
      creationTimestamp: typeof meta.creationTimestamp === 'string' ? meta.creationTimestamp : '',
      deleting: typeof meta.deletionTimestamp === 'string',
    },
    problems,
  };
}
