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

/** Dotted quad to the 32-bit value whose bytes, written big-endian, are the
 *  address. Hand-written (not split/Number): it runs once per map entry. */
export function ip4ToUint(ip: string): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) throw new CodecError(`"${ip}" is not an IPv4 address`);
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      if (part > 255) throw new CodecError(`"${ip}" is not an IPv4 address`);
      digits++;
    } else {
      throw new CodecError(`"${ip}" is not an IPv4 address`);
    }
  }
  if (dots !== 3 || digits === 0) throw new CodecError(`"${ip}" is not an IPv4 address`);
  return v * 256 + part;
}

export function uintToIp4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

type Plain = Record<string, unknown>;

function fieldError(layout: Layout, f: Field, value: unknown, why: string, cause?: unknown): CodecError {
  return new CodecError(`${layout.name}.${f.name}: ${JSON.stringify(value)} ${why}`, cause === undefined ? undefined : { cause });
}


type Writer = (value: Plain, out: Uint8Array, o: number) => void;

function writer(layout: Layout, f: Field): Writer | undefined {
  const at = f.offset;
  const get = (value: Plain): unknown => value[f.name];
  const uint = (v: unknown, max: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw fieldError(layout, f, v, `is not an integer in 0..${max}`);
    return v;
  };
  switch (f.kind) {
    case 'pad':
      return undefined;
    case 'ip4':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        if (typeof v !== 'string') throw fieldError(layout, f, v, 'is not an IPv4 address string');
        let n: number;
        try {
          n = ip4ToUint(v);
        } catch (err) {
          throw fieldError(layout, f, v, 'is not an IPv4 address', err);
        }
        out[o + at] = n >>> 24;
        out[o + at + 1] = (n >>> 16) & 255;
        out[o + at + 2] = (n >>> 8) & 255;
        out[o + at + 3] = n & 255;
      };
    case 'be16':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        const n = uint(v, 0xffff);
        out[o + at] = n >>> 8;
        out[o + at + 1] = n & 255;
      };
    case 'be32':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        const n = uint(v, 0xffffffff);
        out[o + at] = n >>> 24;
        out[o + at + 1] = (n >>> 16) & 255;
        out[o + at + 2] = (n >>> 8) & 255;
        out[o + at + 3] = n & 255;
      };
    case 'u8':
      return (value, out, o) => {
        const v = get(value);
        if (v !== undefined) out[o + at] = uint(v, 0xff);
      };
    case 'u16':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        const n = uint(v, 0xffff);
        out[o + at] = n & 255;
        out[o + at + 1] = n >>> 8;
      };
    case 'u32':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        const n = uint(v, 0xffffffff);
        out[o + at] = n & 255;
        out[o + at + 1] = (n >>> 8) & 255;
        out[o + at + 2] = (n >>> 16) & 255;
        out[o + at + 3] = n >>> 24;
      };
    case 'u64':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        if (typeof v !== 'bigint') throw fieldError(layout, f, v, 'is not a bigint');
        new DataView(out.buffer, out.byteOffset).setBigUint64(o + at, v, true);
      };
    case 'bytes':
      return (value, out, o) => {
        const v = get(value);
        if (v === undefined) return;
        if (!(v instanceof Uint8Array) || v.length !== f.size) throw fieldError(layout, f, v, `is not a Uint8Array of ${f.size} bytes`);
        out.set(v, o + at);
      };
  }
}

const writers = new WeakMap<Layout, Writer[]>();

function writersOf(layout: Layout): Writer[] {
  let w = writers.get(layout);
  if (!w) {
    w = layout.fields.map((f) => writer(layout, f)).filter((x): x is Writer => x !== undefined);
    writers.set(layout, w);
  }
  return w;
}

/** Write `value` into `out` at `offset`; padding and absent fields become zero. */
export function encodeInto(layout: Layout, value: Plain, out: Uint8Array, offset = 0): void {
  out.fill(0, offset, offset + layout.size);
  for (const w of writersOf(layout)) w(value, out, offset);
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
  /** The encoding as a latin1 string of its bytes (compact, comparable with ===). */
  encodeString(value: T): string;
  encodeInto(value: T, out: Uint8Array, offset: number): void;
  decode(bytes: Uint8Array, offset?: number): T;
}

export function codec<T>(layout: Layout): Codec<T> {
  const scratch = Buffer.alloc(layout.size);
  return {
    layout,
    encode: (value) => encode(layout, value as Plain),
    encodeString: (value) => {
      encodeInto(layout, value as Plain, scratch, 0);
      return scratch.toString('latin1', 0, layout.size);
    },
    encodeInto: (value, out, offset) => encodeInto(layout, value as Plain, out, offset),
    decode: (bytes, offset = 0) => decode(layout, bytes, offset) as T,
  };
}

/** Layouts of the scalar keys some maps use (BTF gives them as plain ints). */
export const scalarLayouts = {
  u32: { name: 'u32', size: 4, fields: [{ name: 'value', offset: 0, size: 4, kind: 'u32' }] },
  ip4: { name: 'ip4', size: 4, fields: [{ name: 'value', offset: 0, size: 4, kind: 'ip4' }] },
} as const satisfies Record<string, Layout>;
