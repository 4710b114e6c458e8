// Services, EndpointSlices and this node from the Kubernetes API, into the
// load-balancer sync. Objects are normalised as they arrive (raw API objects
// are not kept); a bad object is reported once and, if it replaces a good one,
// its old entries are removed.
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import type { KubeClient } from '../k8s/client.ts';
import { type InformerHooks, type InformerStatus, Informer, type ObjectMeta } from '../k8s/informer.ts';
import { ENDPOINT_SLICE_LIST, SERVICE_LIST } from '../k8s/protobuf.ts';
import { normalizeEndpointSlice, normalizeService } from '../services/normalize.ts';
import { collectGarbage, maybeCollectGarbage } from './gc.ts';

/** Objects listed between checks of the heap's growth (maybeCollectGarbage). */
const GC_EVERY_OBJECTS = 1000;

/** Objects a page of the Service and EndpointSlice lists asks for. */
const LIST_PAGE_SIZE = 5000;

/** kube-proxy's selector for the Services and EndpointSlices it implements. */
export const SERVICE_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';
import type { LbSync } from './lb-sync.ts';

export interface K8sSourceOptions {
  /** The agent's one API client (shared with its other watches). */
  client: KubeClient;
  nodeName: string;
  silenceMs: number;
  resyncMs: number;
  log: Logger;
  hooks?: InformerHooks;
  /** What this node's Node object says its addresses are (InternalIP and
   *  ExternalIP; none once it is deleted). The agent's NodeState decides. */
  onNode?: (addresses: string[]) => void;
}

interface NodeObject extends ObjectMeta {
  status?: { addresses?: { type?: string; address?: string }[] };
}

/** IPv4 addresses a NodePort answers on, from the Node's status. */
export function nodeAddresses(node: NodeObject | undefined): string[] {
  const out: string[] = [];
  for (const a of node?.status?.addresses ?? []) {
    const ip = a.address ?? '';
    if ((a.type === 'InternalIP' || a.type === 'ExternalIP') && isIPv4(ip) && !out.includes(ip)) out.push(ip);
  }
  return out;
}

export class K8sSource {
  readonly #opts: K8sSourceOptions;
  readonly #informers: Informer<ObjectMeta>[] = [];

  constructor(opts: K8sSourceOptions) {
    this.#opts = opts;
  }

  status(): InformerStatus[] {
    return this.#informers.map((i) => i.status);
  }

  /** Connected: every watch is running on a complete list. */
  get connected(): boolean {
    return this.#informers.length > 0 && this.#informers.every((i) => i.status.synced && i.status.phase === 'watching');
  }

