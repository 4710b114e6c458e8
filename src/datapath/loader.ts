// Loads Hypha's BPF objects (compiled once, at build time, into bpf/build)
// against the maps pinned under the pin root: a first start creates and pins
// them, every later start (a restart, an upgrade) reuses them with their
// contents, so no flow notices. Programs are attached by devices.ts, which
// swaps them atomically over the previous ones.
import { mkdirSync, readdirSync, renameSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import * as native from '../../native/index.ts';
import type { MapHandle, ProgHandle } from '../../native/index.ts';
import { type Config, layouts, type MapName, maps as mapDefs } from '../abi/abi.gen.ts';
import { codec, scalarLayouts } from '../abi/codec.ts';
import { type MapDump, type MapIO, toMapError } from './map-io.ts';

const BPF_FS_MAGIC = 0xcafe4a11;

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/hypha';
export const DEFAULT_OBJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bpf/build');

/** Installed map sizes (max_entries). Changing one for an existing pin needs a migration. */
export interface MapSizes {
  services: number;
  backends: number;
  affinity: number;
  ct: number;
}

export const DEFAULT_MAP_SIZES: MapSizes = { services: 65536, backends: 65536, affinity: 65536, ct: 262144 };

const SIZED_MAPS: Record<keyof MapSizes, MapName> = {
  services: 'hypha_lb4_services_v1',
  backends: 'hypha_lb4_backends_v1',
  affinity: 'hypha_lb4_affinity_v1',
  ct: 'hypha_ct4_v1',
};

const PROGRAMS = {
  fromPod: { object: 'tc/from_pod.o', name: 'hypha_from_pod' },
  toPod: { object: 'tc/to_pod.o', name: 'hypha_to_pod' },
  fromNetdev: { object: 'tc/from_netdev.o', name: 'hypha_from_netdev' },
  toNetdev: { object: 'tc/to_netdev.o', name: 'hypha_to_netdev' },
  xdpNodeport: { object: 'xdp/nodeport.o', name: 'hypha_xdp_nodeport' },
  ctGc: { object: 'tc/ct_gc.o', name: 'hypha_ct_gc' },
  // Socket LB for the node's own sockets (bpf/sock/lb_sock.c; sock-lb.ts attaches them).
  sockConnect4: { object: 'sock/lb_sock.o', name: 'hypha_sock_connect4' },
  sockSendmsg4: { object: 'sock/lb_sock.o', name: 'hypha_sock_sendmsg4' },
  sockRecvmsg4: { object: 'sock/lb_sock.o', name: 'hypha_sock_recvmsg4' },
  sockGetpeername4: { object: 'sock/lb_sock.o', name: 'hypha_sock_getpeername4' },
} as const;

/** The conntrack GC program's scratch map: the keys one run re-checks and
 *  deletes. Defined next to the program (bpf/tc/ct_gc.c), not in the shared
 *  ABI; test/bpf/ct-gc.test.ts checks this name and its layout against the
 *  object's BTF. Its size bounds a run; the lookup batch defaults to it. */
export const CT_GC_KEYS_MAP = 'hypha_ct_gc_keys_v1';

const CT_EXPIRES_OFFSET = layouts.hypha_ct4_entry.fields.find((f) => f.name === 'expires')!.offset;
const CT_GC_MAX_BATCH = 1 << 20;

/** One conntrack garbage-collection pass (see bpf/tc/ct_gc.c). */
export interface ConntrackGcResult {
  /** entries the pass found timed out and deleted */
  deleted: number;
  /** entries left after the pass (visited - deleted) */
  entries: number;
  /** entries read; a map that changes meanwhile may show one twice or not at all */
  visited: number;
  /** lookup batches (BPF_MAP_LOOKUP_BATCH calls) */
  batches: number;
  /** runs of the delete program */
  runs: number;
  /** how long the pass took (off the JS thread) */
  ms: number;
  /** CPU time the pass took (the worker thread's, mostly in the kernel) */
  cpuMs: number;
  /** CPU time of the longest single kernel call of the pass (a batch or a
   *  run): how long GC held a CPU at a stretch */
  maxCallMs: number;
}

export type ProgramName = keyof typeof PROGRAMS;

export interface DatapathOptions {
  pinRoot?: string;
  objectDir?: string;
  /** Sizes fixed by the configuration: a pinned map of another size is refused (ESIZE). */
  mapSizes?: Partial<MapSizes>;
  /** Sizes of maps created now that the configuration does not fix (defaults otherwise). */
  initialSizes?: Partial<MapSizes>;
  log?: Logger;
}

export class DatapathError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DatapathError';
    this.code = code;
  }
}

export const configCodec = codec<Config>(layouts.hypha_config);

/** What writeConfig takes: the config map's value without the datapath's own
 *  lb_generation; the second source-NAT run is optional. */
