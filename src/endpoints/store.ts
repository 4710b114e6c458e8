// The agent's record of the endpoints it made: one small JSON file per
// attachment (container id + interface) under <stateDir>/endpoints. The pod's
// address is in its record, so the records are the IPAM's persistent state.
//
// A record is written (atomically: a temporary file renamed over the old one)
// once every kernel step of an ADD has succeeded, and removed after a DEL has
// undone them. A crash between the kernel steps and the write leaves a veth
// without a record, which the start-up reconciliation deletes, so its address
// is never in use twice. No fsync: the state the records describe (veths,
// namespaces) does not survive a machine crash either, and after one the
// reconciliation drops every record whose veth is gone.
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
}

export interface EndpointRecord {
  containerId: string;
  ifname: string;
  /** CNI_NETNS as the runtime gave it. */
  netns: string;
  ip: string;
  hostIfname: string;
  hostIfindex: number;
  hostMac: string;
  podMac: string;
  mtu: number;
  pod?: PodRef;
  createdAt: string;
}

export function endpointId(containerId: string, ifname: string): string {
  return `${containerId}:${ifname}`;
}

/** ':' is allowed neither in a CNI container id nor in an interface name. */
function fileOf(containerId: string, ifname: string): string {
  return `${containerId}:${ifname}.json`;
}

export interface LoadProblem {
  file: string;
  reason: string;
}

export class EndpointStore {
  readonly dir: string;
  readonly #records = new Map<string, EndpointRecord>();

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'endpoints');
  }

  /** Read every record (at start). Files that cannot be parsed are reported
   *  and removed: the reconciliation finds their veths as orphans. */
  load(): LoadProblem[] {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const problems: LoadProblem[] = [];
    this.#records.clear();
    for (const f of readdirSync(this.dir)) {
      const file = path.join(this.dir, f);
      if (!f.endsWith('.json')) {
        if (f.endsWith('.tmp')) rmSync(file, { force: true });
        continue;
      }
      try {
        const r = JSON.parse(readFileSync(file, 'utf8')) as EndpointRecord;
        if (typeof r.containerId !== 'string' || typeof r.ifname !== 'string' || typeof r.ip !== 'string' || typeof r.hostIfname !== 'string') {
          throw new Error('containerId, ifname, ip or hostIfname missing');
        }
        this.#records.set(endpointId(r.containerId, r.ifname), r);
      } catch (err) {
        problems.push({ file, reason: (err as Error).message });
        rmSync(file, { force: true });
      }
    }
    return problems;
  }

  get(containerId: string, ifname: string): EndpointRecord | undefined {
    return this.#records.get(endpointId(containerId, ifname));
  }

  list(): EndpointRecord[] {
    return [...this.#records.values()];
  }

  get size(): number {
    return this.#records.size;
  }

  put(r: EndpointRecord): void {
    const file = path.join(this.dir, fileOf(r.containerId, r.ifname));
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(r)}\n`, { mode: 0o600 });
    renameSync(tmp, file);
    this.#records.set(endpointId(r.containerId, r.ifname), r);
  }

  remove(containerId: string, ifname: string): void {
    rmSync(path.join(this.dir, fileOf(containerId, ifname)), { force: true });
    this.#records.delete(endpointId(containerId, ifname));
  }
}

/** Read the records without an agent (`hypha endpoint list` with the agent down). */
export function readEndpointRecords(stateDir: string): EndpointRecord[] {
  const store = new EndpointStore(stateDir);
  try {
    readdirSync(store.dir);
  } catch {
    return [];
  }
  const out: EndpointRecord[] = [];
  for (const f of readdirSync(store.dir)) {
    if (!f.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(readFileSync(path.join(store.dir, f), 'utf8')) as EndpointRecord);
    } catch {
      // being replaced, or damaged: the agent reports it when it loads
    }
  }
  return out;
}
