// Attaching the programs to devices of the node (the calling process's
// network namespace). Every attach replaces what is there atomically (same tc
// handle and priority; XDP with the expected old program), so a restarted or
// upgraded agent never leaves a device without a program.
import { writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import * as native from '../../native/index.ts';
import type { Datapath } from './loader.ts';
import { deviceRpFilterOff } from './rp-filter.ts';
import { procSysPath } from './sysctl.ts';

/** Our tc filters' handle and priority: 0x4859 is "HY". */
export const TC_HANDLE = 0x4859;
export const TC_PRIORITY = 1;
const TC_OPTS = { handle: TC_HANDLE, priority: TC_PRIORITY };

export type ExternalMode = 'xdp' | 'tc' | 'auto';

export class DeviceError extends Error {
  readonly code: string;
  readonly device: string;
  constructor(device: string, code: string, message: string, options?: ErrorOptions) {
    super(`device ${device}: ${message}`, options);
    this.name = 'DeviceError';
    this.code = code;
    this.device = device;
  }
}

function setSysctl(path: string, value: string, log?: Logger): void {
  try {
    writeFileSync(path, value);
  } catch (err) {
    log?.warn({ path, err: (err as Error).message }, 'sysctl not set');
  }
}

function ifindexOf(ifname: string): number {
  try {
    return native.ifNameToIndex(ifname);
  } catch (err) {
    throw new DeviceError(ifname, 'ENODEV', 'no such device in this network namespace', { cause: err });
  }
}

export class Devices {
  readonly #dp: Datapath;
  readonly #log: Logger | undefined;

  constructor(dp: Datapath, log?: Logger) {
    this.#dp = dp;
    this.#log = log;
  }

  /** A pod's host-side veth: from-pod on ingress, to-pod on egress. */
  attachPod(ifname: string): number {
    const ifindex = ifindexOf(ifname);
    try {
      native.tcAttach(ifindex, 'ingress', this.#dp.programs.fromPod, TC_OPTS);
      native.tcAttach(ifindex, 'egress', this.#dp.programs.toPod, TC_OPTS);
    } catch (err) {
      throw new DeviceError(ifname, (err as native.NativeError).code ?? 'EATTACH', `tc attach failed: ${(err as Error).message}`, { cause: err });
    }
    // Replies get their frontend back as the source on this device's ingress:
    // reverse-path filtering would drop a Service address, and a NodePort
    // reply carries one of the node's own addresses, which the stack drops as
    // a martian unless the device accepts local sources. (The kernel filters
    // with the larger of this and conf.all.rp_filter: see rp-filter.ts.)
    deviceRpFilterOff(ifname, this.#log);
    setSysctl(procSysPath('net', 'ipv4', 'conf', ifname, 'accept_local'), '1', this.#log);
    this.#log?.debug({ device: ifname, ifindex }, 'pod device attached');
    return ifindex;
  }

  /** Are our pod programs the ones attached to this device (both directions)? */
  podAttached(ifindex: number): boolean {
    try {
      const ing = native.tcQuery(ifindex, 'ingress', TC_OPTS);
      const eg = native.tcQuery(ifindex, 'egress', TC_OPTS);
      return ing?.progId === native.progInfo(this.#dp.programs.fromPod).id && eg?.progId === native.progInfo(this.#dp.programs.toPod).id;
    } catch {
      return false; // the device is gone
    }
  }

  detachPod(ifname: string): void {
    const ifindex = ifindexOf(ifname);
    native.tcDetach(ifindex, 'ingress', TC_OPTS);
    native.tcDetach(ifindex, 'egress', TC_OPTS);
  }

  /** The node's external device: XDP in the driver when it can, tc otherwise
   *  ('auto'); or exactly the one asked for. Returns what was attached. The tc
   *  program is attached in both cases: next to XDP it handles what XDP
   *  leaves to it (flows to backends on other nodes, and their replies, and
   *  replies to masqueraded pod traffic). tc egress masquerades pod traffic
   *  that leaves the cluster. */
  attachExternal(ifname: string, mode: ExternalMode = 'auto'): 'xdp' | 'tc' {
    const ifindex = ifindexOf(ifname);
    if (mode !== 'tc') {
      try {
        const current = native.xdpQuery(ifindex);
        // tc first: from the moment XDP punts a flow, tc must be there.
        native.tcAttach(ifindex, 'ingress', this.#dp.programs.fromNetdev, TC_OPTS);
        native.tcAttach(ifindex, 'egress', this.#dp.programs.toNetdev, TC_OPTS);
        native.xdpAttach(ifindex, this.#dp.programs.xdpNodeport, {
          mode: 'native',
          ...(current.nativeProgId ? { replaceProgId: current.nativeProgId } : {}),
        });
        this.#log?.info({ device: ifname, ifindex, mode: 'xdp' }, 'external device attached');
        return 'xdp';
      } catch (err) {
        if (mode === 'xdp') {
          throw new DeviceError(ifname, (err as native.NativeError).code ?? 'EATTACH', `XDP attach failed: ${(err as Error).message}`, { cause: err });
        }
        this.#log?.warn({ device: ifname, err: (err as Error).message }, 'native XDP unavailable, using tc');
      }
    }
    try {
      native.tcAttach(ifindex, 'ingress', this.#dp.programs.fromNetdev, TC_OPTS);
      native.tcAttach(ifindex, 'egress', this.#dp.programs.toNetdev, TC_OPTS);
    } catch (err) {
      throw new DeviceError(ifname, (err as native.NativeError).code ?? 'EATTACH', `tc attach failed: ${(err as Error).message}`, { cause: err });
    }
    if (native.xdpQuery(ifindex).nativeProgId) native.xdpDetach(ifindex, { mode: 'native' });
    this.#log?.info({ device: ifname, ifindex, mode: 'tc' }, 'external device attached');
    return 'tc';
  }

  detachExternal(ifname: string): void {
    const ifindex = ifindexOf(ifname);
    native.tcDetach(ifindex, 'ingress', TC_OPTS);
    native.tcDetach(ifindex, 'egress', TC_OPTS);
    if (native.xdpQuery(ifindex).progId) native.xdpDetach(ifindex, {});
  }
}
