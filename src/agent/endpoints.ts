// The endpoints map (pod address -> host-side veth) that lets from_pod hand
// packets for local pods straight to them. Until the CNI plugin creates
// endpoints itself, the agent learns them from the node's routes: every /32
// route through a pod device is a pod.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import * as native from '../../native/index.ts';
import { uintToIp4 } from '../abi/codec.ts';
import type { EndpointsReconciler } from '../datapath/endpoints-reconciler.ts';

export interface RouteEntry {
  ifname: string;
  destination: string;
  prefixLength: number;
}

/** /proc/net/route: addresses and masks are little-endian hex. Pure. */
export function parseProcRoutes(text: string): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const dest = Number.parseInt(f[1] ?? '', 16);
    const mask = Number.parseInt(f[7] ?? '', 16);
    if (!Number.isFinite(dest) || !Number.isFinite(mask)) continue;
    // Stored in host (little-endian) order: byte 0 is the first octet.
    const le = (v: number): number => (((v & 255) << 24) | (((v >>> 8) & 255) << 16) | (((v >>> 16) & 255) << 8) | ((v >>> 24) & 255)) >>> 0;
    let bits = 0;
    for (let m = le(mask); m & 0x80000000; m = (m << 1) >>> 0) bits++;
    out.push({ ifname: f[0] ?? '', destination: uintToIp4(le(dest)), prefixLength: bits });
  }
  return out;
}

/** The pods behind the node's pod devices, from its /32 routes through them. */
export class EndpointsSync {
  readonly #rec: EndpointsReconciler;
  readonly #log: Logger;

  constructor(rec: EndpointsReconciler, log: Logger) {
    this.#rec = rec;
    this.#log = log;
  }

  /** Make the map hold exactly the pods behind `devices` (name -> ifindex). */
  async sync(devices: ReadonlyMap<string, number>): Promise<void> {
    const desired = parseProcRoutes(readFileSync('/proc/self/net/route', 'utf8'))
      .filter((r) => r.prefixLength === 32 && devices.has(r.ifname))
      .map((r) => ({ ip: r.destination, ifindex: devices.get(r.ifname) ?? 0 }));
    const stats = await this.#rec.sync(desired);
    if (stats.upserts + stats.deletes > 0) this.#log.info({ endpoints: desired.length, upserts: stats.upserts, deletes: stats.deletes }, 'local pods updated');
  }
}

export function ifindexOf(ifname: string): number | undefined {
  try {
    return native.ifNameToIndex(ifname);
  } catch {
    return undefined;
  }
}
