// SPDX-License-Identifier: GPL-2.0
/* Test fixture: the second program reads the packet without a bounds check, which
 * the verifier must reject ("invalid access to packet"). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int good_prog(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int bad_prog(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(__u32 *)(data + 64) == 0 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
