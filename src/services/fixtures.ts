// Builders for Service and EndpointSlice objects in unit tests and benchmarks.
import { type EndpointSlice, type Service, packEndpoints } from './model.ts';

export function svc(name: string, over: Partial<Service> = {}): Service {
  return {
    namespace: 'default',
    name,
    type: 'ClusterIP',
    clusterIPs: ['10.96.0.10'],
    headless: false,
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }],
    externalIPs: [],
    loadBalancerIPs: [],
    sessionAffinity: 'None',
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    ...over,
  };
}

export interface EpSpec {
  ip: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function slice(service: string, eps: (string | EpSpec)[], over: Partial<EndpointSlice> = {}): EndpointSlice {
  return {
    namespace: 'default',
    name: `${service}-abc`,
    serviceName: service,
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    ...packEndpoints(eps.map((e) => {
      const s = typeof e === 'string' ? { ip: e } : e;
      const ready = s.ready ?? true;
      return {
        address: s.ip,
        ready,
        serving: s.serving ?? ready,
        terminating: s.terminating ?? false,
        nodeName: s.node ?? 'node-a',
      };
    })),
    ...over,
  };
}
