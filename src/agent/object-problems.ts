// The problems of objects as they are now (a bad field, a Service that does
// not fit the maps), and their reporting.
//
// Problems are handed over per scope: what finds them at once (one Service's
// compile, one object's normalising, one read of the Service files). A
// scope's new list replaces its old one, so only current problems are kept:
// memory follows what is wrong now, not everything that ever was, and a
// problem that goes away (the object fixed or deleted) and comes back is
// reported again.
//
// Reporting is per flush and per kind of problem (the object's kind, the
// field with its indexes taken out and the reason up to its detail: 'Service
// endpoints do not fit the maps'), so 4 000 Services that do not fit make a
// line, not 4 000. A kind with a few new problems logs each at warn, its
// message as the line's, as it always has; a kind with more logs one warn
// line (how many, the first objects, one message) and every problem at
// debug. Problems that went away are one info line per flush.
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import { type Problem, formatValue } from '../services/problems.ts';

/** New problems of one kind logged one line each, up to this many. */
const LOG_EACH_UP_TO = 3;
/** Objects (or messages) named in a summary line. */
const SAMPLE = 5;

/** One kind of problem as it stands now (status document). */
export interface ProblemKindSummary {
  /** 'Service endpoints do not fit the maps' */
  kind: string;
  /** The objects' kind: Service, EndpointSlice, file. */
  objectKind: string;
  /** The field and reason: 'endpoints do not fit the maps' */
  what: string;
  /** Distinct objects with a problem of this kind. */
  objects: number;
  problems: number;
  /** Of the objects, Services of which nothing is programmed. */
  notProgrammed: number;
  /** The first few objects. */
  sample: string[];
  /** One message of this kind, in full. */
  example: string;
}

/** The object's kind: the first word of 'Service default/web'; a file's problems are 'file'. */
export function objectKind(p: Problem): string {
  return /^[A-Z][A-Za-z]*(?= )/.exec(p.object)?.[0] ?? 'file';
}

/** What the message says about the value, without the object, field and value:
 *  'do not fit the maps: the Service needs 12 service entries, ...'. */
function reasonOf(p: Problem): string {
  const head = `${p.object}: ${p.field}: `;
  let rest = p.message.startsWith(head) ? p.message.slice(head.length) : p.message;
  const value = `${formatValue(p.value)} `;
  if (rest.startsWith(value)) rest = rest.slice(value.length);
  return rest;
}

/** The field and reason with the particulars taken out: indexes and port
 *  names of the field, the detail after the reason's first colon. */
function whatOf(p: Problem): string {
  const field = p.field.replace(/\[\d+\]/g, '[*]').replace(/ \([^)]*\)/g, '');
  const reason = reasonOf(p);
  const colon = reason.indexOf(': ');
  return `${field} ${colon >= 0 ? reason.slice(0, colon) : reason}`;
}

/** The kind a problem is summarised under: 'Service endpoints do not fit the maps'. */
export function problemKind(p: Problem): string {
  return `${objectKind(p)} ${whatOf(p)}`;
}

/** 'Service' -> 'Services' when there are several. */
export function plural(kind: string, n: number): string {
  return n === 1 ? kind : `${kind}s`;
}

/** Which problem it is, whatever its particulars: a Service that does not
 *  fit keeps its problem while the count of free entries changes. */
function problemId(p: Problem): string {
  return `${p.object}\n${p.field}\n${problemKind(p)}`;
}

export class ObjectProblems {
  readonly #log: Logger;
  readonly #counter: Counter<'kind'> | undefined;
  readonly #gauge: Gauge<'kind'> | undefined;
  /** scope -> problem id -> the problem (present now) */
  readonly #scopes = new Map<string, Map<string, Problem>>();
  /** Came since the last report, by scope and id: not logged yet. */
  readonly #came = new Map<string, Problem>();
  /** Went since the last report (were logged as present). */
  readonly #went = new Map<string, Problem>();
  /** object kind -> problems present now */
  readonly #present = new Map<string, number>();

  constructor(opts: { log: Logger; counter?: Counter<'kind'>; gauge?: Gauge<'kind'> }) {
    this.#log = opts.log;
    this.#counter = opts.counter;
    this.#gauge = opts.gauge;
    for (const kind of ['Service', 'EndpointSlice']) this.#gauge?.set({ kind }, 0);
  }

