// The policy maps (bpf/include/hypha/policy.h): what src/policy compiled for
// this node's endpoints, as the datapath looks it up.
//  - hypha_policy_eps_v1: every local pod address -> its identity (0 while
//    unknown) and the directions enforced (default deny);
//  - hypha_policy_v1 (LPM): (pod, peer identity or 0 = any, direction) then
//    protocol and destination port as a prefix -> allow;
//  - hypha_policy_cidr_v1 (LPM): every ipBlock prefix -> its CIDR identity.
// encodePolicyMaps is pure: CompiledPolicy in, the three maps' entries out,
// failing closed where the maps cannot hold what was compiled. The
// reconciler writes the difference so that no packet sees a state more open
// than either the old or the new policy:
//   1. policy entries added or changed  (the allows a new state needs)
//   2. CIDR entries added or changed    (an address moves to a new CIDR identity
//                                        once that identity's entries exist)
//   3. endpoint entries added or changed (a direction turns enforced once its
//                                        allows are in; turns open before they go)
//   4. policy entries deleted
//   5. CIDR entries deleted            (after the entries that name them: a prefix
//                                        gone sends its addresses to a shorter one)
//   6. endpoint entries deleted        (a gone pod denies until its entries are gone)
// Deleting an allow never opens anything, so when the policy map cannot
// hold the old and the new entries together, the deletions run first.
import { type PolicyCidrVal, PolicyDir, type PolicyEp, PolicyEpFlags, PolicyFlags, type PolicyKey, type PolicyVal, layouts } from '../abi/abi.gen.ts';
import { codec, scalarLayouts } from '../abi/codec.ts';
import { isIPv4 } from 'node:net';
import type { CompiledPolicy } from '../policy/compile.ts';
import type { DirectionPolicy, EndpointPolicy, Entry } from '../policy/model.ts';
import { portRangePrefixes } from '../policy/port-prefixes.ts';
import { type Problem, problem } from '../services/problems.ts';
import { ipcacheKeyCodec } from './ipcache-reconciler.ts';
import type { MapIO } from './map-io.ts';
import { DEFAULT_L7_PROXY_PORT } from '../l7/constants.ts';
import { type ApplyStats, type Bytes, type Desired, MapFamilyReconciler, type Plan, toBytes } from './reconciler.ts';

export const POLICY_MAP = 'hypha_policy_v1';
export const POLICY_EPS_MAP = 'hypha_policy_eps_v1';
export const POLICY_CIDR_MAP = 'hypha_policy_cidr_v1';

export const policyKeyCodec = codec<PolicyKey>(layouts.hypha_policy_key);
export const policyValCodec = codec<PolicyVal>(layouts.hypha_policy_val);
export const policyEpKeyCodec = codec<{ value: string }>(scalarLayouts.ip4);
export const policyEpValCodec = codec<PolicyEp>(layouts.hypha_policy_ep);
export const policyCidrKeyCodec = ipcacheKeyCodec;
export const policyCidrValCodec = codec<PolicyCidrVal>(layouts.hypha_policy_cidr_val);

/** prefixlen of a key: ep_addr + identity + dir; then proto; then the 16 port bits. */
export const PREFIX_ANY_PROTO = 72;
export const PREFIX_ANY_PORT = 80;

const PROTO_NUMBER = { TCP: 6, UDP: 17, SCTP: 132 } as const;
const ALLOW = toBytes(policyValCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: 0 }));

export interface PolicyMapCapacity {
  policy: number;
  cidrs: number;
}

/** A direction of an endpoint that the maps cannot hold: it denies everything. */
export interface MapOverflow {
  endpoint: string;
  direction: 'ingress' | 'egress';
  /** Keys it needed. */
  keys: number;
  /** Policies that select the endpoint for that direction. */
  policies: string[];
}

export interface PolicyMapEntries {
  /** map name -> key -> value, as latin1 strings (the reconciler's form). */
  maps: Map<string, Map<Bytes, Bytes>>;
  overflows: MapOverflow[];
  /** The CIDR table did not fit: no prefix is programmed and no ipBlock allows anything. */
  cidrOverflow?: number;
  problems: Problem[];
}

