// What identities need of Pod and Namespace objects, reduced as they arrive
// (raw objects are not kept). Pure.
import { isIPv4 } from 'node:net';
import { type Labels, securityPodLabels, stringLabels } from './labels.ts';

export interface PodRow {
  namespace: string;
  name: string;
  uid: string;
  /** spec.nodeName ('' while unscheduled). */
  node: string;
  /** IPv4 addresses from status.podIPs (or status.podIP). */
  ips: string[];
  /** spec.hostNetwork: the pod has its node's addresses and identity. */
  hostNetwork: boolean;
  /** phase Succeeded or Failed: its address may already be another pod's. */
  terminated: boolean;
  /** Security-relevant labels (the excluded ones left out), sorted. */
  labels: Labels;
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}

export function podRowOf(raw: unknown): PodRow {
  const o = obj(raw);
  const meta = obj(o.metadata);
  const spec = obj(o.spec);
  const status = obj(o.status);
  const ips: string[] = [];
  const add = (ip: unknown): void => {
    if (typeof ip === 'string' && isIPv4(ip) && !ips.includes(ip)) ips.push(ip);
  };
  if (Array.isArray(status.podIPs)) for (const p of status.podIPs) add(obj(p).ip);
  add(status.podIP);
  return {
    namespace: typeof meta.namespace === 'string' ? meta.namespace : '',
    name: typeof meta.name === 'string' ? meta.name : '',
    uid: typeof meta.uid === 'string' ? meta.uid : '',
    node: typeof spec.nodeName === 'string' ? spec.nodeName : '',
    ips,
    hostNetwork: spec.hostNetwork === true,
    terminated: status.phase === 'Succeeded' || status.phase === 'Failed',
    labels: securityPodLabels(stringLabels(meta.labels)),
  };
}

/** Needs an identity: not on the node's network, not finished. */
export function podNeedsIdentity(p: PodRow): boolean {
  return !p.hostNetwork && !p.terminated;
}

/** A Namespace's labels (kubernetes.io/metadata.name included: the API server sets it). */
export function namespaceLabelsOf(raw: unknown): Labels {
  return stringLabels(obj(obj(raw).metadata).labels);
}

/**
 * Interns equal label maps, so the pods of one workload share one object
 * (an agent that follows every pod of a large cluster keeps one copy per
 * distinct set, not per pod). Reference-counted: release what you stop using.
 */
export class LabelInterner {
  readonly #byText = new Map<string, { labels: Labels; refs: number }>();

  get size(): number {
    return this.#byText.size;
  }

  intern(labels: Labels): Labels {
    const text = JSON.stringify(labels);
    const e = this.#byText.get(text);
    if (e) {
      e.refs++;
      return e.labels;
    }
    const frozen = Object.freeze({ ...labels });
    this.#byText.set(text, { labels: frozen, refs: 1 });
    return frozen;
  }

  release(labels: Labels): void {
    const text = JSON.stringify(labels);
    const e = this.#byText.get(text);
    if (!e) return;
    if (--e.refs === 0) this.#byText.delete(text);
  }
}
