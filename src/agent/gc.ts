// A full garbage collection on demand, for the moments the agent knows it
// just dropped a lot: between chunks of a cold sync, after a full resync.
// V8 otherwise lets the old generation grow to about twice what survived the
// last collection before it collects again, and the process's resident memory
// follows that high-water mark (measured: 420+ MB for 10 000 Services whose
// live state is a third of that). bin/hypha starts Node with --expose-gc;
// without it (a test importing the agent) this does nothing.
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

const gc = (globalThis as { gc?: () => void }).gc;

export function collectGarbage(): void {
  gc?.();
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
  if (used - afterLast > Math.max(GROWTH_FLOOR, afterLast * GROWTH_SHARE)) collectGarbage();
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
