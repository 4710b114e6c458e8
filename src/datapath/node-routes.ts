// Routes to the other nodes' pods, kept equal to what the nodes compiler says
// (src/nodes/compile.ts): in native routing a route per remote pod CIDR via
// that node; in VXLAN mode one tunnel device, a route per remote pod CIDR over
// it to the remote tunnel address, and the neighbour and forwarding entries
// that name the remote end. Only what this agent made is touched: its routes
// carry their own protocol number, the tunnel device is its own.
import type { Logger } from 'pino';
import type { CompiledNodes } from '../nodes/compile.ts';
import { tunnelMacOf } from '../nodes/compile.ts';
import { deviceRpFilterOff } from './rp-filter.ts';
import { type Route, Rtnl, isRtnlError } from './rtnl.ts';

/** rtm_protocol of routes to other nodes' pod CIDRs (pods' own routes use 0x48). */
export const RTPROT_HYPHA_NODES = 0x49;
export const VXLAN_DEVICE = 'hypha_vxlan';

export interface NodeRoutesOptions {
  mode: 'native' | 'vxlan';
  vxlan: { vni: number; port: number };
  /** Underlying device's MTU; the tunnel's is 50 bytes less. */
  mtu: number;
  log: Logger;
}

export interface RouteSyncStats {
  added: number;
  removed: number;
  /** Why no route could be made yet (VXLAN without this node's address). */
  waiting?: string;
}

const routeKey = (r: Pick<Route, 'dst' | 'gateway'>): string => `${r.dst} via ${r.gateway ?? '-'}`;

export class NodeRoutes {
  readonly #rtnl: Rtnl;
  readonly #o: NodeRoutesOptions;

  constructor(rtnl: Rtnl, opts: NodeRoutesOptions) {
    this.#rtnl = rtnl;
    this.#o = opts;
  }

