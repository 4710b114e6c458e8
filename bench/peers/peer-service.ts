// Input model shared by the kube-proxy peer generators (iptables and nftables modes):
// one entry per Service port, plus validation and the normalised form both generators
// walk. Pure: no I/O, no clock, no randomness.

export interface PeerEndpoint {
  ip: string;
  port: number;
}

export interface PeerService {
  namespace: string;
  name: string;
  portName: string; // '' for an unnamed port, as in Kubernetes
  protocol: 'TCP' | 'UDP';
  clusterIP: string;
  port: number;
  nodePort?: number;
  endpoints: PeerEndpoint[];
}

export interface PeerOptions {
  /** --cluster-cidr: traffic from outside it is marked for masquerade. */
  clusterCIDR: string;
  /**
   * The node's primary IPs. nftables mode defaults --nodeport-addresses to them
   * (the `nodeport-ips` set); without them it matches every local address, which is
   * what iptables mode always does (`-m addrtype --dst-type LOCAL`).
   */
  nodeIPs?: string[];
  /** --iptables-masquerade-bit / --nftables-masquerade-bit, default 14. */
  masqueradeBit?: number;
  /**
   * The ServiceCIDR. kube-proxy >= 1.33 learns it from ServiceCIDR objects and the
   * nftables mode then drops traffic to unallocated ClusterIPs. Omitted: no such rule.
   */
  serviceCIDR?: string;
  /**
   * Whether the endpoints are pods on this node (the benchmark's server namespaces
   * hang off the node namespace). nftables mode keeps a `hairpin-connections` set of
   * local endpoints; iptables mode does not care. Default true.
   */
  localEndpoints?: boolean;
}

/** One endpoint of one service replaced by another address. */
export interface EndpointChange {
  service: number; // index into the services list
  endpoint: number; // index into that service's endpoints, as given
  to: PeerEndpoint;
}

export type PeerInputErrorCode = 'EPEERINPUT';

/** Bad generator input; `field` names the offending field, `value` holds it. */
export class PeerInputError extends Error {
  readonly code: PeerInputErrorCode = 'EPEERINPUT';
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, problem: string) {
    super(`${field} ${JSON.stringify(value)} ${problem}`);
    this.name = 'PeerInputError';
    this.field = field;
    this.value = value;
  }
}

export function isPeerInputError(err: unknown): err is PeerInputError {
  return err instanceof PeerInputError;
}

/** A Service port in the shape kube-proxy's proxiers see it. */
export interface SvcPort {
  /** NamespacedName.String(): the unit kube-proxy's partial sync rewrites. */
  nsName: string;
  namespace: string;
  name: string;
  portName: string;
  /** ServicePortName.String(): "ns/name:port", or "ns/name" for an unnamed port. */
  nameString: string;
  protocol: 'tcp' | 'udp';
  clusterIP: string;
  port: number;
  nodePort: number; // 0: none
  /** Sorted by "ip:port" like kube-proxy's endpointslice cache (byEndpoint). */
  endpoints: { ip: string; port: number; str: string }[];
}

export interface NormalOptions {
  clusterCIDR: string;
  nodeIPs: string[];
  masqueradeMark: string;
  serviceCIDR: string | undefined;
  localEndpoints: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isIPv4(s: unknown): s is string {
  return typeof s === 'string' && IPV4.test(s);
}

function checkIPv4(field: string, v: unknown): string {
  if (!isIPv4(v)) throw new PeerInputError(field, v, 'is not an IPv4 address');
  return v;
}

function checkCIDR(field: string, v: unknown): string {
  if (typeof v !== 'string') throw new PeerInputError(field, v, 'is not a valid IPv4 prefix');
  const [ip, len, extra] = v.split('/');
  const n = Number(len);
  if (extra !== undefined || !isIPv4(ip) || len === undefined || !/^\d{1,2}$/.test(len) || n > 32) {
    throw new PeerInputError(field, v, 'is not a valid IPv4 prefix');
  }
  return v;
}

function checkPort(field: string, v: unknown, min = 1, max = 65535): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new PeerInputError(field, v, `is not a port number in ${min}-${max}`);
  }
  return v;
}

function checkLabel(field: string, v: unknown, allowEmpty: boolean): string {
  if (typeof v !== 'string' || (v === '' ? !allowEmpty : v.length > 63 || !DNS_LABEL.test(v))) {
    throw new PeerInputError(field, v, 'is not a DNS label ([a-z0-9-], at most 63 characters)');
  }
  return v;
}

/**
 * Go's fmt "%#08x": Go pads the digits (not the "0x") to the width, so
 * 1<<14 gives "0x00004000", the mark kube-proxy logs and writes.
 */
export function goHex08(v: number): string {
  return '0x' + v.toString(16).padStart(8, '0');
}

