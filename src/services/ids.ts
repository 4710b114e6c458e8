// Numeric ids for frontends and backends, stable for as long as the thing
// they name exists. A restarted agent adopts the ids it finds in the pinned
// maps, so live flows and affinity entries keep meaning the same thing.
// Freed ids are reused last (allocation continues after the newest id), so an
// id that an old affinity entry still holds is rarely handed out again soon.

export class IdExhaustedError extends Error {
  readonly code = 'EIDEXHAUSTED';
}

export class IdAllocator {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly #byKey = new Map<string, number>();
  readonly #byId = new Map<number, string>();
  #next: number;

  constructor(name: string, min: number, max: number) {
    this.name = name;
    this.min = min;
    this.max = max;
    this.#next = min;
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
    if (id < this.min || id > this.max || this.#byId.has(id) || this.#byKey.has(key)) return false;
    this.#byKey.set(key, id);
    this.#byId.set(id, key);
    if (id >= this.#next) this.#next = id + 1 > this.max ? this.min : id + 1;
    return true;
  }

  acquire(key: string): number {
    const have = this.#byKey.get(key);
    if (have !== undefined) return have;
    const span = this.max - this.min + 1;
    if (this.#byId.size >= span) throw new IdExhaustedError(`${this.name}: all ${span} ids are in use`);
    let id = this.#next;
    while (this.#byId.has(id)) id = id >= this.max ? this.min : id + 1;
    this.#byKey.set(key, id);
    this.#byId.set(id, key);
    this.#next = id >= this.max ? this.min : id + 1;
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
  }
}
