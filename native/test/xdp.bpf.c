// SPDX-License-Identifier: GPL-2.0
/* Test fixture: small XDP programs with visible effects on the packet. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

/* Swaps source and destination MAC and bounces the frame. */
SEC("xdp")
int xdp_swap_mac(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];

	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* Grows the packet at the front by 4 bytes holding 0xdeadbeef. */
SEC("xdp")
int xdp_grow(struct xdp_md *ctx)
{
	void *data, *end;

	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data; /* re-derive after the helper */
	end = (void *)(long)ctx->data_end;
	if (data + 4 > end)
		return XDP_ABORTED;
	*(__u32 *)data = bpf_htonl(0xdeadbeef);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
