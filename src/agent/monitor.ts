// `hypha monitor` on the agent's side: the datapath's drop events, read from
// the ring buffer (hypha_events_v1), named (src/agent/monitor-event.ts) and
// streamed as NDJSON to every client of GET /monitor?type=drop|policy-drop|l7|all.
// The L7 proxy's access events come in-process (emitL7) and go to clients of
// l7 and all; with none attached emitL7 returns at once.
//
// Events are "when asked": the programs write them only while
// ConfigFlags.DROP_EVENTS is set, which the agent does while at least one
// client of drop, policy-drop or all is attached (or bpf.dropEvents is on):
// `active` tells it, and onActiveChange fires when that changes. A client of
// l7 alone does not switch drop events on.
//
// Memory is bounded. The ring is drained all the time (it holds nothing once
// the flag is off), and a client whose connection holds more than
// clientBufferBytes unsent gets no further events until it catches up; it is
// then told how many it missed ({"lost": n, "cause": "client"}). Events the
// datapath could not write because the ring was full are counted in the
// kernel (hypha_events_lost_v1): the agent reads that counter while clients
// are attached and tells them ({"lost": n, "cause": "ring"}). Both are in
// hypha_monitor_events_lost_total.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import * as native from '../../native/index.ts';
import type { AccessEvent } from '../l7/proxy.ts';
import type { MapHandle, RingbufHandle } from '../../native/index.ts';
import { decodeName, u32Codec } from '../abi/lb-codecs.ts';
import { readEventsLost } from '../datapath/drops.ts';
import { reservedName } from '../identity/labels.ts';
import type { AgentIdentities, LocalEndpoint } from './identities.ts';
import {
  type DropMonitorEvent, type EnrichSources, type LostLine, type MonitorLine, type MonitorType, dropEventCodec, enrichDrop, enrichL7,
  isMonitorInputError, matchesType, monotonicToWallMs, parseMonitorType, wantsDatapath, wantsL7,
} from './monitor-event.ts';

/** Where records come from: the ring buffer (native.ringbufOpen), or a test. */
export type RecordSource = (onRecord: (data: Uint8Array) => void) => { close(): void };

export interface MonitorOptions {
  /** hypha_events_v1 (ringSource) */
  records: RecordSource;
  /** Events the datapath could not write, since it was loaded (hypha_events_lost_v1: lostCounter). */
  ringLost: () => bigint;
  sources: EnrichSources;
  /** A first client attached, or the last one left. */
  onActiveChange: (active: boolean) => void;
  log: Logger;
  registry: Registry;
  /** Unsent bytes a client's connection may hold before its events are dropped. */
  clientBufferBytes?: number;
  /** How often the kernel's lost-event counter is read while clients are attached. */
  ringLossPollMs?: number;
}

interface Client {
  type: MonitorType;
  res: ServerResponse;
  /** Events not sent to this client since the last lost line. */
  lost: number;
}

const DEFAULT_CLIENT_BUFFER = 1 << 20;
/** Names (pods, Services) looked up per address are kept this long (and at most NAME_CACHE_MAX). */
const NAME_CACHE_MS = 1000;
const NAME_CACHE_MAX = 10_000;

export class Monitor {
  readonly #o: MonitorOptions;
  readonly #log: Logger;
  readonly #clients = new Set<Client>();
  /** Clients that need the datapath's drop events (drop, policy-drop, all). */
  #datapathClients = 0;
  /** Clients that get the L7 proxy's access events (l7, all). */
  #l7Clients = 0;
  readonly #bufferBytes: number;
  #ring: { close(): void } | undefined;
  #ringLost = 0n;
  #pollTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #names = new Map<string, string | undefined>();
  #namesAt = 0;
  readonly #sources: EnrichSources;
  readonly #events: Counter<'type'>;
  /** Events not sent to slow clients, all clients together. */
  #clientLost = 0;

