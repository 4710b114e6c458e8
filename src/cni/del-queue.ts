// The DEL queue: when the agent cannot be reached, the shim writes the DEL
// request to a file in this directory (one per containerId+ifname, written to
// a temporary file, fsynced and renamed) and tells the runtime DEL succeeded.
// The agent delivers the queued DELs to its handler when it starts.
import { readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { CNI_ERR, CniError, isRetriable, toCniError } from './errors.ts';
import { delQueueFileName, parseAgentRequest } from './protocol.ts';
import type { CniHandler, CniRequest } from './types.ts';

export const DEFAULT_DEL_QUEUE_DIR = '/var/lib/hypha/cni-del-queue';

/** A shim's temporary file older than this belongs to a shim that died before its rename. */
const STALE_TMP_MS = 10 * 60_000;

export interface ReplayResult {
  /** Queued DELs the handler completed (their files are gone). */
  done: number;
  /** Queued DELs that failed: kept for a later replay when retriable, removed (or set aside as .invalid) otherwise. */
  failed: number;
}

/** Runs `fn` while no other operation on the same attachment runs (the server passes its own). */
export type AttachmentLock = <T>(key: string, fn: () => Promise<T>) => Promise<T>;

const noLock: AttachmentLock = (_key, fn) => fn();

/** The lock key of an attachment: its queue file name, so a replay and a live request agree. */
export function attachmentKey(containerId: string, ifname: string): string {
  return delQueueFileName(containerId, ifname);
}

/** Read and validate one queue file. Throws CniError (7, 4, 6 ...) when it is not a valid queued DEL. */
export async function readQueuedDel(file: string): Promise<CniRequest> {
  const text = await readFile(file, 'utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CNI_ERR.DECODE, `queued DEL ${file} is not JSON: ${(err as Error).message}`, '', { cause: err });
  }
  const parsed = parseAgentRequest(raw);
  if (parsed.command !== 'DEL') throw new CniError(CNI_ERR.INVALID_CONFIG, `queued request ${file} is a ${parsed.command}, not a DEL`);
  // The shim that queued it is gone: its mount namespace cannot resolve anything now.
  delete parsed.req.pid;
  return parsed.req;
}

/** Is there a queued DEL for this attachment? Returns its path, or undefined. */
export async function queuedDelFor(dir: string, containerId: string, ifname: string): Promise<string | undefined> {
  const file = path.join(dir, delQueueFileName(containerId, ifname));
  try {
    await stat(file);
    return file;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function removeIfExists(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Deliver one queued DEL to the handler. Resolves 'done' (file removed),
 * 'kept' (retriable failure: file left for later), 'dropped' (final failure:
 * file removed) or 'gone' (another path delivered it meanwhile).
 */
export async function deliverQueuedDel(file: string, handler: CniHandler, log: Logger): Promise<'done' | 'kept' | 'dropped' | 'gone'> {
  let req: CniRequest;
  try {
    req = await readQueuedDel(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    log.error({ file, reason: (err as Error).message }, 'invalid queued DEL set aside');
    await rename(file, `${file}.invalid`).catch(() => removeIfExists(file));
    return 'dropped';
  }
  const t0 = performance.now();
  try {
    await handler.del(req);
  } catch (err) {
    const e = toCniError(err);
    const ms = +(performance.now() - t0).toFixed(1);
    if (isRetriable(err)) {
      log.warn({ file, containerId: req.containerId, ifname: req.ifname, code: e.code, reason: e.message, ms }, 'queued DEL failed, kept for a later replay');
      return 'kept';
    }
    log.error({ file, containerId: req.containerId, ifname: req.ifname, code: e.code, reason: e.message, ms }, 'queued DEL failed, dropped');
    await removeIfExists(file);
    return 'dropped';
  }
  await removeIfExists(file);
  log.info({ containerId: req.containerId, ifname: req.ifname, netns: req.netns, ms: +(performance.now() - t0).toFixed(1) }, 'queued DEL delivered');
  return 'done';
}

/** Replay with an attachment lock (used by the server, which serialises per attachment). */
export async function replayDelQueueLocked(dir: string, handler: CniHandler, log: Logger, lock: AttachmentLock): Promise<ReplayResult> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { done: 0, failed: 0 };
    throw err;
  }
  const result: ReplayResult = { done: 0, failed: 0 };
  for (const name of names.sort()) {
    const file = path.join(dir, name);
    if (name.startsWith('.')) {
      // A shim's temporary file; one left long ago is from a shim that died before renaming it.
      const st = await stat(file).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > STALE_TMP_MS) await removeIfExists(file);
      continue;
    }
    if (!name.endsWith('.json')) continue;
    const outcome = await lock(name, () => deliverQueuedDel(file, handler, log));
    if (outcome === 'done') result.done++;
    else if (outcome === 'kept' || outcome === 'dropped') result.failed++;
  }
  if (result.done + result.failed > 0) log.info({ dir, ...result }, 'DEL queue replayed');
  return result;
}

/**
 * Deliver every queued DEL in `dir` through handler.del, one at a time. A file
 * is removed when its DEL succeeds, kept when it fails with a retriable error
 * (isRetriable), removed when it fails otherwise; a file that is not a valid
 * queued DEL is renamed to `<name>.invalid`. The agent calls this at start,
 * before it serves the socket (a running server's replayDelQueue() does the
 * same under its per-attachment lock). A missing directory is an empty queue.
 */
export function replayDelQueue(dir: string, handler: CniHandler, log: Logger): Promise<ReplayResult> {
  return replayDelQueueLocked(dir, handler, log, noLock);
}
