// Which Service owns which frontend, across all Services, the same whatever
// order the Services arrived in (CVE-2020-8554: an ExternalIP must never take
// an address the API server gave another Service).
//  - What the API server allocates wins over what a user writes: ClusterIPs
//    and NodePorts first, then LoadBalancer ingress IPs (status), then
//    ExternalIPs (spec, any user who may edit a Service).
//  - An address is owned as a whole: an ExternalIP equal to another Service's
//    ClusterIP or LoadBalancer IP is not served on any port, and a
//    LoadBalancer IP equal to another Service's ClusterIP neither. (Two
//    Services may share a LoadBalancer IP or an ExternalIP on different ports.)
//  - Two claims of one frontend of the same rank: the Service created first
//    keeps it, then the lower namespace/name (a Service without a creation
//    time counts as the newest).
// Every change says which other Services' verdicts it changed, so the caller
// re-renders exactly those. Pure: no I/O, no clock.
import type { ClaimedAddress, FrontendKind } from './compile.ts';

export interface FrontendClaim {
  /** 'addr:port/PROTO' */
  frontend: string;
  addr: string;
  kind: FrontendKind;
}

export type Verdict = { granted: true } | { granted: false; owner: string; reason: string };

const GRANTED: Verdict = { granted: true };

/** Lower wins. */
export const CLAIM_RANK: Record<FrontendKind, number> = { ClusterIP: 0, NodePort: 0, LoadBalancer: 1, ExternalIP: 2 };

/** What one Service claims. */
interface Claimant {
  created: string;
  frontends: readonly FrontendClaim[];
  addresses: readonly ClaimedAddress[];
}

const KINDS: readonly FrontendKind[] = ['ClusterIP', 'NodePort', 'ExternalIP', 'LoadBalancer'];

/**
 * A claimant packed in one string, kept for as long as its Service: its
 * creation time, a line per frontend claim (kind digit, frontend, space,
 * address), an empty line, a line per address (kind digit, address). About
 * 90 bytes for a ClusterIP Service, where the objects and arrays took 250.
 * (Frontends, addresses and RFC 3339 times hold no space or newline.) Two
 * claims are the same when their packed strings are.
 */
function packClaimant(created: string, frontends: readonly FrontendClaim[], addresses: readonly ClaimedAddress[]): string {
  const parts = [created];
  for (const f of frontends) parts.push(`${KINDS.indexOf(f.kind)}${f.frontend} ${f.addr}`);
  parts.push('');
  for (const a of addresses) parts.push(`${KINDS.indexOf(a.kind)}${a.addr}`);
  return parts.join('\n');
}

function unpackClaimant(packed: string): Claimant {
  const parts = packed.split('\n');
  const sep = parts.indexOf('', 1);
  return {
    created: parts[0]!,
    frontends: parts.slice(1, sep).map((x) => {
      const sp = x.indexOf(' ');
      return { kind: KINDS[Number(x[0])]!, frontend: x.slice(1, sp), addr: x.slice(sp + 1) };
    }),
    addresses: parts.slice(sep + 1).map((x) => ({ kind: KINDS[Number(x[0])]!, addr: x.slice(1) })),
  };
}

const createdOf = (packed: string): string => packed.slice(0, packed.indexOf('\n'));

/**
 * The Services claiming one frontend or one address, each with the
 * best-ranked kind it claims it as. One claimant (the rule) is held inline;
 * a Map is made only when a second arrives, and dropped when one is left
 * again: an inline claim is one small object where a Map with its table is
 * about 200 bytes.
 */
class Claims {
  /** The one claimant ('' when there is none, or many). */
  service = '';
  kind: FrontendKind = 'ClusterIP';
  many: Map<string, FrontendKind> | undefined = undefined;

  get size(): number {
    return this.many ? this.many.size : this.service === '' ? 0 : 1;
  }

  /** Add a claim (a Service claiming it again keeps its best-ranked kind). */
  add(service: string, kind: FrontendKind): void {
    if (this.many) {
      const had = this.many.get(service);
      if (had === undefined || CLAIM_RANK[kind] < CLAIM_RANK[had]) this.many.set(service, kind);
    } else if (this.service === '') {
      this.service = service;
      this.kind = kind;
    } else if (this.service === service) {
      if (CLAIM_RANK[kind] < CLAIM_RANK[this.kind]) this.kind = kind;
    } else {
      this.many = new Map([[this.service, this.kind], [service, kind]]);
      this.service = '';
    }
  }

  /** Remove a Service's claim; true if it had one. */
  delete(service: string): boolean {
    if (!this.many) {
      if (this.service !== service || service === '') return false;
      this.service = '';
      return true;
    }
    if (!this.many.delete(service)) return false;
    if (this.many.size === 1) {
      const [s, k] = this.many.entries().next().value!;
      this.service = s;
      this.kind = k;
      this.many = undefined;
    }
    return true;
  }

