// Kubernetes Service and EndpointSlice objects (as parsed from YAML or
// received from the API server) to the plain model. Validates at the
// boundary: every rejected field is named with its value.
import { isIPv4, isIPv6 } from 'node:net';
import { EMPTY, Interner, internString } from './intern.ts';
import { type Endpoint, type EndpointPort, type EndpointSlice, type Protocol, type Service, type ServicePort, type ServiceType, packEndpoints } from './model.ts';
import { type Problem, problem } from './problems.ts';

/** A Service's port list, shared by every Service with the same ports (frozen). */
const servicePorts = new Interner<readonly ServicePort[]>(10_000);
/** A slice's port list, shared by every slice with the same ports (frozen). */
const portLists = new Interner<readonly EndpointPort[]>(10_000);

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const DEFAULT_AFFINITY_TIMEOUT = 10800;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

const PORT_RANGE = 'is not a valid port number (1-65535)';

function protocolOf(v: unknown): Protocol | undefined {
  // The literals, not the parsed strings: every port shares them.
  if (v === undefined || v === 'TCP') return 'TCP';
  return v === 'UDP' ? 'UDP' : v === 'SCTP' ? 'SCTP' : undefined;
}

/** A list as it is kept: exactly its length (an array grown by push holds
 *  room for 17), and the one shared empty array when empty. */
function kept<T>(list: T[]): readonly T[] {
  return list.length === 0 ? EMPTY : list.slice();
}

const NO_ENDPOINTS: Pick<EndpointSlice, 'packed' | 'nodes'> = { packed: '', nodes: EMPTY };

export function objectName(kind: string, raw: unknown): string {
  const meta = isObj(raw) && isObj(raw.metadata) ? raw.metadata : {};
  return `${kind} ${str(meta.namespace) ?? 'default'}/${str(meta.name) ?? '(unnamed)'}`;
}

export interface Normalized<T> {
  /** Undefined when a problem makes the whole object unusable. */
  value?: T;
  /** Every problem found, including ones that only dropped a part (an endpoint). */
  problems: Problem[];
  /** Set when the object is not ours to serve and is left alone without a
   *  problem (an EndpointSlice without the service-name label). */
  ignored?: string;
}