  /** Make the kernel match `c`. `local` is this node's underlay address and
   *  tunnel address (VXLAN mode). */
  async sync(c: CompiledNodes, local: { address?: string; tunnelAddress?: string }): Promise<RouteSyncStats> {
    const stats: RouteSyncStats = { added: 0, removed: 0 };
    let tunnel: number | undefined;
    if (this.#o.mode === 'vxlan') {
      if (!local.address) return { ...stats, waiting: 'this node has no address yet: the VXLAN tunnel cannot be set up' };
      tunnel = await this.#tunnel(local.address, local.tunnelAddress);
      // Peers first: a route over the tunnel is useless until its gateway's
      // MAC and that MAC's remote end are known (no learning, no flooding).
      await this.#syncPeers(tunnel, c);
    } else if (await this.#rtnl.linkDelete(VXLAN_DEVICE)) {
      this.#o.log.info({ device: VXLAN_DEVICE }, 'tunnel device removed (native routing)');
    }
    const want = new Map<string, Route>();
    for (const r of c.routes) {
      const route: Route = r.tunnel && tunnel !== undefined
        ? { dst: r.dst, gateway: r.gateway, ifindex: tunnel, onlink: true, protocol: RTPROT_HYPHA_NODES }
        : { dst: r.dst, gateway: r.gateway, protocol: RTPROT_HYPHA_NODES };
      if (r.tunnel && tunnel === undefined) continue;
      want.set(routeKey(route), route);
    }
    const have = await this.#rtnl.routeList({ protocol: RTPROT_HYPHA_NODES });
    const haveKeys = new Set(have.map(routeKey));
    for (const r of have) {
      const k = routeKey(r);
      // A route whose device changed (mode switch) is replaced below.
      if (want.has(k) && (want.get(k)?.ifindex === undefined || want.get(k)?.ifindex === r.ifindex)) continue;
      if (await this.#rtnl.routeDelete({ dst: r.dst, ...(r.gateway ? { gateway: r.gateway } : {}), protocol: RTPROT_HYPHA_NODES })) stats.removed++;
      haveKeys.delete(k);
    }
    for (const [k, r] of want) {
      if (haveKeys.has(k)) continue;
      try {
        await this.#rtnl.routeReplace(r);
        stats.added++;
      } catch (err) {
        // e.g. ENETUNREACH: the gateway is not on any of this node's subnets.
        this.#o.log.warn({ route: k, err: (err as Error).message }, 'route to a node not added');
      }
    }
    if (stats.added + stats.removed > 0) this.#o.log.info({ ...stats, routes: want.size, mode: this.#o.mode }, 'routes to other nodes updated');
    return stats;
  }

  /** The tunnel device and its peers (neighbours, FDB); returns its ifindex. */
  async #tunnel(localAddress: string, tunnelAddress: string | undefined): Promise<number> {
    const mac = tunnelMacOf(localAddress);
    let dev = await this.#rtnl.linkGet(VXLAN_DEVICE);
    if (dev && (dev.vxlan?.local !== localAddress || dev.vxlan?.vni !== this.#o.vxlan.vni || dev.vxlan?.port !== this.#o.vxlan.port || dev.mac !== mac)) {
      await this.#rtnl.linkDelete(VXLAN_DEVICE);
      this.#o.log.info({ device: VXLAN_DEVICE, local: localAddress }, 'tunnel device recreated (its settings changed)');
      dev = undefined;
    }
    if (!dev) {
      await this.#rtnl.vxlanCreate({ name: VXLAN_DEVICE, vni: this.#o.vxlan.vni, port: this.#o.vxlan.port, local: localAddress, learning: false, mtu: this.#o.mtu - 50, mac });
      dev = await this.#rtnl.linkGet(VXLAN_DEVICE);
      if (!dev) throw new Error(`${VXLAN_DEVICE} did not appear after it was created`);
      this.#o.log.info({ device: VXLAN_DEVICE, ifindex: dev.index, vni: this.#o.vxlan.vni, port: this.#o.vxlan.port, local: localAddress }, 'tunnel device created');
    }
    if (tunnelAddress) {
      const addrs = await this.#rtnl.addrList(dev.index);
      if (!addrs.some((a) => a.address === tunnelAddress && a.prefixLength === 32)) {
        for (const a of addrs) await this.#rtnl.addrDelete(dev.index, `${a.address}/${a.prefixLength}`);
        await this.#rtnl.addrAdd(dev.index, `${tunnelAddress}/32`);
      }
    }
    // Outside traffic another node forwards to a pod here arrives on the
    // tunnel with that node's address as its source, which is not routed via
    // the tunnel: a strict `default` (what the device started with) drops it.
    const old = deviceRpFilterOff(VXLAN_DEVICE, this.#o.log);
    if (old !== undefined) this.#o.log.info({ device: VXLAN_DEVICE, old }, 'tunnel device: rp_filter turned off');
    if (!dev.up) await this.#rtnl.linkSetUp(dev.index);
    return dev.index;
  }

  /** Neighbour and FDB entries of the tunnel's peers. */
  async #syncPeers(ifindex: number, c: CompiledNodes): Promise<void> {
    const dev = { index: ifindex };
    const neighs = await this.#rtnl.neighList(dev.index);
    const fdb = await this.#rtnl.fdbList(dev.index);
    const wantNeigh = new Map(c.peers.map((p) => [p.address, p.mac]));
    const wantFdb = new Map(c.peers.map((p) => [p.mac, p.remote]));
    for (const n of neighs) {
      if (n.state === 'permanent' && wantNeigh.get(n.ip) !== n.mac) await this.#rtnl.neighDelete({ ifindex: dev.index, ip: n.ip });
    }
    for (const f of fdb) {
      if (f.permanent && f.self && f.dst !== undefined && wantFdb.get(f.mac) !== f.dst) {
        await this.#rtnl.fdbDelete({ ifindex: dev.index, mac: f.mac, dst: f.dst, self: true });
      }
    }
    for (const p of c.peers) {
      if (!neighs.some((n) => n.ip === p.address && n.mac === p.mac && n.state === 'permanent')) {
        await this.#rtnl.neighReplace({ ifindex: dev.index, ip: p.address, mac: p.mac, state: 'permanent' });
      }
      if (!fdb.some((f) => f.mac === p.mac && f.dst === p.remote && f.permanent)) {
        try {
          await this.#rtnl.fdbReplace({ ifindex: dev.index, mac: p.mac, dst: p.remote, permanent: true, self: true });
        } catch (err) {
          if (!isRtnlError(err, 'EEXIST')) throw err;
        }
      }
    }
  }
}
