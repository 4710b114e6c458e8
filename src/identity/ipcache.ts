// Identities in the ipcache: the nodes compiler's entries (cluster CIDRs,
// node addresses, pod CIDRs) with the node addresses given the reserved
// identities (this node's: host; every other node's: remote-node), plus one
// /32 per pod address whose identity is known. A pod's /32 carries what its
// pod CIDR's entry says (the node hosting it, local or not), so the datapath
// sees the same flags it saw before identities, now with the identity. Pure.
import type { IpcacheEntry } from '../nodes/compile.ts';
import { HOST_IDENTITY, REMOTE_NODE_IDENTITY } from './labels.ts';

export interface PodAddress {
  ip: string;
  identity: number;
  /** On this node. */
  local: boolean;
  /** For problems: 'namespace/name'. */
  pod: string;
}

export interface IpcacheWithIdentities {
  entries: IpcacheEntry[];
  problems: string[];
}

function ip4(text: string): number | undefined {
  const p = text.split('.');
  if (p.length !== 4) return undefined;
  let n = 0;
  for (const o of p) {
    if (!/^\d{1,3}$/.test(o) || Number(o) > 255) return undefined;
    n = n * 256 + Number(o);
  }
  return n;
}

function contains(cidr: string, addr: number): number {
  const [a = '', l = '32'] = cidr.split('/');
  const base = ip4(a);
  const len = Number(l);
  if (base === undefined || !(len >= 0 && len <= 32)) return -1;
  const size = 2 ** (32 - len);
  return addr >= base && addr < base + size ? len : -1;
}

export function withIdentities(nodeEntries: readonly IpcacheEntry[], pods: readonly PodAddress[]): IpcacheWithIdentities {
  const problems: string[] = [];
  const entries: IpcacheEntry[] = nodeEntries.map((e) => (e.flags.node ? { ...e, identity: e.flags.local ? HOST_IDENTITY : REMOTE_NODE_IDENTITY } : e));
  const taken = new Map<string, string>(entries.map((e) => [e.cidr, e.flags.node ? `node ${e.nodeAddr}` : 'a cluster or pod CIDR']));
  const podCidrs = entries.filter((e) => e.flags.pod);
  for (const p of [...pods].sort((a, b) => Number(b.local) - Number(a.local) || a.pod.localeCompare(b.pod))) {
    if (p.identity === 0) continue;
    const addr = ip4(p.ip);
    if (addr === undefined) continue;
    const cidr = `${p.ip}/32`;
    const prev = taken.get(cidr);
    if (prev !== undefined) {
      problems.push(`pod ${p.pod}: address ${p.ip} is already ${prev}'s; its identity ${p.identity} is not cached`);
      continue;
    }
    taken.set(cidr, `pod ${p.pod}`);
    let best: IpcacheEntry | undefined;
    let bestLen = -1;
    for (const c of podCidrs) {
      const len = contains(c.cidr, addr);
      if (len > bestLen) {
        best = c;
        bestLen = len;
      }
    }
    entries.push({ cidr, nodeAddr: best?.nodeAddr ?? '', identity: p.identity, flags: { cluster: true, pod: true, node: false, local: p.local } });
  }
  return { entries, problems };
}
