/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tc egress of a pod's host-side veth: traffic about to reach the pod.
 * Replies from a backend elsewhere get their frontend restored here. */
#include "lib/tc.h"

SEC("tc")
int hypha_to_pod(struct __sk_buff *skb)
{
	return hypha_tc_handle(skb, HYPHA_HOOK_TO_POD, HYPHA_SCOPE_INTERNAL, 0, 1, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
