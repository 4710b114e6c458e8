// Ethernet/IPv4/TCP/UDP/ICMP frames for BPF_PROG_TEST_RUN fixtures: built
// with correct checksums, and parsed back with every checksum verified, so a
// test can assert exactly what a program wrote.
import { ip4ToUint, uintToIp4 } from '../../src/abi/codec.ts';

export const TCP = 6;
export const UDP = 17;
export const ICMP = 1;

export type TcpFlag = 'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK';
const FLAG_BITS: Record<TcpFlag, number> = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16 };

export interface PacketSpec {
  srcMac?: string;
  dstMac?: string;
  /** Ethertype, default IPv4 (0x0800). */
  ethType?: number;
  src: string;
  dst: string;
  proto: 'tcp' | 'udp' | 'icmp';
  sport?: number;
  dport?: number;
  flags?: TcpFlag[];
  seq?: number;
  payload?: Uint8Array | string;
  ipOptions?: Uint8Array;
  /** IP time to live, default 64. */
  ttl?: number;
  /** fragment offset in 8-byte units, and more-fragments */
  fragOffset?: number;
  moreFragments?: boolean;
  /** UDP: send a zero ("no checksum") checksum. */
  noUdpChecksum?: boolean;
  /** ICMP: type (default 8, echo request) and echo identifier (default 1). */
  icmpType?: number;
  icmpId?: number;
  /** Cut the frame to this many bytes after building it. */
  truncate?: number;
}

function macBytes(mac: string): number[] {
  return mac.split(':').map((h) => parseInt(h, 16));
}

