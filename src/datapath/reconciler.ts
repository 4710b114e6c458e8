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
import type { MapIO } from './map-io.ts';
import { toMapError } from './map-io.ts';

/** Keys and values are kept as latin1 strings of their bytes: compact and comparable with ===. */
export type Bytes = string;

export interface FamilyMap {
  io: MapIO;
  upsertPhase(key: Bytes): number;
  deletePhase(key: Bytes): number;
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
