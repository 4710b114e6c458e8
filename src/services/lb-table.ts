// The load balancer's in-memory table: every compiled Service, turned into
// the map entries it needs, with ids assigned and conflicts settled.
//  - A frontend (address:port/protocol) belongs to one Service, the one
//    FrontendOwners picks from every claim, whatever order they came in:
//    API-allocated addresses (ClusterIPs, NodePorts, LoadBalancer IPs) over
//    ExternalIPs, then the older Service. A refused claim is listed in the
//    Service's notServed and waits; it is served when the owner lets go.
//  - A change that takes a frontend from a Service the table holds no
//    compiled form of names it in `stale`: the caller compiles and sets it
//    again (until then the new owner waits; nothing is served twice).
//  - A Service address (VIP) gets one marker entry however many Services and
//    ports share it; the marker goes when the last one does.
//  - A Service whose entries would not fit the maps is not programmed at all
//    (reported), so nothing half-applied is left behind.
// Pure: no I/O. Entries are kept encoded (see lb-codecs.ts): the table of a
// large cluster holds millions of them. A rendered Service keeps all of its
// entries as one packed latin1 string (backends, then services with each
// slot as its backend id only, then names without padding), about 270 bytes
// for a port of 10 backends where separate strings and a backend-id Map per
// frontend took about 5 KB; the entry lists and backend ids are read back
// from it when a change or a full resync needs them.
import { BackendFlags, SvcFlags, layouts } from '../abi/abi.gen.ts';
import { type LbChange, type LbEntries, type LbEntrySource, type LbSinks, type PinnedLbIds, backendCodec, backendKey, emptyEntries, encodeName, ip4At, u32At, svcKeyCodec, svcValCodec } from '../abi/lb-codecs.ts';
import { type CompiledFrontend, type CompiledService, type FrontendKind, type NotServed, frontendKey } from './compile.ts';
import type { Protocol } from './model.ts';
import { FrontendOwners } from './frontend-owners.ts';
import { IdAllocator, IdPool } from './ids.ts';
import { type Problem, problem } from './problems.ts';

export type { LbEntries } from '../abi/lb-codecs.ts';

export interface LbCapacity {
  /** Entries of the services map: master + slots per frontend and scope, one per VIP. */
  services: number;
  backends: number;
}

export interface ProgrammedFrontend {
  /** 'addr:port/PROTO' */
  key: string;
  kind: FrontendKind;
  svcId: number;
}

export interface RenderedService {
  key: string;
  /** How many frontends it holds (frontendsOf lists them, from `packed`:
   *  a list of objects kept per Service was about 100 bytes more). */
  frontendCount: number;
  /** Service addresses it holds a marker reference on. */
  vips: readonly string[];
  /** Its entries packed (entriesOf and backendsOf read them): `backends`
   *  backends-map records (key and value); then the services map's
   *  `services` entries, each master entry (key and value) followed by the
   *  backend id of each of its `count` slots (the slot entries' keys and
   *  values follow from the master's); then one names record per frontend
   *  (its id, the name's length, the name without its zero padding). */
  packed: string;
  services: number;
  backends: number;
  problems: readonly Problem[];
  /** Frontends it asks for and does not have: compiled ones (IPv6, no node
   *  address, ExternalIP outside the allowed CIDRs) and refused claims. */
  notServed: readonly NotServed[];
  skipped?: string;
}

/** What one change did: entries that were, and entries that are now. A key in
 *  `before` and not in `after` is to be deleted. */
export interface LbUpdate extends LbChange {
  /** Services whose rendering changed (the one set, and any that took over a frontend). */
  services: string[];
  /** Services that lost a frontend to this change and must be compiled and
   *  set again (the table keeps no compiled form of them). */
  stale: string[];
}

/** A change's entries, read from the renderings it took out and made (and
 *  the VIP markers that went and came), in the order it did so, only when
 *  asked for: a full sync never asks (it writes the whole table), so a cold
 *  start encodes each entry once. */