  start(sync: LbSync): void {
    const { log } = this.#opts;
    const client = this.#opts.client;
    const informerOpts = { log, hooks: this.#opts.hooks, silenceMs: this.#opts.silenceMs, resyncMs: this.#opts.resyncMs };
    // As kube-proxy: a Service another proxy implements (service-proxy-name)
    // or one marked headless is not ours, nor are its slices (they carry the
    // Service's labels).
    const query = { labelSelector: SERVICE_SELECTOR };
    // Listed in protobuf, in pages of 5 000: at 100 000 Services x 10
    // endpoints the API server spends 2 CPU seconds on the two lists this
    // way, 12-15 in JSON pages of 500 (docs/agent.md, Cold start).
    const paged = { pageSize: LIST_PAGE_SIZE };
    const services = new Informer<ObjectMeta>(client, { resource: 'services', path: '/api/v1/services', query, protobuf: SERVICE_LIST, ...paged }, informerOpts);
    const slices = new Informer<ObjectMeta>(client, {
      resource: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', query, protobuf: ENDPOINT_SLICE_LIST, ...paged,
    }, informerOpts);
    const nodes = new Informer<ObjectMeta>(client, {
      resource: 'nodes', path: '/api/v1/nodes', query: { fieldSelector: `metadata.name=${this.#opts.nodeName}` },
    }, informerOpts);
    this.#informers.push(services, slices, nodes);

    // The maps grow early: once both lists are a tenth through, what came so
    // far, scaled to the whole, is reserved (LbSync.anticipate) while the rest
    // arrives, instead of one growth after the last page (100 000 Services:
    // about 1.1 s of the cold start). The wholes come from a one-object list
    // of each without the selector (the API server counts only then:
    // remainingItemCount), so they include the objects the selector leaves
    // out: an upper bound.
    const totals = new Map<Informer<ObjectMeta>, number>();
    const sofar = new Map<Informer<ObjectMeta>, number>();
    let anticipated = false;
    const maybeAnticipate = (): void => {
      if (anticipated || totals.size < 2 || sofar.size < 2) return;
      const share = (i: Informer<ObjectMeta>): number => (sofar.get(i) ?? 0) / Math.max(1, totals.get(i) ?? 0);
      if (share(services) < 0.1 || share(slices) < 0.1) return;
      anticipated = true;
      sync.anticipate(1 / share(services));
    };
    for (const i of [services, slices]) {
      i.onPage = (n) => {
        sofar.set(i, n);
        maybeAnticipate();
      };
      client.get<{ items?: unknown[]; metadata?: { remainingItemCount?: number } }>(i.spec.path, { limit: '1' }).then((page) => {
        const remaining = page.metadata?.remainingItemCount;
        if (remaining === undefined) return;
        totals.set(i, (page.items?.length ?? 0) + remaining);
        maybeAnticipate();
      }, (err: Error) => log.debug({ err: err.message, resource: i.spec.resource }, 'not counted: the maps grow after the lists'));
    }

    const pending = new Set(this.#informers);
    // A cold start lists every Service and EndpointSlice in pages whose
    // parsed objects are garbage once normalized; V8 would let them pile up
    // to about twice the live heap before collecting, and the process's
    // resident memory would keep that peak. Collect as the lists go.
    let listed = 0;
    const listing = (): void => {
      if (pending.size > 0 && ++listed % GC_EVERY_OBJECTS === 0) maybeCollectGarbage();
    };
    const synced = (i: Informer<ObjectMeta>): void => {
      if (!pending.delete(i) || pending.size > 0) return;
      // Only with every list complete may the first full sync prune what the
      // pinned maps hold: a partial view would program Services without
      // their backends.
      log.info('Kubernetes state listed; programming the datapath');
      // The list's pages are garbage now: collect before the first sync (a
      // plain collection: the sync reuses the pages; the one that gives them
      // back comes after it).
      collectGarbage(false);
      sync.open();
    };

    services.start((e) => {
      if (e.type === 'synced') return synced(services);
      listing();
      // The problems of one object replace what it had (none once deleted).
      if (e.type === 'delete') {
        sync.report(`services ${e.key}`, []);
        return sync.setService(e.key, undefined);
      }
      const n = normalizeService(e.obj);
      sync.report(`services ${e.key}`, n.problems);
      sync.setService(e.key, n.value);
    });
    slices.start((e) => {
      if (e.type === 'synced') return synced(slices);
      listing();
      if (e.type === 'delete') {
        sync.report(`endpointslices ${e.key}`, []);
        return sync.setSlice(e.key, undefined);
      }
      const n = normalizeEndpointSlice(e.obj);
      // A slice without the service-name label is no Service's: left alone
      // without a warning, as kube-proxy does (and forgotten if it lost the label).
      if (n.ignored) log.debug({ slice: e.key }, n.ignored);
      sync.report(`endpointslices ${e.key}`, n.problems);
      sync.setSlice(e.key, n.value);
    });
    nodes.start((e) => {
      if (e.type === 'synced') return synced(nodes);
      this.#opts.onNode?.(e.type === 'delete' ? [] : nodeAddresses(e.obj as NodeObject));
    });
  }

  stop(): void {
    for (const i of this.#informers) i.stop();
  }
}
