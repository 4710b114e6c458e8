// Kernel settings under /proc/sys, read and written for the calling process's
// network namespace (net.* files belong to the namespace of whoever opens
// them). Names are lists of path segments, so a device name with a dot
// (`eth0.100`) stays one segment; `sysctlName` gives the dotted form people
// know from sysctl(8).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type SysctlKey = readonly string[];

export interface Sysctls {
  /** The value as the kernel prints it, trimmed. Throws when the file cannot be read. */
  read(key: SysctlKey): string;
  write(key: SysctlKey, value: string): void;
}

/** `net.ipv4.conf.all.rp_filter` (a segment with a dot keeps it as sysctl(8) shows a VLAN device). */
export function sysctlName(key: SysctlKey): string {
  return key.join('.');
}

/** An IPv4 per-device setting: `net.ipv4.conf.<device>.<setting>` (device may be `all` or `default`). */
export function ipv4Conf(device: string, setting: string): SysctlKey {
  return ['net', 'ipv4', 'conf', device, setting];
}

/**
 * Where the kernel's settings are: /proc/sys, or HYPHA_PROC_SYS when /proc/sys
 * is read-only. The agent's DaemonSet is not privileged, so its /proc/sys is
 * read-only; it mounts the node's /proc/sys/net at /host/proc/sys/net and sets
 * HYPHA_PROC_SYS=/host/proc/sys (net.* files still answer for the network
 * namespace of whoever opens them: the node's, as the agent uses the host network).
 */
export const PROC_SYS = process.env.HYPHA_PROC_SYS || '/proc/sys';

/** A file under PROC_SYS: `procSysPath('net', 'ipv4', 'ip_forward')`. */
export function procSysPath(...key: string[]): string {
  return path.join(PROC_SYS, ...key);
}

/** The real /proc/sys (or another root, for tests). */
export function procSysctls(root = PROC_SYS): Sysctls {
  const file = (key: SysctlKey): string => path.join(root, ...key);
  return {
    read: (key) => readFileSync(file(key), 'utf8').trim(),
    write: (key, value) => writeFileSync(file(key), value),
  };
}
