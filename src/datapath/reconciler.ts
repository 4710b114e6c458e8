// Keeps a family of BPF maps equal to a desired state.
//  - A full plan compares the desired state with what the kernel holds (read
//    just before) and prunes what nothing wants; the copy is dropped after.
//  - An incremental plan compares a change's before and after: it needs no
//    copy of the maps in memory (a large cluster's maps hold millions of
//    entries). Drift is repaired by the next full plan.
//  - Writing an entry that is already right is skipped, deleting one that is
//    gone is success.
//  - Operations run in phases chosen by the family (e.g. backends before the
//    slots that name them, slots before the master that counts them), so a
//    packet never finds a half-written Service. A failing phase stops the
//    plan: later phases, which depend on it, are not run.
//  - A plan is batches of parallel key and value lists (no object per entry:
//    a cold start plans hundreds of thousands of writes), written to the
//    kernel in chunks.
//  - syncFull is a full plan that is never whole in memory: the desired
//    entries are compared, as they are visited, with the kernel's dump kept
//    as its raw buffers and an index over them (KernelIndex), and written in
//    chunks as they fill, each chunk after the chunks of earlier phases;
//    what nothing wanted is deleted last. A million-entry resync holds a
//    chunk per map and phase, not a million strings.
import type { MapDump, MapIO } from './map-io.ts';
import { toMapError } from './map-io.ts';

/** Keys and values are kept as latin1 strings of their bytes: compact and comparable with ===. */
export type Bytes = string;

export interface FamilyMap {
  io: MapIO;
  upsertPhase(key: Bytes): number;
  deletePhase(key: Bytes): number;
  /** upsertPhase from the key's bytes at `keyOff` of `src` (syncFull);
   *  without it, upsertPhase of the key as a string. */
  upsertPhaseAt?(src: Buffer, keyOff: number): number;
}

export interface Op {
  map: string;
  kind: 'upsert' | 'delete';
  key: Bytes;
}

/** Operations of one kind on one map within one phase. */
export interface Batch {
  phase: number;
  map: string;
  kind: 'upsert' | 'delete';
  keys: Bytes[];
  /** Parallel to keys for upserts; empty for deletes. */
  values: Bytes[];
}

/** Batches in the order they must run. */
export type Plan = Batch[];

export interface ApplyStats {
  upserts: number;
  deletes: number;
  durationMs: number;
}

/** value undefined: the key must not exist. */
export type Desired = Map<string, Map<Bytes, Bytes | undefined>>;

/** Visits every desired (map, key, value). */
export type DesiredSource = (emit: (map: string, key: Bytes, value: Bytes) => void) => void;

/** One desired entry as bytes: its key at `keyOff` and its value at
 *  `valOff` of `src` (the map's key and value sizes), read before it returns. */
export type EntrySink = (src: Buffer, keyOff: number, valOff: number) => void;

/** Gives every desired entry of each map to that map's sink (syncFull). */
export type DesiredBytes = (sinkOf: (map: string) => EntrySink) => void;

export class ReconcileError extends Error {
  readonly code = 'ERECONCILE';
  readonly stats: ApplyStats;
  readonly op: Op;
  constructor(op: Op, stats: ApplyStats, cause: unknown) {
    super(`${op.kind} in map ${op.map} failed: ${(cause as Error).message}`, { cause });
    this.name = 'ReconcileError';
    this.op = op;
    this.stats = stats;
  }
}

const CHUNK = 8192;

