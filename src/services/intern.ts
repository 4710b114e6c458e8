// Sharing of values that repeat across a large cluster's objects: node
// names (one per endpoint, a few distinct), namespaces, port lists. Parsed
// JSON gives every occurrence its own string or array; interned, 1 000 000
// endpoints on 100 nodes hold 100 node-name strings. Bounded: past `max`
// distinct values a table stops sharing new ones (they are kept as given),
// so a stream of unique values cannot grow it without limit.

export class Interner<T> {
  readonly #max: number;
  readonly #m = new Map<string, T>();

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#m.size;
  }

  /** The shared value for `key`, made by `make` the first time. */
  get(key: string, make: () => T): T {
    const had = this.#m.get(key);
    if (had !== undefined) return had;
    const v = make();
    if (this.#m.size < this.#max) this.#m.set(key, v);
    return v;
  }
}

const strings = new Interner<string>(50_000);

/** One shared copy of a short string that repeats (node names, namespaces, port names). */
export function internString(s: string): string {
  if (s.length > 253) return s;
  return strings.get(s, () => s);
}

/** One frozen empty array for every empty list. */
export const EMPTY: readonly never[] = Object.freeze([]);
