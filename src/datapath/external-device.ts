// Which device is the node's external one when the config names none.
/** What detectExternalDevice looks at (rtnetlink, or a test's lists). */
export interface DeviceInventory {
  links: readonly { index: number; name: string; up: boolean; kind?: string; masterIndex?: number }[];
  addrs: readonly { ifindex: number; address: string; scope: string | number }[];
  routes: readonly { dst: string; ifindex?: number; table?: number }[];
}

export type ExternalChoice = { device: string; why: string } | { device: undefined; why: string };

/** Devices Hypha makes itself, or that never carry the node's traffic. */
const NOT_EXTERNAL = /^(lo|lxc.*|hypha_.*|cilium_.*|docker\d*|veth.*)$/;

/**
 * The node's external device when the config names none (as Cilium's device
 * detection does): the device of the IPv4 default route; without one, the
 * only device that is up with a global IPv4 address, or the one holding a
 * node address. Devices Hypha makes (lxc*, hypha_*) never count.
 */
export function detectExternalDevice(inv: DeviceInventory, nodeAddresses: readonly string[] = []): ExternalChoice {
  const byIndex = new Map(inv.links.map((l) => [l.index, l]));
  const usable = (index: number | undefined): boolean => {
    const l = index === undefined ? undefined : byIndex.get(index);
    return l !== undefined && l.up && !NOT_EXTERNAL.test(l.name) && l.masterIndex === undefined;
  };
  const dflt = inv.routes.find((r) => r.dst === 'default' && (r.table ?? 254) === 254 && usable(r.ifindex));
  if (dflt) return { device: byIndex.get(dflt.ifindex!)!.name, why: 'it has the default route' };
  const global = inv.addrs.filter((a) => (a.scope === 'universe' || a.scope === 0) && usable(a.ifindex));
  const holding = global.find((a) => nodeAddresses.includes(a.address));
  if (holding) return { device: byIndex.get(holding.ifindex)!.name, why: `it holds the node address ${holding.address}` };
  const devices = [...new Set(global.map((a) => a.ifindex))];
  if (devices.length === 1) return { device: byIndex.get(devices[0]!)!.name, why: 'it is the only device with a global IPv4 address' };
  return {
    device: undefined,
    why: devices.length === 0
      ? 'no default route and no device with a global IPv4 address'
      : `no default route and ${devices.length} devices with global IPv4 addresses (${devices.map((i) => byIndex.get(i)!.name).join(', ')}): set devices.external`,
  };
}