export function toBytes(b: Uint8Array): Bytes {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

export function fromBytes(s: Bytes): Buffer {
  return Buffer.from(s, 'latin1');
}

class PlanBuilder {
  readonly #batches = new Map<string, Batch>();

  add(phase: number, map: string, kind: 'upsert' | 'delete', key: Bytes, value?: Bytes): void {
    const id = `${phase}|${map}|${kind}`;
    let b = this.#batches.get(id);
    if (!b) this.#batches.set(id, (b = { phase, map, kind, keys: [], values: [] }));
    b.keys.push(key);
    if (value !== undefined) b.values.push(value);
  }

  build(): Plan {
    return [...this.#batches.values()].sort((a, b) => a.phase - b.phase);
  }
}

export function planSize(plan: Plan): number {
  return plan.reduce((n, b) => n + b.keys.length, 0);
}

export class MapFamilyReconciler {
  readonly name: string;
  readonly #maps = new Map<string, FamilyMap>();
  /** The kernel's contents from the last refresh(), until release(). */
  #actual = new Map<string, Map<Bytes, Bytes>>();

  constructor(name: string, maps: FamilyMap[]) {
    this.name = name;
    for (const m of maps) this.#maps.set(m.io.name, m);
  }

  /** The maps as read by the last refresh() (empty after release()). */
  actual(map: string): ReadonlyMap<Bytes, Bytes> {
    return this.#actual.get(map) ?? new Map();
  }

  /** Forget the copy refresh() made. */
  release(): void {
    this.#actual = new Map();
  }

  /** Re-read every map from the kernel. */
  async refresh(): Promise<void> {
    const actual = new Map<string, Map<Bytes, Bytes>>();
    for (const [name, m] of this.#maps) {
      let dump;
      try {
        dump = await m.io.dump();
      } catch (err) {
        throw toMapError(name, 'dump', err);
      }
      const entries = new Map<Bytes, Bytes>();
      const ks = m.io.keySize;
      const vs = m.io.valueSize;
      const keys = Buffer.from(dump.keys.buffer, dump.keys.byteOffset, dump.keys.byteLength);
      const values = Buffer.from(dump.values.buffer, dump.values.byteOffset, dump.values.byteLength);
      for (let i = 0; i < dump.count; i++) {
        entries.set(keys.toString('latin1', i * ks, (i + 1) * ks), values.toString('latin1', i * vs, (i + 1) * vs));
      }
      actual.set(name, entries);
    }
    this.#actual = actual;
  }

  #map(name: string): FamilyMap {
    const m = this.#maps.get(name);
    if (!m) throw new Error(`reconciler ${this.name}: unknown map ${name}`);
    return m;
  }

  /** Everything that turns the maps as refresh() read them into `desired`,
   *  deleting whatever `desired` does not name (a full resync). */
  planFull(desired: DesiredSource): Plan {
    const plan = new PlanBuilder();
    const seen = new Map<string, Set<Bytes>>();
    desired((map, key, value) => {
      const m = this.#map(map);
      const have = this.#actual.get(map);
      if (have && have.size > 0) {
        let s = seen.get(map);
        if (!s) seen.set(map, (s = new Set()));
        s.add(key);
      }
      if (have?.get(key) !== value) plan.add(m.upsertPhase(key), map, 'upsert', key, value);
    });
    for (const [map, have] of this.#actual) {
      const m = this.#map(map);
      const s = seen.get(map);
      for (const key of have.keys()) if (!s?.has(key)) plan.add(m.deletePhase(key), map, 'delete', key);
    }
    return plan.build();
  }

  /**
   * A full resync without a plan in memory: reads every map, visits
   * `desired` and writes what differs in chunks as they fill (a chunk of a
   * phase is written only after the pending chunks of earlier phases, so
   * the phase order holds for every entry visited before it), then deletes
   * what the kernel held and nothing visited, in delete-phase order.
   * Throws ReconcileError at the first failing operation (what ran before
   * it stays written; the caller retries).
   *
   * Entries come as bytes and are compared and copied as bytes: a cold
   * start visits millions, and a string per key and value (or per chunk
   * looked up by name) was most of a 100 000-Service sync's time.
   */
  async syncFull(desired: DesiredBytes): Promise<ApplyStats> {
    const start = performance.now();
    const held = new Map<string, KernelIndex>();
    for (const [name, m] of this.#maps) {
      let dump: MapDump;
      try {
        dump = await m.io.dump();
      } catch (err) {
        throw toMapError(name, 'dump', err);
      }
      held.set(name, new KernelIndex(dump, m.io.keySize, m.io.valueSize));
    }
    const stats: ApplyStats = { upserts: 0, deletes: 0, durationMs: 0 };
    // Pending operations are bytes in a chunk-sized buffer, not strings: a
    // string kept until its chunk fills outlives the young generation and
    // piles up in the old one (measured: +260 MB at 100 000 Services).
    const pending: ChunkBuffer[] = [];
    const flush = (upTo: number): void => {
      const due = pending.filter((c) => c.phase <= upTo && c.n > 0).sort((a, b) => a.phase - b.phase);
      for (const c of due) this.#runChunk(c, stats);
    };
    /** A map's chunks of one kind, by phase. */
    const chunks = (map: string, kind: 'upsert' | 'delete'): ((phase: number) => ChunkBuffer) => {
      const io = this.#map(map).io;
      const byPhase: ChunkBuffer[] = [];
      return (phase) => {
        let c = byPhase[phase];
        if (!c) pending.push((c = byPhase[phase] = new ChunkBuffer(phase, map, kind, io.keySize, kind === 'upsert' ? io.valueSize : 0)));
        return c;
      };
    };
    const sinks = new Map<string, EntrySink>();
    desired((map) => {
      let sink = sinks.get(map);
      if (sink) return sink;
      const m = this.#map(map);
      const k = held.get(map)!;
      const upserts = chunks(map, 'upsert');
      const ks = m.io.keySize;
      sink = (src, keyOff, valOff) => {
        const i = k.findAt(src, keyOff);
        if (i >= 0) {
          k.seen(i);
          if (k.valueIsAt(i, src, valOff)) return;
        }
        const phase = m.upsertPhaseAt ? m.upsertPhaseAt(src, keyOff) : m.upsertPhase(src.toString('latin1', keyOff, keyOff + ks));
        if (upserts(phase).pushAt(src, keyOff, valOff) >= CHUNK) flush(phase);
      };
      sinks.set(map, sink);
      return sink;
    });
    flush(Number.POSITIVE_INFINITY);
    for (const [map, k] of held) {
      const m = this.#map(map);
      const deletes = chunks(map, 'delete');
      k.forUnseen((key) => {
        const phase = m.deletePhase(key);
        if (deletes(phase).push(key) >= CHUNK) flush(phase);
      });
    }
    flush(Number.POSITIVE_INFINITY);
    stats.durationMs = performance.now() - start;
    return stats;
  }

  /** One chunk of syncFull in one batch call; on failure one by one, to name the entry. */
  #runChunk(c: ChunkBuffer, stats: ApplyStats): void {
    const io = this.#map(c.map).io;
    const n = c.n;
    const ks = io.keySize;
    const vs = io.valueSize;
    const keys = c.keys.subarray(0, n * ks);
    c.n = 0;
    try {
      if (c.kind === 'upsert') {
        io.updateBatch(keys, c.values.subarray(0, n * vs), n);
        stats.upserts += n;
      } else {
        io.deleteBatch(keys, n);
        stats.deletes += n;
      }
      return;
    } catch {
      // which entry failed: one by one
    }
    for (let i = 0; i < n; i++) {
      const key = keys.subarray(i * ks, (i + 1) * ks);
      try {
        if (c.kind === 'upsert') {
          io.update(key, c.values.subarray(i * vs, (i + 1) * vs));
          stats.upserts++;
        } else {
          io.delete(key);
          stats.deletes++;
        }
      } catch (err) {
        throw new ReconcileError({ map: c.map, kind: c.kind, key: Buffer.from(key).toString('latin1') }, { ...stats }, toMapError(c.map, c.kind, err));
      }
    }
  }

  /** Only the keys `desired` mentions: written if they differ from what
   *  refresh() read, deleted (value undefined) if present. */
  plan(desired: Desired): Plan {
    const plan = new PlanBuilder();
    for (const [map, want] of desired) {
      const m = this.#map(map);
      const have = this.#actual.get(map);
      for (const [key, value] of want) {
        if (value === undefined) {
          if (have?.has(key)) plan.add(m.deletePhase(key), map, 'delete', key);
        } else if (have?.get(key) !== value) {
          plan.add(m.upsertPhase(key), map, 'upsert', key, value);
        }
      }
    }
    return plan.build();
  }

  /** The operations of one change: keys whose value differs between before
   *  and after are written, keys only in before are deleted. */
  planChange(before: Desired, after: Desired): Plan {
    const plan = new PlanBuilder();
    for (const [name, m] of this.#maps) {
      const was = before.get(name) ?? new Map<Bytes, Bytes | undefined>();
      const now = after.get(name) ?? new Map<Bytes, Bytes | undefined>();
      for (const [key, value] of now) {
        if (value !== undefined && was.get(key) !== value) plan.add(m.upsertPhase(key), name, 'upsert', key, value);
      }
      for (const key of was.keys()) if (!now.has(key)) plan.add(m.deletePhase(key), name, 'delete', key);
    }
    return plan.build();
  }

  /** Run a plan. Throws ReconcileError at the first operation that fails; the
   *  caller retries (a full resync re-reads the kernel first). */
  execute(plan: Plan): ApplyStats {
    const start = performance.now();
    const stats: ApplyStats = { upserts: 0, deletes: 0, durationMs: 0 };
    for (const b of plan) {
      for (let i = 0; i < b.keys.length; i += CHUNK) this.#run(b, i, Math.min(i + CHUNK, b.keys.length), stats);
    }
    stats.durationMs = performance.now() - start;
    return stats;
  }

  #run(b: Batch, from: number, to: number, stats: ApplyStats): void {
    const m = this.#map(b.map);
    const have = this.#actual.get(b.map);
    const ks = m.io.keySize;
    const vs = m.io.valueSize;
    const n = to - from;
    if (n > 1) {
      const keys = Buffer.alloc(n * ks);
      for (let i = 0; i < n; i++) keys.write(b.keys[from + i] ?? '', i * ks, 'latin1');
      try {
        if (b.kind === 'upsert') {
          const values = Buffer.alloc(n * vs);
          for (let i = 0; i < n; i++) values.write(b.values[from + i] ?? '', i * vs, 'latin1');
          m.io.updateBatch(keys, values, n);
          if (have) for (let i = from; i < to; i++) have.set(b.keys[i] ?? '', b.values[i] ?? '');
          stats.upserts += n;
        } else {
          m.io.deleteBatch(keys, n);
          if (have) for (let i = from; i < to; i++) have.delete(b.keys[i] ?? '');
          stats.deletes += n;
        }
        return;
      } catch {
        // A batch stops at its first failing entry without saying which one
        // reliably; redo the chunk one by one to find it (and to report it).
      }
    }
    for (let i = from; i < to; i++) {
      const key = b.keys[i] ?? '';
      try {
        if (b.kind === 'upsert') {
          const value = b.values[i] ?? '';
          m.io.update(fromBytes(key), fromBytes(value));
          have?.set(key, value);
          stats.upserts++;
        } else {
          m.io.delete(fromBytes(key));
          have?.delete(key);
          stats.deletes++;
        }
      } catch (err) {
        throw new ReconcileError({ map: b.map, kind: b.kind, key }, { ...stats }, toMapError(b.map, b.kind, err));
      }
    }
  }
}

