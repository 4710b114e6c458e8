// The cluster-wide identity allocator: a label set in, its numeric identity
// out, with nothing but the API server to agree through. Any number of
// allocators (every agent, the operator, a restarted one) may run at once.
//
// Objects: HyphaIdentity/<id>, spec = the label set, label
// hypha.dev/labels-key = the hash of the set. Never changed once created.
//
// allocate(S):
//   1. LIST the identities labelled with S's key (a consistent read: no
//      resourceVersion, so the API server answers at etcd's current revision,
//      from etcd or from its watch cache once that has caught up). If any has
//      exactly the set S, return the winner: the one with the lowest
//      creation revision.
//   2. Otherwise CREATE HyphaIdentity/<id> for a free id. The name settles
//      "one id, one label set": two creates of one name cannot both succeed;
//      AlreadyExists means try another id.
//   3. After the create succeeded, LIST again (consistent) and return the
//      winner among the objects for S. If that is not our own object, we lost
//      a race: delete ours (uid precondition) and return the winner.
//
// Why no allocator ever returns a loser, i.e. why every allocator returns the
// same id for S. Write r(x) for object x's creation revision; etcd gives every
// write a revision of its own, so they are totally ordered.
//   - An object is deleted by an allocator only when that allocator's read
//     showed an object for S with a lower revision. So the object w for S with
//     the lowest revision of all (the first one created) is never deleted by
//     an allocator: nothing for S is lower.
//   - Every allocator returns the minimum of a read R that it made after
//     something for S existed. Step 1 returns only when R saw an object for S;
//     step 3 reads after its own create c, and r(w) <= r(c) < R. In both cases
//     R is at or after r(w), so R sees w (which is still there), and the
//     minimum of what R sees is w: everything else R sees was created after w.
//   - An allocator never returns an id before such a read: not its own fresh
//     object (step 3 reads first), not anything from a cache.
// So all allocators return w, and objects made by the losers are deleted by
// them (or, if a loser crashed before it could, by the operator's collector,
// which removes any object for S that is not the lowest once it is past its
// grace period).
//
// "One id, one label set" holds because ids are names and specs never change;
// an id is used for another set only after its object was deleted.
//
// What this relies on:
//   - resourceVersion of an object is the etcd revision of its last write,
//     and resourceVersions of one resource are comparable as integers
//     (Kubernetes KEP-5504, stable in 1.35; they are compared as BigInt).
//     An object that was never written again after its create carries its
//     creation revision: the CRD refuses any change of spec, and
//     deploy/hyphaidentities-policy.yaml any update at all (a label or
//     annotation change would give the object a new, higher revision).
//   - A LIST without resourceVersion is linearizable (it sees every write
//     that completed before it was sent).
//   - The hypha.dev/labels-key label is present on every identity (written
//     at create, never changed). The key only narrows the LIST: the spec is
//     compared in full, so a hash collision cannot merge two sets.
//
// Deletion by the garbage collector (an identity no pod has used for its
// grace period) is the one way w itself goes. Whoever still holds w then
// (an agent whose view lagged the collector's) sees the DELETED event and
// allocates again, asking for w's old id first so that a set which is still
// in use keeps its number when it can.
import type { Logger } from 'pino';
import { CLUSTER_IDENTITY_RANGE, type IdentityRange, type LabelSet, canonicalLabelSet, labelsKey } from './labels.ts';

/** An identity as stored: the set, and what orders identities of one set. */
export interface StoredIdentityLike extends LabelSet {
  id: number;
  uid: string;
  /** Creation revision (resourceVersion of an object never changed). */
  revision: bigint;
  deleting: boolean;
}

/** What the allocator needs of the API server (src/identity/kube-store.ts). */
export interface IdentityStore<T extends StoredIdentityLike = StoredIdentityLike> {
  /** Consistent read: every identity labelled with this key (the spec unchecked). */
  listByKey(key: string): Promise<T[]>;
  /** Create identity `id` for `set`; 'exists' when the name is taken. */
  create(id: number, set: LabelSet): Promise<T | 'exists'>;
  /** Delete this object (uid precondition); already gone is success. */
  delete(identity: T): Promise<void>;
  /** Consistent read of every id in use (a paged LIST of all identities). */
  listIds(): Promise<Set<number>>;
}

export type AllocationOutcome = 'existing' | 'created' | 'lost-race';

export interface Allocation<T extends StoredIdentityLike = StoredIdentityLike> {
  identity: T;
  outcome: AllocationOutcome;
}

export type IdentityErrorCode = 'E_IDENTITY_EXHAUSTED' | 'E_IDENTITY_VANISHED' | 'E_IDENTITY_INVALID';

export class IdentityError extends Error {
  readonly code: IdentityErrorCode;
  constructor(code: IdentityErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'IdentityError';
    this.code = code;
  }
}

export function isIdentityError(err: unknown, code?: IdentityErrorCode): err is IdentityError {
  return err instanceof IdentityError && (code === undefined || err.code === code);
}

/** The identity of `set` among `candidates`: exactly that set, not being
 *  deleted, lowest creation revision (ties, impossible in etcd, by id). */
export function winnerOf<T extends StoredIdentityLike>(candidates: readonly T[], set: LabelSet): T | undefined {
  const want = canonicalLabelSet(set);
  let best: T | undefined;
  for (const c of candidates) {
    if (c.deleting || canonicalLabelSet(c) !== want) continue;
    if (!best || c.revision < best.revision || (c.revision === best.revision && c.id < best.id)) best = c;
  }
  return best;
}

/**
 * An id to try: `prefer` when it is free, else a random one in `range` that
 * is neither `used` nor `tried` (random, so that allocators racing for new
 * sets rarely pick the same name). Undefined when none is left.
 */
