/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tc egress of the node's external device: pod traffic to addresses outside
 * the cluster leaves with the node's address (masquerade, in place of
 * iptables' MASQUERADE); from_netdev restores the replies. */
#include "lib/tc.h"

SEC("tc")
int hypha_to_netdev(struct __sk_buff *skb)
{
	return hypha_tc_to_netdev(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