/** The map keys of one entry of one endpoint address (a port range is a few prefixes). */
export function entryKeys(epAddr: string, dir: 'ingress' | 'egress', e: Pick<Entry, 'identity' | 'proto' | 'ports'>): PolicyKey[] {
  const base = { ep_addr: epAddr, identity: e.identity === 'any' ? 0 : e.identity, dir: dir === 'ingress' ? PolicyDir.INGRESS : PolicyDir.EGRESS };
  if (e.proto === 'any') return [{ ...base, prefixlen: PREFIX_ANY_PROTO, proto: 0, dport: 0 }];
  const proto = PROTO_NUMBER[e.proto];
  return portRangePrefixes(e.ports).map((p) => ({ ...base, prefixlen: PREFIX_ANY_PORT + p.prefixLen, proto, dport: p.port }));
}

function ipv4Addresses(ep: EndpointPolicy): string[] {
  return (ep.endpoint.addresses ?? []).filter((a) => isIPv4(a));
}

/** The endpoints-map value of a pod being added: both directions enforced, no allows. */
export const CLOSED_EP = toBytes(policyEpValCodec.encode({ identity: 0, flags: PolicyEpFlags.INGRESS | PolicyEpFlags.EGRESS }));

/** The endpoints-map key of an address. */
export const epKey = (addr: string): Bytes => toBytes(policyEpKeyCodec.encode({ value: addr }));

/**
 * The three maps' contents for a compile. `open` lists local addresses
 * that no compiled endpoint names (an endpoint without pod metadata): they
 * get an open entry. `closed` lists addresses of pods being added (not in
 * the endpoint records yet): they deny both ways. A direction whose keys do not fit in what the policy
 * map has left gets none and denies (reported); so does every ipBlock when
 * the CIDR table does not fit.
 */
export function encodePolicyMaps(compiled: CompiledPolicy, capacity: PolicyMapCapacity, open: readonly string[] = [], closed: Iterable<string> = [], opts: { proxyPort?: number } = {}): PolicyMapEntries {
  // Entries with http rules redirect to the L7 proxy (value proxy_port).
  const PROXY = toBytes(policyValCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: opts.proxyPort ?? DEFAULT_L7_PROXY_PORT }));
  const policy = new Map<Bytes, Bytes>();
  const eps = new Map<Bytes, Bytes>();
  const cidrs = new Map<Bytes, Bytes>();
  const overflows: MapOverflow[] = [];
  const problems: Problem[] = [];
  let cidrOverflow: number | undefined;
  const cidrIds = new Set<number>();
  if (compiled.cidrs.length > capacity.cidrs) {
    cidrOverflow = compiled.cidrs.length;
    problems.push(problem('policy map', POLICY_CIDR_MAP, compiled.cidrs.length,
      `ipBlock prefixes exceed the ${capacity.cidrs} the CIDR map holds: none are programmed and no ipBlock allows anything`));
  } else {
    for (const c of compiled.cidrs) {
      const [addr = '', len = ''] = c.cidr.split('/');
      cidrs.set(toBytes(policyCidrKeyCodec.encode({ prefixlen: Number(len), addr })), toBytes(policyCidrValCodec.encode({ identity: c.identity })));
    }
  }
  if (cidrOverflow !== undefined) for (const c of compiled.cidrs) cidrIds.add(c.identity);

  for (const ep of compiled.endpoints) {
    const addrs = ipv4Addresses(ep);
    if (addrs.length === 0) continue;
    let flags = 0;
    for (const dir of ['ingress', 'egress'] as const) {
      const d: DirectionPolicy = ep[dir];
      if (!d.enforced) continue;
      flags |= dir === 'ingress' ? PolicyEpFlags.INGRESS : PolicyEpFlags.EGRESS;
      const keys: Bytes[] = [];
      const proxied = new Set<Bytes>();
      for (const e of d.entries) {
        // Entries for CIDR identities the map does not hold match nothing: left out.
        if (typeof e.identity === 'number' && cidrIds.has(e.identity)) continue;
        for (const a of addrs) for (const k of entryKeys(a, dir, e)) {
          const kb = toBytes(policyKeyCodec.encode(k));
          keys.push(kb);
          if (e.http !== undefined) proxied.add(kb);
        }
      }
      let fresh = 0;
      for (const k of keys) if (!policy.has(k)) fresh++;
      if (policy.size + fresh > capacity.policy) {
        overflows.push({ endpoint: ep.key, direction: dir, keys: keys.length, policies: d.selectedBy });
        problems.push(problem(`Endpoint ${ep.key}`, `${dir} entries`, keys.length,
          `do not fit in the policy map (${capacity.policy - policy.size} of ${capacity.policy} left): none are programmed and ${dir} traffic is denied (policies: ${d.selectedBy.join(', ')})`));
        continue;
      }
      for (const k of keys) policy.set(k, proxied.has(k) ? PROXY : ALLOW);
    }
    const id = ep.endpoint.identity > 0 && ep.endpoint.identity <= 0xffffffff ? ep.endpoint.identity : 0;
    for (const a of addrs) eps.set(toBytes(policyEpKeyCodec.encode({ value: a })), toBytes(policyEpValCodec.encode({ identity: id, flags })));
  }
  const OPEN = toBytes(policyEpValCodec.encode({ identity: 0, flags: 0 }));
  for (const a of open) {
    if (!isIPv4(a)) continue;
    const k = epKey(a);
    if (!eps.has(k)) eps.set(k, OPEN);
  }
  for (const a of closed) {
    if (!isIPv4(a)) continue;
    const k = epKey(a);
    if (!eps.has(k)) eps.set(k, CLOSED_EP);
  }
  const maps = new Map([[POLICY_MAP, policy], [POLICY_EPS_MAP, eps], [POLICY_CIDR_MAP, cidrs]]);
  return { maps, overflows, ...(cidrOverflow !== undefined ? { cidrOverflow } : {}), problems };
}

