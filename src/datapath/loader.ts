// Loads Hypha's BPF objects (compiled once, at build time, into bpf/build)
// against the maps pinned under the pin root: a first start creates and pins
// them, every later start (a restart, an upgrade) reuses them with their
// contents, so no flow notices. Programs are attached by devices.ts, which
// swaps them atomically over the previous ones.
import { mkdirSync, readdirSync, rmSync, statfsSync } from 'node:fs';
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
  mapSizes?: Partial<MapSizes>;
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

/** A MapIO over a real BPF map. */
export class BpfMapIO implements MapIO {
  readonly name: string;
  readonly handle: MapHandle;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;

  constructor(name: string, handle: MapHandle) {
    this.name = name;
    this.handle = handle;
    const info = native.mapInfo(handle);
    this.keySize = info.keySize;
    this.valueSize = native.valueLength(info);
    this.maxEntries = info.maxEntries;
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
    } catch (err) {
      throw toMapError(this.name, 'update', err);
    }
  }
  delete(key: Uint8Array): boolean {
    try {
      return native.mapDelete(this.handle, key);
    } catch (err) {
      throw toMapError(this.name, 'delete', err);
    }
  }
  updateBatch(keys: Uint8Array, values: Uint8Array, count: number): void {
    try {
      native.mapUpdateBatch(this.handle, keys, values, count);
    } catch (err) {
      throw toMapError(this.name, 'updateBatch', err);
    }
  }
  deleteBatch(keys: Uint8Array, count: number): number {
    try {
      return native.mapDeleteBatch(this.handle, keys, count);
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

export class Datapath {
  readonly pinRoot: string;
  readonly maps: ReadonlyMap<MapName, MapHandle>;
  readonly programs: Readonly<Record<ProgramName, ProgHandle>>;
  readonly sizes: MapSizes;
  #closed = false;

  private constructor(pinRoot: string, maps: Map<MapName, MapHandle>, programs: Record<ProgramName, ProgHandle>, sizes: MapSizes) {
    this.pinRoot = pinRoot;
    this.maps = maps;
    this.programs = programs;
    this.sizes = sizes;
  }

  static async load(opts: DatapathOptions = {}): Promise<Datapath> {
    const pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
    const objectDir = opts.objectDir ?? DEFAULT_OBJECT_DIR;
    const sizes: MapSizes = { ...DEFAULT_MAP_SIZES, ...opts.mapSizes };
    for (const [k, v] of Object.entries(sizes)) {
      if (!Number.isInteger(v) || v < 1 || v > 1 << 26) {
        throw new DatapathError('EINVALID', `map size ${k}: ${v} is not an integer in 1..${1 << 26}`);
      }
    }
    checkBpffs(pinRoot);
    removeStalePins(pinRoot, opts.log);
    const maxEntries: Record<string, number> = {};
    for (const [k, name] of Object.entries(SIZED_MAPS)) maxEntries[name] = sizes[k as keyof MapSizes];
    // One name per frontend: never more than the services map holds.
    maxEntries.hypha_lb4_names_v1 = sizes.services;
    Datapath.#checkPinned(pinRoot, maxEntries);
    const carried = carryOverRetiredCt(pinRoot, opts.log);

    const programs: Partial<Record<ProgramName, ProgHandle>> = {};
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
      opts.log?.debug({ program: spec.name }, 'program loaded');
    }
    const maps = openPinnedMaps(pinRoot);
    if (carried && carried.count > 0) {
      const ct = maps.get(SIZED_MAPS.ct);
      if (ct) native.mapUpdateBatch(ct, carried.keys, carried.values, carried.count, 'any');
      opts.log?.info({ map: SIZED_MAPS.ct, entries: carried.count }, 'conntrack entries carried over into the shared-LRU map');
    }
    for (const name of Object.keys(mapDefs) as MapName[]) {
      if (!maps.has(name)) throw new DatapathError('ENOENT', `map ${name} was not pinned under ${pinRoot}`);
    }
    const dp = new Datapath(pinRoot, maps, programs as Record<ProgramName, ProgHandle>, sizes);
    opts.log?.info({ pinRoot, sizes }, 'datapath loaded');
    return dp;
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
        const value = def.value === null ? 0 : layouts[def.value].size;
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

  map(name: MapName): MapHandle {
    const h = this.maps.get(name);
    if (!h) throw new DatapathError('ENOENT', `map ${name} is not open`);
    return h;
  }

  mapIO(name: MapName): BpfMapIO {
    return new BpfMapIO(name, this.map(name));
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
