// The node side of L7 redirection: how a flow reaches the proxy and how the
// proxy's upstream leaves, keeping the addresses of the flow it carries.
//
//  - The datapath hands the proxy a flow by marking its packets MARK_TO_PROXY
//    (and, for a SYN, assigning them the proxy's listener): the rule below
//    sends marked packets to a table whose one route makes every address
//    local, so the stack delivers them to that socket instead of forwarding
//    them. The listener is IP_TRANSPARENT: it accepts and answers for
//    addresses the node does not have (the original destination, a pod).
//  - The proxy's upstream is bound to the client pod's address
//    (IP_TRANSPARENT), so the destination's policy judges the client and the
//    server sees it, and carries MARK_FROM_PROXY, so the datapath does not
//    redirect it again. Replies to it come back marked MARK_TO_PROXY.
//
// The numbers follow Cilium's choice of a rule before the main table (9) and
// table 2004; the mark bits sit beside the datapath's seen mark (0x00400000).
import { Socket } from 'node:net';

import * as native from '../../native/index.ts';
import type { Rtnl } from '../datapath/rtnl.ts';
import type { FibRule } from '../datapath/rtnl-codec.ts';

export const MARK_TO_PROXY = 0x00200000;
export const MARK_FROM_PROXY = 0x00100000;
export const PROXY_TABLE = 2004;
export const PROXY_RULE_PRIORITY = 9;
/** rtm_protocol / FRA_PROTOCOL of what this file adds (beside RTPROT_HYPHA_NODES 0x49). */
export const RTPROT_HYPHA_PROXY = 0x4a;

export const PROXY_RULE: FibRule = {
  priority: PROXY_RULE_PRIORITY,
  fwmark: MARK_TO_PROXY,
  fwmask: MARK_TO_PROXY,
  table: PROXY_TABLE,
  protocol: RTPROT_HYPHA_PROXY,
};

/** The rule and the local route, in the namespace of rtnl (idempotent). */
export async function ensureProxyRouting(rtnl: Rtnl): Promise<void> {
  const lo = await rtnl.linkGet('lo');
  if (!lo) throw new Error('l7 proxy routing: no loopback device in this namespace');
  await rtnl.routeReplace({ dst: 'default', type: 'local', table: PROXY_TABLE, ifindex: lo.index, protocol: RTPROT_HYPHA_PROXY });
  await rtnl.ruleEnsure(PROXY_RULE);
}

/** Undoes ensureProxyRouting; true when something was there. */
export async function removeProxyRouting(rtnl: Rtnl): Promise<boolean> {
  const rule = await rtnl.ruleDelete(PROXY_RULE);
  const route = await rtnl.routeDelete({ dst: 'default', type: 'local', table: PROXY_TABLE });
  return rule || route;
}

/** Make a listening socket accept connections to addresses the node does not have. */
export function makeTransparent(fd: number): void {
  native.sockSetOpts(fd, { transparent: true });
}

/** A connection to dst from the client's address (any free port), marked as the proxy's own. */
export function dialTransparent(src: { ip: string }, dst: { ip: string; port: number }): Socket {
  const fd = native.tcpSocket4({ transparent: true, mark: MARK_FROM_PROXY, bind: { address: src.ip, port: 0 } });
  const sock = new Socket({ fd, readable: true, writable: true });
  return sock.connect(dst.port, dst.ip);
}
