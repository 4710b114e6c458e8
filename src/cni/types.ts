// The contract between the CNI front half (shim, spec layer, socket server) and
// the agent's endpoint handler. Everything here is version-neutral: the server
// converts from and renders to the CNI version a request was made in.

export interface CniResult { // version-neutral
  interfaces: { name: string; mac?: string; sandbox?: string; mtu?: number }[];
  ips: { address: string /* CIDR */; gateway?: string; interface?: number }[];
  routes: { dst: string; gw?: string; mtu?: number; advmss?: number; priority?: number; table?: number; scope?: number }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

export interface NetConf { cniVersion: string; name: string; type: string; prevResult?: CniResult; runtimeConfig?: Record<string, unknown>; [field: string]: unknown }

export interface CniRequest { containerId: string; netns: string /* '' when DEL had none */; ifname: string; args: Record<string, string>; path: string[]; pid?: number; config: NetConf }

export interface GcRequest { config: NetConf; validAttachments: { containerId: string; ifname: string }[] }

export interface CniHandler {
  add(req: CniRequest): Promise<CniResult>;
  del(req: CniRequest): Promise<void>;
  check(req: CniRequest): Promise<void>;
  gc(req: GcRequest): Promise<void>;
  status(config: NetConf): Promise<void>; // throws CniError 50/51 when it cannot serve ADD
}