export type DatapathConfig = Omit<Config, 'lb_generation' | 'policy_generation' | 'snat_port_min2' | 'snat_port_max2'> &
  Partial<Pick<Config, 'snat_port_min2' | 'snat_port_max2'>>;
const u32 = codec<{ value: number }>(scalarLayouts.u32);

/** A MapIO over a real BPF map. Given a function, it follows the map it
 *  returns (a map the datapath grew replaces the old one under the same
 *  name); `mirror`, while it returns a map, gets every write too (a growth
 *  copying entries into a new map). */
export class BpfMapIO implements MapIO {
  readonly name: string;
  readonly #current: () => MapHandle;
  readonly #mirror: () => MapHandle | undefined;
  #info: { handle: MapHandle; keySize: number; valueSize: number; maxEntries: number } | undefined;

  constructor(name: string, handle: MapHandle | (() => MapHandle), mirror: () => MapHandle | undefined = () => undefined) {
    this.name = name;
    this.#current = typeof handle === 'function' ? handle : () => handle;
    this.#mirror = mirror;
    this.#describe();
  }

  #describe(): { keySize: number; valueSize: number; maxEntries: number } {
    const handle = this.#current();
    if (this.#info?.handle !== handle) {
      const info = native.mapInfo(handle);
      this.#info = { handle, keySize: info.keySize, valueSize: native.valueLength(info), maxEntries: info.maxEntries };
    }
    return this.#info!;
  }

  get handle(): MapHandle {
    return this.#current();
  }
  get keySize(): number {
    return this.#describe().keySize;
  }
  get valueSize(): number {
    return this.#describe().valueSize;
  }
  get maxEntries(): number {
    return this.#describe().maxEntries;
  }

  lookup(key: Uint8Array): Uint8Array | undefined {
    try {
      return native.mapLookup(this.handle, key);
    } catch (err) {
      throw toMapError(this.name, 'lookup', err);
    }
  }
  update(key: Uint8Array, value: Uint8Array): void {
    try {
      native.mapUpdate(this.handle, key, value);
      const m = this.#mirror();
      if (m) native.mapUpdate(m, key, value);
    } catch (err) {
      throw toMapError(this.name, 'update', err);
    }
  }
  delete(key: Uint8Array): boolean {
    try {
      const deleted = native.mapDelete(this.handle, key);
      const m = this.#mirror();
      if (m) native.mapDelete(m, key);
      return deleted;
    } catch (err) {
      throw toMapError(this.name, 'delete', err);
    }
  }
  updateBatch(keys: Uint8Array, values: Uint8Array, count: number): void {
    try {
      native.mapUpdateBatch(this.handle, keys, values, count);
      const m = this.#mirror();
      if (m) native.mapUpdateBatch(m, keys, values, count);
    } catch (err) {
      throw toMapError(this.name, 'updateBatch', err);
    }
  }
  deleteBatch(keys: Uint8Array, count: number): number {
    try {
      const n = native.mapDeleteBatch(this.handle, keys, count);
      const m = this.#mirror();
      if (m) native.mapDeleteBatch(m, keys, count);
      return n;
    } catch (err) {
      throw toMapError(this.name, 'deleteBatch', err);
    }
  }
  async dump(): Promise<MapDump> {
    try {
      return await native.mapDumpAsync(this.handle);
    } catch (err) {
      throw toMapError(this.name, 'dump', err);
    }
  }
}

export function pinPath(pinRoot: string, map: MapName): string {
  return path.join(pinRoot, map);
}

function checkBpffs(pinRoot: string): void {
  mkdirSync(pinRoot, { recursive: true });
  const type = statfsSync(pinRoot).type;
  if (type !== BPF_FS_MAGIC) {
    throw new DatapathError('ENOTBPFFS', `pin root ${pinRoot} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)`);
  }
}

/** Maps of an earlier layout (same name, another _vN) that this build no
 *  longer uses: nothing reads them any more, and their state cannot be
 *  reinterpreted. Removed so the pin root holds only what is in use. */
function removeStalePins(pinRoot: string, log?: Logger): void {
  const current = new Set(Object.keys(mapDefs));
  const families = new Set([...current].map((n) => n.replace(/_v\d+$/, '')));
  for (const f of readdirSync(pinRoot)) {
    const m = /^(hypha_\w+)_v\d+$/.exec(f);
    if (!m || current.has(f) || !families.has(m[1] ?? '')) continue;
    rmSync(path.join(pinRoot, f), { force: true });
    log?.info({ map: f }, 'removed the pin of a map of an older layout');
  }
}

/** BPF_F_NO_COMMON_LRU: per-CPU LRU lists. The conntrack map had them until
 *  its capacity had to hold for one busy CPU (issue 11): each CPU evicted from
 *  its own max_entries / CPUs share. libbpf cannot reuse a pin whose flags
 *  differ, so the old map's entries are read, its pin removed, and the
 *  entries written into the new map once it exists: open flows keep going
 *  across the upgrade. */
