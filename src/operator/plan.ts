// What the operator writes, from the Nodes and HyphaNodes it knows (pure:
// tables and a clock in, writes out). Level-triggered: each pass starts from
// scratch, so a missed event or a restart changes nothing.
//
// cluster-pool mode, in order:
//  1. The pool is rebuilt from every HyphaNode's spec.ipam.podCIDRs, oldest
//     object first (creationTimestamp, then name). A claim that is invalid,
//     outside the pool or overlapping an older one is refused: the HyphaNode
//     gets status.ipam.operatorError and condition PodCIDRAllocated=False,
//     its spec is left as it is (never a silent fix).
//  2. A HyphaNode without an IPv4 CIDR (and no refused claim) gets one;
//     a Node without a HyphaNode gets one created, owned by the Node, with a
//     CIDR. When the pool is exhausted the HyphaNode says so in its status.
//  3. A HyphaNode whose Node is gone is deleted; its CIDR is free once the
//     deletion is seen (the next pass), never while the object still exists.
// kubernetes mode: HyphaNodes are created and deleted with their Nodes;
// Kubernetes allocates (Node.spec.podCIDRs) and the operator stays out of IPAM.
//
// One write per object per pass: a spec write changes the resourceVersion
// that a status write would need, so the status follows in the next pass.
import { isIPv6 } from 'node:net';
import { type Condition, type HyphaNode, type IpamMode, POD_CIDR_CONDITION, type PodCidrReason } from '../k8s/hyphanode.ts';
import { type IpamErrorCode, IpamPool, type PoolConfig, isIpamError } from './ipam-pool.ts';

export interface NodeRow {
  name: string;
  uid: string;
}

export interface PlanInput {
  mode: IpamMode;
  /** The cluster pool (cluster-pool mode). */
  pool?: PoolConfig;
  nodes: ReadonlyMap<string, NodeRow>;
  hyphaNodes: ReadonlyMap<string, HyphaNode>;
  now: Date;
}

export interface StatusIpam {
  operatorError?: string;
  allocatedAt?: string;
}

export type Write =
  /** Create the Node's HyphaNode, owned by it (podCIDRs empty: none allocated). */
  | { kind: 'create'; name: string; owner: NodeRow; podCIDRs: string[] }
  /** Patch metadata.ownerReferences and/or spec.ipam.podCIDRs (resourceVersion precondition). */
  | { kind: 'update'; name: string; resourceVersion: string; owner?: NodeRow; podCIDRs?: string[]; why: string }
  /** Write status.ipam and status.conditions (resourceVersion precondition). */
  | { kind: 'status'; name: string; resourceVersion: string; ipam: StatusIpam; conditions: Condition[]; why: string }
  /** Delete a HyphaNode whose Node is gone (uid and resourceVersion preconditions). */
  | { kind: 'delete'; name: string; uid: string; resourceVersion: string; podCIDRs: string[] };

export interface Refusal {
  name: string;
  cidr: string;
  reason: PodCidrReason;
  message: string;
}

export interface PoolSummary {
  capacity: number;
  free: number;
  used: number;
  /** Nodes waiting for a CIDR the pool does not have. */
  waiting: string[];
  refused: Refusal[];
}

export interface Plan {
  writes: Write[];
  /** cluster-pool mode: the pool after this pass's allocations. */
  pool?: PoolSummary;
}

const REASON_OF: Record<Exclude<IpamErrorCode, 'E_IPAM_CONFIG'>, PodCidrReason> = {
  E_IPAM_INVALID: 'InvalidCIDR',
  E_IPAM_OUT_OF_POOL: 'OutOfPool',
  E_IPAM_OVERLAP: 'Overlap',
  E_IPAM_EXHAUSTED: 'PoolExhausted',
};

