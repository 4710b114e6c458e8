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

interface Claimant {
  created: string;
  frontends: FrontendClaim[];
  addresses: ClaimedAddress[];
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

function sameClaims(c: Claimant, frontends: readonly FrontendClaim[], addresses: readonly ClaimedAddress[]): boolean {
  if (c.frontends.length !== frontends.length || c.addresses.length !== addresses.length) return false;
  for (let i = 0; i < frontends.length; i++) {
    const a = c.frontends[i]!;
    const b = frontends[i]!;
    if (a.frontend !== b.frontend || a.kind !== b.kind) return false;
  }
  for (let i = 0; i < addresses.length; i++) {
    if (c.addresses[i]!.addr !== addresses[i]!.addr || c.addresses[i]!.kind !== addresses[i]!.kind) return false;
  }
  return true;
}

export class FrontendOwners {
  readonly #claimants = new Map<string, Claimant>();
  /** frontend -> service -> kind (the best-ranked, if a Service claims it twice) */
  readonly #byFrontend = new Map<string, { addr: string; claims: Map<string, FrontendKind> }>();
  /** address -> the claimed frontends on it */
  readonly #frontendsAt = new Map<string, Set<string>>();
  /** address -> service -> kind, for ClusterIPs and LoadBalancer IPs */
  readonly #owningClaims = new Map<string, Map<string, FrontendKind>>();
  /** Only refused claims are kept: a claim not in here is granted. */
  readonly #refused = new Map<string, Map<string, Verdict>>();

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
    const old = this.#claimants.get(service);
    // The common change (endpoints moved) claims the same as before.
    if (old && old.created === created && sameClaims(old, frontends, addresses)) return [];
    const touched = new Set<string>();
    const addrs = new Set<string>();
    for (const f of [...(old?.frontends ?? []), ...frontends]) touched.add(f.frontend);
    for (const a of [...(old?.addresses ?? []), ...addresses]) if (owning(a.kind)) addrs.add(a.addr);
    const ownersBefore = new Map([...addrs].map((a) => [a, this.#ownerSignature(a)]));

    if (old) this.#remove(service, old);
    if (frontends.length > 0 || addresses.length > 0) this.#add(service, { created, frontends: [...frontends], addresses: [...addresses] });

    // A new owner of an address changes the verdict on every frontend at it.
    for (const a of addrs) {
      if (this.#ownerSignature(a) === ownersBefore.get(a)) continue;
      for (const fk of this.#frontendsAt.get(a) ?? []) touched.add(fk);
    }
    const affected = new Set<string>();
    for (const fk of touched) {
      const was = this.#refused.get(fk);
      const now = this.#decide(fk);
      const services = new Set([...(was?.keys() ?? []), ...(now?.keys() ?? []), ...(this.#byFrontend.get(fk)?.claims.keys() ?? [])]);
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

  #add(service: string, c: Claimant): void {
    this.#claimants.set(service, c);
    for (const f of c.frontends) {
      let e = this.#byFrontend.get(f.frontend);
      if (!e) this.#byFrontend.set(f.frontend, (e = { addr: f.addr, claims: new Map() }));
      const had = e.claims.get(service);
      if (had === undefined || CLAIM_RANK[f.kind] < CLAIM_RANK[had]) e.claims.set(service, f.kind);
      let at = this.#frontendsAt.get(f.addr);
      if (!at) this.#frontendsAt.set(f.addr, (at = new Set()));
      at.add(f.frontend);
    }
    for (const a of c.addresses) {
      if (!owning(a.kind)) continue;
      let m = this.#owningClaims.get(a.addr);
      if (!m) this.#owningClaims.set(a.addr, (m = new Map()));
      const had = m.get(service);
      if (had === undefined || CLAIM_RANK[a.kind] < CLAIM_RANK[had]) m.set(service, a.kind);
    }
  }

  #remove(service: string, c: Claimant): void {
    this.#claimants.delete(service);
    for (const f of c.frontends) {
      const e = this.#byFrontend.get(f.frontend);
      if (!e) continue;
      e.claims.delete(service);
      if (e.claims.size > 0) continue;
      this.#byFrontend.delete(f.frontend);
      const at = this.#frontendsAt.get(f.addr);
      at?.delete(f.frontend);
      if (at?.size === 0) this.#frontendsAt.delete(f.addr);
    }
    for (const a of c.addresses) {
      const m = this.#owningClaims.get(a.addr);
      if (m?.delete(service) && m.size === 0) this.#owningClaims.delete(a.addr);
    }
  }

  /** The Service an address belongs to (any owning kind, or ClusterIPs only). */
  #addressOwner(addr: string, clusterIPOnly: boolean): Contender | undefined {
    const m = this.#owningClaims.get(addr);
    if (!m) return undefined;
    const cs: Contender[] = [];
    for (const [service, kind] of m) {
      if (clusterIPOnly && kind !== 'ClusterIP') continue;
      cs.push({ service, kind, created: this.#claimants.get(service)?.created ?? '' });
    }
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
    for (const [service, kind] of e.claims) {
      // An ExternalIP never takes an address another Service owns; a
      // LoadBalancer IP never takes another Service's ClusterIP.
      const owner = kind === 'ExternalIP' ? this.#addressOwner(e.addr, false) : kind === 'LoadBalancer' ? this.#addressOwner(e.addr, true) : undefined;
      if (owner && owner.service !== service) {
        refuse(service, { granted: false, owner: owner.service, reason: `address ${e.addr} is the ${owner.kind} of Service ${owner.service}` });
        continue;
      }
      eligible.push({ service, kind, created: this.#claimants.get(service)?.created ?? '' });
    }
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