const BPF_F_NO_COMMON_LRU = 1 << 1;

const BPF_F_NO_PREALLOC = 1 << 0;

/** The names map was preallocated until it had to follow the services map to
 *  2M entries (360 MB of kernel memory to name 100 000 frontends). libbpf
 *  cannot reuse a pin whose flags differ; no program reads the map and the
 *  load balancer's first sync writes every name again, so the old pin just
 *  goes. */
function dropPreallocatedNames(pinRoot: string, log?: Logger): void {
  const info = pinnedInfo(pinRoot, NAMES_MAP);
  if (!info || (info.flags & BPF_F_NO_PREALLOC) !== 0) return;
  const file = pinPath(pinRoot, NAMES_MAP);
  rmSync(file, { force: true });
  log?.info({ map: NAMES_MAP }, 'removed the preallocated names map of an older build; the first sync writes the names again');
}

function carryOverRetiredCt(pinRoot: string, log?: Logger): MapDump | undefined {
  const file = pinPath(pinRoot, SIZED_MAPS.ct);
  let handle: MapHandle;
  try {
    handle = native.openPinnedMap(file);
  } catch (err) {
    if (native.hasNativeCode(err, 'ENOENT')) return undefined;
    throw err;
  }
  try {
    if ((native.mapInfo(handle).flags & BPF_F_NO_COMMON_LRU) === 0) return undefined;
    const dump = native.mapDump(handle);
    rmSync(file, { force: true });
    log?.info({ map: SIZED_MAPS.ct, entries: dump.count }, 'conntrack map with per-CPU LRU lists replaced by one with a shared list');
    return dump;
  } finally {
    native.close(handle);
  }
}

/** Open the maps pinned under pinRoot (for tools that only read, like `hypha service list`). */
export function openPinnedMaps(pinRoot = DEFAULT_PIN_ROOT): Map<MapName, MapHandle> {
  const out = new Map<MapName, MapHandle>();
  for (const name of Object.keys(mapDefs) as MapName[]) {
    try {
      out.set(name, native.openPinnedMap(pinPath(pinRoot, name)));
    } catch (err) {
      if (native.hasNativeCode(err, 'ENOENT')) continue;
      throw err;
    }
  }
  return out;
}

/** Largest max_entries a map may be given or grown to. */
export const MAX_MAP_SIZE = 1 << 26;
const NAMES_MAP: MapName = 'hypha_lb4_names_v1';
/** Staging directory of a growth under the pin root. */
export const GROW_DIR = 'growing'; // bpffs refuses names with a dot
/** Maps the programs write (their entries made during a growth are carried over). */
const DATAPATH_WRITTEN = new Set<MapName>(['hypha_lb4_affinity_v1']);

/** The steps of a growth, in order (the fault-injection test stops between them). */
export type GrowStep = 'created' | 'copied' | 'swapped' | 'loaded' | 'attached' | 'carried';

export interface GrowOptions {
  /** Put the programs loaded now on every device (the growth of a map the programs name directly). */
  reattach: () => void | Promise<void>;
  afterStep?: (step: GrowStep) => Promise<void>;
  log?: Logger;
}

/** The conntrack map's slots: 0 in use, 1 the previous one during a growth (bpf/include/hypha/maps.h). */
export const CT_SLOTS_MAP: MapName = 'hypha_ct4_maps_v1';

export interface GrowResult {
  maps: { map: MapName; from: number; to: number }[];
  ms: number;
  /** entries the old programs made during the growth, carried into the new maps */
  carried: number;
}

/** max_entries of a pinned map, or undefined when there is none. */
/** What the kernel says of a pinned map; undefined when nothing is pinned there. */
function pinnedInfo(pinRoot: string, name: MapName): ReturnType<typeof native.mapInfo> | undefined {
  let h: MapHandle;
  try {
    h = native.openPinnedMap(pinPath(pinRoot, name));
  } catch (err) {
    if (native.hasNativeCode(err, 'ENOENT')) return undefined;
    throw err;
  }
  try {
    return native.mapInfo(h);
  } finally {
    native.close(h);
  }
}

function pinnedSize(pinRoot: string, name: MapName): number | undefined {
  return pinnedInfo(pinRoot, name)?.maxEntries;
}

/** A growth that did not finish (the agent died in it) left its staging
 *  directory: the pins outside it are the old maps, whole (every write went
 *  to both). Removing it rolls the growth back; the agent grows again if it
 *  still needs to. */
