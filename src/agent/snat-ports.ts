// Which source ports the datapath may give a source-NATed flow (masquerade,
// clashing tuples, outside traffic to another node): never one the node's own
// sockets pick (its ephemeral range) or a NodePort, so a translated flow can
// never collide with either. The highest free run of at least 2048 ports
// (with Linux's defaults 61000-65535: no well-known server port among them),
// else the largest free run above 1023.
import { readFileSync } from 'node:fs';

export interface PortRange {
  min: number;
  max: number;
}

const ENOUGH = 2048;

/** Pure: see above. */
export function snatPortRange(taken: readonly PortRange[]): PortRange {
  const sorted = [...taken].sort((a, b) => a.min - b.min);
  const gaps: PortRange[] = [];
  let next = 1024;
  for (const r of [...sorted, { min: 65536, max: 65536 }]) {
    if (r.min > next) gaps.push({ min: next, max: r.min - 1 });
    next = Math.max(next, r.max + 1);
  }
  if (gaps.length === 0) throw new RangeError(`no source ports are left outside ${taken.map((r) => `${r.min}-${r.max}`).join(', ')}`);
  const size = (g: PortRange): number => g.max - g.min + 1;
  const big = gaps.filter((g) => size(g) >= ENOUGH);
  if (big.length > 0) return big[big.length - 1] as PortRange;
  return gaps.reduce((a, b) => (size(b) > size(a) ? b : a));
}

/** This network namespace's ephemeral port range (net.ipv4.ip_local_port_range). */
export function ephemeralPorts(): PortRange {
  const [min, max] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  return { min: min ?? 32768, max: max ?? 60999 };
}