export function pickCandidate(o: { range: IdentityRange; used: ReadonlySet<number>; tried: ReadonlySet<number>; prefer?: number; random: () => number }): number | undefined {
  const { range, used, tried } = o;
  const free = (id: number): boolean => id >= range.min && id <= range.max && !used.has(id) && !tried.has(id);
  if (o.prefer !== undefined && free(o.prefer)) return o.prefer;
  const size = range.max - range.min + 1;
  for (let i = 0; i < 16; i++) {
    const id = range.min + Math.floor(o.random() * size);
    if (free(id)) return id;
  }
  // Crowded: count the free ids and take one of them at random.
  let count = 0;
  for (let id = range.min; id <= range.max; id++) if (free(id)) count++;
  if (count === 0) return undefined;
  let k = Math.floor(o.random() * count);
  for (let id = range.min; id <= range.max; id++) {
    if (!free(id)) continue;
    if (k-- === 0) return id;
  }
  return undefined;
}

export interface AllocatorOptions<T extends StoredIdentityLike> {
  store: IdentityStore<T>;
  log?: Logger;
  /** Ids known to be taken (an informer's view: a hint, never trusted for correctness). */
  knownIds?: () => Iterable<number>;
  /** Default 256..65535; tests use small ranges. */
  range?: IdentityRange;
  random?: () => number;
}

/** Failed creates (AlreadyExists) between two looks at whether someone else made S meanwhile. */
const RELOOK_EVERY = 8;
/** Whole allocations started over because our fresh object vanished (collected, deleted by hand). */
const MAX_RESTARTS = 5;

export class IdentityAllocator<T extends StoredIdentityLike = StoredIdentityLike> {
  readonly #store: IdentityStore<T>;
  readonly #log: Logger | undefined;
  readonly #knownIds: () => Iterable<number>;
  readonly range: IdentityRange;
  readonly #random: () => number;

  constructor(opts: AllocatorOptions<T>) {
    this.#store = opts.store;
    this.#log = opts.log;
    this.#knownIds = opts.knownIds ?? (() => []);
    this.range = opts.range ?? CLUSTER_IDENTITY_RANGE;
    this.#random = opts.random ?? Math.random;
    if (!Number.isInteger(this.range.min) || !Number.isInteger(this.range.max) || this.range.min < CLUSTER_IDENTITY_RANGE.min
      || this.range.max > CLUSTER_IDENTITY_RANGE.max || this.range.min > this.range.max) {
      throw new IdentityError('E_IDENTITY_INVALID', `identity range ${this.range.min}..${this.range.max} is not inside ${CLUSTER_IDENTITY_RANGE.min}..${CLUSTER_IDENTITY_RANGE.max}`);
    }
  }

  /** The identity of `set`, without creating one: undefined when it has none. */
  async lookup(set: LabelSet): Promise<T | undefined> {
    return winnerOf(await this.#store.listByKey(labelsKey(set)), set);
  }

  /** The identity of `set`, created if it has none. `prefer`: the id to try
   *  first (the one the set had before its identity was collected). */
  async allocate(set: LabelSet, opts: { prefer?: number } = {}): Promise<Allocation<T>> {
    const key = labelsKey(set);
    for (let restart = 0; restart <= MAX_RESTARTS; restart++) {
      const existing = winnerOf(await this.#store.listByKey(key), set);
      if (existing) return { identity: existing, outcome: 'existing' };
      const tried = new Set<number>();
      let used = new Set(this.#knownIds());
      let listedAll = false;
      let created: T | undefined;
      while (!created) {
        const id = pickCandidate({ range: this.range, used, tried, ...(opts.prefer === undefined ? {} : { prefer: opts.prefer }), random: this.#random });
        if (id === undefined) {
          if (!listedAll) {
            // The hint may be stale or absent: ask the API server what is taken.
            used = await this.#store.listIds();
            listedAll = true;
            tried.clear();
            continue;
          }
          const size = this.range.max - this.range.min + 1;
          throw new IdentityError('E_IDENTITY_EXHAUSTED', `no free security identity in ${this.range.min}..${this.range.max}: all ${size} are in use (identity of ${canonicalLabelSet(set)})`);
        }
        const r = await this.#store.create(id, set);
        if (r !== 'exists') {
          created = r;
          break;
        }
        tried.add(id);
        if (tried.size % RELOOK_EVERY === 0) {
          // Someone else may have made S while we hunted for a free name.
          const other = winnerOf(await this.#store.listByKey(key), set);
          if (other) return { identity: other, outcome: 'existing' };
        }
      }
      const winner = winnerOf(await this.#store.listByKey(key), set);
      if (!winner) {
        // Our object is gone already (collected or deleted by hand): start over.
        this.#log?.warn({ identity: created.id, key }, 'identity vanished right after it was created; allocating again');
        continue;
      }
      if (winner.id === created.id) return { identity: created, outcome: 'created' };
      this.#log?.info({ identity: created.id, winner: winner.id, key }, 'lost an identity race: another allocator created this label set first; deleting ours');
      try {
        await this.#store.delete(created);
      } catch (err) {
        // Left for the operator's collector, which removes any identity of a
        // set that is not the set's lowest once its grace period is over.
        this.#log?.warn({ identity: created.id, err: (err as Error).message }, 'losing identity not deleted; the operator will collect it');
      }
      return { identity: winner, outcome: 'lost-race' };
    }
    throw new IdentityError('E_IDENTITY_VANISHED', `identity of ${canonicalLabelSet(set)}: created ${MAX_RESTARTS + 1} times and deleted each time before it could be read back`);
  }
}
