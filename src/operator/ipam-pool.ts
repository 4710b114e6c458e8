// The cluster pool of pod CIDRs (cluster-pool IPAM): one or more IPv4
// prefixes, carved into per-node blocks of one mask size. Pure and
// synchronous: the operator rebuilds it from the HyphaNode objects (occupy)
// before it allocates anything, so a restart never hands out a CIDR that a
// node already holds.
//
// What is held is kept as disjoint address intervals, so an occupied CIDR of
// another size than today's mask (the mask was changed in the config) still
// blocks exactly the addresses it covers. allocate() is first-fit: the lowest
// free block, so a released CIDR is the next one handed out.
import { Address4 } from 'ip-address';
import { ipv4PrefixProblem } from '../k8s/hyphanode.ts';

export type IpamErrorCode =
  | 'E_IPAM_CONFIG' // the pool configuration is unusable (field names the setting)
  | 'E_IPAM_INVALID' // a CIDR is not a canonical IPv4 network prefix
  | 'E_IPAM_OUT_OF_POOL' // a CIDR is not inside any of the pool's prefixes
  | 'E_IPAM_OVERLAP' // a CIDR overlaps one another node (or the same node) holds
  | 'E_IPAM_EXHAUSTED'; // no free block of the mask size is left

export class IpamError extends Error {
  readonly code: IpamErrorCode;
  /** For E_IPAM_CONFIG: the setting, e.g. 'cidrs[1]' or 'maskSize'. */
  readonly field: string | undefined;
  readonly node: string | undefined;
  readonly cidr: string | undefined;
  /** For E_IPAM_OVERLAP: who holds what the CIDR overlaps. */
  readonly holder: { node: string; cidr: string } | undefined;
  constructor(code: IpamErrorCode, message: string, details: { field?: string; node?: string; cidr?: string; holder?: { node: string; cidr: string } } = {}) {
    super(message);
    this.name = 'IpamError';
    this.code = code;
    this.field = details.field;
    this.node = details.node;
    this.cidr = details.cidr;
    this.holder = details.holder;
  }
}

export function isIpamError(err: unknown, code?: IpamErrorCode): err is IpamError {
  return err instanceof IpamError && (code === undefined || err.code === code);
}

export interface PoolConfig {
  /** IPv4 network prefixes, e.g. ['10.244.0.0/16']. */
  cidrs: readonly string[];
  /** Prefix length of each node's block, e.g. 24. */
  maskSize: number;
}

/** The longest per-node mask: a /31 or /32 leaves no room for pods. */
export const MAX_MASK_SIZE = 30;

interface Range {
  cidr: string;
  start: number;
  /** inclusive */
  end: number;
}

interface Claim extends Range {
  node: string;
}

/** A canonical IPv4 network prefix as an address range, or why it is not one. */
export function parseIpv4Cidr(text: string): Range | string {
  if (typeof text !== 'string') return 'is not a string';
  const why = ipv4PrefixProblem(text);
  if (why) return why;
  const a = new Address4(text);
  return { cidr: text, start: Number(a.startAddress().bigInt()), end: Number(a.endAddress().bigInt()) };
}

function formatCidr(start: number, maskSize: number): string {
  return `${Address4.fromBigInt(BigInt(start)).correctForm()}/${maskSize}`;
}

export class IpamPool {
  readonly cidrs: readonly string[];
  readonly maskSize: number;
  readonly #ranges: Range[];
  readonly #block: number;
  /** Sorted by start; disjoint. */
  readonly #claims: Claim[] = [];
  readonly #byNode = new Map<string, Claim[]>();

  constructor(cfg: PoolConfig) {
    if (!Array.isArray(cfg.cidrs) || cfg.cidrs.length === 0) {
      throw new IpamError('E_IPAM_CONFIG', 'cidrs: the pool needs at least one IPv4 prefix', { field: 'cidrs' });
    }
    const ranges: Range[] = [];
    cfg.cidrs.forEach((text, i) => {
      const r = parseIpv4Cidr(text);
      if (typeof r === 'string') throw new IpamError('E_IPAM_CONFIG', `cidrs[${i}]: ${JSON.stringify(text)} ${r}`, { field: `cidrs[${i}]` });
      const clash = ranges.findIndex((o) => o.start <= r.end && r.start <= o.end);
      if (clash >= 0) throw new IpamError('E_IPAM_CONFIG', `cidrs[${i}]: ${JSON.stringify(text)} overlaps cidrs[${clash}] ${JSON.stringify(ranges[clash]!.cidr)}`, { field: `cidrs[${i}]` });
      ranges.push(r);
    });
    const longest = Math.max(...ranges.map((r) => 32 - Math.log2(r.end - r.start + 1)));
    if (!Number.isInteger(cfg.maskSize) || cfg.maskSize < longest || cfg.maskSize > MAX_MASK_SIZE) {
      throw new IpamError('E_IPAM_CONFIG', `maskSize: ${JSON.stringify(cfg.maskSize)} is not an integer in ${longest}..${MAX_MASK_SIZE} (at least the longest pool prefix, /${longest})`, { field: 'maskSize' });
    }
    this.cidrs = [...cfg.cidrs];
    this.maskSize = cfg.maskSize;
    this.#ranges = ranges;
    this.#block = 2 ** (32 - cfg.maskSize);
  }

  /** e.g. 'cluster pool 10.244.0.0/16 (/24 per node)' */
  describe(): string {
    return `cluster pool ${this.cidrs.join(', ')} (/${this.maskSize} per node)`;
  }

