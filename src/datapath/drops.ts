// Per-reason drop counters, summed over CPUs, named from the generated ABI.
import * as native from '../../native/index.ts';
import type { MapHandle } from '../../native/index.ts';
import { DropReason, DropReasonText, layouts } from '../abi/abi.gen.ts';
import { scalarLayouts } from '../abi/codec.ts';

export interface DropCount {
  code: number;
  reason: string;
  description: string;
  packets: bigint;
  bytes: bigint;
}

const NAME_OF = new Map<number, string>(Object.entries(DropReason).map(([k, v]) => [v, k]));

/** Sum the per-CPU counters of every reason that counted anything. */
export function readDrops(map: MapHandle): DropCount[] {
  const info = native.mapInfo(map);
  const stride = native.valueLength(info);
  const per = Math.ceil(layouts.hypha_drop_counter.size / 8) * 8;
  const { keys, values, count } = native.mapDump(map);
  const kv = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  const vv = new DataView(values.buffer, values.byteOffset, values.byteLength);
  const out: DropCount[] = [];
  for (let i = 0; i < count; i++) {
    const code = kv.getUint32(i * scalarLayouts.u32.size, true);
    let packets = 0n;
    let bytes = 0n;
    for (let cpu = 0; cpu < info.possibleCpus; cpu++) {
      const off = i * stride + cpu * per;
      packets += vv.getBigUint64(off, true);
      bytes += vv.getBigUint64(off + 8, true);
    }
    if (packets === 0n) continue;
    out.push({ code, reason: NAME_OF.get(code) ?? `UNKNOWN_${code}`, description: DropReasonText[code] ?? '', packets, bytes });
  }
  return out.sort((a, b) => a.code - b.code);
}

/** Drop events the ring buffer had no room for, summed over CPUs (hypha_events_lost_v1). */
export function readEventsLost(map: MapHandle): bigint {
  const info = native.mapInfo(map);
  const per = Math.ceil(layouts.hypha_drop_counter.size / 8) * 8;
  const v = native.mapLookup(map, new Uint8Array(scalarLayouts.u32.size));
  let events = 0n;
  if (!v) return events;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  for (let cpu = 0; cpu < info.possibleCpus; cpu++) events += dv.getBigUint64(cpu * per, true);
  return events;
}