function rollBackGrowth(pinRoot: string, log?: Logger): void {
  const stage = path.join(pinRoot, GROW_DIR);
  let entries: string[];
  try {
    entries = readdirSync(stage);
  } catch {
    return;
  }
  rmSync(stage, { recursive: true, force: true });
  log?.warn({ stage, pins: entries.length }, 'a map growth that did not finish was rolled back (the old maps are in place)');
}

/** The id of the map in a slot of an array of maps (0: empty). */
function slotId(outer: MapHandle, slot: number): number {
  const v = native.mapLookup(outer, u32.encode({ value: slot }));
  return v ? u32.decode(v).value : 0;
}

/** A conntrack growth that died after its swap: the programs use the new
 *  map (slot 0, pinned in growing/). Finish it: carry the old map's flows
 *  over, empty slot 1, move the pin into place. One that died before the
 *  swap is rolled back with the rest of growing/. */
function finishConntrackGrowth(pinRoot: string, log?: Logger): void {
  const staged = path.join(pinRoot, GROW_DIR, SIZED_MAPS.ct);
  const open = (file: string): MapHandle | undefined => {
    try {
      return native.openPinnedMap(file);
    } catch {
      return undefined;
    }
  };
  const fresh = open(staged);
  if (!fresh) return;
  const outer = open(pinPath(pinRoot, CT_SLOTS_MAP));
  const old = open(pinPath(pinRoot, SIZED_MAPS.ct));
  try {
    const id = native.mapInfo(fresh).id;
    // The map in use shared into growing/ by a growth of other maps is no conntrack growth.
    if (!outer || slotId(outer, 0) !== id || (old && native.mapInfo(old).id === id)) return;
    const carried = old ? carryMissing(old, fresh) : 0;
    native.mapSetInner(outer, 1, null);
    renameSync(staged, pinPath(pinRoot, SIZED_MAPS.ct));
    log?.warn({ map: SIZED_MAPS.ct, maxEntries: native.mapInfo(fresh).maxEntries, carried }, 'a conntrack growth that did not finish was completed (the programs already used the new map)');
  } finally {
    for (const h of [fresh, outer, old]) if (h) native.close(h);
  }
}

/** Slot 0 holds the pinned conntrack map and slot 1 nothing (a previous
 *  map's flows were carried over or are gone with it). */
function settleConntrackSlots(maps: Map<MapName, MapHandle>, log?: Logger): void {
  const outer = maps.get(CT_SLOTS_MAP);
  const ct = maps.get(SIZED_MAPS.ct);
  if (!outer || !ct) return;
  if (slotId(outer, 0) !== native.mapInfo(ct).id) {
    native.mapSetInner(outer, 0, ct);
    log?.warn({ map: CT_SLOTS_MAP }, 'conntrack slot 0 did not hold the pinned conntrack map; set');
  }
  if (slotId(outer, 1) !== 0) native.mapSetInner(outer, 1, null);
}

/** Copy the entries of `from` that `to` does not have; returns how many. */
function carryMissing(from: MapHandle, to: MapHandle): number {
  const src = native.mapDump(from);
  if (src.count === 0) return 0;
  const have = native.mapDump(to);
  const info = native.mapInfo(from);
  const ks = info.keySize;
  const vs = native.valueLength(info);
  const seen = new Set<string>();
  const hk = Buffer.from(have.keys.buffer, have.keys.byteOffset, have.count * ks);
  for (let i = 0; i < have.count; i++) seen.add(hk.toString('latin1', i * ks, (i + 1) * ks));
  const sk = Buffer.from(src.keys.buffer, src.keys.byteOffset, src.count * ks);
  const sv = Buffer.from(src.values.buffer, src.values.byteOffset, src.count * vs);
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (let i = 0; i < src.count; i++) {
    if (seen.has(sk.toString('latin1', i * ks, (i + 1) * ks))) continue;
    keys.push(sk.subarray(i * ks, (i + 1) * ks));
    values.push(sv.subarray(i * vs, (i + 1) * vs));
  }
  if (keys.length > 0) native.mapUpdateBatch(to, Buffer.concat(keys), Buffer.concat(values), keys.length, 'noexist');
  return keys.length;
}

async function loadPrograms(objectDir: string, pinRoot: string, maxEntries: Record<string, number>, log?: Logger): Promise<Record<ProgramName, ProgHandle>> {
  const programs: Partial<Record<ProgramName, ProgHandle>> = {};
  try {
    for (const [prog, spec] of Object.entries(PROGRAMS) as [ProgramName, (typeof PROGRAMS)[ProgramName]][]) {
      const file = path.join(objectDir, spec.object);
      let obj;
      try {
        obj = native.openObject(file, { pinRoot, maxEntries });
      } catch (err) {
        throw new DatapathError('EOBJECT', `cannot open BPF object ${file} (run \`make build\`): ${(err as Error).message}`, { cause: err });
      }
      try {
        await native.loadObject(obj);
        programs[prog] = native.objectProgram(obj, spec.name);
      } catch (err) {
        const e = err as native.NativeError;
        const detail = e.verifierLog ? `\n${e.verifierLog.split('\n').slice(-30).join('\n')}` : '';
        throw new DatapathError('ELOAD', `loading ${spec.object} failed: ${e.message}${detail}`, { cause: err });
      } finally {
        native.close(obj);
      }
      log?.debug({ program: spec.name }, 'program loaded');
    }
  } catch (err) {
    for (const h of Object.values(programs)) native.close(h);
    throw err;
  }
  return programs as Record<ProgramName, ProgHandle>;
}

