// A full garbage collection on demand, for the moments the agent knows it
// just dropped a lot: between chunks of a cold sync, after a full resync.
// V8 otherwise lets the old generation grow to about twice what survived the
// last collection before it collects again, and the process's resident memory
// follows that high-water mark (measured: 420+ MB for 10 000 Services whose
// live state is a third of that). bin/hypha starts Node with --expose-gc;
// without it (a test importing the agent) this does nothing.
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

const gc = (globalThis as { gc?: (opts?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void }).gc;

/**
 * A full collection. By default 'last-resort' (what V8 does on a low-memory
 * notification): it collects until nothing more is freed and gives the
 * emptied pages back at once, where a plain gc() frees as much but keeps the
 * pages committed for later use (3 million small objects dropped: 141 MB of
 * heap still committed, and resident, after gc(); 6 MB after this). Between
 * chunks of a batch a plain one (`lastResort` false): compacting everything
 * there made the peak worse now and then (an agent's cold start with 100 000
 * Services, peak RSS 307-345 MB over 5 starts, against 311-314 with plain
 * collections between chunks and 316-317 with plain ones everywhere).
 */
export function collectGarbage(lastResort = true): void {
  if (lastResort) gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  else gc?.();
  afterLast = getHeapStatistics().used_heap_size;
}

/** Heap in use after the last collection made here. */
let afterLast = 0;
/** A collection between chunks only once the heap grew this much past the last one: ... */
const GROWTH_FLOOR = 32 * 1024 * 1024;
/** ... or this share of it. Collections of a heap growing by a share cost
 *  time linear in the work done (a fixed number of Services between
 *  collections made a cold sync of 100 000 Services quadratic: 50 s). */
const GROWTH_SHARE = 0.25;

/** Between chunks of a large batch: collect when the heap grew enough since the last collection. */
export function maybeCollectGarbage(): void {
  if (!gc) return;
  const used = getHeapStatistics().used_heap_size;
  if (used - afterLast > Math.max(GROWTH_FLOOR, afterLast * GROWTH_SHARE)) collectGarbage(false);
}

const mb = (n: number): number => Math.round(n / 104857.6) / 10;

/** GET /memory: the process's resident memory and V8's spaces, MB (with
 *  `collect`, after a full collection, to tell live from garbage). */
export function memoryDocument(collect: boolean): Record<string, unknown> {
  if (collect) collectGarbage();
  const m = process.memoryUsage();
  return {
    collected: collect && gc !== undefined,
    rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external), arrayBuffersMb: mb(m.arrayBuffers),
    spaces: getHeapSpaceStatistics().map((s) => ({ space: s.space_name, usedMb: mb(s.space_used_size), sizeMb: mb(s.space_size), physicalMb: mb(s.physical_space_size) })),
  };
}
