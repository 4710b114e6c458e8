// SPDX-License-Identifier: GPL-2.0
/* Test fixture: TC (sched_cls, direct action) programs. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Rewrites the destination MAC to 02:00:00:00:00:aa and lets the packet go on. */
SEC("tc")
int tc_rewrite(struct __sk_buff *skb)
{
	unsigned char mac[6] = { 0x02, 0, 0, 0, 0, 0xaa };

	if (bpf_skb_store_bytes(skb, 0, mac, sizeof(mac), 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("tc")
int tc_shot(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