/** Up to CHUNK operations of one kind on one map in one phase, as bytes. */
class ChunkBuffer {
  readonly phase: number;
  readonly map: string;
  readonly kind: 'upsert' | 'delete';
  readonly keys: Buffer;
  readonly values: Buffer;
  readonly #ks: number;
  readonly #vs: number;
  n = 0;

  constructor(phase: number, map: string, kind: 'upsert' | 'delete', keySize: number, valueSize: number) {
    this.phase = phase;
    this.map = map;
    this.kind = kind;
    this.#ks = keySize;
    this.#vs = valueSize;
    this.keys = Buffer.alloc(CHUNK * keySize);
    this.values = Buffer.alloc(CHUNK * valueSize);
  }

  /** Appends an entry from bytes (keySize at keyOff, valueSize at valOff); the count after. */
  pushAt(src: Buffer, keyOff: number, valOff: number): number {
    // Copied byte by byte: a native copy per 4-16 byte field costs more
    // than the copy.
    const ks = this.#ks;
    const keys = this.keys;
    for (let j = 0, d = this.n * ks; j < ks; j++) keys[d + j] = src[keyOff + j]!;
    const vs = this.#vs;
    const values = this.values;
    for (let j = 0, d = this.n * vs; j < vs; j++) values[d + j] = src[valOff + j]!;
    return ++this.n;
  }

