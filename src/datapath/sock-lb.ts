// Socket LB: Services for the node's own sockets (bpf/sock/lb_sock.c). The
// four cgroup programs are attached to the root of the cgroup v2 hierarchy
// through bpf_links pinned under the pin root (links/), so they outlive the
// agent as the maps and tc programs do; a later attach (an agent restart, a
// map growth's new programs) swaps the program inside each link. They act
// only on sockets of the network namespace written to hypha_sock_cfg_v1: the
// one the agent runs in (the node's).
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as native from '../../native/index.ts';
import type { Datapath, ProgramName } from './loader.ts';

export const SOCK_CFG_MAP = 'hypha_sock_cfg_v1';
export const SOCK_REV_MAP = 'hypha_sock_rev_v1';
export const LINKS_DIR = 'links';

const HOOKS: ReadonlyArray<{ prog: ProgramName; type: 'connect4' | 'sendmsg4' | 'recvmsg4' | 'getpeername4' }> = [
  { prog: 'sockConnect4', type: 'connect4' },
  { prog: 'sockSendmsg4', type: 'sendmsg4' },
  { prog: 'sockRecvmsg4', type: 'recvmsg4' },
  { prog: 'sockGetpeername4', type: 'getpeername4' },
];

/**
 * The root of a cgroup v2 hierarchy mounted here: a cgroup2 mount whose root
 * is the hierarchy's root (a container's own view of its cgroup is not; a
 * hostPath bind of the node's /sys/fs/cgroup is). Undefined when there is none.
 */
export function cgroup2Root(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post || !post.startsWith('cgroup2 ')) continue;
    const f = pre.split(' ');
    if (f[3] === '/' && f[4]) return f[4].replace(/\\040/g, ' ');
  }
  return undefined;
}

/** Attach (or update) the socket LB programs at `cgroup`, for this thread's network namespace. */
export function attachSockLb(dp: Datapath, cgroup: string): { cgroup: string; netnsCookie: bigint } {
  const cookie = native.netnsCookie();
  const cfg = native.openPinnedMap(path.join(dp.pinRoot, SOCK_CFG_MAP));
  try {
    const value = new Uint8Array(8);
    new DataView(value.buffer).setBigUint64(0, cookie, true);
    native.mapUpdate(cfg, new Uint8Array(4), value);
  } finally {
    native.close(cfg);
  }
  const dir = path.join(dp.pinRoot, LINKS_DIR);
  mkdirSync(dir, { recursive: true });
  for (const h of HOOKS) native.cgroupAttach(dp.programs[h.prog], cgroup, h.type, path.join(dir, `sock_${h.type}`));
  return { cgroup, netnsCookie: cookie };
}
