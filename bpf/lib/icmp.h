/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reject: answer a packet with ICMP destination unreachable / port
 * unreachable, sent back out of the device it arrived on. This is what
 * kube-proxy's REJECT rules do; for TCP it fails connect() with ECONNREFUSED
 * at once, for UDP the next recv() does.
 *
 * The reply is built whole on the stack (70 bytes: Ethernet, IP, ICMP, and
 * the offending packet's IP header plus 8 bytes of its L4 header) and then
 * written over the packet, resized to fit. Packets with IP options are not
 * answered (their quote would not fit the fixed frame): dropped instead. */
#ifndef HYPHA_LIB_ICMP_H
#define HYPHA_LIB_ICMP_H

#include "parse.h"
#include "csum.h"

#define HYPHA_ICMP_QUOTE 28	/* IP header without options + 8 bytes */
#define HYPHA_ICMP_PORT_UNREACH 3
#define HYPHA_ICMP_FRAG_NEEDED 4

/* linux/icmp.h pulls in libc headers that do not exist for the BPF target. */
struct hypha_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 unused;
};

struct hypha_icmp4_frame {
	struct ethhdr eth;
	struct iphdr ip;
	struct hypha_icmphdr icmp;
	__u8 quote[HYPHA_ICMP_QUOTE];
} __attribute__((packed));
_Static_assert(sizeof(struct hypha_icmp4_frame) == 70, "ICMP reject frame is 70 bytes");

/* May an ICMP error go to this source? Never to 0/8, loopback, multicast,
 * 240/4 or the broadcast address (RFC 1812 4.3.2.7): such a "client" is
 * forged or broken, and from XDP an answer would be a reflection. */
static __always_inline int hypha_icmp_answerable(hypha_ip4_t saddr)
{
	__u32 first = bpf_ntohl(saddr) >> 24;

	return first != 0 && first != 127 && first < 224;
}

/* Fill f from the original Ethernet header and quote (already in f). */
static __always_inline void hypha_icmp4_finish(struct hypha_icmp4_frame *f, const struct ethhdr *orig_eth,
					       const struct hypha_pkt4 *p, __u8 code, __u16 mtu)
{
	__builtin_memcpy(f->eth.h_dest, orig_eth->h_source, ETH_ALEN);
	__builtin_memcpy(f->eth.h_source, orig_eth->h_dest, ETH_ALEN);
	f->eth.h_proto = bpf_htons(ETH_P_IP);

	f->ip.version = 4;
	f->ip.ihl = 5;
	f->ip.tos = 0xc0;	/* internetwork control, as Linux sends ICMP errors */
	f->ip.tot_len = bpf_htons(sizeof(*f) - sizeof(f->eth));
	f->ip.id = 0;
	f->ip.frag_off = 0;
	f->ip.ttl = 64;
	f->ip.protocol = IPPROTO_ICMP;
	f->ip.check = 0;
	f->ip.saddr = p->daddr;	/* the frontend that refused */
	f->ip.daddr = p->saddr;
	f->ip.check = hypha_csum_buf(&f->ip, sizeof(f->ip));

	f->icmp.type = HYPHA_ICMP_DEST_UNREACH;
	f->icmp.code = code;
	f->icmp.checksum = 0;
	/* fragmentation needed: the next hop's MTU in the low half (RFC 1191) */
	f->icmp.unused = bpf_htonl(mtu);
	f->icmp.checksum = hypha_csum_buf(&f->icmp, sizeof(f->icmp) + HYPHA_ICMP_QUOTE);
}

/* Returns bpf_redirect()'s verdict, or a negative drop reason. code: port
 * unreachable (reject) or fragmentation needed (with the MTU). */
static __always_inline int hypha_tc_icmp4_answer(struct __sk_buff *skb, const struct hypha_pkt4 *p, __u8 code,
						 __u16 mtu)
{
	struct hypha_icmp4_frame f = {};
	struct ethhdr orig_eth;

	if (p->ihl_bytes != sizeof(struct iphdr))
		return -HYPHA_DROP_REJECT_FAILED;
	if (bpf_skb_load_bytes(skb, 0, &orig_eth, sizeof(orig_eth)) ||
	    bpf_skb_load_bytes(skb, HYPHA_L3_OFF, f.quote, HYPHA_ICMP_QUOTE))
		return -HYPHA_DROP_REJECT_FAILED;
	hypha_icmp4_finish(&f, &orig_eth, p, code, mtu);
	if (bpf_skb_change_tail(skb, sizeof(f), 0) ||
	    bpf_skb_store_bytes(skb, 0, &f, sizeof(f), BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH))
		return -HYPHA_DROP_REJECT_FAILED;
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int hypha_tc_reject4(struct __sk_buff *skb, const struct hypha_pkt4 *p)
{
	return hypha_tc_icmp4_answer(skb, p, HYPHA_ICMP_PORT_UNREACH, 0);
}

/* Returns XDP_TX, or a negative drop reason. */
static __always_inline int hypha_xdp_reject4(struct xdp_md *ctx, const struct hypha_pkt4 *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct hypha_icmp4_frame f = {};
	struct ethhdr orig_eth;
	int delta;

	if (p->ihl_bytes != sizeof(struct iphdr))
		return -HYPHA_DROP_REJECT_FAILED;
	if (data + sizeof(struct ethhdr) + HYPHA_ICMP_QUOTE > data_end)
		return -HYPHA_DROP_REJECT_FAILED;
	__builtin_memcpy(&orig_eth, data, sizeof(orig_eth));
	__builtin_memcpy(f.quote, data + sizeof(struct ethhdr), HYPHA_ICMP_QUOTE);
	hypha_icmp4_finish(&f, &orig_eth, p, HYPHA_ICMP_PORT_UNREACH, 0);

	/* Resize to exactly the frame: shrink at the tail, grow at the head
	 * (XDP guarantees headroom, not tailroom). */
	delta = (int)sizeof(f) - (int)(data_end - data);
	if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
		return -HYPHA_DROP_REJECT_FAILED;
	if (delta > 0 && bpf_xdp_adjust_head(ctx, -delta))
		return -HYPHA_DROP_REJECT_FAILED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(f) > data_end)
		return -HYPHA_DROP_REJECT_FAILED;
	__builtin_memcpy(data, &f, sizeof(f));
	return XDP_TX;
}

#endif /* HYPHA_LIB_ICMP_H */
