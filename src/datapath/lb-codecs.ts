// Codecs of the load-balancer maps, and the flat encoded form the LB table,
// the reconciler and the tools pass around: keys and values as latin1 strings
// of their bytes, laid out [k0, v0, k1, v1, ...] (about 80 bytes an entry,
// against several hundred for a pair of objects).
import { layouts, type Lb4Backend, type Lb4SvcKey, type Lb4SvcVal } from './abi.gen.ts';
import { codec, scalarLayouts } from './codec.ts';

export const svcKeyCodec = codec<Lb4SvcKey>(layouts.hypha_lb4_svc_key);
export const svcValCodec = codec<Lb4SvcVal>(layouts.hypha_lb4_svc_val);
export const backendCodec = codec<Lb4Backend>(layouts.hypha_lb4_backend);
export const u32Codec = codec<{ value: number }>(scalarLayouts.u32);

/** Encoded entries of the two LB maps, each a flat [key, value, key, value...] list. */
export interface LbEntries {
  services: string[];
  backends: string[];
}

export function emptyEntries(): LbEntries {
  return { services: [], backends: [] };
}

export function backendKey(id: number): string {
  return u32Codec.encodeString({ value: id });
}

const SLOT_OFFSET = layouts.hypha_lb4_svc_key.fields.find((f) => f.name === 'slot')?.offset ?? 8;

/** Slot of an encoded services-map key, without decoding it. */
export function slotOfKey(key: string): number {
  return key.charCodeAt(SLOT_OFFSET) | (key.charCodeAt(SLOT_OFFSET + 1) << 8);
}

function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** Typed view of encoded entries (tests, tools). */
export function decodeEntries(e: LbEntries): { services: { key: Lb4SvcKey; value: Lb4SvcVal }[]; backends: { id: number; value: Lb4Backend }[] } {
  const services = [];
  for (let i = 0; i < e.services.length; i += 2) {
    services.push({ key: svcKeyCodec.decode(bytes(e.services[i] ?? '')), value: svcValCodec.decode(bytes(e.services[i + 1] ?? '')) });
  }
  const backends = [];
  for (let i = 0; i < e.backends.length; i += 2) {
    backends.push({ id: u32Codec.decode(bytes(e.backends[i] ?? '')).value, value: backendCodec.decode(bytes(e.backends[i + 1] ?? '')) });
  }
  return { services, backends };
}
