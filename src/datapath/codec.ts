// Encoding of map keys and values from layouts generated out of the BPF
// objects' BTF (see scripts/gen-abi.ts and abi.gen.ts). Nothing here knows a
// particular struct: the layouts carry offsets, sizes and kinds.

export type FieldKind = 'ip4' | 'be16' | 'be32' | 'u8' | 'u16' | 'u32' | 'u64' | 'bytes' | 'pad';

export interface Field {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly kind: FieldKind;
}

export interface Layout {
  readonly name: string;
  readonly size: number;
  readonly fields: readonly Field[];
}

export class CodecError extends Error {
  readonly code = 'ECODEC';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CodecError';
  }
}

/** Dotted quad to the 32-bit value whose bytes, written big-endian, are the address. */
export function ip4ToUint(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new CodecError(`"${ip}" is not an IPv4 address`);
  let v = 0;
  for (const part of parts) {
    const n = Number(part);
    if (part === '' || !Number.isInteger(n) || n < 0 || n > 255 || part.length > 3) {
      throw new CodecError(`"${ip}" is not an IPv4 address`);
    }
    v = v * 256 + n;
  }
  return v;
}

export function uintToIp4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

type Plain = Record<string, unknown>;

function fieldError(layout: Layout, f: Field, value: unknown, why: string): CodecError {
  return new CodecError(`${layout.name}.${f.name}: ${JSON.stringify(value)} ${why}`);
}

function checkUint(layout: Layout, f: Field, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw fieldError(layout, f, v, `is not an integer in 0..${max}`);
  }
  return v;
}

/** Write `value` into `out` at `offset`; padding and absent fields become zero. */
export function encodeInto(layout: Layout, value: Plain, out: Uint8Array, offset = 0): void {
  const dv = new DataView(out.buffer, out.byteOffset + offset, layout.size);
  out.fill(0, offset, offset + layout.size);
  for (const f of layout.fields) {
    if (f.kind === 'pad') continue;
    const v = value[f.name];
    if (v === undefined) continue;
    switch (f.kind) {
      case 'ip4':
        if (typeof v !== 'string') throw fieldError(layout, f, v, 'is not an IPv4 address string');
        dv.setUint32(f.offset, ip4ToUint(v), false);
        break;
      case 'be16':
        dv.setUint16(f.offset, checkUint(layout, f, v, 0xffff), false);
        break;
      case 'be32':
        dv.setUint32(f.offset, checkUint(layout, f, v, 0xffffffff), false);
        break;
      case 'u8':
        dv.setUint8(f.offset, checkUint(layout, f, v, 0xff));
        break;
      case 'u16':
        dv.setUint16(f.offset, checkUint(layout, f, v, 0xffff), true);
        break;
      case 'u32':
        dv.setUint32(f.offset, checkUint(layout, f, v, 0xffffffff), true);
        break;
      case 'u64':
        if (typeof v !== 'bigint') throw fieldError(layout, f, v, 'is not a bigint');
        dv.setBigUint64(f.offset, v, true);
        break;
      case 'bytes':
        if (!(v instanceof Uint8Array) || v.length !== f.size) {
          throw fieldError(layout, f, v, `is not a Uint8Array of ${f.size} bytes`);
        }
        out.set(v, offset + f.offset);
        break;
    }
  }
}

export function encode(layout: Layout, value: Plain): Uint8Array {
  const out = new Uint8Array(layout.size);
  encodeInto(layout, value, out, 0);
  return out;
}

export function decode(layout: Layout, bytes: Uint8Array, offset = 0): Plain {
  if (bytes.length - offset < layout.size) {
    throw new CodecError(`${layout.name}: need ${layout.size} bytes, have ${bytes.length - offset}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, layout.size);
  const out: Plain = {};
  for (const f of layout.fields) {
    switch (f.kind) {
      case 'pad':
        break;
      case 'ip4':
        out[f.name] = uintToIp4(dv.getUint32(f.offset, false));
        break;
      case 'be16':
        out[f.name] = dv.getUint16(f.offset, false);
        break;
      case 'be32':
        out[f.name] = dv.getUint32(f.offset, false);
        break;
      case 'u8':
        out[f.name] = dv.getUint8(f.offset);
        break;
      case 'u16':
        out[f.name] = dv.getUint16(f.offset, true);
        break;
      case 'u32':
        out[f.name] = dv.getUint32(f.offset, true);
        break;
      case 'u64':
        out[f.name] = dv.getBigUint64(f.offset, true);
        break;
      case 'bytes':
        out[f.name] = bytes.slice(offset + f.offset, offset + f.offset + f.size);
        break;
    }
  }
  return out;
}

/** A typed view of one layout. */
export interface Codec<T> {
  readonly layout: Layout;
  encode(value: T): Uint8Array;
  encodeInto(value: T, out: Uint8Array, offset: number): void;
  decode(bytes: Uint8Array, offset?: number): T;
}

export function codec<T>(layout: Layout): Codec<T> {
  return {
    layout,
    encode: (value) => encode(layout, value as Plain),
    encodeInto: (value, out, offset) => encodeInto(layout, value as Plain, out, offset),
    decode: (bytes, offset = 0) => decode(layout, bytes, offset) as T,
  };
}

/** Layouts of the scalar keys some maps use (BTF gives them as plain ints). */
export const scalarLayouts = {
  u32: { name: 'u32', size: 4, fields: [{ name: 'value', offset: 0, size: 4, kind: 'u32' }] },
} as const satisfies Record<string, Layout>;
