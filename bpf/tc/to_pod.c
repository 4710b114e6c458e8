/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tc egress of a pod's host-side veth: traffic about to reach the pod.
 * Replies from a backend elsewhere get their frontend restored here; flows
 * opened from outside the cluster straight to the pod are noted, so its
 * answers are not masqueraded. */
#include "lib/tc.h"

SEC("tc")
int hypha_to_pod(struct __sk_buff *skb)
{
	return hypha_tc_handle(skb, HYPHA_HOOK_TO_POD, HYPHA_SCOPE_INTERNAL, 0, 1, HYPHA_TC_NOTE_INBOUND);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
