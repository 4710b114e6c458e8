// Services and EndpointSlices from Kubernetes YAML files: the standalone
// load-balancer mode. Files (or every *.yaml/*.yml/*.json in a directory) are
// re-read when they change (fs.watch, plus a slow poll in case an event is
// missed) and handed on as a complete snapshot; the agent works out what changed.
import { type FSWatcher, readFileSync, readdirSync, statSync, watch } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { parseAllDocuments } from 'yaml';
import type { EndpointSlice, Service } from '../services/model.ts';
import { normalizeEndpointSlice, normalizeService } from '../services/normalize.ts';
import { type Problem, problem } from '../services/problems.ts';

export interface Snapshot {
  services: Service[];
  slices: EndpointSlice[];
  problems: Problem[];
}

const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

function listFiles(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      continue; // a path that does not exist yet is watched for when it appears
    }
    if (st.isDirectory()) {
      for (const f of readdirSync(p).sort()) if (EXTENSIONS.has(path.extname(f))) out.push(path.join(p, f));
    } else {
      out.push(p);
    }
  }
  return out;
}

function addObjects(value: unknown, into: Snapshot): void {
  if (value === null || value === undefined) return;
  const objs = (value as { kind?: unknown; items?: unknown[] }).kind === 'List' ? ((value as { items?: unknown[] }).items ?? []) : [value];
  for (const obj of objs) {
    const kind = (obj as { kind?: unknown } | null)?.kind;
    if (kind === 'Service') {
      const n = normalizeService(obj);
      into.problems.push(...n.problems);
      if (n.value) into.services.push(n.value);
    } else if (kind === 'EndpointSlice') {
      const n = normalizeEndpointSlice(obj);
      // n.ignored (no service-name label): not a Service's slice, skipped silently.
      into.problems.push(...n.problems);
      if (n.value) into.slices.push(n.value);
    }
    // Other kinds (Deployments next to their Services...) are not ours.
  }
}

/** Parse the documents of one file into a snapshot part. `.json` files take
 *  JSON.parse (one document, often a large List): far faster than YAML. */
export function parseManifests(file: string, text: string, into: Snapshot): void {
  if (file.endsWith('.json')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      into.problems.push(problem(file, 'json', (err as Error).message, 'cannot be parsed'));
      return;
    }
    addObjects(value, into);
    return;
  }
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = `${file} (document ${i + 1})`;
    if (doc.errors.length > 0) {
      into.problems.push(problem(where, 'yaml', doc.errors[0]?.message.split('\n')[0], 'cannot be parsed'));
      return;
    }
    addObjects(doc.toJS(), into);
  });
}

export function readSnapshot(paths: string[]): Snapshot {
  const snap: Snapshot = { services: [], slices: [], problems: [] };
  for (const file of listFiles(paths)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      snap.problems.push(problem(file, 'file', file, `cannot be read: ${(err as Error).message}`));
      continue;
    }
    parseManifests(file, text, snap);
  }
  return snap;
}

export class FileSource {
  readonly #paths: string[];
  readonly #log: Logger | undefined;
  readonly #pollMs: number;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #fingerprint = '';
  /** Snapshots read so far (a change of the files' contents makes one). */
  reads = 0;
  lastReadAt: Date | null = null;

  constructor(paths: string[], opts: { log?: Logger; pollMs?: number } = {}) {
    this.#paths = paths;
    this.#log = opts.log;
    this.#pollMs = opts.pollMs ?? 2000;
  }

  /** Calls onSnapshot now and on every change of the files' contents. */
  start(onSnapshot: (s: Snapshot) => void): void {
    const check = (): void => {
      const files = listFiles(this.#paths);
      const fp = files.map((f) => {
        try {
          const st = statSync(f);
          return `${f}:${st.mtimeMs}:${st.size}`;
        } catch {
          return `${f}:gone`;
        }
      }).join('|');
      if (fp === this.#fingerprint) return;
      this.#fingerprint = fp;
      const snap = readSnapshot(this.#paths);
      this.reads++;
      this.lastReadAt = new Date();
      this.#log?.debug({ files: files.length, services: snap.services.length, slices: snap.slices.length }, 'service files read');
      onSnapshot(snap);
    };
    const soon = (): void => {
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(check, 20);
    };
    for (const p of this.#paths) {
      try {
        this.#watchers.push(watch(p, soon));
      } catch {
        // not there yet: the poll notices when it appears
      }
    }
    this.#timer = setInterval(check, this.#pollMs);
    check();
  }

  stop(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    clearInterval(this.#timer);
    clearTimeout(this.#debounce);
  }
}
