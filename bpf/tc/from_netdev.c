/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tc ingress of the node's external device. NodePort, ExternalIP and
 * LoadBalancer-IP traffic from outside is translated with the external
 * scope: all of it where XDP cannot attach, and, next to the XDP program,
 * what XDP leaves to it: flows to a backend on another node, which are
 * source-NATed to this node and forwarded by FIB lookup, and their replies;
 * and replies to pod traffic that was masqueraded on its way out. */
#include "lib/tc.h"

SEC("tc")
int hypha_from_netdev(struct __sk_buff *skb)
{
	return hypha_tc_handle(skb, HYPHA_HOOK_FROM_NETDEV, HYPHA_SCOPE_EXTERNAL, 1, 1,
			       HYPHA_LB_SNAT_REMOTE | HYPHA_TC_MASQ_REPLIES);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
