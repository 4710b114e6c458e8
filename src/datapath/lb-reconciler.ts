// Programs the load-balancer maps (services, backends) from the LB table.
// Safe order, so a packet never meets a half-written Service:
//   1 backends written  2 slots written  3 masters written (count switches)
//   4 masters deleted   5 slots deleted  6 backends deleted
// Backends that disappear from a Service stay out of its slots from phase 3
// on; flows already on them keep going (conntrack holds their address).
import { type MapIO, toMapError } from './map-io.ts';
import { type ApplyStats, type Bytes, type Desired, MapFamilyReconciler } from './reconciler.ts';
import {
  type LbChange, type LbEntries, type LbEntrySource, type PinnedLbIds,
  backendCodec, slotAt, slotOfKey, svcKeyCodec, svcValCodec, u32Codec,
} from '../abi/lb-codecs.ts';

export { backendCodec, svcKeyCodec, svcValCodec, u32Codec } from '../abi/lb-codecs.ts';

export const SERVICES_MAP = 'hypha_lb4_services_v1';
export const BACKENDS_MAP = 'hypha_lb4_backends_v1';
export const NAMES_MAP = 'hypha_lb4_names_v1';

const PROTO_NAME: Record<number, 'TCP' | 'UDP' | 'SCTP'> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

export interface LbMaps {
  services: MapIO;
  backends: MapIO;
  /** Frontend names for tools; optional so tests can leave it out. */
  names?: MapIO;
  /** Called after a pass that wrote or deleted entries: the datapath's
   *  lb_generation is bumped so open flows re-check their backend. */
  changed?: () => void;
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
  readonly #names: boolean;
  readonly #services: MapIO;
  readonly #backends: MapIO;
  readonly #changed: (() => void) | undefined;

  constructor(maps: LbMaps) {
    this.#names = maps.names !== undefined;
    this.#services = maps.services;
    this.#backends = maps.backends;
    this.#changed = maps.changed;
    this.family = new MapFamilyReconciler('lb', [
      ...(maps.names ? [{ io: maps.names, upsertPhase: () => 1, deletePhase: () => 6 }] : []),
      { io: maps.backends, upsertPhase: () => 1, deletePhase: () => 6 },
      {
        io: maps.services,
        upsertPhase: (k) => (slotOfKey(k) === 0 ? 3 : 2),
        upsertPhaseAt: (b, o) => (slotAt(b, o) === 0 ? 3 : 2),
        deletePhase: (k) => (slotOfKey(k) === 0 ? 4 : 5),
      },
    ]);
  }

  /** The ids in the pinned maps (frontends from master entries, backends
   *  with the frontend they belong to), for the agent to hand to the table so
   *  a restarted agent keeps every frontend and backend under the same id. */
  async readIds(): Promise<PinnedLbIds> {
    const out: PinnedLbIds = { frontends: [], backends: [] };
    // Decoded from the dumps' buffers entry by entry: a restart over full
    // maps makes no string per entry.
    const entries = async (io: MapIO, visit: (k: Uint8Array, v: Uint8Array) => void): Promise<void> => {
      let d;
      try {
        d = await io.dump();
      } catch (err) {
        throw toMapError(io.name, 'dump', err);
      }
      for (let i = 0; i < d.count; i++) visit(d.keys.subarray(i * io.keySize, (i + 1) * io.keySize), d.values.subarray(i * io.valueSize, (i + 1) * io.valueSize));
    };
    await entries(this.#services, (k, v) => {
      const key = svcKeyCodec.decode(k);
      if (key.slot !== 0) return;
      const val = svcValCodec.decode(v);
      const protocol = PROTO_NAME[key.proto];
      if (!protocol || val.svc_id === 0) return;
      out.frontends.push({ addr: key.addr, port: key.dport, protocol, svcId: val.svc_id });
    });
    await entries(this.#backends, (k, v) => {
      const b = backendCodec.decode(v);
      out.backends.push({ id: u32Codec.decode(k).value, svcId: b.svc_id, addr: b.addr, port: b.port });
    });
    return out;
  }

  /** Apply one incremental change (only the entries whose value changed). */
  apply(update: LbChange): ApplyStats {
    const before = desiredOf(update.before);
    const after = desiredOf(update.after);
    if (!this.#names) {
      before.delete(NAMES_MAP);
      after.delete(NAMES_MAP);
    }
    return this.#notify(this.family.execute(this.family.planChange(before, after)));
  }

  #notify(stats: ApplyStats): ApplyStats {
    if (stats.upserts + stats.deletes > 0) this.#changed?.();
    return stats;
  }

  /** Re-read the maps and make them equal the whole table: repairs drift and
   *  prunes what nothing wants (entries left by a Service deleted while the
   *  agent was down, or written by hand). */
  async resync(table: LbEntrySource): Promise<ApplyStats> {
    // Streamed (syncFull): each Service's backends, then masters and slots,
    // are visited together, and a chunk of masters is written only after the
    // slots and backends visited before it.
    return this.#notify(await this.family.syncFull((sinkOf) => {
      table.forEachEntryBytes({
        backends: sinkOf(BACKENDS_MAP), services: sinkOf(SERVICES_MAP), ...(this.#names ? { names: sinkOf(NAMES_MAP) } : {}),
      });
    }));
  }
}
