// The pod's network plumbing over rtnetlink (src/datapath/rtnl.ts): never an
// `ip` process. The host side is worked on through the agent's long-lived
// socket in its own namespace; the pod side through a socket opened inside
// the pod's namespace for the request and closed after it.
import { randomBytes } from 'node:crypto';
import { Rtnl } from '../datapath/rtnl.ts';
import type { HostSide, PodNetwork, PodSide, VethCreated } from './ports.ts';

/** The rtm_protocol Hypha marks its routes with (pod routes, routes to other
 *  nodes), so it lists and prunes only its own. Unassigned in
 *  /etc/iproute2/rt_protos; 0x48 is "H". */
export const RTPROT_HYPHA = 0x48;

/** Host-side veths this agent makes are named lxc + 11 hex digits. */
export const HOST_VETH_RE = /^lxc[0-9a-f]{11}$/;

/** A random, locally administered, unicast MAC. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Sockets for veth deletes. A delete waits ~20 ms in the kernel (the
 *  device's unregistration, RCU grace periods); over the one socket whose
 *  requests go one at a time, 30 pods deleted at once took 30 x 20 ms
 *  (measured, bench-cni), while the kernel overlaps deletes made at once. */
const DELETERS = 16;

export class RtnlPodNetwork implements PodNetwork {
  readonly #host: Rtnl;
  readonly #deleters: Rtnl[] = [];
  #next = 0;

  constructor(host: Rtnl) {
    this.#host = host;
  }

  /** A socket for one delete: the pool's next, opened on first use. */
  #deleter(): Rtnl {
    const i = this.#next++ % DELETERS;
    let r = this.#deleters[i];
    if (!r || r.closed) this.#deleters[i] = r = Rtnl.open();
    return r;
  }

  close(): void {
    for (const r of this.#deleters) r.close();
    this.#deleters.length = 0;
  }

  async createVeth(p: { hostIfname: string; podIfname: string; netnsPath: string; mtu: number }): Promise<VethCreated> {
    // Both MACs are chosen here, so nothing has to be read back from the pod.
    const hostMac = randomMac();
    const podMac = randomMac();
    const host = await this.#host.vethCreate({ name: p.hostIfname, peerName: p.podIfname, peerNetnsPath: p.netnsPath, mtu: p.mtu, mac: hostMac, peerMac: podMac });
    return { hostIfindex: host.index, hostMac, podMac, ...(host.linkIndex === undefined ? {} : { podIfindex: host.linkIndex }) };
  }

  async configurePod(p: { netnsPath: string; ifname: string; podIfindex?: number; ip: string; gateway: string; gatewayMac: string }): Promise<void> {
    const pod = Rtnl.open(p.netnsPath);
    try {
      const index = p.podIfindex ?? (await pod.linkGet(p.ifname))?.index;
      if (index === undefined) throw new Error(`interface ${p.ifname} did not appear in ${p.netnsPath}`);
      // One round trip for all five.
      await pod.batch((b) => b
        .addrAdd(index, `${p.ip}/32`)
        .linkSetUp(index)
        .neighReplace({ ifindex: index, ip: p.gateway, mac: p.gatewayMac, state: 'permanent' })
        .routeReplace({ dst: `${p.gateway}/32`, ifindex: index, scope: 'link', protocol: RTPROT_HYPHA })
        .routeReplace({ dst: 'default', gateway: p.gateway, ifindex: index, onlink: true, protocol: RTPROT_HYPHA }));
    } finally {
      pod.close();
    }
  }

  async configureHost(p: { hostIfname: string; hostIfindex: number; ip: string }): Promise<void> {
    // (The sysctls the datapath needs on this device are set when its
    // programs are attached: Devices.attachPod.)
    await this.#host.batch((b) => b
      .linkSetUp(p.hostIfindex)
      .routeReplace({ dst: `${p.ip}/32`, ifindex: p.hostIfindex, scope: 'link', protocol: RTPROT_HYPHA }));
  }

  async deleteVeth(hostIfname: string): Promise<boolean> {
    return this.#deleter().linkDelete(hostIfname);
  }

  async inspectHost(hostIfname: string, ip: string): Promise<HostSide | undefined> {
    const link = await this.#host.linkGet(hostIfname);
    if (!link) return undefined;
    const routes = await this.#host.routeList({ ifindex: link.index, protocol: RTPROT_HYPHA });
    return { ifindex: link.index, mac: link.mac ?? '', up: link.up, routed: routes.some((r) => r.dst === `${ip}/32`) };
  }

  async inspectPod(netnsPath: string, ifname: string): Promise<PodSide | undefined> {
    const pod = Rtnl.open(netnsPath);
    try {
      const link = await pod.linkGet(ifname);
      if (!link) return undefined;
      const [addrs, routes, neighs] = [await pod.addrList(link.index), await pod.routeList({ ifindex: link.index }), await pod.neighList(link.index)];
      const def = routes.find((r) => r.dst === 'default');
      const gw = def?.gateway;
      const n = gw === undefined ? undefined : neighs.find((x) => x.ip === gw);
      return {
        ifindex: link.index, mac: link.mac ?? '', up: link.up, mtu: link.mtu,
        addresses: addrs.map((a) => `${a.address}/${a.prefixLength}`),
        ...(gw === undefined ? {} : { defaultGateway: gw }),
        ...(n ? { gatewayNeighbour: { mac: n.mac ?? '', permanent: n.state === 'permanent' } } : {}),
      };
    } finally {
      pod.close();
    }
  }

  async listHostVeths(): Promise<{ name: string; ifindex: number }[]> {
    return (await this.#host.linkList()).filter((l) => l.kind === 'veth' && HOST_VETH_RE.test(l.name)).map((l) => ({ name: l.name, ifindex: l.index }));
  }
}