  /** The problems of one scope now ([] when it has none or is gone).
   *  True when that changed anything. */
  set(scope: string, problems: readonly Problem[]): boolean {
    const was = this.#scopes.get(scope);
    if (!was && problems.length === 0) return false;
    const now = new Map<string, Problem>();
    for (const p of problems) now.set(problemId(p), p);
    let changed = false;
    if (was) {
      for (const [id, p] of was) {
        if (now.has(id)) continue;
        changed = true;
        this.#count(p, -1);
        const key = `${scope}\n${id}`;
        // Came and went between two reports: never logged, nothing to say.
        if (!this.#came.delete(key)) this.#went.set(key, p);
      }
    }
    for (const [id, p] of now) {
      if (was?.has(id)) continue;
      changed = true;
      this.#count(p, 1);
      const key = `${scope}\n${id}`;
      // Went and came back between two reports: still as logged.
      if (!this.#went.delete(key)) this.#came.set(key, p);
    }
    if (now.size > 0) this.#scopes.set(scope, now);
    else this.#scopes.delete(scope);
    return changed;
  }

  #count(p: Problem, by: number): void {
    const kind = objectKind(p);
    const n = (this.#present.get(kind) ?? 0) + by;
    this.#present.set(kind, n);
    this.#gauge?.set({ kind }, n);
  }

  /** Log what came and went since the last report (once per flush). */
  report(): void {
    if (this.#came.size > 0) {
      const byKind = new Map<string, Problem[]>();
      for (const p of this.#came.values()) {
        const kind = problemKind(p);
        let list = byKind.get(kind);
        if (!list) byKind.set(kind, (list = []));
        list.push(p);
      }
      this.#came.clear();
      for (const [kind, list] of byKind) {
        const first = list[0]!;
        this.#counter?.inc({ kind: objectKind(first) }, list.length);
        if (list.length <= LOG_EACH_UP_TO) {
          for (const p of list) this.#log.warn({ object: p.object, field: p.field, value: p.value }, p.message);
          continue;
        }
        for (const p of list) this.#log.debug({ object: p.object, field: p.field, value: p.value, kind }, p.message);
        const objects = [...new Set(list.map((p) => p.object))];
        this.#log.warn(
          { kind, problems: list.length, objects: objects.length, sample: objects.slice(0, SAMPLE), example: first.message },
          `${objects.length} ${plural(objectKind(first), objects.length)}: ${whatOf(first)} (e.g. ${first.message}); each at debug level, all: hypha service list --problems`,
        );
      }
    }
    if (this.#went.size > 0) {
      const list = [...this.#went.values()];
      this.#went.clear();
      this.#log.info(
        { problems: list.length, sample: list.slice(0, SAMPLE).map((p) => p.message) },
        `${list.length} ${plural('problem', list.length)} of objects gone (fixed or deleted)`,
      );
    }
  }

  /** Every problem present now. */
  list(): Problem[] {
    return [...this.#scopes.values()].flatMap((m) => [...m.values()]);
  }

  get size(): number {
    let n = 0;
    for (const v of this.#present.values()) n += v;
    return n;
  }

  /** The problems present now by kind, most objects first; `notProgrammed`
   *  tells which objects are Services of which nothing is programmed. */
  summary(notProgrammed: (object: string) => boolean = () => false): ProblemKindSummary[] {
    const kinds = new Map<string, { first: Problem; problems: number; objects: Set<string> }>();
    for (const p of this.list()) {
      const kind = problemKind(p);
      let k = kinds.get(kind);
      if (!k) kinds.set(kind, (k = { first: p, problems: 0, objects: new Set() }));
      k.problems++;
      k.objects.add(p.object);
    }
    return [...kinds].map(([kind, k]) => ({
      kind, objectKind: objectKind(k.first), what: whatOf(k.first), objects: k.objects.size, problems: k.problems,
      notProgrammed: [...k.objects].filter(notProgrammed).length, sample: [...k.objects].slice(0, SAMPLE), example: k.first.message,
    })).sort((a, b) => b.objects - a.objects || a.kind.localeCompare(b.kind));
  }
}