  /** Appends a key (a delete's); the count after. */
  push(key: Bytes): number {
    const k = this.n * this.#ks;
    const kw = this.keys.write(key, k, this.#ks, 'latin1');
    if (kw < this.#ks) this.keys.fill(0, k + kw, k + this.#ks);
    return ++this.n;
  }
}

/**
 * A map's dump as the kernel gave it (two buffers) with an open-addressing
 * index over its keys, and a bit per entry for "visited": the full sync's
 * view of what the kernel holds, about keySize + valueSize + 8.5 bytes an
 * entry and no string or object per entry. Keys are looked up by their
 * bytes, wherever they are.
 */
export class KernelIndex {
  readonly #keys: Buffer;
  readonly #values: Buffer;
  readonly #ks: number;
  readonly #vs: number;
  readonly #count: number;
  /** Entry index + 1 per slot; 0: empty. */
  readonly #slots: Uint32Array;
  readonly #mask: number;
  readonly #seen: Uint8Array;

  constructor(dump: MapDump, keySize: number, valueSize: number) {
    this.#keys = Buffer.from(dump.keys.buffer, dump.keys.byteOffset, dump.keys.byteLength);
    this.#values = Buffer.from(dump.values.buffer, dump.values.byteOffset, dump.values.byteLength);
    this.#ks = keySize;
    this.#vs = valueSize;
    this.#count = dump.count;
    let size = 16;
    while (size < dump.count * 2) size *= 2;
    this.#slots = new Uint32Array(dump.count === 0 ? 1 : size);
    this.#mask = dump.count === 0 ? 0 : size - 1;
    this.#seen = new Uint8Array((dump.count + 7) >> 3);
    for (let i = 0; i < dump.count; i++) {
      let h = this.#hashAt(i) & this.#mask;
      while (this.#slots[h] !== 0) h = (h + 1) & this.#mask;
      this.#slots[h] = i + 1;
    }
  }

  get size(): number {
    return this.#count;
  }

  /** FNV-1a over entry i's key bytes. */
  #hashAt(i: number): number {
    let h = 0x811c9dc5;
    const o = i * this.#ks;
    for (let j = 0; j < this.#ks; j++) h = Math.imul(h ^ this.#keys[o + j]!, 0x01000193);
    return h >>> 0;
  }

  /** The entry whose key is the keySize bytes at `off` of `src`, or -1. */
  findAt(src: Buffer, off: number): number {
    if (this.#count === 0) return -1;
    const ks = this.#ks;
    let h = 0x811c9dc5;
    for (let j = 0; j < ks; j++) h = Math.imul(h ^ src[off + j]!, 0x01000193);
    let slot = (h >>> 0) & this.#mask;
    for (;;) {
      const e = this.#slots[slot]!;
      if (e === 0) return -1;
      const o = (e - 1) * ks;
      let same = true;
      for (let j = 0; j < ks; j++) {
        if (this.#keys[o + j] !== src[off + j]) {
          same = false;
          break;
        }
      }
      if (same) return e - 1;
      slot = (slot + 1) & this.#mask;
    }
  }

  /** Entry i's value is the valueSize bytes at `off` of `src`. */
  valueIsAt(i: number, src: Buffer, off: number): boolean {
    const vs = this.#vs;
    const o = i * vs;
    for (let j = 0; j < vs; j++) if (this.#values[o + j] !== src[off + j]) return false;
    return true;
  }

  seen(i: number): void {
    this.#seen[i >> 3]! |= 1 << (i & 7);
  }

  /** Every key not marked seen, as latin1 strings. */
  forUnseen(visit: (key: Bytes) => void): void {
    for (let i = 0; i < this.#count; i++) {
      if (this.#seen[i >> 3]! & (1 << (i & 7))) continue;
      visit(this.#keys.toString('latin1', i * this.#ks, (i + 1) * this.#ks));
    }
  }
}
