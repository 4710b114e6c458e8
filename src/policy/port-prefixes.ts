// A port range as the prefixes an LPM key on the 16-bit port can hold (the
// way Cilium's policy map stores endPort ranges): 80-80 is 80/16, 0-65535
// is 0/0, 8000-8080 is 8000/10, 8064/12, 8080/16. The fewest prefixes
// that cover the range exactly, in ascending order.
import type { PortRange } from './model.ts';

export interface PortPrefix {
  port: number;
  /** Significant leading bits of the 16-bit port: 16 is one port, 0 is all. */
  prefixLen: number;
}

export function portRangePrefixes(range: PortRange | 'any'): PortPrefix[] {
  if (range === 'any') return [{ port: 0, prefixLen: 0 }];
  const { from, to } = range;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 65535 || from > to) {
    throw new RangeError(`port range ${from}-${to} is not within 0-65535 with from <= to`);
  }
  const out: PortPrefix[] = [];
  let p = from;
  while (p <= to) {
    let bits = 0;
    // The largest aligned block starting at p that stays within the range.
    while (bits < 16 && p % 2 ** (bits + 1) === 0 && p + 2 ** (bits + 1) - 1 <= to) bits++;
    out.push({ port: p, prefixLen: 16 - bits });
    p += 2 ** bits;
  }
  return out;
}
