// Reverse-path filtering on the node. Replies Hypha rewrites on a pod's
// host-side veth carry a source the reverse route does not lead back to
// through that veth: a Service address, one of the node's own addresses (a
// NodePort reply) or the hairpin loopback address. The kernel filters with
// the larger of net.ipv4.conf.all.rp_filter and the device's own value, so
// the 0 each of Hypha's devices gets is not enough on a host where `all` is
// 1 (CIS-hardened hosts set it): `all` must be 0 too. The agent turns it off
// (as Cilium does) unless told not to (sysctl.manageRpFilter: false), and
// then refuses to start rather than drop those replies. `default` (what new
// devices start with) is left alone: it decides nothing for the devices
// Hypha makes, which are set to 0 each, and keeps other new devices as the
// host wants them.
import type { Logger } from 'pino';
import { type SysctlKey, type Sysctls, ipv4Conf, procSysctls, sysctlName } from './sysctl.ts';

export const RP_FILTER_ALL = ipv4Conf('all', 'rp_filter');
export const RP_FILTER_DEFAULT = ipv4Conf('default', 'rp_filter');
/** The agent's setting that lets it change `all` (src/agent/config.ts). */
export const MANAGE_OPTION = 'sysctl.manageRpFilter';

export class RpFilterError extends Error {
  readonly code = 'ERPFILTER';
  /** e.g. `net.ipv4.conf.all.rp_filter` */
  readonly sysctl: string;
  /** Its value as read ('' when it could not be read). */
  readonly value: string;
  constructor(sysctl: string, value: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RpFilterError';
    this.sysctl = sysctl;
    this.value = value;
  }
}

export type RpFilterPlan =
  | { action: 'none' }
  | { action: 'write'; old: string; value: '0' }
  | { action: 'refuse'; value: string };

/** Pure: what to do about `all` holding `value`. */
export function planRpFilter(value: string, manage: boolean): RpFilterPlan {
  if (value === '0') return { action: 'none' };
  return manage ? { action: 'write', old: value, value: '0' } : { action: 'refuse', value };
}

const MODES: Record<string, string> = { 1: 'strict', 2: 'loose' };

function refusal(value: string): RpFilterError {
  const name = sysctlName(RP_FILTER_ALL);
  const mode = MODES[value] ? ` (${MODES[value]})` : '';
  return new RpFilterError(name, value,
    `${name} is ${value}${mode}: the kernel filters with the larger of it and each device's rp_filter, so replies from pods that Hypha ` +
    `gives a Service, node or loopback source would be dropped; set it to 0 (sysctl -w ${name}=0) or let the agent do it (${MANAGE_OPTION}: true)`);
}

export interface RpFilterOptions {
  manage: boolean;
  log: Logger;
  sysctls?: Sysctls;
}

export class RpFilter {
  readonly #manage: boolean;
  readonly #log: Logger;
  readonly #sys: Sysctls;
  /** The value last reported as wrong while not managed (said once per value). */
  #reported: string | undefined;

  constructor(opts: RpFilterOptions) {
    this.#manage = opts.manage;
    this.#log = opts.log;
    this.#sys = opts.sysctls ?? procSysctls();
  }

  /** At start, before anything is attached: `all` is 0 afterwards, or this
   *  throws an RpFilterError (not allowed to change it, or it cannot be). */
  ensure(): void {
    const plan = planRpFilter(this.#read(RP_FILTER_ALL), this.#manage);
    if (plan.action === 'refuse') throw refusal(plan.value);
    if (plan.action === 'write') {
      this.#write(plan.old);
      this.#log.info({ sysctl: sysctlName(RP_FILTER_ALL), old: plan.old, new: plan.value },
        'rp_filter turned off for all devices (the kernel applies the larger of all and each device\'s value)');
    }
    let dflt: string | undefined;
    try {
      dflt = this.#sys.read(RP_FILTER_DEFAULT);
    } catch {
      dflt = undefined;
    }
    if (dflt !== undefined && dflt !== '0') {
      this.#log.info({ sysctl: sysctlName(RP_FILTER_DEFAULT), value: dflt }, 'new devices start with rp_filter on; left as is (the devices Hypha makes are set to 0 each)');
    }
  }

  /** On every resync: something on the host (a config-management run,
   *  systemd-sysctl) may have set `all` again. Fixed again when managed,
   *  otherwise logged as an error once per value; never throws. */
  recheck(): void {
    let value: string;
    try {
      value = this.#read(RP_FILTER_ALL);
    } catch (err) {
      this.#log.warn({ sysctl: sysctlName(RP_FILTER_ALL), err: (err as Error).message }, 'rp_filter not checked');
      return;
    }
    const plan = planRpFilter(value, this.#manage);
    if (plan.action === 'none') {
      this.#reported = undefined;
    } else if (plan.action === 'write') {
      try {
        this.#write(plan.old);
        this.#log.warn({ sysctl: sysctlName(RP_FILTER_ALL), old: plan.old, new: plan.value }, 'rp_filter was turned on again by something on the host; turned off again');
      } catch (err) {
        this.#log.error({ sysctl: sysctlName(RP_FILTER_ALL), value, err: (err as Error).message }, 'rp_filter is on again and could not be turned off: replies from pods with Service, node or loopback sources are dropped');
      }
    } else if (this.#reported !== value) {
      this.#reported = value;
      this.#log.error({ sysctl: sysctlName(RP_FILTER_ALL), value, option: MANAGE_OPTION }, refusal(value).message);
    }
  }

  #read(key: SysctlKey): string {
    try {
      return this.#sys.read(key);
    } catch (err) {
      const name = sysctlName(key);
      throw new RpFilterError(name, '', `${name} cannot be read: ${(err as Error).message}`, { cause: err });
    }
  }

  #write(old: string): void {
    const name = sysctlName(RP_FILTER_ALL);
    try {
      this.#sys.write(RP_FILTER_ALL, '0');
    } catch (err) {
      throw new RpFilterError(name, old,
        `${name} is ${old} and could not be set to 0 (${(err as Error).message}): the agent needs a writable /proc/sys/net in its network namespace, or set it on the host (sysctl -w ${name}=0)`,
        { cause: err });
    }
  }
}

/** A device Hypha makes: its own rp_filter 0 (whatever `default` gave it).
 *  Returns the old value when it was changed. A failure is logged: the
 *  device still works where `all` and the old value allow it. */
export function deviceRpFilterOff(ifname: string, log?: Logger, sysctls: Sysctls = procSysctls()): string | undefined {
  const key = ipv4Conf(ifname, 'rp_filter');
  try {
    const old = sysctls.read(key);
    if (old === '0') return undefined;
    sysctls.write(key, '0');
    return old;
  } catch (err) {
    log?.warn({ sysctl: sysctlName(key), err: (err as Error).message }, 'sysctl not set');
    return undefined;
  }
}
