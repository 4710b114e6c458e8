// A map from a key to a set of values, for indexes where one value per key is
// the rule (a Service's EndpointSlices, the Services claiming one address): a
// key with one value holds it directly and gets a Set only when a second
// arrives, so 100 000 keys cost 100 000 map entries, not 100 000 Sets too
// (a Set with its table is about 200 bytes). Keys whose last value goes are
// removed.
export class MultiMap<K, V> {
  readonly #m = new Map<K, V | Set<V>>();

  get size(): number {
    return this.#m.size;
  }

  add(key: K, value: V): void {
    const had = this.#m.get(key);
    if (had === undefined) this.#m.set(key, value);
    else if (had instanceof Set) had.add(value);
    else if (had !== value) this.#m.set(key, new Set([had, value]));
  }

  delete(key: K, value: V): boolean {
    const had = this.#m.get(key);
    if (had === undefined) return false;
    if (!(had instanceof Set)) {
      if (had !== value) return false;
      this.#m.delete(key);
      return true;
    }
    if (!had.delete(value)) return false;
    if (had.size === 1) this.#m.set(key, had.values().next().value as V);
    return true;
  }

  /** The values of a key (none: empty). */
  get(key: K): Iterable<V> {
    const had = this.#m.get(key);
    if (had === undefined) return [];
    return had instanceof Set ? had : [had];
  }

  has(key: K, value?: V): boolean {
    const had = this.#m.get(key);
    if (had === undefined) return false;
    if (value === undefined) return true;
    return had instanceof Set ? had.has(value) : had === value;
  }

  count(key: K): number {
    const had = this.#m.get(key);
    return had === undefined ? 0 : had instanceof Set ? had.size : 1;
  }

  keys(): IterableIterator<K> {
    return this.#m.keys();
  }
}
