// Plain-data view of the Kubernetes objects the load balancer is built from.
// Produced by src/services/normalize.ts from Service and EndpointSlice objects
// (YAML files or the API server); consumed by the pure compiler. Nothing here
// holds a Kubernetes client type, so every consumer can be tested with literals.

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
  clusterIPs: string[];
  headless: boolean;
  ports: ServicePort[];
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip */
  loadBalancerIPs: string[];
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
  ipv6ClusterIPs?: string[];
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
  zone: string;
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  /** Value of the kubernetes.io/service-name label. */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

/** The node the agent programs: its name decides which endpoints are local. */
export interface NodeInfo {
  name: string;
  /** IPv4 addresses NodePorts answer on. */
  addresses: string[];
}

export function serviceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