export function normalizeOptions(opts: PeerOptions): NormalOptions {
  if (opts === null || typeof opts !== 'object') throw new PeerInputError('options', opts, 'is not an object');
  const clusterCIDR = checkCIDR('options.clusterCIDR', opts.clusterCIDR);
  const nodeIPs = (opts.nodeIPs ?? []).map((ip, i) => checkIPv4(`options.nodeIPs[${i}]`, ip));
  const bit = opts.masqueradeBit ?? 14;
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) {
    throw new PeerInputError('options.masqueradeBit', bit, 'is not an integer in 0-31');
  }
  const serviceCIDR = opts.serviceCIDR === undefined ? undefined : checkCIDR('options.serviceCIDR', opts.serviceCIDR);
  return {
    clusterCIDR,
    nodeIPs,
    masqueradeMark: goHex08(2 ** bit),
    serviceCIDR,
    localEndpoints: opts.localEndpoints ?? true,
  };
}

export function normalizeServices(services: readonly PeerService[]): SvcPort[] {
  if (!Array.isArray(services)) throw new PeerInputError('services', services, 'is not an array');
  const seen = new Map<string, number>();
  return services.map((s, i) => {
    const f = `services[${i}]`;
    if (s === null || typeof s !== 'object') throw new PeerInputError(f, s, 'is not an object');
    const namespace = checkLabel(`${f}.namespace`, s.namespace, false);
    const name = checkLabel(`${f}.name`, s.name, false);
    const portName = checkLabel(`${f}.portName`, s.portName, true);
    if (s.protocol !== 'TCP' && s.protocol !== 'UDP') {
      throw new PeerInputError(`${f}.protocol`, s.protocol, 'is not "TCP" or "UDP"');
    }
    const protocol = s.protocol === 'TCP' ? 'tcp' : 'udp';
    const clusterIP = checkIPv4(`${f}.clusterIP`, s.clusterIP);
    const port = checkPort(`${f}.port`, s.port);
    const nodePort = s.nodePort === undefined ? 0 : checkPort(`${f}.nodePort`, s.nodePort);
    const nameString = `${namespace}/${name}${portName === '' ? '' : ':' + portName}`;
    const key = `${nameString}/${protocol}`;
    const dup = seen.get(key);
    if (dup !== undefined) {
      throw new PeerInputError(`${f}`, nameString, `duplicates services[${dup}] (same namespace, name, port name and protocol)`);
    }
    seen.set(key, i);
    const given: readonly PeerEndpoint[] = s.endpoints;
    if (!Array.isArray(given)) throw new PeerInputError(`${f}.endpoints`, given, 'is not an array');
    const eps = new Set<string>();
    const endpoints = given.map((e: PeerEndpoint, j: number) => {
      const ef = `${f}.endpoints[${j}]`;
      if (e === null || typeof e !== 'object') throw new PeerInputError(ef, e, 'is not an object');
      const ip = checkIPv4(`${ef}.ip`, e.ip);
      const p = checkPort(`${ef}.port`, e.port);
      const str = `${ip}:${p}`;
      if (eps.has(str)) throw new PeerInputError(ef, str, 'is listed twice');
      eps.add(str);
      return { ip, port: p, str };
    });
    endpoints.sort((a: { str: string }, b: { str: string }) => (a.str < b.str ? -1 : a.str > b.str ? 1 : 0));
    return { nsName: `${namespace}/${name}`, namespace, name, portName, nameString, protocol, clusterIP, port, nodePort, endpoints };
  });
}

/** The services after `change`, as a new list (the input is not modified). */
export function applyEndpointChange(services: readonly PeerService[], change: EndpointChange): PeerService[] {
  const svc = services[change.service];
  if (svc === undefined) throw new PeerInputError('change.service', change.service, 'is not an index into services');
  if (svc.endpoints[change.endpoint] === undefined) {
    throw new PeerInputError('change.endpoint', change.endpoint, `is not an index into services[${change.service}].endpoints`);
  }
  return services.map((s, i) =>
    i !== change.service
      ? s
      : { ...s, endpoints: s.endpoints.map((e, j) => (j === change.endpoint ? { ip: change.to.ip, port: change.to.port } : e)) },
  );
}

/** Same content, ignoring endpoint order (kube-proxy compares sorted endpoint sets). */
export function sameSvcPort(a: SvcPort, b: SvcPort): boolean {
  return (
    a.protocol === b.protocol &&
    a.clusterIP === b.clusterIP &&
    a.port === b.port &&
    a.nodePort === b.nodePort &&
    a.endpoints.length === b.endpoints.length &&
    a.endpoints.every((e, i) => e.str === b.endpoints[i]?.str)
  );
}

/**
 * The Services (namespace/name) whose ports or endpoints differ between two states:
 * kube-proxy's serviceUpdateResult/endpointUpdateResult.UpdatedServices, the unit a
 * partial sync rewrites.
 */
export function updatedServices(before: readonly SvcPort[], after: readonly SvcPort[]): Set<string> {
  const key = (s: SvcPort) => `${s.nameString}/${s.protocol}`;
  const prev = new Map(before.map((s) => [key(s), s]));
  const next = new Map(after.map((s) => [key(s), s]));
  const out = new Set<string>();
  for (const [k, s] of next) {
    const p = prev.get(k);
    if (p === undefined || !sameSvcPort(p, s)) out.add(s.nsName);
  }
  for (const [k, s] of prev) if (!next.has(k)) out.add(s.nsName);
  return out;
}
