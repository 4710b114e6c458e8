// A set of IPv4 prefixes an address is checked against (services.externalIPs.allowedCIDRs).
import { BlockList, isIPv4 } from 'node:net';

export class CidrSet {
  readonly cidrs: readonly string[];
  readonly #list = new BlockList();

  /** Throws naming the prefix when one is not an IPv4 prefix (a.b.c.d/n). */
  constructor(cidrs: readonly string[]) {
    this.cidrs = [...cidrs];
    for (const c of cidrs) {
      const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(c);
      const bits = m ? Number(m[2]) : -1;
      if (!m || !isIPv4(m[1]!) || bits > 32) throw new Error(`${JSON.stringify(c)} is not an IPv4 prefix (a.b.c.d/n)`);
      this.#list.addSubnet(m[1]!, bits, 'ipv4');
    }
  }

  has(ip: string): boolean {
    return isIPv4(ip) && this.#list.check(ip, 'ipv4');
  }

  toString(): string {
    return this.cidrs.length > 0 ? this.cidrs.join(', ') : '(none)';
  }
}
