// The ipcache map (LPM: prefix -> identity, node, flags): which addresses are
// inside the cluster. Owns that one map; desired entries come from the nodes
// compiler (src/nodes/compile.ts), with identities (src/identity/ipcache.ts).
import { IpcacheFlags, type IpcacheKey, type IpcacheVal, layouts } from '../abi/abi.gen.ts';
import { codec } from '../abi/codec.ts';
import type { IpcacheEntry } from '../nodes/compile.ts';
import type { MapIO } from './map-io.ts';
import { type ApplyStats, MapFamilyReconciler, toBytes } from './reconciler.ts';

export const IPCACHE_MAP = 'hypha_ipcache_v1';

export const ipcacheKeyCodec = codec<IpcacheKey>(layouts.hypha_ipcache_key);
export const ipcacheValCodec = codec<IpcacheVal>(layouts.hypha_ipcache_val);

export function ipcacheFlags(f: IpcacheEntry['flags']): number {
  return (f.cluster ? IpcacheFlags.CLUSTER : 0) | (f.pod ? IpcacheFlags.POD : 0) | (f.node ? IpcacheFlags.NODE : 0) | (f.local ? IpcacheFlags.LOCAL : 0);
}

export class IpcacheReconciler {
  readonly #rec: MapFamilyReconciler;

  constructor(io: MapIO) {
    this.#rec = new MapFamilyReconciler('ipcache', [{ io, upsertPhase: () => 1, deletePhase: () => 2 }]);
  }

  /** Make the map hold exactly `entries` (read back each time: a few entries per node). */
  async sync(entries: readonly IpcacheEntry[]): Promise<ApplyStats> {
    await this.#rec.refresh();
    try {
      return this.#rec.execute(this.#rec.planFull((emit) => {
        for (const e of entries) {
          const [addr = '0.0.0.0', len = '32'] = e.cidr.split('/');
          emit(IPCACHE_MAP, toBytes(ipcacheKeyCodec.encode({ prefixlen: Number(len), addr })),
            toBytes(ipcacheValCodec.encode({ identity: e.identity ?? 0, node_addr: e.nodeAddr || '0.0.0.0', flags: ipcacheFlags(e.flags) })));
        }
      }));
    } finally {
      this.#rec.release();
    }
  }
}