/** A policy map entry in readable form (tests, `hypha bpf` tools). */
export interface PolicyMapRow {
  ep: string;
  identity: number;
  dir: 'ingress' | 'egress';
  /** 0: any protocol. */
  proto: number;
  /** 'any' or the port prefix, e.g. '80/16' (one port), '8000/10'. */
  ports: string;
  prefixlen: number;
}

export function decodePolicyKey(key: Uint8Array, offset = 0): PolicyMapRow {
  const k = policyKeyCodec.decode(key, offset);
  const portBits = k.prefixlen - PREFIX_ANY_PORT;
  return {
    ep: k.ep_addr, identity: k.identity, dir: k.dir === PolicyDir.INGRESS ? 'ingress' : 'egress', proto: k.prefixlen >= PREFIX_ANY_PORT ? k.proto : 0,
    ports: portBits <= 0 ? 'any' : `${k.dport}/${portBits}`, prefixlen: k.prefixlen,
  };
}

export interface PolicyMapsIO {
  policy: MapIO;
  eps: MapIO;
  cidrs: MapIO;
}

export interface PolicySyncStats extends ApplyStats {
  full: boolean;
}

/**
 * Keeps the three maps equal to the last encoding. The first sync (and
 * every full one) reads the maps back and diffs against what is pinned: a
 * restarted agent adopts what it finds, nothing is flushed. Later syncs
 * diff against the previous encoding (the maps hold 10 000s of entries: no
 * read-back per change); a failed sync makes the next one full.
 */
export class PolicyMapsReconciler {
  readonly #rec: MapFamilyReconciler;
  readonly #io: PolicyMapsIO;
  #last: Map<string, Map<Bytes, Bytes>> | undefined;
  #needFull = true;
  /** Direct writes (writeEndpoint) so far. */
  #direct = 0;

