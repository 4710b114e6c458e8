// When a map the configuration does not size passes its high-water mark, or
// a batch of Services would take it past, the agent grows it online
// (Datapath.grow) instead of refusing what does not fit:
//  - ensure(need) is asked with the entries a map must hold now (the load
//    balancer asks before it programs a batch, the conntrack GC and the
//    affinity count after they count); when need exceeds highWater of the
//    size, one growth takes every map that needs it to the next power of two
//    that holds need with headroom (and at least double the size);
//  - growths run one at a time; asks that arrive during one are served by the
//    next (their need is merged), so a cold sync of 100 000 Services grows
//    once, to what the whole batch needs;
//  - a map the configuration fixes never grows (its users chose the knob);
//  - a failed growth is logged, counted and retried at the next ask after a
//    backoff; the maps keep their size and contents meanwhile.
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import { type GrowResult, type GrowStep, MAX_MAP_SIZE, type MapSizes } from '../datapath/loader.ts';

export type SizedMap = keyof MapSizes;

export interface MapGrowthOptions {
  sizes: () => MapSizes;
  grow: (target: Partial<MapSizes>, afterStep?: (step: GrowStep) => Promise<void>) => Promise<GrowResult>;
  /** Sizes the configuration fixes: never grown. */
  fixed: Partial<Record<SizedMap, boolean>>;
  /** Fill ratio that triggers a growth (0.8). */
  highWater: number;
  /** After a growth: the new sizes (the load balancer's table, the GC's capacity follow). */
  grown: (sizes: MapSizes) => void;
  log: Logger;
  registry: Registry;
  /** Test hook between a growth's steps (HYPHA_TEST_GROW_PAUSE_FILE). */
  afterStep?: (step: GrowStep) => Promise<void>;
}

const RETRY_MS = 5000;

/** The size for `need` entries: a power of two keeping need under `highWater`, at least twice `current`. */
export function grownSize(current: number, need: number, highWater: number): number {
  let size = 1;
  while (size < current * 2) size *= 2;
  while (need > size * highWater && size < MAX_MAP_SIZE) size *= 2;
  return Math.min(size, MAX_MAP_SIZE);
}

export class MapGrowth {
  readonly #o: MapGrowthOptions;
  readonly #metrics: { growths: Counter<'map' | 'outcome'>; seconds: Histogram };
  #running: Promise<void> | undefined;
  /** Need asked for while a growth ran: the next one's. */
  #pending: Partial<MapSizes> = {};
  #failedAt = 0;

  constructor(opts: MapGrowthOptions) {
    this.#o = opts;
    this.#metrics = {
      growths: new Counter({ name: 'hypha_map_growths_total', help: 'Online growths of a BPF map, by map and outcome', labelNames: ['map', 'outcome'], registers: [opts.registry] }),
      seconds: new Histogram({ name: 'hypha_map_growth_seconds', help: 'Duration of an online growth (new maps, copy, program reload, swap on every device)', buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers: [opts.registry] }),
    };
  }

  /** Would `need` take a growable map past its high-water mark? */
  needsGrowth(need: Partial<MapSizes>): boolean {
    return Object.keys(this.#target(need)).length > 0;
  }

  #target(need: Partial<MapSizes>): Partial<MapSizes> {
    const sizes = this.#o.sizes();
    const out: Partial<MapSizes> = {};
    for (const [k, n] of Object.entries(need) as [SizedMap, number][]) {
      if (this.#o.fixed[k] || n <= sizes[k] * this.#o.highWater || sizes[k] >= MAX_MAP_SIZE) continue;
      out[k] = grownSize(sizes[k], n, this.#o.highWater);
    }
    return out;
  }

  /**
   * Make room for `need` (entries per map). Resolves once the maps hold it
   * under the high-water mark, or as well as they can (fixed, at the
   * largest size, a failed growth): the caller programs what fits.
   */
  async ensure(need: Partial<MapSizes>): Promise<void> {
    for (const [k, n] of Object.entries(need) as [SizedMap, number][]) this.#pending[k] = Math.max(this.#pending[k] ?? 0, n);
    while (this.#running) await this.#running;
    const asked = this.#pending;
    this.#pending = {};
    const target = this.#target(asked);
    if (Object.keys(target).length === 0) return;
    if (Date.now() - this.#failedAt < RETRY_MS) return;
    this.#running = this.#grow(target);
    try {
      await this.#running;
    } finally {
      this.#running = undefined;
    }
  }

  async #grow(target: Partial<MapSizes>): Promise<void> {
    const { log } = this.#o;
    const before = this.#o.sizes();
    log.info({ from: Object.fromEntries(Object.keys(target).map((k) => [k, before[k as SizedMap]])), to: target }, 'growing maps');
    const t0 = performance.now();
    try {
      await this.#o.grow(target, this.#o.afterStep);
      this.#metrics.seconds.observe((performance.now() - t0) / 1000);
      for (const k of Object.keys(target)) this.#metrics.growths.inc({ map: k, outcome: 'ok' });
      this.#o.grown(this.#o.sizes());
    } catch (err) {
      this.#failedAt = Date.now();
      for (const k of Object.keys(target)) this.#metrics.growths.inc({ map: k, outcome: 'error' });
      log.error({ to: target, err: (err as Error).message, retryMs: RETRY_MS }, 'maps not grown; they keep their size');
    }
  }
}
