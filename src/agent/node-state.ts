// What this agent knows about its own node, in one place with one writer.
// Several sources say something about the node (the configuration, the Node
// object on the API server, the external device's addresses); this module
// alone decides what the effective view is and tells every consumer (the
// load-balancer sync, the datapath config) when it changes, so no consumer
// ever sees a view another one does not.
import { networkInterfaces } from 'node:os';
import type { NodeInfo } from '../services/model.ts';

export interface NodeInputs {
  /** Addresses from the configuration: when set, they win. */
  configured: string[];
  /** The Node object's InternalIP/ExternalIP addresses (Kubernetes mode). */
  fromApi?: string[];
  /** The external device's IPv4 addresses. */
  fromDevice?: string[];
}

/** The effective addresses: configured, else the Node object's (Kubernetes
 *  mode), else the external device's. Pure. */
export function effectiveAddresses(inputs: NodeInputs, kubernetes: boolean): string[] {
  if (inputs.configured.length > 0) return inputs.configured;
  if (kubernetes) return inputs.fromApi ?? [];
  return inputs.fromDevice ?? [];
}

export function deviceAddresses(ifname: string | undefined): string[] {
  if (!ifname) return [];
  return (networkInterfaces()[ifname] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
}

export class NodeState {
  readonly name: string;
  readonly #kubernetes: boolean;
  readonly #inputs: NodeInputs;
  readonly #listeners: ((node: NodeInfo) => void)[] = [];
  #info: NodeInfo;

  constructor(name: string, inputs: NodeInputs, kubernetes: boolean) {
    this.name = name;
    this.#kubernetes = kubernetes;
    this.#inputs = { ...inputs };
    this.#info = { name, addresses: effectiveAddresses(this.#inputs, kubernetes) };
  }

  get info(): NodeInfo {
    return this.#info;
  }

  onChange(listener: (node: NodeInfo) => void): void {
    this.#listeners.push(listener);
  }

  /** Record what one source now says; consumers hear of it only if the
   *  effective view changed. */
  update(inputs: Partial<Omit<NodeInputs, 'configured'>>): void {
    Object.assign(this.#inputs, inputs);
    const addresses = effectiveAddresses(this.#inputs, this.#kubernetes);
    if (addresses.length === this.#info.addresses.length && addresses.every((a, i) => a === this.#info.addresses[i])) return;
    this.#info = { name: this.name, addresses };
    for (const l of this.#listeners) l(this.#info);
  }
}
