/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tc ingress of a pod's host-side veth: traffic the pod sends.
 * Service frontends are translated to a backend (internal scope); replies
 * the pod sends as a backend get their frontend restored. */
#include "lib/tc.h"

SEC("tc")
int hypha_from_pod(struct __sk_buff *skb)
{
	return hypha_tc_handle(skb, HYPHA_HOOK_FROM_POD, HYPHA_SCOPE_INTERNAL, 1, 1, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
