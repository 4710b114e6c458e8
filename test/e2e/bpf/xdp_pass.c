/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Test fabric only: attached to the fabric side of each node's veth so it
 * receives frames the node sends with XDP_TX. A veth flushes XDP_TX frames
 * to its peer only when the peer runs an XDP program; a real NIC has no such
 * condition, so the fabric plays the wire by passing everything on. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int fabric_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
