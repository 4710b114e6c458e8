// Keeps a family of BPF maps equal to a desired state.
//  - What the maps hold is read from the kernel (adopted on start, re-read on
//    every full resync) and then tracked through our own writes.
//  - A plan lists only the entries that differ; writing an entry that is
//    already right is skipped, deleting one that is gone is success.
//  - Operations run in phases chosen by the family (e.g. backends before the
//    slots that name them, slots before the master that counts them), so a
//    packet never finds a half-written Service. A failing phase stops the
//    plan: later phases, which depend on it, are not run.
//  - Consecutive operations of one phase on one map go in batches.
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
  value?: Bytes;
  phase: number;
}

export interface ApplyStats {
  upserts: number;
  deletes: number;
  durationMs: number;
}

/** value undefined: the key must not exist. */
export type Desired = Map<string, Map<Bytes, Bytes | undefined>>;

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

const BATCH = 8192;

export function toBytes(b: Uint8Array): Bytes {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

export function fromBytes(s: Bytes): Buffer {
  return Buffer.from(s, 'latin1');
}

export class MapFamilyReconciler {
  readonly name: string;
  readonly #maps = new Map<string, FamilyMap>();
  readonly #actual = new Map<string, Map<Bytes, Bytes>>();

  constructor(name: string, maps: FamilyMap[]) {
    this.name = name;
    for (const m of maps) {
      this.#maps.set(m.io.name, m);
      this.#actual.set(m.io.name, new Map());
    }
  }

  /** What we believe the map holds (kernel contents as of the last refresh, plus our writes since). */
  actual(map: string): ReadonlyMap<Bytes, Bytes> {
    return this.#actual.get(map) ?? new Map();
  }

  /** Re-read every map from the kernel. */
  async refresh(): Promise<void> {
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
      this.#actual.set(name, entries);
    }
  }

  /** The operations that turn the maps into `desired`. With prune, entries not in
   *  `desired` at all are deleted too (a full resync); without, only mentioned keys change. */
  plan(desired: Desired, prune: boolean): Op[] {
    const ops: Op[] = [];
    for (const [name, m] of this.#maps) {
      const want = desired.get(name) ?? new Map<Bytes, Bytes | undefined>();
      const have = this.#actual.get(name) ?? new Map<Bytes, Bytes>();
      for (const [key, value] of want) {
        const cur = have.get(key);
        if (value === undefined) {
          if (cur !== undefined) ops.push({ map: name, kind: 'delete', key, phase: m.deletePhase(key) });
        } else if (cur !== value) {
          ops.push({ map: name, kind: 'upsert', key, value, phase: m.upsertPhase(key) });
        }
      }
      if (prune) {
        for (const key of have.keys()) {
          if (!want.has(key)) ops.push({ map: name, kind: 'delete', key, phase: m.deletePhase(key) });
        }
      }
    }
    // Stable: within a phase, keep the order the entries came in.
    return ops.map((op, i) => ({ op, i })).sort((a, b) => a.op.phase - b.op.phase || a.i - b.i).map((x) => x.op);
  }

  /** Run a plan. Throws ReconcileError at the first operation that fails; the
   *  caller retries (a full resync re-reads the kernel first). */
  execute(ops: Op[]): ApplyStats {
    const start = performance.now();
    const stats: ApplyStats = { upserts: 0, deletes: 0, durationMs: 0 };
    let i = 0;
    while (i < ops.length) {
      const first = ops[i] as Op;
      let j = i + 1;
      while (j < ops.length && j - i < BATCH) {
        const o = ops[j] as Op;
        if (o.phase !== first.phase || o.map !== first.map || o.kind !== first.kind) break;
        j++;
      }
      this.#run(ops.slice(i, j), stats);
      i = j;
    }
    stats.durationMs = performance.now() - start;
    return stats;
  }

  #run(group: Op[], stats: ApplyStats): void {
    const first = group[0] as Op;
    const m = this.#maps.get(first.map);
    const have = this.#actual.get(first.map);
    if (!m || !have) throw new Error(`reconciler ${this.name}: unknown map ${first.map}`);
    const ks = m.io.keySize;
    const vs = m.io.valueSize;
    if (group.length > 1) {
      const keys = Buffer.alloc(group.length * ks);
      group.forEach((op, n) => keys.write(op.key, n * ks, 'latin1'));
      try {
        if (first.kind === 'upsert') {
          const values = Buffer.alloc(group.length * vs);
          group.forEach((op, n) => values.write(op.value ?? '', n * vs, 'latin1'));
          m.io.updateBatch(keys, values, group.length);
          for (const op of group) have.set(op.key, op.value ?? '');
          stats.upserts += group.length;
        } else {
          m.io.deleteBatch(keys, group.length);
          for (const op of group) have.delete(op.key);
          stats.deletes += group.length;
        }
        return;
      } catch {
        // A batch stops at its first failing entry without saying which one
        // reliably; redo the group one by one to find it (and to report it).
      }
    }
    for (const op of group) {
      try {
        if (op.kind === 'upsert') {
          m.io.update(fromBytes(op.key), fromBytes(op.value ?? ''));
          have.set(op.key, op.value ?? '');
          stats.upserts++;
        } else {
          m.io.delete(fromBytes(op.key));
          have.delete(op.key);
          stats.deletes++;
        }
      } catch (err) {
        throw new ReconcileError(op, { ...stats }, toMapError(op.map, op.kind, err));
      }
    }
  }
}
