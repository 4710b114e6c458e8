// Kubernetes YAML for Services and EndpointSlices, written into the directory
// a standalone agent follows (the same objects the API server would serve).
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';

export interface PortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: 'TCP' | 'UDP';
  nodePort?: number;
}

export interface ServiceSpec {
  name: string;
  namespace?: string;
  clusterIP: string;
  ports: PortSpec[];
  /** spec.selector (nothing here turns it into endpoints: slices are made by the test). */
  selector?: Record<string, string>;
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  externalIPs?: string[];
  loadBalancerIPs?: string[];
  sessionAffinity?: { timeoutSeconds: number };
  externalTrafficPolicy?: 'Cluster' | 'Local';
  internalTrafficPolicy?: 'Cluster' | 'Local';
}

export interface EndpointSpec {
  ip: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function serviceObject(s: ServiceSpec): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace ?? 'default' },
    spec: {
      type: s.type ?? 'ClusterIP',
      clusterIP: s.clusterIP,
      ports: s.ports.map((p) => ({
        name: p.name ?? 'p' + p.port, port: p.port, targetPort: p.targetPort ?? p.port, protocol: p.protocol ?? 'TCP',
        ...(p.nodePort ? { nodePort: p.nodePort } : {}),
      })),
      ...(s.selector ? { selector: s.selector } : {}),
      ...(s.externalIPs ? { externalIPs: s.externalIPs } : {}),
      ...(s.sessionAffinity ? { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: s.sessionAffinity.timeoutSeconds } } } : {}),
      ...(s.externalTrafficPolicy ? { externalTrafficPolicy: s.externalTrafficPolicy } : {}),
      ...(s.internalTrafficPolicy ? { internalTrafficPolicy: s.internalTrafficPolicy } : {}),
    },
    ...(s.loadBalancerIPs ? { status: { loadBalancer: { ingress: s.loadBalancerIPs.map((ip) => ({ ip })) } } } : {}),
  };
}

export function sliceObject(service: ServiceSpec, endpoints: EndpointSpec[], ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP' }[], name = `${service.name}-1`): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: service.namespace ?? 'default', labels: { 'kubernetes.io/service-name': service.name } },
    addressType: 'IPv4',
    ports: ports.map((p) => ({ name: p.name ?? 'p' + p.port, port: p.port, protocol: p.protocol ?? 'TCP' })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.node ? { nodeName: e.node } : {}),
    })),
  };
}

/** A directory of manifests; each write replaces one file atomically (rename). */
export class ManifestDir {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }
  write(file: string, objects: unknown[] | string): void {
    const text = typeof objects === 'string' ? objects : objects.map((o) => stringify(o)).join('---\n');
    const target = path.join(this.dir, file);
    writeFileSync(`${target}.tmp`, text);
    renameSync(`${target}.tmp`, target);
  }
  remove(file: string): void {
    rmSync(path.join(this.dir, file), { force: true });
  }
}
