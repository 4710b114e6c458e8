// Numeric ids for frontends and backends, stable for as long as the thing
// they name exists. A restarted agent adopts the ids it finds in the pinned
// maps, so live flows and affinity entries keep meaning the same thing.
// Freed ids are reused last (allocation continues after the newest id), so an
// id that an old affinity entry still holds is rarely handed out again soon.

export class IdExhaustedError extends Error {
  readonly code = 'EIDEXHAUSTED';
}

/** Numeric ids without keys: which are taken, and the next one to hand out.
 *  Whoever holds an id remembers what it names (the LB table keeps each
 *  frontend's backend -> id map), so a large cluster carries no key strings. */
export class IdPool {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly #used = new Set<number>();
  #next: number;

  constructor(name: string, min: number, max: number) {
    this.name = name;
    this.min = min;
    this.max = max;
    this.#next = min;
  }

  get size(): number {
    return this.#used.size;
  }

  has(id: number): boolean {
    return this.#used.has(id);
  }

  /** Mark an id found in a pinned map as taken. false if out of range or taken. */
  adopt(id: number): boolean {
    if (id < this.min || id > this.max || this.#used.has(id)) return false;
    this.#used.add(id);
    if (id >= this.#next) this.#next = id + 1 > this.max ? this.min : id + 1;
    return true;
  }

  acquire(): number {
    const span = this.max - this.min + 1;
    if (this.#used.size >= span) throw new IdExhaustedError(`${this.name}: all ${span} ids are in use`);
    let id = this.#next;
    while (this.#used.has(id)) id = id >= this.max ? this.min : id + 1;
    this.#used.add(id);
    this.#next = id >= this.max ? this.min : id + 1;
    return id;
  }

  release(id: number): void {
    this.#used.delete(id);
  }
}

/** Ids named by string keys: an IdPool that also remembers which key holds
 *  which id (frontends, whose keys the reconciler needs back). */
export class IdAllocator {
  readonly #pool: IdPool;
  readonly #byKey = new Map<string, number>();
  readonly #byId = new Map<number, string>();

  constructor(name: string, min: number, max: number) {
    this.#pool = new IdPool(name, min, max);
  }

  get name(): string {
    return this.#pool.name;
  }

  get min(): number {
    return this.#pool.min;
  }

  get max(): number {
    return this.#pool.max;
  }

  get size(): number {
    return this.#byKey.size;
  }

  get(key: string): number | undefined {
    return this.#byKey.get(key);
  }

  keyOf(id: number): string | undefined {
    return this.#byId.get(id);
  }

  /** Record an id found in a pinned map. A clash keeps the first owner and returns false. */
  adopt(key: string, id: number): boolean {
    if (this.#byKey.has(key) || !this.#pool.adopt(id)) return false;
    this.#byKey.set(key, id);
    this.#byId.set(id, key);
    return true;
  }

  acquire(key: string): number {
    const have = this.#byKey.get(key);
    if (have !== undefined) return have;
    const id = this.#pool.acquire();
    this.#byKey.set(key, id);
    this.#byId.set(id, key);
    return id;
  }

  entries(): IterableIterator<[string, number]> {
    return this.#byKey.entries();
  }

  release(key: string): void {
    const id = this.#byKey.get(key);
    if (id === undefined) return;
    this.#byKey.delete(key);
    this.#byId.delete(id);
    this.#pool.release(id);
  }
}