export function normalizeService(raw: unknown): Normalized<Service> {
  const problems: Problem[] = [];
  const obj = objectName('Service', raw);
  if (!isObj(raw) || !isObj(raw.metadata) || !str(raw.metadata.name)) {
    return { problems: [problem(obj, 'metadata.name', isObj(raw) && isObj(raw.metadata) ? raw.metadata.name : undefined, 'is required')] };
  }
  const meta = raw.metadata;
  const spec = isObj(raw.spec) ? raw.spec : {};
  const status = isObj(raw.status) ? raw.status : {};
  const bad = (field: string, value: unknown, why: string): void => {
    problems.push(problem(obj, field, value, why));
  };

  const type = (str(spec.type) ?? 'ClusterIP') as ServiceType;
  if (!['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'].includes(type)) {
    bad('spec.type', spec.type, 'is not one of ClusterIP, NodePort, LoadBalancer, ExternalName');
  }

  // clusterIPs is authoritative when present; clusterIP is its first element.
  const rawIPs = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : spec.clusterIP !== undefined ? [spec.clusterIP] : [];
  const headless = rawIPs[0] === 'None';
  const clusterIPs: string[] = [];
  const ipv6ClusterIPs: string[] = [];
  if (!headless && type !== 'ExternalName') {
    rawIPs.forEach((ip, i) => {
      const field = Array.isArray(spec.clusterIPs) ? `spec.clusterIPs[${i}]` : 'spec.clusterIP';
      if (typeof ip === 'string' && isIPv4(ip)) clusterIPs.push(ip);
      // The IPv6 datapath is not built yet: kept aside to be reported; the IPv4 family still works.
      else if (typeof ip === 'string' && isIPv6(ip)) ipv6ClusterIPs.push(ip);
      else if (ip !== '' && ip !== undefined) bad(field, ip, 'is not a valid IP address');
    });
  }
  const ipFamilies: string[] = [];
  arr(spec.ipFamilies).forEach((f, i) => {
    if (f === 'IPv4' || f === 'IPv6') ipFamilies.push(f);
    else bad(`spec.ipFamilies[${i}]`, f, 'is not one of IPv4, IPv6');
  });
  // Only IPv6 asked for, or only IPv6 given: nothing of this Service is IPv4.
  const ipv6Only = !headless && type !== 'ExternalName' && clusterIPs.length === 0 &&
    (ipv6ClusterIPs.length > 0 || (ipFamilies.length > 0 && ipFamilies.every((f) => f === 'IPv6')));

  const ports: ServicePort[] = [];
  const seen = new Set<string>();
  const rawPorts = arr(spec.ports);
  rawPorts.forEach((p, i) => {
    const f = `spec.ports[${i}]`;
    if (!isObj(p)) return bad(f, p, 'is not an object');
    const protocol = protocolOf(p.protocol);
    if (!protocol) return bad(`${f}.protocol`, p.protocol, 'is not one of TCP, UDP, SCTP');
    if (!isPort(p.port)) return bad(`${f}.port`, p.port, PORT_RANGE);
    const name = str(p.name) ?? '';
    if (rawPorts.length > 1 && name === '') return bad(`${f}.name`, p.name, 'is required when a Service has several ports');
    const id = `${p.port}/${protocol}`;
    if (seen.has(id)) return bad(`${f}.port`, p.port, `duplicates another ${protocol} port`);
    seen.add(id);
    let targetPort: number | string = p.port;
    if (p.targetPort !== undefined) {
      if (typeof p.targetPort === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(p.targetPort) && p.targetPort.length <= 15) {
        targetPort = p.targetPort;
      } else if (isPort(p.targetPort)) {
        targetPort = p.targetPort;
      } else if (typeof p.targetPort === 'string' && isPort(Number(p.targetPort))) {
        targetPort = Number(p.targetPort);
      } else {
        return bad(`${f}.targetPort`, p.targetPort, 'is neither a port number (1-65535) nor a port name');
      }
    }
    let nodePort = 0;
    if (p.nodePort !== undefined && p.nodePort !== null && p.nodePort !== 0) {
      if (!isPort(p.nodePort)) return bad(`${f}.nodePort`, p.nodePort, PORT_RANGE);
      nodePort = p.nodePort;
    }
    ports.push({ name, protocol, port: p.port, targetPort, nodePort });
  });

  const ipList = (field: string, list: unknown[]): string[] => {
    const out: string[] = [];
    list.forEach((ip, i) => {
      if (typeof ip === 'string' && isIPv4(ip)) out.push(ip);
      else if (!(typeof ip === 'string' && isIPv6(ip))) bad(`${field}[${i}]`, ip, 'is not a valid IP address');
    });
    return out;
  };
  const externalIPs = ipList('spec.externalIPs', arr(spec.externalIPs));
  const lbIngress = isObj(status.loadBalancer) ? arr(status.loadBalancer.ingress) : [];
  const loadBalancerIPs = ipList(
    'status.loadBalancer.ingress[].ip',
    lbIngress.filter((x): x is Obj => isObj(x) && x.ip !== undefined).map((x) => x.ip),
  );

  const sessionAffinity = str(spec.sessionAffinity) ?? 'None';
  if (sessionAffinity !== 'None' && sessionAffinity !== 'ClientIP') {
    bad('spec.sessionAffinity', spec.sessionAffinity, 'is not one of None, ClientIP');
  }
  let affinityTimeoutSeconds = DEFAULT_AFFINITY_TIMEOUT;
  const cfg = isObj(spec.sessionAffinityConfig) && isObj(spec.sessionAffinityConfig.clientIP) ? spec.sessionAffinityConfig.clientIP : undefined;
  if (cfg && cfg.timeoutSeconds !== undefined) {
    const t = cfg.timeoutSeconds;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 86400) {
      bad('spec.sessionAffinityConfig.clientIP.timeoutSeconds', t, 'is not an integer in 1..86400');
    } else {
      affinityTimeoutSeconds = t;
    }
  }
  const policy = (field: string, v: unknown): 'Cluster' | 'Local' => {
    if (v === undefined || v === 'Cluster') return 'Cluster';
    if (v === 'Local') return 'Local';
    bad(field, v, 'is not one of Cluster, Local');
    return 'Cluster';
  };
  const externalTrafficPolicy = policy('spec.externalTrafficPolicy', spec.externalTrafficPolicy);
  const internalTrafficPolicy = policy('spec.internalTrafficPolicy', spec.internalTrafficPolicy);
  let healthCheckNodePort: number | undefined;
  if (spec.healthCheckNodePort !== undefined && spec.healthCheckNodePort !== 0) {
    if (isPort(spec.healthCheckNodePort)) healthCheckNodePort = spec.healthCheckNodePort;
    else bad('spec.healthCheckNodePort', spec.healthCheckNodePort, 'is not a port (1..65535)');
  }

  if (problems.length > 0) return { problems };
  // The rare fields are added after, not spread into the literal: a literal
  // with spreads gets room for more properties (24 bytes more a Service).
  const value: Service = {
    namespace: internString(str(meta.namespace) ?? 'default'),
    name: str(meta.name) ?? '',
    type: internString(type) as ServiceType,
    clusterIPs: kept(clusterIPs),
    headless,
    ports: servicePorts.get(ports.map((p) => `${p.name}/${p.protocol}/${p.port}/${p.targetPort}/${typeof p.targetPort}/${p.nodePort}`).join(','), () => Object.freeze(ports.map((p) => Object.freeze({ ...p, name: internString(p.name) })))),
    externalIPs: kept(externalIPs),
    loadBalancerIPs: kept(loadBalancerIPs),
    sessionAffinity: sessionAffinity === 'ClientIP' ? 'ClientIP' : 'None',
    affinityTimeoutSeconds,
    externalTrafficPolicy,
    internalTrafficPolicy,
    created: str(meta.creationTimestamp) ?? '',
  };
  if (healthCheckNodePort) value.healthCheckNodePort = healthCheckNodePort;
  if (ipv6ClusterIPs.length > 0) value.ipv6ClusterIPs = kept(ipv6ClusterIPs);
  if (ipv6Only) value.ipv6Only = ipv6Only;
  return { problems, value };
}

