// Codecs of the load-balancer maps, and the flat encoded form the LB table,
// the reconciler and the tools pass around: keys and values as latin1 strings
// of their bytes, laid out [k0, v0, k1, v1, ...] (about 80 bytes an entry,
// against several hundred for a pair of objects).
import type { EntrySink } from '../datapath/reconciler.ts';
import { layouts, type Lb4Backend, type Lb4SvcKey, type Lb4SvcVal } from './abi.gen.ts';
import { codec, scalarLayouts } from './codec.ts';

export const svcKeyCodec = codec<Lb4SvcKey>(layouts.hypha_lb4_svc_key);
export const svcValCodec = codec<Lb4SvcVal>(layouts.hypha_lb4_svc_val);
export const backendCodec = codec<Lb4Backend>(layouts.hypha_lb4_backend);
export const u32Codec = codec<{ value: number }>(scalarLayouts.u32);

const NAME_SIZE = layouts.hypha_lb4_svc_name.size;

/** A Service port's name as the names map stores it: UTF-8, zero-padded, cut to fit. */
export function encodeName(name: string): string {
  const buf = Buffer.alloc(NAME_SIZE);
  buf.write(name, 0, NAME_SIZE - 1, 'utf8');
  return buf.toString('latin1');
}

export function decodeName(bytes: Uint8Array): string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end < 0 ? b.length : end);
}

/** Encoded entries of the LB maps, each a flat [key, value, key, value...] list. */
export interface LbEntries {
  services: string[];
  backends: string[];
  /** frontend id -> Service port name (for tools) */
  names: string[];
}

/** One change to the LB maps: the entries that were, and the entries that are
 *  now. A key in `before` and not in `after` is to be deleted. */
export interface LbChange {
  before: LbEntries;
  after: LbEntries;
}

/** Where the entries of the LB maps go as bytes, one sink per map (no
 *  names sink: the names map is not written). */
export interface LbSinks {
  services: EntrySink;
  backends: EntrySink;
  names?: EntrySink;
}

/** Everything the LB maps should hold, given Service by Service as bytes (no copy, no string per entry). */
export interface LbEntrySource {
  forEachEntryBytes(sinks: LbSinks): void;
}

/** Ids found in the pinned maps at start: a restarted agent gives the same
 *  frontends and backends the same ids. */
export interface PinnedLbIds {
  frontends: { addr: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP'; svcId: number }[];
  backends: { id: number; svcId: number; addr: string; port: number }[];
}

export function emptyEntries(): LbEntries {
  return { services: [], backends: [], names: [] };
}

export function backendKey(id: number): string {
  return u32Codec.encodeString({ value: id });
}

const SLOT_OFFSET = layouts.hypha_lb4_svc_key.fields.find((f) => f.name === 'slot')?.offset ?? 8;

/** The IPv4 address (network order) at offset `o` of a latin1-encoded string, dotted. */
export function ip4At(s: string, o: number): string {
  return `${s.charCodeAt(o)}.${s.charCodeAt(o + 1)}.${s.charCodeAt(o + 2)}.${s.charCodeAt(o + 3)}`;
}

/** The little-endian u32 at offset `o` of a latin1-encoded string. */
export function u32At(s: string, o: number): number {
  return (s.charCodeAt(o) | (s.charCodeAt(o + 1) << 8) | (s.charCodeAt(o + 2) << 16) | (s.charCodeAt(o + 3) << 24)) >>> 0;
}

/** Slot of an encoded services-map key, without decoding it. */
export function slotOfKey(key: string): number {
  return key.charCodeAt(SLOT_OFFSET) | (key.charCodeAt(SLOT_OFFSET + 1) << 8);
}

/** The slot of the services-map key at offset `o` of `b`. */
export function slotAt(b: Buffer, o: number): number {
  return b[o + SLOT_OFFSET]! | (b[o + SLOT_OFFSET + 1]! << 8);
}

function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** Typed view of encoded entries (tests, tools). */
export function decodeEntries(e: LbEntries): { services: { key: Lb4SvcKey; value: Lb4SvcVal }[]; backends: { id: number; value: Lb4Backend }[]; names: { id: number; name: string }[] } {
  const services = [];
  for (let i = 0; i < e.services.length; i += 2) {
    services.push({ key: svcKeyCodec.decode(bytes(e.services[i] ?? '')), value: svcValCodec.decode(bytes(e.services[i + 1] ?? '')) });
  }
  const backends = [];
  for (let i = 0; i < e.backends.length; i += 2) {
    backends.push({ id: u32Codec.decode(bytes(e.backends[i] ?? '')).value, value: backendCodec.decode(bytes(e.backends[i + 1] ?? '')) });
  }
  const names = [];
  for (let i = 0; i < e.names.length; i += 2) {
    names.push({ id: u32Codec.decode(bytes(e.names[i] ?? '')).value, name: decodeName(bytes(e.names[i + 1] ?? '')) });
  }
  return { services, backends, names };
}
