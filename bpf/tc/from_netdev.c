/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tc ingress of the node's external device: the fallback for the XDP
 * program where XDP cannot attach. NodePort, ExternalIP and LoadBalancer-IP
 * traffic from outside is translated with the external scope. */
#include "lib/tc.h"

SEC("tc")
int hypha_from_netdev(struct __sk_buff *skb)
{
	return hypha_tc_handle(skb, HYPHA_HOOK_FROM_NETDEV, HYPHA_SCOPE_EXTERNAL, 1, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
