// Conntrack garbage collection on an adaptive timer. Each pass runs off the
// JS thread in bounded kernel calls (Datapath.collectConntrack, bpf/tc/ct_gc.c:
// lookup batches and delete runs of at most 4096 entries); this decides when
// the next one runs. A pass that deletes much of the map means entries die
// faster than the interval: the next pass comes sooner, down to minSeconds.
// A pass that finds little doubles the interval, up to maxSeconds. (Cilium's
// agent adapts its conntrack GC interval the same way.) The pause is also at
// least twice the last pass, so GC of a huge map takes at most a third of a
// CPU however busy the node is (a bounded-batch pass over a million entries
// takes a few tenths of a second).
import type { Logger } from 'pino';
import type { ConntrackGcResult } from '../datapath/loader.ts';

export interface CtGcLimits {
  minSeconds: number;
  maxSeconds: number;
}

/** Share of the map one pass may find dead before the interval shrinks. */
const TARGET_DELETED_SHARE = 0.1;

/** The interval after a pass that deleted `deleted` of `capacity` entries. Pure. */
export function nextGcInterval(current: number, deleted: number, capacity: number, limits: CtGcLimits): number {
  const share = capacity > 0 ? deleted / capacity : 0;
  // Proportional: aim for passes that each delete about the target share;
  // never more than double at once, so a quiet spell does not overshoot.
  const scaled = share > 0 ? current * Math.min(2, TARGET_DELETED_SHARE / share) : current * 2;
  return Math.min(limits.maxSeconds, Math.max(limits.minSeconds, scaled));
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

/** The pause after a pass is at least this many times the pass's own length. */
const MIN_PAUSE_PER_PASS = 2;

/** The pause after a pass of passMs milliseconds, from nextGcInterval's choice. Pure. */
export function pauseAfter(next: number, passMs: number, limits: CtGcLimits): number {
  return Math.min(limits.maxSeconds, Math.max(next, (passMs / 1000) * MIN_PAUSE_PER_PASS));
}

export interface CtGcHooks {
  /** after every pass, with the interval chosen for the next */
  pass?(r: ConntrackGcResult, nextSeconds: number): void;
}

export class ConntrackGc {
  readonly #collect: () => Promise<ConntrackGcResult>;
  readonly #capacityOf: () => number;
  readonly #limits: CtGcLimits;
  readonly #log: Logger;
  readonly #hooks: CtGcHooks;
  #interval: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  last: (ConntrackGcResult & { at: Date; nextSeconds: number }) | undefined;

  constructor(opts: { collect: () => Promise<ConntrackGcResult>; capacity: number | (() => number); limits: CtGcLimits; log: Logger; hooks?: CtGcHooks }) {
    this.#collect = opts.collect;
    const cap = opts.capacity;
    // A function: the map's size now (it may grow).
    this.#capacityOf = typeof cap === 'function' ? cap : () => cap;
    this.#limits = opts.limits;
    this.#log = opts.log;
    this.#hooks = opts.hooks ?? {};
    // Start in the middle: the first pass tells how busy the node is.
    this.#interval = Math.max(opts.limits.minSeconds, Math.min(opts.limits.maxSeconds, 5));
  }

  /** Run a pass now and keep running them. */
  start(): void {
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    try {
      const r = await this.#collect();
      const capacity = this.#capacityOf();
      this.#interval = pauseAfter(nextGcInterval(this.#interval, r.deleted, capacity, this.#limits), r.ms, this.#limits);
      this.last = { ...r, at: new Date(), nextSeconds: this.#interval };
      this.#hooks.pass?.(r, this.#interval);
      this.#log[r.deleted > capacity * TARGET_DELETED_SHARE ? 'info' : 'debug'](
        {
          deleted: r.deleted, entries: r.entries, batches: r.batches, runs: r.runs,
          ms: round1(r.ms), cpuMs: round1(r.cpuMs), maxCallMs: round1(r.maxCallMs), nextSeconds: round1(this.#interval),
        },
        'conntrack garbage collected',
      );
    } catch (err) {
      // The LRU map still makes room by itself; try again at the slowest pace.
      this.#interval = this.#limits.maxSeconds;
      this.#log.warn({ err: (err as Error).message }, 'conntrack garbage collection failed');
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), this.#interval * 1000);
    this.#timer.unref();
  }
}
