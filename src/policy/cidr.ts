// IP prefixes as NetworkPolicy ipBlocks use them: parsed as Go's
// net.ParseCIDR does (host bits allowed and cleared, so '10.1.2.3/8' is
// 10.0.0.0/8; no leading zeros), compared for containment. IPv4 prefixes are
// kept as numbers; IPv6 ones are only validated and compared (the datapath
// is IPv4-only).
import { BlockList, isIPv4, isIPv6 } from 'node:net';

export interface Prefix4 {
  family: 4;
  /** Network address as an unsigned 32-bit number. */
  addr: number;
  len: number;
  /** Canonical text, e.g. '10.0.0.0/8'. */
  text: string;
}

export interface Prefix6 {
  family: 6;
  /** Network address as given (host bits not cleared: IPv6 is not enforced). */
  addr: string;
  len: number;
  text: string;
}

export type Prefix = Prefix4 | Prefix6;

export function ip4ToNumber(ip: string): number {
  const p = ip.split('.').map(Number);
  return (((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!) >>> 0;
}

export function numberToIp4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask4(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** undefined when `text` is not 'address/length' of one family. */
export function parsePrefix(text: string): Prefix | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (isIPv4(ip)) {
    if (len > 32) return undefined;
    const addr = (ip4ToNumber(ip) & mask4(len)) >>> 0;
    return { family: 4, addr, len, text: `${numberToIp4(addr)}/${len}` };
  }
  if (isIPv6(ip) && !ip.includes('%')) {
    if (len > 128) return undefined;
    return { family: 6, addr: ip.toLowerCase(), len, text: `${ip.toLowerCase()}/${len}` };
  }
  return undefined;
}

export function containsAddr4(p: Prefix4, addr: number): boolean {
  return ((addr & mask4(p.len)) >>> 0) === p.addr;
}

/** `inner` lies within `outer` (equal counts). */
export function prefixWithin(inner: Prefix, outer: Prefix): boolean {
  if (inner.family !== outer.family || inner.len < outer.len) return false;
  if (inner.family === 4 && outer.family === 4) return containsAddr4(outer, inner.addr);
  if (inner.family !== 6 || outer.family !== 6) return false;
  const list = new BlockList();
  list.addSubnet(outer.addr, outer.len, 'ipv6');
  return list.check(inner.addr, 'ipv6');
}

/** Numeric order: by network address, then shorter prefix first. */
export function comparePrefix4(a: Prefix4, b: Prefix4): number {
  return a.addr - b.addr || a.len - b.len;
}