export class Datapath {
  readonly pinRoot: string;
  readonly #maps: Map<MapName, MapHandle>;
  #programs: Record<ProgramName, ProgHandle>;
  /** Installed sizes now (a growth raises them). */
  readonly sizes: MapSizes;
  /** Maps being grown: name -> the new map, which gets every write through mapIO() too. */
  readonly #mirror = new Map<MapName, MapHandle>();
  #growing = false;
  #closed = false;
  readonly #objectDir: string;

  private constructor(pinRoot: string, objectDir: string, maps: Map<MapName, MapHandle>, programs: Record<ProgramName, ProgHandle>, sizes: MapSizes) {
    this.pinRoot = pinRoot;
    this.#objectDir = objectDir;
    this.#maps = maps;
    this.#programs = programs;
    this.sizes = sizes;
  }

  get maps(): ReadonlyMap<MapName, MapHandle> {
    return this.#maps;
  }

  /** The loaded programs (a growth replaces them: read at each attach). */
  get programs(): Readonly<Record<ProgramName, ProgHandle>> {
    return this.#programs;
  }

  /**
   * `mapSizes`: sizes the configuration fixes (a pinned map of another size
   * is refused, as before growth existed). Every other sized map adopts the
   * size it is pinned with, or is created with `initialSizes` (else the
   * defaults), and may grow (grow()).
   */
  static async load(opts: DatapathOptions = {}): Promise<Datapath> {
    const pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
    const objectDir = opts.objectDir ?? DEFAULT_OBJECT_DIR;
    for (const [k, v] of Object.entries({ ...opts.initialSizes, ...opts.mapSizes })) {
      if (!Number.isInteger(v) || v < 1 || v > MAX_MAP_SIZE) {
        throw new DatapathError('EINVALID', `map size ${k}: ${v} is not an integer in 1..${MAX_MAP_SIZE}`);
      }
    }
    checkBpffs(pinRoot);
    removeStalePins(pinRoot, opts.log);
    finishConntrackGrowth(pinRoot, opts.log);
    rollBackGrowth(pinRoot, opts.log);
    dropPreallocatedNames(pinRoot, opts.log);
    const sizes: MapSizes = { ...DEFAULT_MAP_SIZES, ...opts.initialSizes };
    const maxEntries: Record<string, number> = {};
    for (const [k, name] of Object.entries(SIZED_MAPS) as [keyof MapSizes, MapName][]) {
      const fixed = opts.mapSizes?.[k];
      const pinned = fixed === undefined ? pinnedSize(pinRoot, name) : undefined;
      sizes[k] = fixed ?? pinned ?? sizes[k];
      maxEntries[name] = sizes[k];
    }
    // One name per frontend: as many as the services map holds (its own pinned size when it has one).
    maxEntries[NAMES_MAP] = (opts.mapSizes?.services === undefined ? pinnedSize(pinRoot, NAMES_MAP) : undefined) ?? sizes.services;
    Datapath.#checkPinned(pinRoot, maxEntries);
    const carried = carryOverRetiredCt(pinRoot, opts.log);

    const programs = await loadPrograms(objectDir, pinRoot, maxEntries, opts.log);
    const maps = openPinnedMaps(pinRoot);
    if (carried && carried.count > 0) {
      const ct = maps.get(SIZED_MAPS.ct);
      if (ct) native.mapUpdateBatch(ct, carried.keys, carried.values, carried.count, 'any');
      opts.log?.info({ map: SIZED_MAPS.ct, entries: carried.count }, 'conntrack entries carried over into the shared-LRU map');
    }
    for (const name of Object.keys(mapDefs) as MapName[]) {
      if (!maps.has(name)) throw new DatapathError('ENOENT', `map ${name} was not pinned under ${pinRoot}`);
    }
    settleConntrackSlots(maps, opts.log);
    const dp = new Datapath(pinRoot, objectDir, maps, programs, sizes);
    opts.log?.info({ pinRoot, sizes }, 'datapath loaded');
    return dp;
  }