function byAge(a: HyphaNode, b: HyphaNode): number {
  if (a.creationTimestamp !== b.creationTimestamp) return a.creationTimestamp < b.creationTimestamp ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function isIpv6Cidr(c: string): boolean {
  const slash = c.indexOf('/');
  return slash > 0 && isIPv6(c.slice(0, slash));
}

/** The conditions list with ours set (lastTransitionTime kept while the status stays), or removed. */
function withCondition(list: readonly Condition[], want: Omit<Condition, 'lastTransitionTime'> | undefined, now: Date): Condition[] {
  const others = list.filter((c) => c.type !== POD_CIDR_CONDITION);
  if (!want) return others;
  const old = list.find((c) => c.type === POD_CIDR_CONDITION);
  const lastTransitionTime = old && old.status === want.status && old.lastTransitionTime ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return [...others, { ...want, lastTransitionTime }];
}

function sameCondition(a: Condition | undefined, b: Condition | undefined): boolean {
  if (!a || !b) return a === b;
  return a.status === b.status && a.reason === b.reason && a.message === b.message && a.lastTransitionTime === b.lastTransitionTime;
}

function statusWrite(hn: HyphaNode, ipam: StatusIpam, cond: Omit<Condition, 'lastTransitionTime'> | undefined, now: Date, why: string): Write | undefined {
  const conditions = withCondition(hn.conditions, cond, now);
  const mine = (l: readonly Condition[]) => l.find((c) => c.type === POD_CIDR_CONDITION);
  if (hn.ipam.operatorError === ipam.operatorError && hn.ipam.allocatedAt === ipam.allocatedAt && sameCondition(mine(hn.conditions), mine(conditions))) return undefined;
  return { kind: 'status', name: hn.name, resourceVersion: hn.resourceVersion, ipam, conditions, why };
}

const ownerMismatch = (hn: HyphaNode, node: NodeRow): boolean => hn.owner?.name !== node.name || hn.owner.uid !== node.uid;

export function planHyphaNodes(input: PlanInput): Plan {
  const { nodes, now } = input;
  const hyphaNodes = [...input.hyphaNodes.values()].sort(byAge);
  const writes: Write[] = [];
  const nowIso = now.toISOString().replace(/\.\d{3}Z$/, 'Z');

  if (input.mode === 'kubernetes') {
    for (const hn of hyphaNodes) {
      if (hn.deleting) continue;
      const node = nodes.get(hn.name);
      if (!node) {
        writes.push({ kind: 'delete', name: hn.name, uid: hn.uid, resourceVersion: hn.resourceVersion, podCIDRs: hn.podCIDRs });
      } else if (ownerMismatch(hn, node)) {
        writes.push({ kind: 'update', name: hn.name, resourceVersion: hn.resourceVersion, owner: node, why: 'owner' });
      } else {
        // The operator does not allocate in this mode: nothing of its own stays in status.
        const w = statusWrite(hn, { ...(hn.ipam.allocatedAt ? { allocatedAt: hn.ipam.allocatedAt } : {}) }, undefined, now, 'not allocating (kubernetes mode)');
        if (w) writes.push(w);
      }
    }
    for (const node of [...nodes.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!input.hyphaNodes.has(node.name)) writes.push({ kind: 'create', name: node.name, owner: node, podCIDRs: [] });
    }
    return { writes };
  }

  if (!input.pool) throw new TypeError('planHyphaNodes: cluster-pool mode needs a pool');
  const pool = new IpamPool(input.pool);
  const refused: Refusal[] = [];
  const refusalOf = new Map<string, Refusal>();
  const refuse = (r: Refusal): void => {
    refused.push(r);
    if (!refusalOf.has(r.name)) refusalOf.set(r.name, r);
  };

  // 1. What every HyphaNode holds (also those about to be deleted: their
  // addresses are in use until the object is gone).
  for (const hn of hyphaNodes) {
    for (const c of hn.declaredPodCIDRs) {
      if (!hn.podCIDRs.includes(c) && !isIpv6Cidr(c)) {
        refuse({ name: hn.name, cidr: c, reason: 'InvalidCIDR', message: `pod CIDR ${JSON.stringify(c)} is not an IPv4 network prefix` });
      }
    }
    for (const c of hn.podCIDRs) {
      try {
        pool.occupy(hn.name, c);
      } catch (err) {
        if (!isIpamError(err) || err.code === 'E_IPAM_CONFIG') throw err;
        refuse({ name: hn.name, cidr: c, reason: REASON_OF[err.code], message: err.message });
      }
    }
  }

  // 2. Allocation: HyphaNodes that have none first (oldest first), then new Nodes.
  const waiting: string[] = [];
  const exhausted = new Map<string, string>();
  const allocate = (name: string): string | undefined => {
    try {
      return pool.allocate(name);
    } catch (err) {
      if (!isIpamError(err, 'E_IPAM_EXHAUSTED')) throw err;
      waiting.push(name);
      exhausted.set(name, err.message);
      return undefined;
    }
  };

  for (const hn of hyphaNodes) {
    if (hn.deleting) continue;
    const node = nodes.get(hn.name);
    if (!node) {
      writes.push({ kind: 'delete', name: hn.name, uid: hn.uid, resourceVersion: hn.resourceVersion, podCIDRs: hn.podCIDRs });
      continue;
    }
    const refusal = refusalOf.get(hn.name);
    const needsCidr = hn.podCIDRs.length === 0 && !refusal;
    const cidr = needsCidr ? allocate(hn.name) : undefined;
    const fixOwner = ownerMismatch(hn, node);
    if (cidr !== undefined || fixOwner) {
      writes.push({
        kind: 'update', name: hn.name, resourceVersion: hn.resourceVersion,
        ...(fixOwner ? { owner: node } : {}),
        // IPv6 entries the spec lists are kept; the IPv4 CIDR is added.
        ...(cidr !== undefined ? { podCIDRs: [...hn.declaredPodCIDRs, cidr] } : {}),
        why: [cidr !== undefined ? `allocated ${cidr}` : '', fixOwner ? 'owner' : ''].filter(Boolean).join(', '),
      });
      continue;
    }
    let w: Write | undefined;
    if (refusal) {
      w = statusWrite(hn, { operatorError: refusal.message, ...(hn.ipam.allocatedAt ? { allocatedAt: hn.ipam.allocatedAt } : {}) },
        { type: POD_CIDR_CONDITION, status: 'False', reason: refusal.reason, message: refusal.message }, now, `claim refused (${refusal.reason})`);
    } else if (exhausted.has(hn.name)) {
      const message = exhausted.get(hn.name)!;
      w = statusWrite(hn, { operatorError: message }, { type: POD_CIDR_CONDITION, status: 'False', reason: 'PoolExhausted', message }, now, 'pool exhausted');
    } else {
      w = statusWrite(hn, { allocatedAt: hn.ipam.allocatedAt ?? nowIso },
        { type: POD_CIDR_CONDITION, status: 'True', reason: 'Allocated', message: `pod CIDRs ${hn.podCIDRs.join(', ')}` }, now, 'allocated');
    }
    if (w) writes.push(w);
  }

  for (const node of [...nodes.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (input.hyphaNodes.has(node.name)) continue;
    const cidr = allocate(node.name);
    writes.push({ kind: 'create', name: node.name, owner: node, podCIDRs: cidr === undefined ? [] : [cidr] });
  }

  return { writes, pool: { capacity: pool.capacity, free: pool.free, used: pool.used, waiting, refused } };
}
