// The Pod objects of this node's pods (namespace, name, uid, labels), from the
// API server: what the runtime's CNI_ARGS do not say. Endpoints are matched to
// them by namespace/name (and uid when both have one). Only this node's pods
// are watched (field selector spec.nodeName), and only what policy and tools
// need of each is kept.
import type { Logger } from 'pino';
import type { KubeClient } from '../k8s/client.ts';
import { type InformerHooks, type InformerStatus, Informer, type ObjectMeta } from '../k8s/informer.ts';

export interface PodMeta {
  uid: string;
  labels: Record<string, string>;
}

interface PodObject extends ObjectMeta {
  metadata?: ObjectMeta['metadata'] & { uid?: string; labels?: Record<string, unknown> };
}

/** The parts of a Pod object kept: uid and string labels. Pure. */
export function podMetaOf(obj: unknown): PodMeta {
  const m = (obj as PodObject | undefined)?.metadata ?? {};
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.labels ?? {})) if (typeof v === 'string') labels[k] = v;
  return { uid: typeof m.uid === 'string' ? m.uid : '', labels };
}

export class PodMetadata {
  readonly #pods = new Map<string, PodMeta>();
  #informer: Informer<ObjectMeta> | undefined;

  get(namespace: string, name: string): PodMeta | undefined {
    return this.#pods.get(`${namespace}/${name}`);
  }

  status(): InformerStatus[] {
    return this.#informer ? [this.#informer.status] : [];
  }

  start(opts: { client: KubeClient; nodeName: string; log: Logger; hooks?: InformerHooks; silenceMs: number; resyncMs: number }): void {
    this.#informer = new Informer<ObjectMeta>(opts.client, {
      resource: 'pods (this node)', path: '/api/v1/pods', query: { fieldSelector: `spec.nodeName=${opts.nodeName}` },
    }, { log: opts.log, hooks: opts.hooks, silenceMs: opts.silenceMs, resyncMs: opts.resyncMs });
    this.#informer.start((e) => {
      if (e.type === 'upsert') this.#pods.set(e.key, podMetaOf(e.obj));
      else if (e.type === 'delete') this.#pods.delete(e.key);
    });
  }

  stop(): void {
    this.#informer?.stop();
  }
}