  constructor(o: MonitorOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'monitor' });
    this.#bufferBytes = o.clientBufferBytes ?? DEFAULT_CLIENT_BUFFER;
    const r = [o.registry];
    const self = this;
    new Gauge({
      name: 'hypha_monitor_clients', help: 'Clients of GET /monitor (hypha monitor) attached', registers: r,
      collect() {
        this.set(self.#clients.size);
      },
    });
    this.#events = new Counter({ name: 'hypha_monitor_events_total', help: 'Events sent on while clients were attached, by type (drop: read from the ring buffer; l7: the L7 proxy\'s access events)', labelNames: ['type'], registers: r });
    new Gauge({
      name: 'hypha_monitor_events_lost_total', labelNames: ['cause'], registers: r,
      help: 'Events lost: ring (the datapath found the ring buffer full; counted in the kernel) or client (a monitor client read too slowly)',
      collect() {
        this.set({ cause: 'client' }, self.#clientLost);
        this.set({ cause: 'ring' }, Number(self.#readRingLost()));
      },
    });
    // Names are looked up once per address per second at most, whatever the event rate.
    const cached = (prefix: string, f: (k: string) => string | undefined) => (k: string): string | undefined => {
      const now = Date.now();
      if (now - this.#namesAt > NAME_CACHE_MS || this.#names.size > NAME_CACHE_MAX) {
        this.#names.clear();
        this.#namesAt = now;
      }
      const key = prefix + k;
      if (this.#names.has(key)) return this.#names.get(key);
      const v = f(k);
      this.#names.set(key, v);
      return v;
    };
    const pod = cached('p', (ip) => o.sources.pod(ip));
    const svc = cached('s', (id) => o.sources.service(Number(id)));
    this.#sources = { node: o.sources.node, pod, identity: (id) => o.sources.identity(id), service: (id) => svc(String(id)) };
  }

  /** Clients that want drops are attached: the datapath should emit events. */
  get active(): boolean {
    return this.#datapathClients > 0;
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** Drain the ring (no I/O in the constructor). */
  start(): void {
    if (this.#ring || this.#stopped) return;
    this.#ring = this.#o.records((data) => this.#onRecord(data));
  }

  #readRingLost(): bigint {
    try {
      return this.#o.ringLost();
    } catch {
      return this.#ringLost;
    }
  }

  #onRecord(data: Uint8Array): void {
    if (this.#datapathClients === 0) return;
    let ev: DropMonitorEvent;
    try {
      const e = dropEventCodec.decode(data);
      ev = enrichDrop(e, this.#sources, monotonicToWallMs(e.ts_ns, process.hrtime.bigint(), Date.now()));
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, bytes: data.length }, 'ring buffer record not decoded');
      return;
    }
    this.#events.inc({ type: ev.type });
    const line = `${JSON.stringify(ev)}\n`;
    for (const c of this.#clients) if (matchesType(ev, c.type)) this.#send(c, line);
  }

  /** One HTTP request the L7 proxy judged: to the clients of l7 and all.
   *  Called for every request; with no such client it does nothing else. */
  emitL7(e: AccessEvent): void {
    if (this.#l7Clients === 0) return;
    let line: string;
    try {
      const ev = enrichL7(e, this.#sources);
      line = `${JSON.stringify(ev)}\n`;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'access event not named');
      return;
    }
    this.#events.inc({ type: 'l7' });
    for (const c of this.#clients) if (wantsL7(c.type)) this.#send(c, line);
  }

  #send(c: Client, line: string): void {
    if (c.res.writableLength > this.#bufferBytes) {
      c.lost++;
      this.#clientLost++;
      return;
    }
    this.#flushLost(c);
    c.res.write(line);
  }

  #flushLost(c: Client): void {
    if (c.lost === 0) return;
    const lost: LostLine = { lost: c.lost, cause: 'client' };
    c.lost = 0;
    c.res.write(`${JSON.stringify(lost)}\n`);
  }

  /** The kernel's lost-event count went up: every client missed those events. */
  #pollRingLost(): void {
    const now = this.#readRingLost();
    if (now <= this.#ringLost) {
      this.#ringLost = now;
      return;
    }
    const line = `${JSON.stringify({ lost: Number(now - this.#ringLost), cause: 'ring' } satisfies LostLine)}\n`;
    this.#ringLost = now;
    for (const c of this.#clients) if (wantsDatapath(c.type) && c.res.writableLength <= this.#bufferBytes) c.res.write(line);
  }

  /** GET /monitor?type=...: an NDJSON stream until the client goes away. */
  handle(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    let type: MonitorType;
    try {
      type = parseMonitorType(query.get('type'));
    } catch (err) {
      if (!isMonitorInputError(err)) throw err;
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`${err.message}\n`);
      return;
    }
    if (this.#stopped) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('the agent is stopping\n');
      return;
    }
    const c: Client = { type, res, lost: 0 };
    const datapath = wantsDatapath(type);
    const wasActive = this.active;
    if (datapath && !wasActive) this.#ringLost = this.#readRingLost();
    this.#clients.add(c);
    if (datapath) this.#datapathClients++;
    if (wantsL7(type)) this.#l7Clients++;
    res.socket?.setNoDelay(true);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.on('drain', () => this.#flushLost(c));
    const gone = (): void => {
      if (!this.#clients.delete(c)) return;
      if (wantsL7(type)) this.#l7Clients--;
      this.#log.info({ type, clients: this.#clients.size }, 'monitor client left');
      if (datapath && --this.#datapathClients === 0) this.#inactive();
    };
    req.on('close', gone);
    res.on('close', gone);
    res.on('error', gone);
    this.#log.info({ type, clients: this.#clients.size }, 'monitor client attached');
    // The flag is set before the first line: a client that has read it sees every later drop.
    if (datapath && !wasActive) this.#activeChanged(true);
    if (datapath && !this.#pollTimer) {
      this.#pollTimer = setInterval(() => this.#pollRingLost(), this.#o.ringLossPollMs ?? 1000);
      this.#pollTimer.unref();
    }
    res.write(`${JSON.stringify({ monitor: { node: this.#o.sources.node, type } } satisfies MonitorLine)}\n`);
  }

  #inactive(): void {
    clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#activeChanged(false);
  }

  #activeChanged(active: boolean): void {
    try {
      this.#o.onActiveChange(active);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, active }, 'drop events not switched');
    }
  }

  /** End every stream and stop reading the ring. */
  stop(): void {
    this.#stopped = true;
    const had = this.active;
    for (const c of [...this.#clients]) c.res.end();
    this.#clients.clear();
    this.#datapathClients = 0;
    this.#l7Clients = 0;
    if (had) this.#inactive();
    this.#ring?.close();
    this.#ring = undefined;
  }
}

/** Records of a ring buffer map. */
export function ringSource(map: MapHandle): RecordSource {
  return (onRecord) => {
    const h: RingbufHandle = native.ringbufOpen(map, onRecord);
    return { close: () => native.close(h) };
  };
}

/** The datapath's count of events it found no room for. */
export function lostCounter(map: MapHandle): () => bigint {
  return () => readEventsLost(map);
}

/** Names from the agent's state: this node's endpoint records first (known
 *  at CNI ADD), then the Pod watch (every node); identities from the reserved
 *  names and the HyphaIdentity view; Services from the names map. */
export function agentSources(o: {
  node: string;
  endpoints: () => readonly LocalEndpoint[];
  identities: () => AgentIdentities | undefined;
  /** hypha_lb4_names_v1 as it is now (a growth replaces it), or the handle. */
  names: MapHandle | (() => MapHandle);
}): EnrichSources {
  return {
    node: o.node,
    pod(ip) {
      const local = o.endpoints().find((e) => e.ip === ip)?.pod;
      return local ? `${local.namespace}/${local.name}` : o.identities()?.podByAddress(ip);
    },
    identity(id) {
      const reserved = reservedName(id);
      if (reserved) return { reserved };
      const i = o.identities()?.cache.get(id);
      return i ? { namespace: i.namespace, labels: i.podLabels } : undefined;
    },
    service(svcId) {
      const v = native.mapLookup(typeof o.names === 'function' ? o.names() : o.names, u32Codec.encode({ value: svcId }));
      return v ? decodeName(v) : undefined;
    },
  };
}
