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
  if (out.ethType !== 0x0800) return out;
  const ip = 14;
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
  if (out.proto === TCP) {
    out.sport = dv.getUint16(l4);
    out.dport = dv.getUint16(l4 + 2);
    out.tcpFlags = (Object.keys(FLAG_BITS) as TcpFlag[]).filter((f) => buf[l4 + 13]! & FLAG_BITS[f]);
    out.l4ChecksumOk = onesSum(buf, l4, l4 + l4len, pseudo(srcN, dstN, TCP, l4len)) === 0xffff;
  } else if (out.proto === UDP) {
    out.sport = dv.getUint16(l4);
    out.dport = dv.getUint16(l4 + 2);
    out.udpChecksum = dv.getUint16(l4 + 6);
    out.l4ChecksumOk = out.udpChecksum === 0 || onesSum(buf, l4, l4 + l4len, pseudo(srcN, dstN, UDP, l4len)) === 0xffff;
  } else if (out.proto === ICMP) {
    const type = buf[l4]!;
    const icmp: NonNullable<ParsedPacket['icmp']> = { type, code: buf[l4 + 1]!, checksumOk: onesSum(buf, l4, l4 + l4len) === 0xffff };
    if (type === 8 || type === 0) icmp.id = dv.getUint16(l4 + 4);
    if (type === 3 && l4len >= 8 + 28) {
      const q = l4 + 8;
      const qihl = (buf[q]! & 15) * 4;
      icmp.quoted = {
        src: uintToIp4(dv.getUint32(q + 12)), dst: uintToIp4(dv.getUint32(q + 16)), proto: buf[q + 9]!,
        sport: dv.getUint16(q + qihl), dport: dv.getUint16(q + qihl + 2),
      };
    }
    out.icmp = icmp;
  }
  return out;
}
