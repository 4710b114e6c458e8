// Pod addresses of this node: allocation from the node's pod CIDRs (which the
// operator, or Node.spec.podCIDRs, gives the node). Pure: no I/O; the endpoint
// store persists who holds what and hands it back with claim() at start.
//
// The first address of each CIDR (its network address) is the node's own
// address in it (the VXLAN device's, in tunnel mode) and the last (broadcast)
// is never given out: a pod CIDR of /24 has 254 pod addresses. Allocation is
// next-fit: a released address is given out again only after every other
// free one, so a new pod does not inherit the previous owner's flows from a
// peer's conntrack or neighbour cache.
import { Address4 } from 'ip-address';

export class IpamError extends Error {
  readonly code: 'EINVALCIDR' | 'EEXHAUSTED' | 'ENOTINPOOL' | 'EINUSE' | 'ENOCIDR';
  constructor(code: IpamError['code'], message: string) {
    super(message);
    this.name = 'IpamError';
    this.code = code;
  }
}

export function isIpamError(err: unknown, code?: IpamError['code']): err is IpamError {
  return err instanceof IpamError && (code === undefined || err.code === code);
}

interface Range {
  cidr: string;
  first: number;
  last: number;
}

export function ip4ToInt(ip: string): number {
  const p = ip.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

export function intToIp4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** An IPv4 prefix in canonical form, or an error naming the field and value. */
export function parseCidr4(field: string, value: string): { cidr: string; network: number; broadcast: number; prefixLength: number } {
  let a: Address4;
  try {
    if (!value.includes('/')) throw new Error('no prefix length');
    a = new Address4(value);
  } catch {
    throw new IpamError('EINVALCIDR', `${field} ${JSON.stringify(value)} is not a valid IPv4 prefix`);
  }
  const network = Number(a.startAddress().bigInt());
  if (intToIp4(network) !== a.addressMinusSuffix) {
    throw new IpamError('EINVALCIDR', `${field} ${JSON.stringify(value)} has host bits set (the prefix is ${intToIp4(network)}/${a.subnetMask})`);
  }
  return { cidr: `${intToIp4(network)}/${a.subnetMask}`, network, broadcast: Number(a.endAddress().bigInt()), prefixLength: a.subnetMask };
}

export class PodIpam {
  #ranges: Range[] = [];
  readonly #owners = new Map<number, string>();
  #cursor = 0;

  constructor(cidrs: readonly string[] = []) {
    this.setCidrs(cidrs);
  }

  get cidrs(): string[] {
    return this.#ranges.map((r) => r.cidr);
  }

  /** The node's own address in its first pod CIDR (undefined without one). */
  get routerAddress(): string | undefined {
    const r = this.#ranges[0];
    return r ? intToIp4(r.first - 1) : undefined;
  }

  /** Addresses that can be given out, and how many are taken. */
  get capacity(): number {
    return this.#ranges.reduce((n, r) => n + Math.max(0, r.last - r.first + 1), 0);
  }

  get used(): number {
    return this.#owners.size;
  }

  /** Change the pod CIDRs. Addresses already held stay held (and outside a
   *  new CIDR they are never given out again once released). */
  setCidrs(cidrs: readonly string[]): void {
    // The same CIDRs again (every node-table change says them): keep the cursor.
    if (cidrs.length === this.#ranges.length && cidrs.every((c, i) => c === this.#ranges[i]?.cidr)) return;
    const ranges: Range[] = [];
    for (const [i, c] of cidrs.entries()) {
      const p = parseCidr4(`pod CIDR ${i}`, c);
      // /31 and /32 leave no address between network and broadcast.
      if (p.prefixLength > 30) throw new IpamError('EINVALCIDR', `pod CIDR ${JSON.stringify(c)} is too small for pods (at most /30)`);
      for (const r of ranges) {
        if (p.network <= r.last + 1 && p.broadcast >= r.first - 1) throw new IpamError('EINVALCIDR', `pod CIDR ${JSON.stringify(c)} overlaps ${r.cidr}`);
      }
      ranges.push({ cidr: p.cidr, first: p.network + 1, last: p.broadcast - 1 });
    }
    this.#ranges = ranges;
    this.#cursor = 0;
  }

  contains(ip: string): boolean {
    const n = ip4ToInt(ip);
    return this.#ranges.some((r) => n >= r.first && n <= r.last);
  }

  ownerOf(ip: string): string | undefined {
    return this.#owners.get(ip4ToInt(ip));
  }

  /** Give `owner` the next free address. */
  allocate(owner: string): string {
    if (this.#ranges.length === 0) throw new IpamError('ENOCIDR', 'this node has no pod CIDR yet');
    const total = this.capacity;
    for (let i = 0; i < total; i++) {
      const n = this.#at((this.#cursor + i) % total);
      if (!this.#owners.has(n)) {
        this.#owners.set(n, owner);
        this.#cursor = (this.#cursor + i + 1) % total;
        return intToIp4(n);
      }
    }
    throw new IpamError('EEXHAUSTED', `no free address in pod CIDR ${this.cidrs.join(', ')}: all ${total} are in use`);
  }

  /** Record that `owner` holds `ip` (from the store, at start). Addresses
   *  outside the CIDRs are accepted too: a pod keeps its address until it
   *  goes, even when the node's CIDR changed under it. */
  claim(ip: string, owner: string): void {
    const n = ip4ToInt(ip);
    const held = this.#owners.get(n);
    if (held !== undefined && held !== owner) throw new IpamError('EINUSE', `address ${ip} is held by ${held}, not ${owner}`);
    this.#owners.set(n, owner);
  }

  release(ip: string): void {
    this.#owners.delete(ip4ToInt(ip));
  }

  /** Offset `k` of the concatenated ranges as an address. */
  #at(k: number): number {
    for (const r of this.#ranges) {
      const size = r.last - r.first + 1;
      if (k < size) return r.first + k;
      k -= size;
    }
    throw new RangeError(`offset ${k} outside the pod CIDRs`);
  }
}
