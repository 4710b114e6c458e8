// Plain-data view of the Kubernetes objects the load balancer is built from.
// Produced by src/services/normalize.ts from Service and EndpointSlice objects
// (YAML files or the API server); consumed by the pure compiler. Nothing here
// holds a Kubernetes client type, so every consumer can be tested with literals.
import { ip4At } from '../abi/lb-codecs.ts';
import { EMPTY, Interner, internString } from './intern.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export type TrafficPolicy = 'Cluster' | 'Local';

export interface ServicePort {
  /** Port name; '' when the Service has a single unnamed port. */
  name: string;
  protocol: Protocol;
  port: number;
  /** A number, or the name of a container port resolved through the EndpointSlice ports. */
  targetPort: number | string;
  /** Allocated node port for NodePort and LoadBalancer Services; 0 when none. */
  nodePort: number;
}

export interface Service {
  namespace: string;
  name: string;
  type: ServiceType;
  /** IPv4 cluster IPs; empty for headless ("None") and ExternalName Services. */
  clusterIPs: readonly string[];
  headless: boolean;
  ports: readonly ServicePort[];
  externalIPs: readonly string[];
  /** status.loadBalancer.ingress[].ip */
  loadBalancerIPs: readonly string[];
  sessionAffinity: 'None' | 'ClientIP';
  /** Only meaningful for ClientIP affinity; Kubernetes' default is 10800. */
  affinityTimeoutSeconds: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** metadata.creationTimestamp (RFC 3339); '' or absent when unknown. Two
   *  Services claiming one frontend are ordered by it (then by name). */
  created?: string;
  /** spec.healthCheckNodePort (LoadBalancer with externalTrafficPolicy Local): the agent answers on it. */
  healthCheckNodePort?: number;
  /** IPv6 cluster IPs: the datapath serves IPv4 only, so these are reported, not served. */
  ipv6ClusterIPs?: readonly string[];
  /** spec.ipFamilies is [IPv6], or every cluster IP is IPv6: nothing of it is served. */
  ipv6Only?: boolean;
}

export interface EndpointPort {
  name: string;
  protocol: Protocol;
  port: number;
}

export interface Endpoint {
  /** The endpoint's address: the API lists addresses, and consumers use the first. */
  address: string;
  /** conditions.ready; unset means true (discovery/v1). */
  ready: boolean;
  /** conditions.serving; unset means true, as kube-proxy reads it. */
  serving: boolean;
  /** conditions.terminating; unset means false. */
  terminating: boolean;
  nodeName: string;
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  /** Value of the kubernetes.io/service-name label. */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  ports: readonly EndpointPort[];
  /** The endpoints, packed (packEndpoints; endpointsOf reads them back): a
   *  slice of 10 endpoints is about 90 bytes here, where 10 objects with
   *  their strings were over 1 KB. Only IPv4 slices carry them: the
   *  datapath serves no other kind (compile.ts skips them). */
  packed: string;
  /** Node names the packed endpoints point into (interned). */
  nodes: readonly string[];
}

// Per endpoint: IPv4 address (4 bytes, network order), conditions (1 byte:
// ready, serving, terminating), index of its node name in `nodes` (2 bytes).
const EP_SIZE = 7;
const READY = 1;
const SERVING = 2;
const TERMINATING = 4;
const nodeLists = new Interner<readonly string[]>(10_000);

/** The packed form of IPv4 endpoints (addresses already validated). */
export function packEndpoints(endpoints: readonly Endpoint[]): Pick<EndpointSlice, 'packed' | 'nodes'> {
  const nodes: string[] = [];
  const index = new Map<string, number>();
  const parts: string[] = [];
  for (const e of endpoints) {
    let n = index.get(e.nodeName);
    if (n === undefined) {
      if (nodes.length > 0xffff) throw new Error(`an EndpointSlice names more than 65536 nodes`);
      index.set(e.nodeName, (n = nodes.length));
      nodes.push(internString(e.nodeName));
    }
    const flags = (e.ready ? READY : 0) | (e.serving ? SERVING : 0) | (e.terminating ? TERMINATING : 0);
    const ip = e.address;
    // The four octets, read in place (split and map made 5 objects an
    // endpoint: 0.6 s of CPU in the listing of 100 000 slices x 10).
    let a = 0, b = 0, c = 0, d = 0, dots = 0;
    for (let i = 0; i < ip.length; i++) {
      const ch = ip.charCodeAt(i);
      if (ch === 46) dots++;
      else if (dots === 0) a = a * 10 + ch - 48;
      else if (dots === 1) b = b * 10 + ch - 48;
      else if (dots === 2) c = c * 10 + ch - 48;
      else d = d * 10 + ch - 48;
    }
    parts.push(String.fromCharCode(a, b, c, d, flags, n & 255, n >>> 8));
  }
  return { packed: parts.join(''), nodes: nodes.length === 0 ? EMPTY : nodeLists.get(nodes.join('\0'), () => Object.freeze(nodes)) };
}

/** How many endpoints a slice holds (packed). */
export function endpointCount(slice: Pick<EndpointSlice, 'packed'>): number {
  return slice.packed.length / EP_SIZE;
}

/** The endpoints of a slice, read back from its packed form. */
export function endpointsOf(slice: Pick<EndpointSlice, 'packed' | 'nodes'>): Endpoint[] {
  const p = slice.packed;
  const out: Endpoint[] = [];
  for (let o = 0; o < p.length; o += EP_SIZE) {
    const flags = p.charCodeAt(o + 4);
    out.push({
      address: ip4At(p, o),
      ready: (flags & READY) !== 0,
      serving: (flags & SERVING) !== 0,
      terminating: (flags & TERMINATING) !== 0,
      nodeName: slice.nodes[p.charCodeAt(o + 5) | (p.charCodeAt(o + 6) << 8)] ?? '',
    });
  }
  return out;
}

/** The node the agent programs: its name decides which endpoints are local. */
export interface NodeInfo {
  name: string;
  /** IPv4 addresses NodePorts answer on. */
  addresses: string[];
}

/** 'namespace/name', as one flat string: keys live in Maps for as long as
 *  their object, and a concatenation (a rope of two or three strings) holds
 *  about 50 bytes more than its text. */
export function serviceKey(namespace: string, name: string): string {
  return [namespace, name].join('/');
}