  /**
   * Grow maps online to the sizes in `target` (larger than now): for each, a
   * new map is created and pinned under the staging directory (`growing/`),
   * the old one's entries are copied into it and every later write through
   * mapIO() goes to both; every program is loaded again against the new maps
   * (the others shared through pins in the staging directory), `reattach`
   * swaps them in on every device (each swap atomic); entries the old
   * programs made meanwhile (conntrack, affinity) are carried over; the new
   * pins replace the old ones by rename, and the old maps go with their last
   * reference. A crash at any step leaves the old pins in place, consistent
   * (writes were mirrored); the next load removes `growing/` (rollBackGrowth).
   */
  async grow(target: Partial<MapSizes>, opts: GrowOptions): Promise<GrowResult> {
    if (this.#growing) throw new DatapathError('EBUSY', 'a growth is already running');
    for (const [k, to] of Object.entries(target) as [keyof MapSizes, number][]) {
      if (!(k in SIZED_MAPS)) throw new DatapathError('EINVALID', `map size ${k} is not one of ${Object.keys(SIZED_MAPS).join(', ')}`);
      if (!Number.isInteger(to) || to > MAX_MAP_SIZE) throw new DatapathError('EINVALID', `map size ${k}: ${to} is not an integer up to ${MAX_MAP_SIZE}`);
    }
    const t0 = performance.now();
    const { ct, ...rest } = target;
    const out: GrowResult = { maps: [], ms: 0, carried: 0 };
    this.#growing = true;
    try {
      if (ct !== undefined) {
        const r = await this.#growConntrack(ct, opts);
        out.maps.push(...r.maps);
        out.carried += r.carried;
      }
      const r = await this.#growByReload(rest, opts);
      out.maps.push(...r.maps);
      out.carried += r.carried;
    } finally {
      this.#growing = false;
    }
    out.ms = performance.now() - t0;
    if (out.maps.length > 0) opts.log?.info({ maps: out.maps, carried: out.carried, ms: Math.round(out.ms) }, 'maps grown');
    return out;
  }

  /**
   * Conntrack grows without reloading a program: the programs reach it
   * through slot 0 of hypha_ct4_maps_v1. A new map (pinned in growing/)
   * gets a copy of the entries, the old map goes to slot 1 and the new one
   * to slot 0 (every program at once; a lookup that misses the new map
   * finds the old one's flows), the flows made meanwhile are carried over,
   * slot 1 is emptied and the new pin renamed over the old. A crash after
   * the swap is finished by the next load, one before it rolled back.
   */
  async #growConntrack(to: number, opts: GrowOptions): Promise<GrowResult> {
    const name = SIZED_MAPS.ct;
    const old = this.map(name);
    const info = native.mapInfo(old);
    if (to <= info.maxEntries) return { maps: [], ms: 0, carried: 0 };
    const outer = this.map(CT_SLOTS_MAP);
    const stage = path.join(this.pinRoot, GROW_DIR);
    rmSync(stage, { recursive: true, force: true });
    mkdirSync(stage);
    const fresh = native.mapCreate(info.type, info.keySize, info.valueSize, to, { name: info.name, flags: info.flags });
    let swapped = false;
    try {
      native.pin(fresh, path.join(stage, name));
      await opts.afterStep?.('created');
      const d = native.mapDump(old);
      if (d.count > 0) native.mapUpdateBatch(fresh, d.keys, d.values, d.count, 'any');
      await opts.afterStep?.('copied');
      native.mapSetInner(outer, 1, old);
      native.mapSetInner(outer, 0, fresh);
      swapped = true;
      this.#maps.set(name, fresh);
      await opts.afterStep?.('swapped');
      const carried = carryMissing(old, fresh);
      native.mapSetInner(outer, 1, null);
      await opts.afterStep?.('carried');
      renameSync(path.join(stage, name), pinPath(this.pinRoot, name));
      rmSync(stage, { recursive: true, force: true });
      native.close(old);
      this.sizes.ct = to;
      return { maps: [{ map: name, from: info.maxEntries, to }], ms: 0, carried };
    } catch (err) {
      if (swapped) {
        // Back to the old map, whole but for the flows opened since the swap.
        native.mapSetInner(outer, 0, old);
        native.mapSetInner(outer, 1, null);
        this.#maps.set(name, old);
      }
      native.close(fresh);
      rmSync(stage, { recursive: true, force: true });
      throw err instanceof DatapathError ? err : new DatapathError('EGROW', `growing ${name} to ${to} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async #growByReload(target: Partial<MapSizes>, opts: GrowOptions): Promise<GrowResult> {
    const t0 = performance.now();
    const grown: { name: MapName; key: keyof MapSizes | 'names'; from: number; to: number; fresh: MapHandle }[] = [];
    for (const [k, to] of Object.entries(target) as [keyof MapSizes, number][]) {
      const name = SIZED_MAPS[k];
      const from = native.mapInfo(this.map(name)).maxEntries;
      if (to <= from) continue;
      grown.push({ name, key: k, from, to, fresh: undefined as unknown as MapHandle });
      if (k === 'services') {
        const names = native.mapInfo(this.map(NAMES_MAP)).maxEntries;
        if (to > names) grown.push({ name: NAMES_MAP, key: 'names', from: names, to, fresh: undefined as unknown as MapHandle });
      }
    }
    if (grown.length === 0) return { maps: [], ms: 0, carried: 0 };
    const stage = path.join(this.pinRoot, GROW_DIR);
    const oldPrograms = this.#programs;
    const old = new Map(grown.map((g) => [g.name, this.map(g.name)]));
    let swapped = false;
    try {
      rmSync(stage, { recursive: true, force: true });
      mkdirSync(stage);
      // 1. The new maps, pinned in the staging directory; the other pins shared there.
      for (const g of grown) {
        const info = native.mapInfo(this.map(g.name));
        g.fresh = native.mapCreate(info.type, info.keySize, info.valueSize, g.to, { name: info.name, flags: info.flags });
        native.pin(g.fresh, path.join(stage, g.name));
      }
      for (const f of readdirSync(this.pinRoot)) {
        if (f === GROW_DIR || grown.some((g) => g.name === f)) continue;
        let h: MapHandle;
        try {
          h = native.openPinnedMap(path.join(this.pinRoot, f));
        } catch {
          continue; // not a map (a directory of programs, say)
        }
        try {
          native.pin(h, path.join(stage, f));
        } finally {
          native.close(h);
        }
      }
      await opts.afterStep?.('created');
      // 2. Copy, and from now every write goes to both (same JS turn: nothing in between).
      for (const g of grown) {
        const d = native.mapDump(this.map(g.name));
        if (d.count > 0) native.mapUpdateBatch(g.fresh, d.keys, d.values, d.count, 'any');
        this.#mirror.set(g.name, g.fresh);
      }
      await opts.afterStep?.('copied');
      // 3. Programs against the new maps.
      const maxEntries: Record<string, number> = {};
      for (const [k, name] of Object.entries(SIZED_MAPS) as [keyof MapSizes, MapName][]) maxEntries[name] = native.mapInfo(this.map(name)).maxEntries;
      maxEntries[NAMES_MAP] = native.mapInfo(this.map(NAMES_MAP)).maxEntries;
      for (const g of grown) maxEntries[g.name] = g.to;
      const programs = await loadPrograms(this.#objectDir, stage, maxEntries, opts.log);
      await opts.afterStep?.('loaded');
      // 4. Swap them in on every device; mapIO() now reads the new maps.
      this.#programs = programs;
      for (const g of grown) {
        this.#maps.set(g.name, g.fresh);
        this.#mirror.delete(g.name);
      }
      swapped = true;
      // Writes from here on go to the new maps; keep the old ones in step
      // until the devices run the new programs (a reader of the old).
      for (const g of grown) this.#mirror.set(g.name, old.get(g.name)!);
      await opts.reattach();
      await opts.afterStep?.('attached');
      // 5. What the old programs wrote meanwhile (flows opened, affinities made).
      let carried = 0;
      for (const g of grown) {
        this.#mirror.delete(g.name);
        if (!DATAPATH_WRITTEN.has(g.name)) continue;
        carried += carryMissing(old.get(g.name)!, g.fresh);
      }
      await opts.afterStep?.('carried');
      // 6. The new pins take the old names; the staging directory goes.
      for (const g of grown) renameSync(path.join(stage, g.name), path.join(this.pinRoot, g.name));
      rmSync(stage, { recursive: true, force: true });
      for (const g of grown) {
        if (g.key !== 'names') this.sizes[g.key] = g.to;
      }
      for (const h of old.values()) native.close(h);
      for (const h of Object.values(oldPrograms)) native.close(h);
      return { maps: grown.map((g) => ({ map: g.name, from: g.from, to: g.to })), ms: performance.now() - t0, carried };
    } catch (err) {
      // Back to the old maps and programs (the devices that took the new
      // programs get the old ones again from the caller's next reattach).
      this.#mirror.clear();
      if (swapped) {
        this.#programs = oldPrograms;
        for (const g of grown) this.#maps.set(g.name, old.get(g.name)!);
      }
      for (const g of grown) if (g.fresh) native.close(g.fresh);
      rmSync(stage, { recursive: true, force: true });
      throw err instanceof DatapathError ? err : new DatapathError('EGROW', `growing ${grown.map((g) => `${g.name} to ${g.to}`).join(', ')} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** A pinned map whose layout or size differs from this build would be
   *  refused by libbpf with a terse message; say what differs instead. */
  static #checkPinned(pinRoot: string, maxEntries: Record<string, number>): void {
    for (const name of Object.keys(mapDefs) as MapName[]) {
      let handle: MapHandle;
      try {
        handle = native.openPinnedMap(pinPath(pinRoot, name));
      } catch (err) {
        if (native.hasNativeCode(err, 'ENOENT')) continue;
        throw err;
      }
      try {
        const info = native.mapInfo(handle);
        const def = mapDefs[name];
        const want = maxEntries[name] ?? def.maxEntries;
        const key = def.key === null ? 0 : def.key === 'u32' || def.key === 'ip4' ? 4 : layouts[def.key].size;
        // A map of maps holds map ids (4 bytes); a ring buffer has no value.
        const value = def.value === null ? (def.type === 'array_of_maps' ? 4 : 0) : layouts[def.value].size;
        if (info.keySize !== key || info.valueSize !== value) {
          throw new DatapathError('ELAYOUT', `pinned map ${pinPath(pinRoot, name)} has key/value sizes ${info.keySize}/${info.valueSize}, this build expects ${key}/${value}: a layout change must come with a new _vN map name`);
        }
        if (info.maxEntries !== want) {
          throw new DatapathError('ESIZE', `pinned map ${pinPath(pinRoot, name)} holds ${info.maxEntries} entries, the configuration asks for ${want}: keep the installed size, or remove the pin (flushing its state) to resize`);
        }
      } finally {
        native.close(handle);
      }
    }
  }

  /** The map now: a growth replaces it, so hold on to the name, not the handle. */
  map(name: MapName): MapHandle {
    const h = this.#maps.get(name);
    if (!h) throw new DatapathError('ENOENT', `map ${name} is not open`);
    return h;
  }

  /** A MapIO that follows the map through growths (and writes to both while one copies). */
  mapIO(name: MapName): BpfMapIO {
    return new BpfMapIO(name, () => this.map(name), () => this.#mirror.get(name));
  }

  /** Delete every timed-out conntrack entry, on a worker thread, in bounded
   *  steps (native mapSweepAsync): lookup batches of `batch` entries (default:
   *  the scratch map's size, 4096) nominate the timed-out ones, and runs of
   *  hypha_ct_gc delete each nominee that is still timed out in the kernel. */
  async collectConntrack(opts: { batch?: number } = {}): Promise<ConntrackGcResult> {
    const { batch } = opts;
    if (batch !== undefined && (!Number.isInteger(batch) || batch < 1 || batch > CT_GC_MAX_BATCH)) {
      throw new DatapathError('EINVALID', `conntrack GC batch ${batch} is not an integer in 1..${CT_GC_MAX_BATCH}`);
    }
    const keys = native.openPinnedMap(path.join(this.pinRoot, CT_GC_KEYS_MAP));
    try {
      const r = await native.mapSweepAsync(this.map('hypha_ct4_v1'), keys, this.programs.ctGc, {
        expiresOffset: CT_EXPIRES_OFFSET,
        batch: batch ?? native.mapInfo(keys).maxEntries,
      });
      return {
        deleted: r.deleted,
        entries: Math.max(0, r.visited - r.deleted),
        visited: r.visited,
        batches: r.lookups,
        runs: r.runs,
        ms: r.durationNs / 1e6,
        cpuMs: r.cpuNs / 1e6,
        maxCallMs: r.maxCallCpuNs / 1e6,
      };
    } finally {
      native.close(keys);
    }
  }

  /** The programs' runtime settings. The generations are the datapath's own
   *  (bumpLbGeneration, bumpPolicyGeneration): kept as they are in the map. */
  writeConfig(cfg: DatapathConfig): void {
    const old = this.#readConfig();
    this.#storeConfig({
      snat_port_min2: 0, snat_port_max2: 0, ...cfg,
      lb_generation: old?.lb_generation ?? 0, policy_generation: old?.policy_generation ?? 0,
    });
  }

  /** After a change to the policy maps: open flows are judged again at their
   *  next packet (bpf/lib/policy.h). */
  bumpPolicyGeneration(): void {
    const cfg = this.#readConfig();
    if (cfg) this.#storeConfig({ ...cfg, policy_generation: (cfg.policy_generation + 1) >>> 0 });
  }

  /** After a change to the load-balancer maps: open flows re-check their
   *  backend at their next packet (bpf/lib/lb.h). */
  bumpLbGeneration(): void {
    const cfg = this.#readConfig();
    if (cfg) this.#storeConfig({ ...cfg, lb_generation: (cfg.lb_generation + 1) >>> 0 });
  }

  #readConfig(): Config | undefined {
    const v = native.mapLookup(this.map('hypha_config_v4'), u32.encode({ value: 0 }));
    return v ? configCodec.decode(v) : undefined;
  }

  #storeConfig(cfg: Config): void {
    native.mapUpdate(this.map('hypha_config_v4'), u32.encode({ value: 0 }), configCodec.encode(cfg));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.maps.values()) native.close(h);
    for (const h of Object.values(this.programs)) native.close(h);
  }
}
