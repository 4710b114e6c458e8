// The narrow interface reconcilers write maps through, and its three
// implementations: the real BPF map (native addon), an in-memory map for unit
// tests, and a wrapper that injects failures.

export interface MapDump {
  keys: Uint8Array;
  values: Uint8Array;
  count: number;
}

export interface MapIO {
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  lookup(key: Uint8Array): Uint8Array | undefined;
  update(key: Uint8Array, value: Uint8Array): void;
  /** false when the key was not there (not an error: deleting is idempotent). */
  delete(key: Uint8Array): boolean;
  /** `count` keys and values laid end to end. */
  updateBatch(keys: Uint8Array, values: Uint8Array, count: number): void;
  deleteBatch(keys: Uint8Array, count: number): number;
  dump(): Promise<MapDump>;
}

/** A failed map operation, with the map and the kernel's errno. */
export class MapError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly op: string;
  readonly map: string;
  constructor(map: string, op: string, code: string, errno: number, options?: ErrorOptions) {
    super(`map ${map}: ${op} failed: ${code}`, options);
    this.name = 'MapError';
    this.map = map;
    this.op = op;
    this.code = code;
    this.errno = errno;
  }
}

interface NativeLikeError {
  code?: unknown;
  errno?: unknown;
  op?: unknown;
}

export function toMapError(map: string, op: string, err: unknown): MapError {
  if (err instanceof MapError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as NativeLikeError;
  return new MapError(
    map,
    typeof e.op === 'string' ? e.op : op,
    typeof e.code === 'string' ? e.code : 'EUNKNOWN',
    typeof e.errno === 'number' ? e.errno : 0,
    { cause: err },
  );
}

/** Worth retrying as is: the kernel was short of something for a moment. */
export function isRetriable(err: unknown): boolean {
  const code = (err as NativeLikeError | null)?.code;
  return code === 'EAGAIN' || code === 'ENOMEM' || code === 'EBUSY' || code === 'EINTR';
}

/** The map has no room for another entry. */
export function isMapFull(err: unknown): boolean {
  return (err as NativeLikeError | null)?.code === 'E2BIG';
}

function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

/** In-memory map with the kernel's semantics that matter: fixed sizes, a capacity (E2BIG). */
export class MemoryMapIO implements MapIO {
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly entries = new Map<string, Uint8Array>();

  constructor(name: string, keySize: number, valueSize: number, maxEntries: number) {
    this.name = name;
    this.keySize = keySize;
    this.valueSize = valueSize;
    this.maxEntries = maxEntries;
  }

  #check(key: Uint8Array, value?: Uint8Array): void {
    if (key.length !== this.keySize || (value && value.length !== this.valueSize)) {
      throw new MapError(this.name, 'update', 'EINVAL', 22);
    }
  }

  lookup(key: Uint8Array): Uint8Array | undefined {
    this.#check(key);
    const v = this.entries.get(keyString(key));
    return v ? v.slice() : undefined;
  }

  update(key: Uint8Array, value: Uint8Array): void {
    this.#check(key, value);
    const k = keyString(key);
    if (!this.entries.has(k) && this.entries.size >= this.maxEntries) {
      throw new MapError(this.name, 'bpf_map_update_elem', 'E2BIG', 7);
    }
    // a copy, as the kernel makes (Buffer#slice would be a view of the caller's buffer)
    this.entries.set(k, Uint8Array.prototype.slice.call(value));
  }

  delete(key: Uint8Array): boolean {
    this.#check(key);
    return this.entries.delete(keyString(key));
  }

  updateBatch(keys: Uint8Array, values: Uint8Array, count: number): void {
    for (let i = 0; i < count; i++) {
      this.update(keys.subarray(i * this.keySize, (i + 1) * this.keySize), values.subarray(i * this.valueSize, (i + 1) * this.valueSize));
    }
  }

  deleteBatch(keys: Uint8Array, count: number): number {
    let n = 0;
    for (let i = 0; i < count; i++) if (this.delete(keys.subarray(i * this.keySize, (i + 1) * this.keySize))) n++;
    return n;
  }

  async dump(): Promise<MapDump> {
    const keys = new Uint8Array(this.entries.size * this.keySize);
    const values = new Uint8Array(this.entries.size * this.valueSize);
    let i = 0;
    for (const [k, v] of this.entries) {
      keys.set(Buffer.from(k, 'latin1'), i * this.keySize);
      values.set(v, i * this.valueSize);
      i++;
    }
    return { keys, values, count: this.entries.size };
  }
}

export type FaultOp = 'update' | 'delete' | 'dump';

/** Wraps a MapIO and fails the operations a rule picks, with a chosen errno. */
export class FaultyMapIO implements MapIO {
  readonly inner: MapIO;
  #rule: ((op: FaultOp, key?: Uint8Array) => string | undefined) | undefined;

  constructor(inner: MapIO) {
    this.inner = inner;
  }

  get name(): string {
    return this.inner.name;
  }
  get keySize(): number {
    return this.inner.keySize;
  }
  get valueSize(): number {
    return this.inner.valueSize;
  }
  get maxEntries(): number {
    return this.inner.maxEntries;
  }

  /** rule returns an errno name (e.g. 'ENOMEM') to fail the operation, undefined to let it through. */
  failWhen(rule: ((op: FaultOp, key?: Uint8Array) => string | undefined) | undefined): void {
    this.#rule = rule;
  }

  #maybeFail(op: FaultOp, key?: Uint8Array): void {
    const code = this.#rule?.(op, key);
    if (code) throw new MapError(this.name, op, code, 0);
  }

  lookup(key: Uint8Array): Uint8Array | undefined {
    return this.inner.lookup(key);
  }
  update(key: Uint8Array, value: Uint8Array): void {
    this.#maybeFail('update', key);
    this.inner.update(key, value);
  }
  delete(key: Uint8Array): boolean {
    this.#maybeFail('delete', key);
    return this.inner.delete(key);
  }
  updateBatch(keys: Uint8Array, values: Uint8Array, count: number): void {
    const ks = this.inner.keySize;
    const vs = this.inner.valueSize;
    for (let i = 0; i < count; i++) this.update(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
  }
  deleteBatch(keys: Uint8Array, count: number): number {
    const ks = this.inner.keySize;
    let n = 0;
    for (let i = 0; i < count; i++) if (this.delete(keys.subarray(i * ks, (i + 1) * ks))) n++;
    return n;
  }
  async dump(): Promise<MapDump> {
    this.#maybeFail('dump');
    return this.inner.dump();
  }
}