  constructor(io: PolicyMapsIO) {
    this.#io = io;
    const phase = (up: number, del: number) => ({ upsertPhase: () => up, deletePhase: () => del });
    this.#rec = new MapFamilyReconciler('policy', [
      { io: io.policy, ...phase(1, 4) },
      { io: io.cidrs, ...phase(2, 5) },
      { io: io.eps, ...phase(3, 6) },
    ]);
  }

  get capacity(): PolicyMapCapacity {
    return { policy: this.#io.policy.maxEntries, cidrs: this.#io.cidrs.maxEntries };
  }

  /** The next sync reads the maps back (periodic repair of drift). */
  requestFull(): void {
    this.#needFull = true;
  }

  /**
   * Write one endpoints-map entry now, outside a sync (a pod being added is
   * closed before its veth carries traffic), and remember it as written so
   * that the next sync's diff keeps or removes it. `value` undefined deletes.
   * A sync running meanwhile may not see it: the next sync reads back.
   */
  writeEndpoint(addr: string, value: Bytes | undefined): void {
    const k = epKey(addr);
    const raw = Buffer.from(k, 'latin1');
    if (value === undefined) this.#io.eps.delete(raw);
    else this.#io.eps.update(raw, Buffer.from(value, 'latin1'));
    this.#direct++;
    if (!this.#last) return; // the first sync is full
    const eps = new Map(this.#last.get(POLICY_EPS_MAP) ?? []);
    if (value === undefined) eps.delete(k);
    else eps.set(k, value);
    this.#last = new Map(this.#last).set(POLICY_EPS_MAP, eps);
  }

  /** Write what differs. Throws on a failed operation (the caller retries: the next sync is full). */
  async sync(desired: Map<string, Map<Bytes, Bytes>>): Promise<PolicySyncStats> {
    const full = this.#needFull || this.#last === undefined;
    const direct = this.#direct;
    let plan: Plan;
    let held: number;
    if (full) {
      await this.#rec.refresh();
      held = this.#rec.actual(POLICY_MAP).size;
      plan = this.#rec.planFull((emit) => {
        for (const [map, entries] of desired) for (const [k, v] of entries) emit(map, k, v);
      });
    } else {
      held = this.#last!.get(POLICY_MAP)?.size ?? 0;
      plan = this.#rec.planChange(this.#last! as Desired, desired as Desired);
    }
    plan = deletionsFirstWhenFull(plan, held, this.#io.policy.maxEntries);
    this.#needFull = true;
    try {
      const stats = this.#rec.execute(plan);
      this.#last = desired;
      // A direct write while this sync was planned or ran: read back next time.
      this.#needFull = this.#direct !== direct;
      return { ...stats, full };
    } finally {
      this.#rec.release();
    }
  }
}

/** When the policy map cannot hold the entries it has plus the new ones,
 *  its deletions go first (removing an allow never opens anything). */
function deletionsFirstWhenFull(plan: Plan, held: number, max: number): Plan {
  const added = plan.filter((b) => b.map === POLICY_MAP && b.kind === 'upsert').reduce((n, b) => n + b.keys.length, 0);
  if (held + added <= max) return plan;
  const first = plan.filter((b) => b.map === POLICY_MAP && b.kind === 'delete');
  return [...first, ...plan.filter((b) => !first.includes(b))];
}

/**
 * The compiled policy as the maps hold it: a direction that did not fit
 * has no entries (it denies all, as the datapath does), and entries for
 * CIDR identities the CIDR map could not hold are gone. What `hypha policy
 * trace` and `get` judge by. Shared DirectionPolicy objects are copied,
 * never changed.
 */
export function programmedPolicy(compiled: CompiledPolicy, encoded: Pick<PolicyMapEntries, 'overflows' | 'cidrOverflow'>): CompiledPolicy {
  if (encoded.overflows.length === 0 && encoded.cidrOverflow === undefined) return compiled;
  const over = new Map<string, MapOverflow>();
  for (const o of encoded.overflows) over.set(`${o.endpoint} ${o.direction}`, o);
  const cidrIds = new Set(encoded.cidrOverflow === undefined ? [] : compiled.cidrs.map((c) => c.identity));
  const dir = (key: string, name: 'ingress' | 'egress', d: DirectionPolicy): DirectionPolicy => {
    const o = over.get(`${key} ${name}`);
    if (o) return { ...d, entries: [], overflow: o.keys };
    if (cidrIds.size === 0 || !d.entries.some((e) => typeof e.identity === 'number' && cidrIds.has(e.identity))) return d;
    return { ...d, entries: d.entries.filter((e) => !(typeof e.identity === 'number' && cidrIds.has(e.identity))) };
  };
  return {
    ...compiled,
    cidrs: encoded.cidrOverflow === undefined ? compiled.cidrs : [],
    endpoints: compiled.endpoints.map((ep) => ({ ...ep, ingress: dir(ep.key, 'ingress', ep.ingress), egress: dir(ep.key, 'egress', ep.egress) })),
  };
}

/** The identities pinned in the endpoints map, by address (a restarted agent's view of its pods). */
export async function pinnedEndpointIdentities(eps: MapIO): Promise<Map<string, number>> {
  const d = await eps.dump();
  const out = new Map<string, number>();
  for (let i = 0; i < d.count; i++) {
    const ip = policyEpKeyCodec.decode(d.keys, i * eps.keySize).value;
    const v = policyEpValCodec.decode(d.values, i * eps.valueSize);
    if (v.identity !== 0) out.set(ip, v.identity);
  }
  return out;
}
