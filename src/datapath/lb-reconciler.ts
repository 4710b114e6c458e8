// Programs the load-balancer maps (services, backends) from the LB table.
// Safe order, so a packet never meets a half-written Service:
//   1 backends written  2 slots written  3 masters written (count switches)
//   4 masters deleted   5 slots deleted  6 backends deleted
// Backends that disappear from a Service stay out of its slots from phase 3
// on; flows already on them keep going (conntrack holds their address).
import type { Logger } from 'pino';
import type { MapIO } from './map-io.ts';
import { type ApplyStats, type Bytes, type Desired, MapFamilyReconciler, fromBytes } from './reconciler.ts';
import { type LbEntries, backendCodec, slotOfKey, svcKeyCodec, svcValCodec, u32Codec } from './lb-codecs.ts';
import type { LbTable, LbUpdate } from '../services/lb-table.ts';
import { frontendKey } from '../services/compile.ts';

export { backendCodec, svcKeyCodec, svcValCodec, u32Codec } from './lb-codecs.ts';

export const SERVICES_MAP = 'hypha_lb4_services_v1';
export const BACKENDS_MAP = 'hypha_lb4_backends_v1';
export const NAMES_MAP = 'hypha_lb4_names_v1';

const PROTO_NAME: Record<number, 'TCP' | 'UDP' | 'SCTP'> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

export interface LbMaps {
  services: MapIO;
  backends: MapIO;
  /** Frontend names for tools; optional so tests can leave it out. */
  names?: MapIO;
}

function addFlat(into: Map<Bytes, Bytes | undefined>, flat: readonly string[], keep: boolean): void {
  for (let i = 0; i < flat.length; i += 2) into.set(flat[i] as string, keep ? (flat[i + 1] as string) : undefined);
}

/** Encoded entries into the reconciler's desired form. */
export function desiredOf(e: LbEntries): Desired {
  const svc = new Map<Bytes, Bytes | undefined>();
  const be = new Map<Bytes, Bytes | undefined>();
  const names = new Map<Bytes, Bytes | undefined>();
  addFlat(svc, e.services, true);
  addFlat(be, e.backends, true);
  addFlat(names, e.names, true);
  return new Map([[SERVICES_MAP, svc], [BACKENDS_MAP, be], [NAMES_MAP, names]]);
}


export class LbReconciler {
  readonly family: MapFamilyReconciler;
  readonly #log: Logger | undefined;
  readonly #names: boolean;

  constructor(maps: LbMaps, log?: Logger) {
    this.#log = log;
    this.#names = maps.names !== undefined;
    this.family = new MapFamilyReconciler('lb', [
      ...(maps.names ? [{ io: maps.names, upsertPhase: () => 1, deletePhase: () => 6 }] : []),
      { io: maps.backends, upsertPhase: () => 1, deletePhase: () => 6 },
      {
        io: maps.services,
        upsertPhase: (k) => (slotOfKey(k) === 0 ? 3 : 2),
        deletePhase: (k) => (slotOfKey(k) === 0 ? 4 : 5),
      },
    ]);
  }

  /** Read the pinned maps and give the table the ids in them, so a restarted
   *  agent keeps every frontend and backend under the same id. */
  async adopt(table: LbTable): Promise<{ frontends: number; backends: number }> {
    await this.family.refresh();
    let frontends = 0;
    let backends = 0;
    for (const [k, v] of this.family.actual(SERVICES_MAP)) {
      const key = svcKeyCodec.decode(fromBytes(k));
      const val = svcValCodec.decode(fromBytes(v));
      const proto = PROTO_NAME[key.proto];
      if (key.slot !== 0 || !proto || val.svc_id === 0) continue;
      if (table.frontendIds.adopt(frontendKey(key.addr, key.dport, proto), val.svc_id)) frontends++;
    }
    for (const [k, v] of this.family.actual(BACKENDS_MAP)) {
      const id = u32Codec.decode(fromBytes(k)).value;
      const b = backendCodec.decode(fromBytes(v));
      const fk = table.frontendIds.keyOf(b.svc_id);
      if (fk !== undefined && table.adoptBackend(fk, `${b.addr}:${b.port}`, id)) backends++;
    }
    this.family.release();
    this.#log?.info({ reconciler: 'lb', frontends, backends }, 'adopted ids from pinned maps');
    return { frontends, backends };
  }

  /** Apply one incremental change (only the entries whose value changed). */
  apply(update: LbUpdate): ApplyStats {
    const before = desiredOf(update.before);
    const after = desiredOf(update.after);
    if (!this.#names) {
      before.delete(NAMES_MAP);
      after.delete(NAMES_MAP);
    }
    return this.family.execute(this.family.planChange(before, after));
  }

  /** Re-read the maps and make them equal the whole table: repairs drift and
   *  prunes what nothing wants (entries left by a Service deleted while the
   *  agent was down, or written by hand). */
  async resync(table: LbTable): Promise<ApplyStats> {
    await this.family.refresh();
    try {
      return this.family.execute(this.family.planFull((emit) => {
        table.forEachEntry((services, backends, names) => {
          for (let i = 0; i < services.length; i += 2) emit(SERVICES_MAP, services[i] as string, services[i + 1] as string);
          for (let i = 0; i < backends.length; i += 2) emit(BACKENDS_MAP, backends[i] as string, backends[i + 1] as string);
          if (this.#names) for (let i = 0; i < names.length; i += 2) emit(NAMES_MAP, names[i] as string, names[i + 1] as string);
        });
      }));
    } finally {
      this.family.release();
    }
  }
}