/** Endpoints or ports with a bad field are dropped (and reported); the rest of the slice is kept. */
export function normalizeEndpointSlice(raw: unknown): Normalized<EndpointSlice> {
  const problems: Problem[] = [];
  const obj = objectName('EndpointSlice', raw);
  if (!isObj(raw) || !isObj(raw.metadata) || !str(raw.metadata.name)) {
    return { problems: [problem(obj, 'metadata.name', undefined, 'is required')] };
  }
  const meta = raw.metadata;
  const labels = isObj(meta.labels) ? meta.labels : {};
  const serviceName = str(labels[SERVICE_NAME_LABEL]);
  if (!serviceName) {
    // Slices made by hand or by other controllers for their own use: no
    // Service to attach them to. kube-proxy skips them silently, and so do we.
    return { problems: [], ignored: `${obj} has no ${SERVICE_NAME_LABEL} label` };
  }
  const addressType = raw.addressType;
  if (addressType !== 'IPv4' && addressType !== 'IPv6' && addressType !== 'FQDN') {
    return { problems: [problem(obj, 'addressType', addressType, 'is not one of IPv4, IPv6, FQDN')] };
  }

  const ports: EndpointPort[] = [];
  arr(raw.ports).forEach((p, i) => {
    const f = `ports[${i}]`;
    if (!isObj(p)) return problems.push(problem(obj, f, p, 'is not an object'));
    const protocol = protocolOf(p.protocol);
    if (!protocol) return problems.push(problem(obj, `${f}.protocol`, p.protocol, 'is not one of TCP, UDP, SCTP'));
    if (!isPort(p.port)) return problems.push(problem(obj, `${f}.port`, p.port, PORT_RANGE));
    ports.push({ name: str(p.name) ?? '', protocol, port: p.port });
  });

  const endpoints: Endpoint[] = [];
  arr(raw.endpoints).forEach((e, i) => {
    const f = `endpoints[${i}]`;
    if (!isObj(e)) return problems.push(problem(obj, f, e, 'is not an object'));
    const addresses = arr(e.addresses);
    if (addresses.length === 0) return problems.push(problem(obj, `${f}.addresses`, e.addresses, 'must hold at least one address'));
    if (addressType === 'IPv4') {
      const badIndex = addresses.findIndex((a) => typeof a !== 'string' || !isIPv4(a));
      if (badIndex >= 0) {
        return problems.push(problem(obj, `${f}.addresses[${badIndex}]`, addresses[badIndex], 'is not an IPv4 address'));
      }
    }
    const cond = isObj(e.conditions) ? e.conditions : {};
    // discovery/v1: ready and serving unset mean true (kube-proxy reads serving
    // so too), terminating unset means false.
    const flag = (name: 'ready' | 'serving' | 'terminating', unset: boolean): boolean | undefined => {
      const v = cond[name];
      if (v === undefined || v === null) return unset;
      if (typeof v === 'boolean') return v;
      problems.push(problem(obj, `${f}.conditions.${name}`, v, 'is not a boolean'));
      return undefined;
    };
    const ready = flag('ready', true);
    const serving = flag('serving', true);
    const terminating = flag('terminating', false);
    if (ready === undefined || serving === undefined || terminating === undefined) return;
    endpoints.push({
      address: addresses[0] as string,
      ready,
      serving,
      terminating,
      nodeName: str(e.nodeName) ?? '',
    });
  });

  // The datapath serves IPv4 slices only: the others keep no endpoints.
  const packed = addressType === 'IPv4' ? packEndpoints(endpoints) : NO_ENDPOINTS;
  return {
    problems,
    value: {
      namespace: internString(str(meta.namespace) ?? 'default'),
      name: str(meta.name) ?? '',
      serviceName,
      addressType: addressType === 'IPv4' ? 'IPv4' : addressType === 'IPv6' ? 'IPv6' : 'FQDN',
      ports: ports.length === 0 ? EMPTY : portLists.get(ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(','), () => Object.freeze(ports.map((p) => Object.freeze({ ...p, name: internString(p.name) })))),
      // Named, not spread: a spread adds them as out-of-object properties.
      packed: packed.packed,
      nodes: packed.nodes,
    },
  };
}
