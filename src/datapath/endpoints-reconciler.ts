// The endpoints map (pod address -> host-side veth, endpoint flags): what
// from_pod uses to hand packets for local pods straight to them. Owns that
// one map family; the agent says which endpoints should exist.
import { layouts } from '../abi/abi.gen.ts';
import { codec, scalarLayouts } from '../abi/codec.ts';
import type { MapIO } from './map-io.ts';
import { type ApplyStats, MapFamilyReconciler, toBytes } from './reconciler.ts';

export const ENDPOINTS_MAP = 'hypha_endpoints_v1';

export const endpointKeyCodec = codec<{ value: string }>(scalarLayouts.ip4);
export const endpointValueCodec = codec<{ ifindex: number; flags: number }>(layouts.hypha_endpoint);

export interface EndpointEntry {
  ip: string;
  ifindex: number;
  flags?: number;
}

export class EndpointsReconciler {
  readonly #rec: MapFamilyReconciler;

  constructor(io: MapIO) {
    this.#rec = new MapFamilyReconciler('endpoints', [{ io, upsertPhase: () => 1, deletePhase: () => 2 }]);
  }

  /** Make the map hold exactly `desired`. The map is read back every time (a
   *  node's pods are a few hundred entries at most), so an entry deleted or
   *  changed by hand is repaired by the next call. */
  async sync(desired: readonly EndpointEntry[]): Promise<ApplyStats> {
    await this.#rec.refresh();
    try {
      return this.#rec.execute(this.#rec.planFull((emit) => {
        for (const e of desired) {
          emit(ENDPOINTS_MAP, toBytes(endpointKeyCodec.encode({ value: e.ip })), toBytes(endpointValueCodec.encode({ ifindex: e.ifindex, flags: e.flags ?? 0 })));
        }
      }));
    } finally {
      this.#rec.release();
    }
  }
}

/** The endpoints map, one entry at a time (the CNI path), next to the full
 *  reconcile (start and resync). */
export class EndpointsMap {
  readonly #io: MapIO;
  readonly #rec: EndpointsReconciler;

  constructor(io: MapIO) {
    this.#io = io;
    this.#rec = new EndpointsReconciler(io);
  }

  upsert(ip: string, ifindex: number, flags = 0): void {
    this.#io.update(endpointKeyCodec.encode({ value: ip }), endpointValueCodec.encode({ ifindex, flags }));
  }

  remove(ip: string): void {
    this.#io.delete(endpointKeyCodec.encode({ value: ip }));
  }

  lookup(ip: string): number | undefined {
    const v = this.#io.lookup(endpointKeyCodec.encode({ value: ip }));
    return v ? endpointValueCodec.decode(v).ifindex : undefined;
  }

  async sync(desired: readonly EndpointEntry[]): Promise<ApplyStats> {
    return this.#rec.sync(desired);
  }
}
