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
  /** One bit per id from min on, grown as ids are taken: a million backend
   *  ids take 128 KiB here, where a Set of them took about 30 MB. */
  #bits = new Uint32Array(64);
  #size = 0;
  #next: number;

  constructor(name: string, min: number, max: number) {
    this.name = name;
    this.min = min;
    this.max = max;
    this.#next = min;
  }

  get size(): number {
    return this.#size;
  }

  has(id: number): boolean {
    if (id < this.min || id > this.max) return false;
    const i = id - this.min;
    const w = i >>> 5;
    return w < this.#bits.length && (this.#bits[w]! & (1 << (i & 31))) !== 0;
  }

  #mark(id: number, used: boolean): void {
    const i = id - this.min;
    const w = i >>> 5;
    if (w >= this.#bits.length) {
      if (!used) return;
      let len = this.#bits.length;
      while (len <= w) len *= 2;
      const grown = new Uint32Array(len);
      grown.set(this.#bits);
      this.#bits = grown;
    }
    const bit = 1 << (i & 31);
    const was = (this.#bits[w]! & bit) !== 0;
    if (was === used) return;
    this.#bits[w] = used ? this.#bits[w]! | bit : this.#bits[w]! & ~bit;
    this.#size += used ? 1 : -1;
  }

  /** Mark an id found in a pinned map as taken. false if out of range or taken. */
  adopt(id: number): boolean {
    if (!Number.isInteger(id) || id < this.min || id > this.max || this.has(id)) return false;
    this.#mark(id, true);
    if (id >= this.#next) this.#next = id + 1 > this.max ? this.min : id + 1;
    return true;
  }

  acquire(): number {
    const span = this.max - this.min + 1;
    if (this.#size >= span) throw new IdExhaustedError(`${this.name}: all ${span} ids are in use`);
    let id = this.#next;
    while (this.has(id)) id = id >= this.max ? this.min : id + 1;
    this.#mark(id, true);
    this.#next = id >= this.max ? this.min : id + 1;
    return id;
  }

  release(id: number): void {
    if (id >= this.min && id <= this.max) this.#mark(id, false);
  }
}

/** Ids named by string keys: an IdPool that also remembers which key holds
 *  which id (frontends, whose keys the reconciler needs back). */
export class IdAllocator {
  readonly #pool: IdPool;
  readonly #byKey = new Map<string, number>();

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

  /** Record an id found in a pinned map. A clash keeps the first owner and returns false. */
  adopt(key: string, id: number): boolean {
    if (this.#byKey.has(key) || !this.#pool.adopt(id)) return false;
    this.#byKey.set(key, id);
    return true;
  }

  acquire(key: string): number {
    const have = this.#byKey.get(key);
    if (have !== undefined) return have;
    const id = this.#pool.acquire();
    this.#byKey.set(key, id);
    return id;
  }

  entries(): IterableIterator<[string, number]> {
    return this.#byKey.entries();
  }

  release(key: string): void {
    const id = this.#byKey.get(key);
    if (id === undefined) return;
    this.#byKey.delete(key);
    this.#pool.release(id);
  }
}