  /** Blocks of the mask size the pool holds in all. */
  get capacity(): number {
    return this.#ranges.reduce((n, r) => n + (r.end - r.start + 1) / this.#block, 0);
  }

  /** Blocks of the mask size still free. */
  get free(): number {
    let n = 0;
    for (const r of this.#ranges) this.#forGaps(r, (a, b) => {
      const first = this.#alignUp(a);
      if (first + this.#block - 1 <= b) n += Math.floor((b + 1 - first) / this.#block);
      return false;
    });
    return n;
  }

  /** Blocks that cannot be handed out (held, or partly covered by a held CIDR). */
  get used(): number {
    return this.capacity - this.free;
  }

  /** Nodes holding at least one CIDR. */
  get nodes(): number {
    return this.#byNode.size;
  }

  cidrsOf(node: string): string[] {
    return (this.#byNode.get(node) ?? []).map((c) => c.cidr);
  }

  /** Which node holds addresses of `cidr`, if any. */
  holderOf(cidr: string): { node: string; cidr: string } | undefined {
    const r = parseIpv4Cidr(cidr);
    if (typeof r === 'string') return undefined;
    const c = this.#overlapping(r);
    return c ? { node: c.node, cidr: c.cidr } : undefined;
  }

  /**
   * Record that `node` holds `cidr` (from its HyphaNode). Holding it already is
   * a no-op. Throws an IpamError naming the node and the CIDR when the CIDR is
   * invalid, outside the pool, or overlaps what a node already holds.
   */
  occupy(node: string, cidr: string): void {
    const r = parseIpv4Cidr(cidr);
    if (typeof r === 'string') throw new IpamError('E_IPAM_INVALID', `node ${JSON.stringify(node)}: pod CIDR ${JSON.stringify(cidr)} ${r}`, { node, cidr });
    if (!this.#ranges.some((p) => p.start <= r.start && r.end <= p.end)) {
      throw new IpamError('E_IPAM_OUT_OF_POOL', `node ${JSON.stringify(node)}: pod CIDR ${JSON.stringify(cidr)} is outside the ${this.describe()}`, { node, cidr });
    }
    const held = this.#overlapping(r);
    if (held) {
      if (held.node === node && held.cidr === cidr) return;
      const whose = held.node === node ? 'which this node also holds' : `held by node ${JSON.stringify(held.node)}`;
      throw new IpamError('E_IPAM_OVERLAP', `node ${JSON.stringify(node)}: pod CIDR ${JSON.stringify(cidr)} overlaps ${held.cidr}, ${whose}`, { node, cidr, holder: { node: held.node, cidr: held.cidr } });
    }
    this.#insert({ ...r, node });
  }

  /**
   * The node's CIDR: the first it already holds, or else a new block, the
   * lowest free one. Throws E_IPAM_EXHAUSTED when none is left.
   */
  allocate(node: string): string {
    const mine = this.#byNode.get(node);
    if (mine && mine.length > 0) return mine[0]!.cidr;
    for (const r of this.#ranges) {
      let found: number | undefined;
      this.#forGaps(r, (a, b) => {
        const first = this.#alignUp(a);
        if (first + this.#block - 1 > b) return false;
        found = first;
        return true;
      });
      if (found !== undefined) {
        const claim: Claim = { cidr: formatCidr(found, this.maskSize), start: found, end: found + this.#block - 1, node };
        this.#insert(claim);
        return claim.cidr;
      }
    }
    throw new IpamError('E_IPAM_EXHAUSTED', `node ${JSON.stringify(node)}: the ${this.describe()} is exhausted: all ${this.capacity} CIDRs are in use`, { node });
  }

  /** Forget what `node` holds; returns the CIDRs it held. */
  release(node: string): string[] {
    const mine = this.#byNode.get(node);
    if (!mine) return [];
    this.#byNode.delete(node);
    for (const c of mine) this.#claims.splice(this.#claims.indexOf(c), 1);
    return mine.map((c) => c.cidr);
  }

  #alignUp(x: number): number {
    return Math.ceil(x / this.#block) * this.#block;
  }

  /** Index of the first claim whose start is >= x. */
  #lowerBound(x: number): number {
    let lo = 0;
    let hi = this.#claims.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#claims[mid]!.start < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Claims are disjoint and sorted: only the neighbours of r's place can overlap it. */
  #overlapping(r: Range): Claim | undefined {
    const i = this.#lowerBound(r.start);
    const before = this.#claims[i - 1];
    if (before && before.end >= r.start) return before;
    const at = this.#claims[i];
    if (at && at.start <= r.end) return at;
    return undefined;
  }

  #insert(c: Claim): void {
    this.#claims.splice(this.#lowerBound(c.start), 0, c);
    const mine = this.#byNode.get(c.node);
    if (mine) mine.push(c);
    else this.#byNode.set(c.node, [c]);
  }

  /** Calls visit(a, b) for each free interval [a, b] of range r, in order, until it returns true. */
  #forGaps(r: Range, visit: (a: number, b: number) => boolean): void {
    let cursor = r.start;
    for (let i = this.#lowerBound(r.start); i < this.#claims.length; i++) {
      const c = this.#claims[i]!;
      if (c.start > r.end) break;
      if (c.start > cursor && visit(cursor, c.start - 1)) return;
      cursor = Math.max(cursor, c.end + 1);
    }
    if (cursor <= r.end) visit(cursor, r.end);
  }
}
