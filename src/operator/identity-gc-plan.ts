// Which identities the operator's collector deletes. Pure: the identities,
// the label-set keys pods use now, when each key was last used and when each
// identity was first seen in, the identities to delete out.
//
//  - unused: the winner of its set (lowest creation revision), no pod uses
//    the set, and it has been idle for the whole grace period: since the
//    operator first saw the identity (a new identity is not collected before
//    its pod shows up in the operator's view, however slow that view is) and
//    since a pod last used the set.
//  - duplicate: not the winner of its set, and first seen a grace period
//    ago. No allocator ever returns such an identity (src/identity/allocator.ts);
//    it is what an allocator that lost a race and crashed before it deleted
//    its own object left behind. The grace period lets the loser delete it.
//
// Each candidate is checked again against the API server before it is
// deleted (identity-gc.ts), with the object's uid and resourceVersion as
// preconditions.
import type { StoredIdentity } from '../k8s/hyphaidentity.ts';

export interface GcInput {
  identities: readonly StoredIdentity[];
  /** Keys of the label sets of pods that need an identity, now. */
  inUse: ReadonlySet<string>;
  /** Key -> when a pod last used that set (ms). */
  lastUsed: ReadonlyMap<string, number>;
  /** Identity id -> when this operator first saw it (ms). */
  firstSeen: ReadonlyMap<number, number>;
  now: number;
  graceMs: number;
}

export interface GcCandidate {
  identity: StoredIdentity;
  reason: 'unused' | 'duplicate';
  /** How long it has been idle (unused) or known (duplicate), ms. */
  idleMs: number;
}

export interface GcPlan {
  collect: GcCandidate[];
  counts: { inUse: number; unused: number; duplicate: number };
}

export function planIdentityGc(input: GcInput): GcPlan {
  const { now, graceMs } = input;
  const byKey = new Map<string, StoredIdentity[]>();
  for (const i of input.identities) {
    if (i.deleting) continue;
    let list = byKey.get(i.key);
    if (!list) byKey.set(i.key, (list = []));
    list.push(i);
  }
  const plan: GcPlan = { collect: [], counts: { inUse: 0, unused: 0, duplicate: 0 } };
  for (const [key, list] of byKey) {
    list.sort((a, b) => (a.revision < b.revision ? -1 : a.revision > b.revision ? 1 : a.id - b.id));
    const seen = (i: StoredIdentity): number => input.firstSeen.get(i.id) ?? now;
    const [winner, ...others] = list as [StoredIdentity, ...StoredIdentity[]];
    for (const d of others) {
      plan.counts.duplicate++;
      const known = now - seen(d);
      if (known >= graceMs) plan.collect.push({ identity: d, reason: 'duplicate', idleMs: known });
    }
    if (input.inUse.has(key)) {
      plan.counts.inUse++;
      continue;
    }
    plan.counts.unused++;
    const idleSince = Math.max(seen(winner), input.lastUsed.get(key) ?? 0);
    const idle = now - idleSince;
    if (idle >= graceMs) plan.collect.push({ identity: winner, reason: 'unused', idleMs: idle });
  }
  plan.collect.sort((a, b) => a.identity.id - b.identity.id);
  return plan;
}