  forEach(visit: (kind: FrontendKind, service: string) => void): void {
    if (this.many) this.many.forEach(visit);
    else if (this.service !== '') visit(this.kind, this.service);
  }
}

class FrontendEntry extends Claims {
  readonly addr: string;
  /** The Service whose rendering holds it now ('' when none): the LB
   *  table's record (holder, setHolder), kept with the claims rather than
   *  in a Map of its own (35 bytes a frontend). */
  holder = '';
  constructor(addr: string) {
    super();
    this.addr = addr;
  }
}

interface Contender {
  service: string;
  kind: FrontendKind;
  created: string;
}

/** a before b in the claim order. */
function before(a: Contender, b: Contender): boolean {
  const ra = CLAIM_RANK[a.kind];
  const rb = CLAIM_RANK[b.kind];
  if (ra !== rb) return ra < rb;
  if (a.created !== b.created) {
    if (a.created === '') return false;
    if (b.created === '') return true;
    return a.created < b.created;
  }
  return a.service < b.service;
}

function best(cs: Iterable<Contender>): Contender | undefined {
  let out: Contender | undefined;
  for (const c of cs) if (!out || before(c, out)) out = c;
  return out;
}

const owning = (kind: FrontendKind): boolean => kind === 'ClusterIP' || kind === 'LoadBalancer';

export class FrontendOwners {
  /** service -> what it claims, packed (packClaimant) */
  readonly #claimants = new Map<string, string>();
  /** frontend -> its address and the Services claiming it */
  readonly #byFrontend = new Map<string, FrontendEntry>();
  /** address -> the claimed frontends on it (one held directly, several in a Set) */
  readonly #frontendsAt = new Map<string, string | Set<string>>();
  /** address -> the Services claiming it as a ClusterIP or LoadBalancer IP */
  readonly #owningClaims = new Map<string, Claims>();
  /** Only refused claims are kept: a claim not in here is granted. */
  readonly #refused = new Map<string, Map<string, Verdict>>();

  /** The Service holding a frontend (setHolder); none once nothing claims it. */
  holder(frontend: string): string | undefined {
    const h = this.#byFrontend.get(frontend)?.holder;
    return h ? h : undefined;
  }

  /** Say which Service holds a frontend now (undefined: none). Only a
   *  claimed frontend can be held: its record goes with its last claim. */
  setHolder(frontend: string, service: string | undefined): void {
    const e = this.#byFrontend.get(frontend);
    if (e) e.holder = service ?? '';
    else if (service !== undefined) throw new Error(`${frontend} is claimed by no Service: ${service} cannot hold it`);
  }

  verdict(service: string, frontend: string): Verdict {
    return this.#refused.get(frontend)?.get(service) ?? GRANTED;
  }

  /** Refused claims: frontend -> service -> verdict (tests, status). */
  refused(): ReadonlyMap<string, ReadonlyMap<string, Verdict>> {
    return this.#refused;
  }

