// The cluster's nodes, compiled into what this node's kernel needs to reach
// them: routes to every other node's pod CIDR (native routing: via the node;
// VXLAN: over the tunnel device, with the neighbour and forwarding entries
// that name the remote end), and the ipcache entries that tell the datapath
// which addresses are inside the cluster (not masqueraded). Pure: tables in,
// entries out.
import { parseCidr4 } from '../endpoints/ipam.ts';

/** A node as the cluster describes it (HyphaNode / Node objects, or config). */
export interface ClusterNode {
  name: string;
  /** IPv4 addresses, the first one is where its pods' traffic is sent. */
  addresses: string[];
  podCIDRs: string[];
}

export type RoutingMode = 'native' | 'vxlan';

export interface RoutingOptions {
  mode: RoutingMode;
  /** This node's name: its own CIDRs are local (no route). */
  self: string;
  /** CIDRs that are inside the cluster too (never masqueraded): the pod pool, service ranges. */
  clusterCIDRs: string[];
}

export interface DesiredRoute {
  dst: string;
  /** native: the node's address; vxlan: the remote node's tunnel address. */
  gateway: string;
  /** vxlan: over the tunnel device, onlink. */
  tunnel: boolean;
  node: string;
}

export interface TunnelPeer {
  node: string;
  /** The remote node's underlay address (the VXLAN destination). */
  remote: string;
  /** Its tunnel device's address (the first address of its pod CIDR) and MAC. */
  address: string;
  mac: string;
}

export interface IpcacheEntry {
  cidr: string;
  nodeAddr: string;
  /** Security identity (src/identity): unset here, 0 in the map ("none"). */
  identity?: number;
  flags: { cluster: boolean; pod: boolean; node: boolean; local: boolean };
}

export interface CompiledNodes {
  routes: DesiredRoute[];
  peers: TunnelPeer[];
  ipcache: IpcacheEntry[];
  problems: string[];
}

/** The tunnel device's MAC for a node: 0a:58 and its underlay address, so
 *  every node can name every other node's without asking it. */
export function tunnelMacOf(ip: string): string {
  return ['0a', '58', ...ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
}

/** The tunnel device's own address: the first address of the first pod CIDR. */
export function tunnelAddressOf(podCIDRs: readonly string[]): string | undefined {
  const first = podCIDRs[0];
  if (!first) return undefined;
  try {
    return parseCidr4('podCIDR', first).cidr.split('/')[0];
  } catch {
    return undefined;
  }
}

export function compileNodes(nodes: readonly ClusterNode[], opts: RoutingOptions): CompiledNodes {
  const out: CompiledNodes = { routes: [], peers: [], ipcache: [], problems: [] };
  const seen = new Map<string, string>();
  const add = (e: IpcacheEntry): boolean => {
    const prev = seen.get(e.cidr);
    if (prev !== undefined) {
      out.problems.push(`${e.cidr} is claimed by ${prev} and by ${e.nodeAddr || 'the configuration'}; the first one is kept`);
      return false;
    }
    seen.set(e.cidr, e.nodeAddr || 'the configuration');
    out.ipcache.push(e);
    return true;
  };
  for (const c of opts.clusterCIDRs) add({ cidr: parseCidr4('clusterCIDRs', c).cidr, nodeAddr: '', flags: { cluster: true, pod: false, node: false, local: false } });
  for (const n of [...nodes].sort((a, b) => a.name.localeCompare(b.name))) {
    const local = n.name === opts.self;
    const addr = n.addresses[0];
    for (const a of n.addresses) add({ cidr: `${a}/32`, nodeAddr: a, flags: { cluster: true, pod: false, node: true, local } });
    // A pod CIDR another node claimed first is neither cached nor routed here.
    const cidrs: string[] = [];
    for (const c of n.podCIDRs) {
      let cidr: string;
      try {
        cidr = parseCidr4(`node ${n.name} pod CIDR`, c).cidr;
      } catch (err) {
        out.problems.push((err as Error).message);
        continue;
      }
      if (add({ cidr, nodeAddr: addr ?? '', flags: { cluster: true, pod: true, node: false, local } })) cidrs.push(cidr);
    }
    if (local || cidrs.length === 0) continue;
    if (!addr) {
      out.problems.push(`node ${n.name} has pod CIDRs ${cidrs.join(', ')} but no address: no route to them`);
      continue;
    }
    if (opts.mode === 'native') {
      for (const c of cidrs) out.routes.push({ dst: c, gateway: addr, tunnel: false, node: n.name });
      continue;
    }
    const tunnel = tunnelAddressOf(cidrs);
    if (!tunnel) continue;
    out.peers.push({ node: n.name, remote: addr, address: tunnel, mac: tunnelMacOf(addr) });
    for (const c of cidrs) out.routes.push({ dst: c, gateway: tunnel, tunnel: true, node: n.name });
  }
  return out;
}
