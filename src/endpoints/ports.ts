// What the endpoint manager needs from the kernel, as two narrow interfaces:
// the pod's network plumbing (veth, addresses, routes, neighbour: rtnetlink)
// and the datapath (tc programs and the endpoints map). The real ones are in
// pod-network.ts and the agent's wiring; tests give in-memory fakes.

export interface VethCreated {
  hostIfindex: number;
  /** The pod end's ifindex in its namespace, when the kernel said. */
  podIfindex?: number;
  hostMac: string;
  podMac: string;
}

export interface HostSide {
  ifindex: number;
  mac: string;
  up: boolean;
  /** The pod's /32 route through this device is there. */
  routed: boolean;
}

export interface PodSide {
  ifindex: number;
  mac: string;
  up: boolean;
  mtu: number;
  addresses: string[];
  /** Default route's gateway, if any. */
  defaultGateway?: string;
  /** The gateway's neighbour entry: its MAC, and whether it is permanent. */
  gatewayNeighbour?: { mac: string; permanent: boolean };
}

export interface PodNetwork {
  /** Both ends at once, the pod's end created directly inside its namespace. */
  createVeth(p: { hostIfname: string; podIfname: string; netnsPath: string; mtu: number }): Promise<VethCreated>;
  /** Pod side: ip/32, up, a route to the gateway and a default route through it, a permanent neighbour entry for it. */
  configurePod(p: { netnsPath: string; ifname: string; podIfindex?: number; ip: string; gateway: string; gatewayMac: string }): Promise<void>;
  /** Host side: up, the pod's /32 route through it, the sysctls the datapath needs. */
  configureHost(p: { hostIfname: string; hostIfindex: number; ip: string }): Promise<void>;
  /** false when it did not exist (its peer goes with it). */
  deleteVeth(hostIfname: string): Promise<boolean>;
  inspectHost(hostIfname: string, ip: string): Promise<HostSide | undefined>;
  inspectPod(netnsPath: string, ifname: string): Promise<PodSide | undefined>;
  /** Host-side veths this agent may have made (by name prefix). */
  listHostVeths(): Promise<{ name: string; ifindex: number }[]>;
}

export interface EndpointDatapath {
  /** tc programs on the host-side veth (atomic replace); returns its ifindex. */
  attach(hostIfname: string): number;
  /** Both programs are ours on this device. */
  attached(hostIfindex: number): boolean;
  upsert(ip: string, ifindex: number): void;
  remove(ip: string): void;
  lookup(ip: string): number | undefined;
  /** Make the endpoints map hold exactly these. */
  sync(entries: readonly { ip: string; ifindex: number }[]): Promise<void>;
}
