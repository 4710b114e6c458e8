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
  /** Named container ports (NetworkPolicy resolves port names on them), sorted. */
  ports: PodPort[];
}

/** A named container port: what a NetworkPolicy's `port: name` resolves to. */
export interface PodPort {
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

/** Named ports of spec.containers and spec.initContainers (sidecars serve too). */
function namedPortsOf(spec: Obj): PodPort[] {
  const out: PodPort[] = [];
  for (const list of [spec.containers, spec.initContainers]) {
    if (!Array.isArray(list)) continue;
    for (const c of list) {
      const ports = obj(c).ports;
      if (!Array.isArray(ports)) continue;
      for (const raw of ports) {
        const p = obj(raw);
        const protocol = p.protocol === undefined ? 'TCP' : p.protocol;
        if (typeof p.name !== 'string' || p.name === '' || typeof p.containerPort !== 'number' || !Number.isInteger(p.containerPort)) continue;
        if (p.containerPort < 1 || p.containerPort > 65535 || (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP')) continue;
        if (!out.some((o) => o.name === p.name && o.port === p.containerPort && o.protocol === protocol)) out.push({ name: p.name, port: p.containerPort, protocol });
      }
    }
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || a.port - b.port || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0));
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
    ports: namedPortsOf(spec),
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

const NO_PORTS: readonly PodPort[] = Object.freeze([]);

/** Interns equal named-port lists (the pods of one workload share one), as LabelInterner does labels. */
export class PortsInterner {
  readonly #byText = new Map<string, { ports: readonly PodPort[]; refs: number }>();

  intern(ports: readonly PodPort[]): readonly PodPort[] {
    if (ports.length === 0) return NO_PORTS;
    const text = JSON.stringify(ports);
    const e = this.#byText.get(text);
    if (e) {
      e.refs++;
      return e.ports;
    }
    const frozen = Object.freeze(ports.map((p) => Object.freeze({ ...p })));
    this.#byText.set(text, { ports: frozen, refs: 1 });
    return frozen;
  }

  release(ports: readonly PodPort[]): void {
    if (ports.length === 0) return;
    const text = JSON.stringify(ports);
    const e = this.#byText.get(text);
    if (!e) return;
    if (--e.refs === 0) this.#byText.delete(text);
  }
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
