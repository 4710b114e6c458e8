// A view of the cluster's identities, fed by a HyphaIdentity informer: by id,
// and by label-set key with that set's winner (lowest creation revision, the
// allocator's rule). Pure. A view lags the API server; it answers "what is
// identity 4711" and "which id do other nodes' pods of this set have", never
// "which id may I hand out" (that takes the allocator's consistent read).
import type { StoredIdentityLike } from './allocator.ts';
import { canonicalLabelSet } from './labels.ts';

export interface CachedIdentity extends StoredIdentityLike {
  key: string;
}

export class IdentityCache<T extends CachedIdentity = CachedIdentity> {
  readonly #byId = new Map<number, T>();
  readonly #byKey = new Map<string, Set<T>>();

  get size(): number {
    return this.#byId.size;
  }

  get(id: number): T | undefined {
    return this.#byId.get(id);
  }

  ids(): IterableIterator<number> {
    return this.#byId.keys();
  }

  list(): T[] {
    return [...this.#byId.values()].sort((a, b) => a.id - b.id);
  }

  /** Add or replace (by id). Returns the identity it replaced, if any. */
  upsert(identity: T): T | undefined {
    const before = this.#byId.get(identity.id);
    if (before) this.#unindex(before);
    this.#byId.set(identity.id, identity);
    let set = this.#byKey.get(identity.key);
    if (!set) this.#byKey.set(identity.key, (set = new Set()));
    set.add(identity);
    return before;
  }

  delete(id: number): T | undefined {
    const before = this.#byId.get(id);
    if (!before) return undefined;
    this.#byId.delete(id);
    this.#unindex(before);
    return before;
  }

  #unindex(identity: T): void {
    const set = this.#byKey.get(identity.key);
    set?.delete(identity);
    if (set?.size === 0) this.#byKey.delete(identity.key);
  }

  /** Every identity with this key (any set that hashes to it). */
  withKey(key: string): T[] {
    return [...(this.#byKey.get(key) ?? [])];
  }

  /** The winner of the set with this key and canonical form: lowest revision, not being deleted. */
  winner(key: string, canonical?: string): T | undefined {
    let best: T | undefined;
    for (const c of this.#byKey.get(key) ?? []) {
      if (c.deleting || (canonical !== undefined && canonicalLabelSet(c) !== canonical)) continue;
      if (!best || c.revision < best.revision || (c.revision === best.revision && c.id < best.id)) best = c;
    }
    return best;
  }
}