class TableUpdate implements LbUpdate {
  readonly services: string[] = [];
  readonly stale: string[] = [];
  /** Renderings taken out, and VIPs whose marker went (strings), in order. */
  readonly went: (RenderedService | string)[] = [];
  /** Renderings made, and VIPs whose marker came, in order. */
  readonly came: (RenderedService | string)[] = [];
  #before: LbEntries | undefined;
  #after: LbEntries | undefined;
  readonly #frontends = new Map<RenderedService, ProgrammedFrontend[]>();

  /** frontendsOf, read once per rendering in this change (unrendering,
   *  handing its backend ids on and releasing its ids all ask). */
  frontendsOf(r: RenderedService): ProgrammedFrontend[] {
    let l = this.#frontends.get(r);
    if (!l) this.#frontends.set(r, (l = frontendsOf(r)));
    return l;
  }

  get before(): LbEntries {
    return (this.#before ??= entriesOfAll(this.went));
  }

  get after(): LbEntries {
    return (this.#after ??= entriesOfAll(this.came));
  }
}

function entriesOfAll(parts: readonly (RenderedService | string)[]): LbEntries {
  const out = emptyEntries();
  for (const x of parts) {
    if (typeof x === 'string') out.services.push(...markerEntry(x));
    else append(out, entriesOf(x));
  }
  return out;
}

const PROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;

const KIND_FLAG: Record<FrontendKind, number> = {
  ClusterIP: 0,
  NodePort: SvcFlags.NODEPORT,
  ExternalIP: SvcFlags.EXTERNAL_IP,
  LoadBalancer: SvcFlags.LOADBALANCER,
};

const MARKER_VALUE = svcValCodec.encodeString({ backend_id: 0, count: 0, flags: SvcFlags.VIP_MARKER, svc_id: 0, affinity_timeout: 0 });

/** The entry that says "this address belongs to a Service" (any port). */
export function markerEntry(vip: string): [string, string] {
  return [svcKeyCodec.encodeString({ addr: vip, dport: 0, proto: 0, scope: 0, slot: 0 }), MARKER_VALUE];
}

export function backendIdKey(frontendKey: string, backendKey: string): string {
  return `${frontendKey}|${backendKey}`;
}

const SVC_KEY = layouts.hypha_lb4_svc_key.size;
const SVC_REC = SVC_KEY + layouts.hypha_lb4_svc_val.size;
const BE_KEY = 4;
const BE_REC = BE_KEY + layouts.hypha_lb4_backend.size;
const NAME_SIZE = layouts.hypha_lb4_svc_name.size;
const NONE: readonly never[] = Object.freeze([]);
const field = (layout: { fields: readonly { name: string; offset: number }[] }, name: string): number => layout.fields.find((f) => f.name === name)!.offset;
const SLOT_AT = field(layouts.hypha_lb4_svc_key, 'slot');
const COUNT_AT = field(layouts.hypha_lb4_svc_val, 'count');
const SVC_ID_AT = field(layouts.hypha_lb4_svc_val, 'svc_id');
const ZERO4 = '\0\0\0\0';
// A slot entry's value is its backend id, zero count and flags, the
// frontend's id, zero affinity timeout (see #render): what entriesOf rebuilds.
if (field(layouts.hypha_lb4_svc_val, 'backend_id') !== 0 || SVC_ID_AT !== 8 || layouts.hypha_lb4_svc_val.size !== 16) throw new Error('hypha_lb4_svc_val changed: update the packed slot form in lb-table.ts');

/** The slot count of the packed master entry at offset `o` (its value's count, u16 little-endian). */
function slotCountAt(p: string, o: number): number {
  return p.charCodeAt(o + SVC_KEY + COUNT_AT) | (p.charCodeAt(o + SVC_KEY + COUNT_AT + 1) << 8);
}

/** writeEntries' scratch: a rendered Service's packed bytes (grown to the largest seen) ... */
let packedBytes = Buffer.alloc(4096);
/** ... and one slot or name entry built from them. */
const entryBytes = Buffer.alloc(Math.max(SVC_REC, 4 + NAME_SIZE));

/** Gives a rendered Service's entries, read from its packed form, to the
 *  sinks as bytes: backends, then each master followed by its slots, then
 *  the names. The one reader of the packed entries (entriesOf and the full
 *  sync both use it). */
export function writeEntries(r: RenderedService, sinks: LbSinks): void {
  const p = r.packed;
  if (p.length > packedBytes.length) packedBytes = Buffer.alloc(p.length * 2);
  const b = packedBytes;
  b.write(p, 0, p.length, 'latin1');
  const e = entryBytes;
  let o = 0;
  for (let i = 0; i < r.backends; i++, o += BE_REC) sinks.backends(b, o, o + BE_KEY);
  for (let n = 0; n < r.services;) {
    const m = o;
    sinks.services(b, m, m + SVC_KEY);
    o += SVC_REC;
    n++;
    const count = b[m + SVC_KEY + COUNT_AT]! | (b[m + SVC_KEY + COUNT_AT + 1]! << 8);
    if (count === 0) continue;
    // A slot: the master's key with its slot number; its value the backend
    // id kept in the packed form, zero count and flags, the frontend's id,
    // zero affinity timeout.
    for (let j = 0; j < SVC_KEY; j++) e[j] = b[m + j]!;
    e.fill(0, SVC_KEY, SVC_REC);
    for (let j = 0; j < 4; j++) e[SVC_KEY + SVC_ID_AT + j] = b[m + SVC_KEY + SVC_ID_AT + j]!;
    for (let slot = 1; slot <= count; slot++, o += 4, n++) {
      e[SLOT_AT] = slot & 255;
      e[SLOT_AT + 1] = slot >>> 8;
      for (let j = 0; j < 4; j++) e[SVC_KEY + j] = b[o + j]!;
      sinks.services(e, 0, SVC_KEY);
    }
  }
  const names = sinks.names;
  if (!names) return;
  // A name is kept without its zero padding: id, length, bytes.
  for (let i = 0; i < r.frontendCount; i++) {
    const len = b[o + 4]!;
    for (let j = 0; j < 4; j++) e[j] = b[o + j]!;
    for (let j = 0; j < len; j++) e[4 + j] = b[o + 5 + j]!;
    e.fill(0, 4 + len, 4 + NAME_SIZE);
    names(e, 0, 4);
    o += 5 + len;
  }
}

/** Sinks that add each entry to `out` as latin1 strings. */
function stringSinks(out: LbEntries): LbSinks {
  const to = (list: string[], ks: number, vs: number) => (src: Buffer, k: number, v: number): void => {
    list.push(src.toString('latin1', k, k + ks), src.toString('latin1', v, v + vs));
  };
  return { backends: to(out.backends, BE_KEY, BE_REC - BE_KEY), services: to(out.services, SVC_KEY, SVC_REC - SVC_KEY), names: to(out.names, 4, NAME_SIZE) };
}

/** The entries of a rendered Service as separate [key, value, ...] lists (new strings). */
export function entriesOf(r: RenderedService): LbEntries {
  const out = emptyEntries();
  writeEntries(r, stringSinks(out));
  return out;
}

export interface ProgrammedBackend {
  id: number;
  addr: string;
  port: number;
  svcId: number;
}

/** The backends a rendered Service programs (of one frontend, given its id), read from its packed entries. */
export function backendsOf(r: RenderedService, svcId?: number): ProgrammedBackend[] {
  const out: ProgrammedBackend[] = [];
  const p = r.packed;
  for (let i = 0, o = 0; i < r.backends; i++, o += BE_REC) {
    // hypha_lb4_backend: addr (network order), port (be16), proto, flags, svc_id (u32)
    const v = o + BE_KEY;
    const frontendId = u32At(p, v + 8);
    if (svcId !== undefined && frontendId !== svcId) continue;
    out.push({
      id: u32At(p, o),
      addr: ip4At(p, v),
      port: (p.charCodeAt(v + 4) << 8) | p.charCodeAt(v + 5),
      svcId: frontendId,
    });
  }
  return out;
}

const PROTO_NAME = new Map(Object.entries(PROTO).map(([name, n]) => [n as number, name as Protocol]));
const KIND_OF = new Map(Object.entries(KIND_FLAG).map(([kind, flag]) => [flag, kind as FrontendKind]));
const KIND_FLAGS = Object.values(KIND_FLAG).reduce((a, b) => a | b, 0);
const ADDR_AT = field(layouts.hypha_lb4_svc_key, 'addr');
const DPORT_AT = field(layouts.hypha_lb4_svc_key, 'dport');
const PROTO_AT = field(layouts.hypha_lb4_svc_key, 'proto');
const FLAGS_AT = field(layouts.hypha_lb4_svc_val, 'flags');

/** The frontends a rendered Service holds, in the order of its names
 *  records, read from its packed entries: each frontend's id is its names
 *  record's, its address, port, protocol and kind its first master entry's. */
export function frontendsOf(r: RenderedService): ProgrammedFrontend[] {
  const p = r.packed;
  let o = r.backends * BE_REC;
  const masters = new Map<number, number>();
  for (let n = 0; n < r.services;) {
    const id = u32At(p, o + SVC_KEY + SVC_ID_AT);
    if (!masters.has(id)) masters.set(id, o);
    const count = slotCountAt(p, o);
    o += SVC_REC + 4 * count;
    n += 1 + count;
  }
  const out: ProgrammedFrontend[] = [];
  for (let i = 0; i < r.frontendCount; i++) {
    const svcId = u32At(p, o);
    o += 5 + p.charCodeAt(o + 4);
    const m = masters.get(svcId);
    if (m === undefined) throw new Error(`rendering of ${r.key}: frontend id ${svcId} has no master entry`);
    // dport in network order, as the datapath compares it.
    const port = (p.charCodeAt(m + DPORT_AT) << 8) | p.charCodeAt(m + DPORT_AT + 1);
    const protocol = PROTO_NAME.get(p.charCodeAt(m + PROTO_AT)) ?? 'TCP';
    const flags = p.charCodeAt(m + SVC_KEY + FLAGS_AT) & KIND_FLAGS;
    out.push({ key: frontendKey(ip4At(p, m + ADDR_AT), port, protocol), kind: KIND_OF.get(flags) ?? 'ClusterIP', svcId });
  }
  return out;
}

function backendIdsOf(r: RenderedService): Set<number> {
  const out = new Set<number>();
  for (let i = 0, o = 0; i < r.backends; i++, o += BE_REC) out.add(u32At(r.packed, o));
  return out;
}

function append(into: LbEntries, from: LbEntries): void {
  for (const x of from.services) into.services.push(x);
  for (const x of from.backends) into.backends.push(x);
  for (const x of from.names) into.names.push(x);
}

/** The entries a compiled Service takes at most (every frontend claimed, every VIP new): what set() counts against capacity. */
export function entriesNeeded(compiled: CompiledService | undefined): LbCapacity {
  let services = 0;
  let backends = 0;
  if (!compiled) return { services, backends };
  for (const f of compiled.frontends) {
    backends += f.backends.length;
    for (const s of f.scopes) services += 1 + s.slots.length;
  }
  return { services: services + compiled.vips.length, backends };
}

export class LbTable implements LbEntrySource {
  readonly capacity: LbCapacity;
  readonly frontendIds = new IdAllocator('frontend ids', 1, 0xffffffff);
  readonly backendIds = new IdPool('backend ids', 1, 0xffffffff);
  /** Backend ids found in pinned maps, by 'frontend|backend', until the first
   *  full sync has used them (releaseUnusedIds drops the rest). */
  readonly #adoptedBackends = new Map<string, number>();
  /** Compiled form of Services waiting for a frontend another Service holds
   *  (only those: the rest is not needed once rendered). */
  readonly #waiting = new Map<string, CompiledService>();
  readonly #rendered = new Map<string, RenderedService>();
  readonly #waiters = new Map<string, Set<string>>();
  /** Service address -> how many rendered Services hold it (each counts once: its vips are distinct). */
  readonly #markerRefs = new Map<string, number>();
  readonly owners = new FrontendOwners();
  #usedServices = 0;
  #usedBackends = 0;
  #usedNames = 0;

  constructor(capacity: LbCapacity) {
    this.capacity = { ...capacity };
  }

  /** The maps grew: Services refused for room fit now once set() again. */
  setCapacity(capacity: LbCapacity): void {
    this.capacity.services = capacity.services;
    this.capacity.backends = capacity.backends;
  }

  get usage(): { services: number; backends: number; names: number } {
    return { services: this.#usedServices + this.#markerRefs.size, backends: this.#usedBackends, names: this.#usedNames };
  }

  rendered(key: string): RenderedService | undefined {
    return this.#rendered.get(key);
  }

  /** The Service whose rendering holds a frontend ('addr:port/PROTO'), if any. */
  holder(frontend: string): RenderedService | undefined {
    const key = this.owners.holder(frontend);
    return key === undefined ? undefined : this.#rendered.get(key);
  }

  renderedServices(): IterableIterator<RenderedService> {
    return this.#rendered.values();
  }

  /** Every entry the maps should hold. */
  all(): LbEntries {
    const out = emptyEntries();
    this.forEachEntryBytes(stringSinks(out));
    return out;
  }

  /** Give every entry the maps should hold to the sinks, Service by Service, as bytes. */
  forEachEntryBytes(sinks: LbSinks): void {
    for (const r of this.#rendered.values()) writeEntries(r, sinks);
    const e = entryBytes;
    for (const vip of this.#markerRefs.keys()) {
      const [k, v] = markerEntry(vip);
      e.write(k, 0, SVC_KEY, 'latin1');
      e.write(v, SVC_KEY, SVC_REC - SVC_KEY, 'latin1');
      sinks.services(e, 0, SVC_KEY);
    }
  }

  /** Take the ids found in the pinned maps (before the first sync), so every
   *  frontend and backend keeps its id across a restart. */
  adoptPinned(ids: PinnedLbIds): { frontends: number; backends: number } {
    let frontends = 0;
    let backends = 0;
    const adopted = new Map<number, string>();
    for (const f of ids.frontends) {
      const fk = frontendKey(f.addr, f.port, f.protocol);
      if (this.frontendIds.adopt(fk, f.svcId)) (adopted.set(f.svcId, fk), frontends++);
    }
    for (const b of ids.backends) {
      const fk = adopted.get(b.svcId);
      if (fk !== undefined && this.adoptBackend(fk, `${b.addr}:${b.port}`, b.id)) backends++;
    }
    return { frontends, backends };
  }

  /** Remember a backend id found in a pinned map, so the same backend keeps it. */
  adoptBackend(frontendKey: string, backendKey: string, id: number): boolean {
    if (!this.backendIds.adopt(id)) return false;
    this.#adoptedBackends.set(backendIdKey(frontendKey, backendKey), id);
    return true;
  }

  /** Set (or with undefined, remove) one Service. */
  set(key: string, compiled: CompiledService | undefined): LbUpdate {
    const update = new TableUpdate();
    const old: RenderedService[] = [];
    const changed = this.owners.set(
      key,
      (compiled?.frontends ?? []).map((f) => ({ frontend: f.key, addr: f.addr, kind: f.kind })),
      compiled?.addresses ?? [],
      compiled?.created ?? '',
    );
    const freed = this.#unrender(key, update, old);
    this.#waiting.delete(key);
    if (compiled) this.#render(key, compiled, update, old);
    // Others whose verdict changed: re-rendered here when their compiled
    // form is at hand (they were waiting), else handed back as stale.
    const rerender = (w: string, waiting: CompiledService): void => {
      freed.push(...this.#unrender(w, update, old));
      this.#waiting.delete(w);
      this.#render(w, waiting, update, old);
    };
    for (const w of changed) {
      const waiting = this.#waiting.get(w);
      if (waiting) rerender(w, waiting);
      else if (this.#rendered.has(w)) update.stale.push(w);
    }
    // A frontend let go of goes to the claimant its owner is now.
    for (let i = 0; i < freed.length; i++) {
      const fk = freed[i]!;
      for (const w of [...(this.#waiters.get(fk) ?? [])]) {
        const waiting = this.#waiting.get(w);
        if (this.owners.holder(fk) !== undefined || !waiting || !this.owners.verdict(w, fk).granted) continue;
        rerender(w, waiting);
      }
    }
    this.#releaseIds(old, update);
    return update;
  }

  /** Every frontend asked for and not programmed, by Service. */
  *notServed(): IterableIterator<{ service: string } & NotServed> {
    for (const r of this.#rendered.values()) for (const n of r.notServed) yield { service: r.key, ...n };
  }

  /** Drop ids adopted from pinned maps that nothing uses (call after the first full sync). */
  releaseUnusedIds(): number {
    let released = 0;
    // A frontend id is in use while a rendered Service holds the frontend
    // (it is then its owner); an adopted backend id that a rendering took
    // left #adoptedBackends at that moment.
    for (const [k] of [...this.frontendIds.entries()]) if (this.owners.holder(k) === undefined) (this.frontendIds.release(k), released++);
    for (const id of this.#adoptedBackends.values()) (this.backendIds.release(id), released++);
    this.#adoptedBackends.clear();
    return released;
  }

  #unrender(key: string, update: TableUpdate, old: RenderedService[]): string[] {
    const r = this.#rendered.get(key);
    for (const [fk, set] of this.#waiters) if (set.delete(key) && set.size === 0) this.#waiters.delete(fk);
    if (!r) return [];
    old.push(r);
    this.#rendered.delete(key);
    update.went.push(r);
    this.#usedServices -= r.services;
    this.#usedNames -= r.frontendCount;
    this.#usedBackends -= r.backends;
    const freed: string[] = [];
    for (const pf of update.frontendsOf(r)) {
      if (this.owners.holder(pf.key) === key) {
        this.owners.setHolder(pf.key, undefined);
        freed.push(pf.key);
      }
    }
    for (const vip of r.vips) {
      const refs = this.#markerRefs.get(vip) ?? 0;
      if (refs > 1) this.#markerRefs.set(vip, refs - 1);
      else if (refs === 1) {
        this.#markerRefs.delete(vip);
        update.went.push(vip);
      }
    }
    if (!update.services.includes(key)) update.services.push(key);
    return freed;
  }

  #render(key: string, compiled: CompiledService, update: TableUpdate, old: RenderedService[]): void {
    const r: RenderedService = {
      key, frontendCount: 0, vips: NONE, packed: '', services: 0, backends: 0,
      // Most Services have neither: they share one empty list.
      problems: compiled.problems.length ? [...compiled.problems] : NONE, notServed: compiled.notServed.length ? [...compiled.notServed] : NONE,
    };
    if (compiled.skipped !== undefined) r.skipped = compiled.skipped;
    const obj = `Service ${key}`;
    const claimed: CompiledFrontend[] = [];
    for (const f of compiled.frontends) {
      const verdict = this.owners.verdict(key, f.key);
      const owner = this.owners.holder(f.key);
      if (!verdict.granted || (owner !== undefined && owner !== key)) {
        // Refused, or ours but still held by the Service it was taken from
        // (being handed over within this change).
        r.notServed = [...r.notServed, { frontend: f.key, kind: f.kind, reason: verdict.granted ? `being handed over from Service ${owner}` : verdict.reason }];
        let w = this.#waiters.get(f.key);
        if (!w) this.#waiters.set(f.key, (w = new Set()));
        w.add(key);
        this.#waiting.set(key, compiled);
        continue;
      }
      claimed.push(f);
    }

    // Count before allocating anything, so a Service that does not fit
    // leaves no trace.
    let needServices = 0;
    let needBackends = 0;
    for (const f of claimed) {
      needBackends += f.backends.length;
      for (const s of f.scopes) needServices += 1 + s.slots.length;
    }
    const newVips = compiled.vips.filter((v) => !this.#markerRefs.has(v)).length;
    const freeServices = this.capacity.services - this.usage.services;
    const freeBackends = this.capacity.backends - this.#usedBackends;
    if (needServices + newVips > freeServices || needBackends > freeBackends) {
      const which = needBackends > freeBackends
        ? `needs ${needBackends} backend entries, ${freeBackends} of ${this.capacity.backends} are free`
        : `needs ${needServices + newVips} service entries, ${freeServices} of ${this.capacity.services} are free`;
      r.problems = [...r.problems, problem(obj, 'endpoints', needBackends, `do not fit the maps: the Service ${which}; not programmed`)];
      this.#rendered.set(key, r);
      if (!update.services.includes(key)) update.services.push(key);
      return;
    }

    // The packed form is written directly: backends-map records, then each
    // master entry followed by its slots' backend ids, then the names (see
    // RenderedService.packed); entriesOf reads the entries back from it.
    let held = 0;
    const backendParts: string[] = [];
    const serviceParts: string[] = [];
    const nameParts: string[] = [];
    let services = 0;
    for (const f of claimed) {
      this.owners.setHolder(f.key, key);
      const svcId = this.frontendIds.acquire(f.key);
      const proto = PROTO[f.protocol];
      const backendIds = new Map<string, string>();
      // A backend keeps its id while its frontend lists it (and across restarts, adopted).
      let before: Map<string, number> | undefined;
      for (const o of old) {
        const pf = update.frontendsOf(o).find((x) => x.key === f.key);
        if (pf) before = new Map(backendsOf(o, pf.svcId).map((b) => [`${b.addr}:${b.port}`, b.id]));
      }
      for (const b of f.backends) {
        let id = before?.get(b.key);
        if (id === undefined) {
          const adoptedKey = backendIdKey(f.key, b.key);
          id = this.#adoptedBackends.get(adoptedKey);
          if (id !== undefined) this.#adoptedBackends.delete(adoptedKey);
          else id = this.backendIds.acquire();
        }
        const idBytes = backendKey(id);
        backendIds.set(b.key, idBytes);
        backendParts.push(idBytes, backendCodec.encodeString({
          addr: b.addr, port: b.port, proto,
          flags: (b.terminating ? BackendFlags.TERMINATING : 0) | (b.local ? BackendFlags.LOCAL : 0),
          svc_id: svcId,
        }));
      }
      for (const s of f.scopes) {
        let flags = KIND_FLAG[f.kind];
        if (f.affinityTimeout > 0) flags |= SvcFlags.AFFINITY;
        if (s.localOnly) flags |= SvcFlags.LOCAL_ONLY;
        if (s.terminatingFallback) flags |= SvcFlags.TERMINATING_FALLBACK;
        serviceParts.push(svcKeyCodec.encodeString({ addr: f.addr, dport: f.port, proto, scope: s.scope, slot: 0 }), svcValCodec.encodeString({
          backend_id: 0, count: s.slots.length, flags, svc_id: svcId, affinity_timeout: f.affinityTimeout,
        }));
        // A slot entry is kept as its value's first 4 bytes, the backend id
        // (the rest of its key and value follow from the master's).
        for (const bk of s.slots) serviceParts.push(backendIds.get(bk) ?? ZERO4);
        services += 1 + s.slots.length;
      }
      // A name is kept without its zero padding: id, length, bytes.
      const name = encodeName(`${key}:${f.portName || f.port}`);
      let len = name.length;
      while (len > 0 && name.charCodeAt(len - 1) === 0) len--;
      nameParts.push(backendKey(svcId), String.fromCharCode(len), name.slice(0, len));
      held++;
    }
    r.services = services;
    r.backends = backendParts.length / 2;
    // One flat string (join), not a chain of concatenations.
    r.packed = [...backendParts, ...serviceParts, ...nameParts].join('');
    r.frontendCount = held;
    this.#usedServices += r.services;
    this.#usedNames += r.frontendCount;
    this.#usedBackends += r.backends;
    // Kept for the Service's lifetime: usually the Service's own ClusterIPs.
    r.vips = compiled.vips.length > 0 ? compiled.vips : NONE;
    for (const vip of compiled.vips) {
      const refs = this.#markerRefs.get(vip) ?? 0;
      if (refs === 0) update.came.push(vip);
      this.#markerRefs.set(vip, refs + 1);
    }
    update.came.push(r);
    this.#rendered.set(key, r);
    if (!update.services.includes(key)) update.services.push(key);
  }

  /** Free the ids of frontends and backends the old renderings had and
   *  nothing has now. Only the renderings made in this change can have taken
   *  one over (a frontend is held by its owner alone). */
  #releaseIds(old: RenderedService[], update: TableUpdate): void {
    if (old.length === 0) return;
    const kept = new Set<number>();
    for (const k of update.services) {
      const r = this.#rendered.get(k);
      if (r) for (const id of backendIdsOf(r)) kept.add(id);
    }
    for (const r of old) {
      for (const id of backendIdsOf(r)) if (!kept.has(id)) this.backendIds.release(id);
      for (const pf of update.frontendsOf(r)) if (this.owners.holder(pf.key) === undefined) this.frontendIds.release(pf.key);
    }
  }
}