export function onesSum(bytes: Uint8Array, start = 0, end = bytes.length, init = 0): number {
  let sum = init;
  for (let i = start; i < end; i += 2) sum += (bytes[i]! << 8) | (i + 1 < end ? bytes[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function pseudo(src: number, dst: number, proto: number, len: number): number {
  return onesSum(new Uint8Array([src >>> 24, (src >>> 16) & 255, (src >>> 8) & 255, src & 255,
    dst >>> 24, (dst >>> 16) & 255, (dst >>> 8) & 255, dst & 255, 0, proto, len >>> 8, len & 255]));
}

export function buildPacket(s: PacketSpec): Uint8Array {
  const payload = typeof s.payload === 'string' ? new TextEncoder().encode(s.payload) : (s.payload ?? new Uint8Array());
  const opts = s.ipOptions ?? new Uint8Array();
  if (opts.length % 4 !== 0) throw new Error('IP options must be a multiple of 4 bytes');
  const proto = s.proto === 'tcp' ? TCP : s.proto === 'udp' ? UDP : ICMP;
  const l4len = (s.proto === 'tcp' ? 20 : 8) + payload.length;
  const ihl = 20 + opts.length;
  const buf = new Uint8Array(14 + ihl + l4len);
  const dv = new DataView(buf.buffer);
  buf.set(macBytes(s.dstMac ?? '02:00:00:00:00:02'), 0);
  buf.set(macBytes(s.srcMac ?? '02:00:00:00:00:01'), 6);
  dv.setUint16(12, s.ethType ?? 0x0800);
  const ip = 14;
  buf[ip] = 0x40 | (ihl / 4);
  dv.setUint16(ip + 2, ihl + l4len);
  dv.setUint16(ip + 4, 0x1234);
  dv.setUint16(ip + 6, ((s.moreFragments ? 1 : 0) << 13) | (s.fragOffset ?? 0));
  buf[ip + 8] = s.ttl ?? 64;
  buf[ip + 9] = proto;
  const src = ip4ToUint(s.src);
  const dst = ip4ToUint(s.dst);
  dv.setUint32(ip + 12, src);
  dv.setUint32(ip + 16, dst);
  buf.set(opts, ip + 20);
  dv.setUint16(ip + 10, ~onesSum(buf, ip, ip + ihl) & 0xffff);
  const l4 = ip + ihl;
  if (s.proto === 'tcp') {
    dv.setUint16(l4, s.sport ?? 40000);
    dv.setUint16(l4 + 2, s.dport ?? 80);
    dv.setUint32(l4 + 4, s.seq ?? 1000);
    dv.setUint32(l4 + 8, (s.flags ?? ['SYN']).includes('ACK') ? 1 : 0);
    buf[l4 + 12] = 5 << 4;
    buf[l4 + 13] = (s.flags ?? ['SYN']).reduce((a, f) => a | FLAG_BITS[f], 0);
    dv.setUint16(l4 + 14, 65535);
    buf.set(payload, l4 + 20);
    dv.setUint16(l4 + 16, ~onesSum(buf, l4, l4 + l4len, pseudo(src, dst, TCP, l4len)) & 0xffff);
  } else if (s.proto === 'udp') {
    dv.setUint16(l4, s.sport ?? 40000);
    dv.setUint16(l4 + 2, s.dport ?? 53);
    dv.setUint16(l4 + 4, l4len);
    buf.set(payload, l4 + 8);
    if (!s.noUdpChecksum) {
      const c = ~onesSum(buf, l4, l4 + l4len, pseudo(src, dst, UDP, l4len)) & 0xffff;
      dv.setUint16(l4 + 6, c === 0 ? 0xffff : c);
    }
  } else {
    buf[l4] = s.icmpType ?? 8; // echo request
    dv.setUint16(l4 + 4, s.icmpId ?? 1);
    dv.setUint16(l4 + 6, 1);
    buf.set(payload, l4 + 8);
    dv.setUint16(l4 + 2, ~onesSum(buf, l4, l4 + l4len) & 0xffff);
  }
  return s.truncate !== undefined ? buf.slice(0, s.truncate) : buf;
}

export interface ParsedPacket {
  srcMac: string;
  dstMac: string;
  ethType: number;
  src: string;
  dst: string;
  proto: number;
  ttl: number;
  ipChecksumOk: boolean;
  sport?: number;
  dport?: number;
  tcpFlags?: TcpFlag[];
  /** L4 checksum verifies (for UDP, a zero checksum counts as "none"). */
  l4ChecksumOk?: boolean;
  udpChecksum?: number;
  icmp?: { type: number; code: number; checksumOk: boolean; id?: number; quoted?: { src: string; dst: string; proto: number; sport: number; dport: number } };
  length: number;
  /** An 802.1Q (0x8100) or 802.1ad (0x88a8) tag: its VLAN id and the ethertype behind it (IPv4 behind a tag is parsed too). */
  vlan?: { id: number; ethType: number };
  /** ICMP errors (types 3, 4, 5, 11, 12): the quoted packet, as far as the frame holds it. */
  inner?: InnerPacket;
}

/** The packet an ICMP error quotes; fields are set only when their bytes are in the frame. */
export interface InnerPacket {
  src: string;
  dst: string;
  proto: number;
  ttl: number;
  /** header length in bytes (IHL * 4) */
  ihl: number;
  /** the quoted header's total length field (the original datagram's, not the quote's) */
  totalLength: number;
  ipChecksumOk: boolean;
  sport?: number;
  dport?: number;
  udpChecksum?: number;
  /** quoted ICMP: type, and the identifier of an echo */
  icmpType?: number;
  icmpId?: number;
  /** bytes of the quote present in the frame */
  length: number;
}

export const ICMP_ERROR_TYPES: readonly number[] = [3, 4, 5, 11, 12];

function parseInner(buf: Uint8Array, q: number): InnerPacket | undefined {
  if (q + 20 > buf.length) return undefined;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const ihl = (buf[q]! & 15) * 4;
  const inner: InnerPacket = {
    src: uintToIp4(dv.getUint32(q + 12)), dst: uintToIp4(dv.getUint32(q + 16)), proto: buf[q + 9]!, ttl: buf[q + 8]!,
    ihl, totalLength: dv.getUint16(q + 2), ipChecksumOk: ihl >= 20 && q + ihl <= buf.length && onesSum(buf, q, q + ihl) === 0xffff,
    length: buf.length - q,
  };
  const l4 = q + ihl;
  if (ihl < 20 || (dv.getUint16(q + 6) & 0x1fff) !== 0) return inner;
  if ((inner.proto === TCP || inner.proto === UDP) && l4 + 4 <= buf.length) {
    inner.sport = dv.getUint16(l4);
    inner.dport = dv.getUint16(l4 + 2);
    if (inner.proto === UDP && l4 + 8 <= buf.length) inner.udpChecksum = dv.getUint16(l4 + 6);
  } else if (inner.proto === ICMP && l4 + 1 <= buf.length) {
    inner.icmpType = buf[l4]!;
    if ((inner.icmpType === 0 || inner.icmpType === 8) && l4 + 6 <= buf.length) inner.icmpId = dv.getUint16(l4 + 4);
  }
  return inner;
}

function mac(b: Uint8Array, o: number): string {
  return [...b.slice(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function parsePacket(buf: Uint8Array): ParsedPacket {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ParsedPacket = {
    dstMac: mac(buf, 0), srcMac: mac(buf, 6), ethType: dv.getUint16(12),
    src: '', dst: '', proto: 0, ttl: 0, ipChecksumOk: false, length: buf.length,
  };
  let ip = 14;
  if ((out.ethType === 0x8100 || out.ethType === 0x88a8) && buf.length >= 18) {
    out.vlan = { id: dv.getUint16(14) & 0xfff, ethType: dv.getUint16(16) };
    ip = 18;
  }
  // Not IPv4, or cut inside the IP header: only the Ethernet fields.
  if ((out.vlan?.ethType ?? out.ethType) !== 0x0800 || buf.length < ip + 20) return out;
  const ihl = (buf[ip]! & 15) * 4;
  const total = dv.getUint16(ip + 2);
  out.src = uintToIp4(dv.getUint32(ip + 12));
  out.dst = uintToIp4(dv.getUint32(ip + 16));
  out.proto = buf[ip + 9]!;
  out.ttl = buf[ip + 8]!;
  out.ipChecksumOk = onesSum(buf, ip, ip + ihl) === 0xffff;
  const l4 = ip + ihl;
  const l4len = total - ihl;
  const srcN = dv.getUint32(ip + 12);
  const dstN = dv.getUint32(ip + 16);
  // L4 fields are read only when their bytes are in the frame (a later fragment cut short has none).
  if (out.proto === TCP && l4 + 4 <= buf.length) {
    out.sport = dv.getUint16(l4);
    out.dport = dv.getUint16(l4 + 2);
    out.tcpFlags = (Object.keys(FLAG_BITS) as TcpFlag[]).filter((f) => buf[l4 + 13]! & FLAG_BITS[f]);
    out.l4ChecksumOk = onesSum(buf, l4, l4 + l4len, pseudo(srcN, dstN, TCP, l4len)) === 0xffff;
  } else if (out.proto === UDP && l4 + 8 <= buf.length) {
    out.sport = dv.getUint16(l4);
    out.dport = dv.getUint16(l4 + 2);
    out.udpChecksum = dv.getUint16(l4 + 6);
    out.l4ChecksumOk = out.udpChecksum === 0 || onesSum(buf, l4, l4 + l4len, pseudo(srcN, dstN, UDP, l4len)) === 0xffff;
  } else if (out.proto === ICMP && l4 + 4 <= buf.length) {
    const type = buf[l4]!;
    const icmp: NonNullable<ParsedPacket['icmp']> = { type, code: buf[l4 + 1]!, checksumOk: onesSum(buf, l4, l4 + l4len) === 0xffff };
    if ((type === 8 || type === 0) && l4 + 6 <= buf.length) icmp.id = dv.getUint16(l4 + 4);
    const q = l4 + 8;
    const qihl = (buf[q]! & 15) * 4;
    if (type === 3 && l4len >= 8 + 28 && q + qihl + 4 <= buf.length) {
      icmp.quoted = {
        src: uintToIp4(dv.getUint32(q + 12)), dst: uintToIp4(dv.getUint32(q + 16)), proto: buf[q + 9]!,
        sport: dv.getUint16(q + qihl), dport: dv.getUint16(q + qihl + 2),
      };
    }
    out.icmp = icmp;
    if (ICMP_ERROR_TYPES.includes(type)) out.inner = parseInner(buf, q);
  }
  return out;
}

/** An ICMP error from `src` to `dst` quoting `quoted` (a frame) as a router or host sends it: IP header and `quoteL4` bytes of L4. */
export function icmpError(src: string, dst: string, type: number, code: number, quoted: Uint8Array, opts: { mtu?: number; quoteL4?: number } = {}): Uint8Array {
  const qihl = (quoted[14]! & 15) * 4;
  const quote = quoted.slice(14, 14 + qihl + (opts.quoteL4 ?? 8));
  const f = new Uint8Array(14 + 20 + 8 + quote.length);
  const dv = new DataView(f.buffer);
  f.set(quoted.slice(6, 12), 0);
  f.set(quoted.slice(0, 6), 6);
  dv.setUint16(12, 0x0800);
  f[14] = 0x45;
  dv.setUint16(16, 20 + 8 + quote.length);
  f[22] = 64;
  f[23] = 1;
  dv.setUint32(26, ip4ToUint(src));
  dv.setUint32(30, ip4ToUint(dst));
  dv.setUint16(24, ~onesSum(f, 14, 34) & 0xffff);
  f[34] = type;
  f[35] = code;
  dv.setUint16(40, opts.mtu ?? 0);
  f.set(quote, 42);
  dv.setUint16(36, ~onesSum(f, 34, f.length) & 0xffff);
  return f;
}
