// Hypha's native addon: the raw binding (typed by hypha_native.d.ts) plus thin
// conveniences. Validation that gives users friendly messages belongs to the
// callers in src/; the addon itself only refuses what would be unsafe.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type {
  HyphaNative,
  MapHandle,
  NativeError,
  NativeErrorSpecialCode,
} from './hypha_native.d.ts';

export type * from './hypha_native.d.ts';

const ADDON = './build/Release/hypha_native.node';

/** The addon has not been built (or was built for another Node ABI). */
export class NativeAddonMissingError extends Error {
  readonly code = 'ENATIVEMISSING';
  readonly path: string;

  constructor(path: string, cause: unknown) {
    super(`hypha native addon not found at ${path}: run \`make build\` first`, { cause });
    this.name = 'NativeAddonMissingError';
    this.path = path;
  }
}

function loadBinding(): HyphaNative {
  const require = createRequire(import.meta.url);
  try {
    return require(ADDON) as HyphaNative;
  } catch (err) {
    if ((err as NodeJS.ErrnoException | undefined)?.code === 'MODULE_NOT_FOUND') {
      throw new NativeAddonMissingError(fileURLToPath(new URL(ADDON, import.meta.url)), err);
    }
    throw err;
  }
}

/** The loaded binding (the only module-level state here; it is never reassigned). */
export const native: HyphaNative = loadBinding();

export const {
  constants,
  close,
  openObject,
  loadObject,
  objectMaps,
  objectPrograms,
  objectMap,
  objectProgram,
  mapCreate,
  openPinnedMap,
  pin,
  mapInfo,
  mapSetInner,
  mapLookup,
  mapDelete,
  mapGetNextKey,
  mapDeleteBatch,
  mapDump,
  mapDumpAsync,
  mapSweepAsync,
  progTestRun,
  progTestRunAsync,
  progInfo,
  ifNameToIndex,
  ifIndexToName,
  xdpAttach,
  xdpDetach,
  xdpQuery,
  tcAttach,
  tcDetach,
  tcQuery,
  cgroupAttach,
  netnsCookie,
  sockSetOpts,
  tcpSocket4,
  ringbufOpen,
  netlinkOpen,
  netlinkTransact,
} = native;

/** Update flags by name: 'any' creates or replaces, 'noexist' only creates (EEXIST
 * if present), 'exist' only replaces (ENOENT if missing). */
export type UpdateFlag = 'any' | 'noexist' | 'exist';

const UPDATE_FLAGS: Readonly<Record<UpdateFlag, number>> = Object.freeze({
  any: native.constants.updateFlags.ANY,
  noexist: native.constants.updateFlags.NOEXIST,
  exist: native.constants.updateFlags.EXIST,
});

export function updateFlag(flag: UpdateFlag | number | undefined): number {
  if (flag === undefined) return UPDATE_FLAGS.any;
  return typeof flag === 'number' ? flag : UPDATE_FLAGS[flag];
}

/** mapUpdate taking a flag name or number. */
export function mapUpdate(map: MapHandle, key: Uint8Array, value: Uint8Array, flags?: UpdateFlag | number): void {
  native.mapUpdate(map, key, value, updateFlag(flags));
}

/** mapUpdateBatch taking a flag name or number. */
export function mapUpdateBatch(
  map: MapHandle,
  keys: Uint8Array,
  values: Uint8Array,
  count: number,
  flags?: UpdateFlag | number,
): void {
  native.mapUpdateBatch(map, keys, values, count, updateFlag(flags));
}

/** Bytes of one value as userspace sees it: per-CPU maps hold one 8-byte-aligned
 * slot per possible CPU. */
export function valueLength(info: { valueSize: number; perCpu: boolean; possibleCpus: number }): number {
  return info.perCpu ? Math.ceil(info.valueSize / 8) * 8 * info.possibleCpus : info.valueSize;
}

/** Name of a map type number ('LRU_HASH'), or `type <n>` for unknown ones. */
export function mapTypeName(type: number): string {
  for (const [name, value] of Object.entries(native.constants.mapTypes)) {
    if (value === type) return name;
  }
  return `type ${type}`;
}

/** Name of a program type number ('XDP'), or `type <n>` for unknown ones. */
export function progTypeName(type: number): string {
  for (const [name, value] of Object.entries(native.constants.progTypes)) {
    if (value === type) return name;
  }
  return `type ${type}`;
}

/** Is err an error thrown by the addon? */
export function isNativeError(err: unknown): err is NativeError {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: unknown; errno?: unknown; op?: unknown };
  return typeof e.code === 'string' && typeof e.errno === 'number' && typeof e.op === 'string';
}

/** Is err an addon error with this code ('ENOENT', 'E2BIG', 'EBADHANDLE', ...)? */
export function hasNativeCode(err: unknown, code: NativeErrorSpecialCode | (string & {})): err is NativeError {
  return isNativeError(err) && err.code === code;
}