  /** Replace what one Service claims (nothing: it is gone). Returns the other
   *  Services whose verdict on some frontend changed, sorted. */
  set(service: string, frontends: readonly FrontendClaim[], addresses: readonly ClaimedAddress[], created: string): string[] {
    const packed = packClaimant(created, frontends, addresses);
    const had = this.#claimants.get(service);
    // The common change (endpoints moved) claims the same as before.
    if (had === packed) return [];
    const old = had === undefined ? undefined : unpackClaimant(had);
    const touched = new Set<string>();
    const addrs = new Set<string>();
    for (const f of old?.frontends ?? []) touched.add(f.frontend);
    for (const f of frontends) touched.add(f.frontend);
    for (const a of old?.addresses ?? []) if (owning(a.kind)) addrs.add(a.addr);
    for (const a of addresses) if (owning(a.kind)) addrs.add(a.addr);
    const ownersBefore = new Map([...addrs].map((a) => [a, this.#ownerSignature(a)]));

    if (old) this.#remove(service, old);
    if (frontends.length > 0 || addresses.length > 0) this.#add(service, packed, frontends, addresses);

    // A new owner of an address changes the verdict on every frontend at it.
    for (const a of addrs) {
      if (this.#ownerSignature(a) === ownersBefore.get(a)) continue;
      const at = this.#frontendsAt.get(a);
      if (typeof at === 'string') touched.add(at);
      else for (const fk of at ?? []) touched.add(fk);
    }
    const affected = new Set<string>();
    for (const fk of touched) {
      const was = this.#refused.get(fk);
      const now = this.#decide(fk);
      const services = new Set([...(was?.keys() ?? []), ...(now?.keys() ?? [])]);
      this.#byFrontend.get(fk)?.forEach((_, s) => services.add(s));
      for (const s of services) {
        if (s === service) continue;
        const a = was?.get(s);
        const b = now?.get(s);
        if ((a && !a.granted ? a.reason : '') !== (b && !b.granted ? b.reason : '')) affected.add(s);
      }
      if (now) this.#refused.set(fk, now);
      else this.#refused.delete(fk);
    }
    return [...affected].sort();
  }

  #add(service: string, packed: string, frontends: readonly FrontendClaim[], addresses: readonly ClaimedAddress[]): void {
    this.#claimants.set(service, packed);
    for (const f of frontends) {
      let e = this.#byFrontend.get(f.frontend);
      if (!e) this.#byFrontend.set(f.frontend, (e = new FrontendEntry(f.addr)));
      e.add(service, f.kind);
      const at = this.#frontendsAt.get(f.addr);
      if (at === undefined) this.#frontendsAt.set(f.addr, f.frontend);
      else if (typeof at !== 'string') at.add(f.frontend);
      else if (at !== f.frontend) this.#frontendsAt.set(f.addr, new Set([at, f.frontend]));
    }
    for (const a of addresses) {
      if (!owning(a.kind)) continue;
      let m = this.#owningClaims.get(a.addr);
      if (!m) this.#owningClaims.set(a.addr, (m = new Claims()));
      m.add(service, a.kind);
    }
  }

  #remove(service: string, c: Claimant): void {
    this.#claimants.delete(service);
    for (const f of c.frontends) {
      const e = this.#byFrontend.get(f.frontend);
      if (!e) continue;
      e.delete(service);
      if (e.size > 0) continue;
      this.#byFrontend.delete(f.frontend);
      const at = this.#frontendsAt.get(f.addr);
      if (at === f.frontend) this.#frontendsAt.delete(f.addr);
      else if (typeof at !== 'string' && at?.delete(f.frontend) && at.size === 1) this.#frontendsAt.set(f.addr, at.values().next().value!);
    }
    for (const a of c.addresses) {
      const m = this.#owningClaims.get(a.addr);
      if (m?.delete(service) && m.size === 0) this.#owningClaims.delete(a.addr);
    }
  }

  #createdOf(service: string): string {
    const packed = this.#claimants.get(service);
    return packed === undefined ? '' : createdOf(packed);
  }

  /** The Service an address belongs to (any owning kind, or ClusterIPs only). */
  #addressOwner(addr: string, clusterIPOnly: boolean): Contender | undefined {
    const m = this.#owningClaims.get(addr);
    if (!m) return undefined;
    const cs: Contender[] = [];
    m.forEach((kind, service) => {
      if (clusterIPOnly && kind !== 'ClusterIP') return;
      cs.push({ service, kind, created: this.#createdOf(service) });
    });
    return best(cs);
  }

  #ownerSignature(addr: string): string {
    return `${this.#addressOwner(addr, false)?.service ?? ''}|${this.#addressOwner(addr, true)?.service ?? ''}`;
  }

  /** The refused claims of one frontend (undefined: every claim is granted). */
  #decide(fk: string): Map<string, Verdict> | undefined {
    const e = this.#byFrontend.get(fk);
    if (!e) return undefined;
    let out: Map<string, Verdict> | undefined;
    const refuse = (service: string, v: Verdict): void => {
      (out ??= new Map()).set(service, v);
    };
    const eligible: Contender[] = [];
    e.forEach((kind, service) => {
      // An ExternalIP never takes an address another Service owns; a
      // LoadBalancer IP never takes another Service's ClusterIP.
      const owner = kind === 'ExternalIP' ? this.#addressOwner(e.addr, false) : kind === 'LoadBalancer' ? this.#addressOwner(e.addr, true) : undefined;
      if (owner && owner.service !== service) {
        refuse(service, { granted: false, owner: owner.service, reason: `address ${e.addr} is the ${owner.kind} of Service ${owner.service}` });
        return;
      }
      eligible.push({ service, kind, created: this.#createdOf(service) });
    });
    const winner = best(eligible);
    for (const c of eligible) {
      if (!winner || c.service === winner.service) continue;
      const why = c.kind === winner.kind || CLAIM_RANK[c.kind] === CLAIM_RANK[winner.kind]
        ? winner.created !== c.created && winner.created !== ''
          ? `${fk} is also the ${winner.kind} of Service ${winner.service}, which is older`
          : `${fk} is also the ${winner.kind} of Service ${winner.service}, which sorts first`
        : `${fk} is the ${winner.kind} of Service ${winner.service}`;
      refuse(c.service, { granted: false, owner: winner.service, reason: why });
    }
    return out;
  }
}
