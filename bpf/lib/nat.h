/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Apply a struct hypha_nat4 rewrite to a packet: addresses, ports, and the
 * IP and L4 checksums. One version per context type. */
#ifndef HYPHA_LIB_NAT_H
#define HYPHA_LIB_NAT_H

#include <stddef.h>
#include "lb.h"
#include "csum.h"

#define HYPHA_IP_CSUM_OFF (HYPHA_L3_OFF + offsetof(struct iphdr, check))
#define HYPHA_IP_SADDR_OFF (HYPHA_L3_OFF + offsetof(struct iphdr, saddr))
#define HYPHA_IP_DADDR_OFF (HYPHA_L3_OFF + offsetof(struct iphdr, daddr))

/* TC: the kernel's checksum helpers know the skb's checksum state
 * (CHECKSUM_PARTIAL from a local pod, COMPLETE from a NIC). A UDP checksum
 * of zero means "none" and must stay zero: BPF_F_MARK_MANGLED_0. */
static __always_inline int hypha_tc_nat4(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					 const struct hypha_nat4 *n)
{
	__u32 csum_off = p->l4_off + (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							      : offsetof(struct udphdr, check));
	__u64 l4f = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (n->what & HYPHA_NAT_SADDR) {
		if (bpf_l4_csum_replace(skb, csum_off, p->saddr, n->saddr,
					l4f | BPF_F_PSEUDO_HDR | sizeof(n->saddr)) ||
		    bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, p->saddr, n->saddr, sizeof(n->saddr)) ||
		    bpf_skb_store_bytes(skb, HYPHA_IP_SADDR_OFF, &n->saddr, sizeof(n->saddr), 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	if (n->what & HYPHA_NAT_DADDR) {
		if (bpf_l4_csum_replace(skb, csum_off, p->daddr, n->daddr,
					l4f | BPF_F_PSEUDO_HDR | sizeof(n->daddr)) ||
		    bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, p->daddr, n->daddr, sizeof(n->daddr)) ||
		    bpf_skb_store_bytes(skb, HYPHA_IP_DADDR_OFF, &n->daddr, sizeof(n->daddr), 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	/* source and dest ports are the first two 16-bit words of TCP and UDP */
	if (n->what & HYPHA_NAT_SPORT) {
		if (bpf_l4_csum_replace(skb, csum_off, p->sport, n->sport, l4f | sizeof(n->sport)) ||
		    bpf_skb_store_bytes(skb, p->l4_off, &n->sport, sizeof(n->sport), 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	if (n->what & HYPHA_NAT_DPORT) {
		if (bpf_l4_csum_replace(skb, csum_off, p->dport, n->dport, l4f | sizeof(n->dport)) ||
		    bpf_skb_store_bytes(skb, p->l4_off + 2, &n->dport, sizeof(n->dport), 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	return 0;
}

/* XDP: frames from a wire carry complete checksums; update them in place. */
static __always_inline int hypha_xdp_nat4(struct xdp_md *ctx, const struct hypha_pkt4 *p,
					  const struct hypha_nat4 *n)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + HYPHA_L3_OFF;
	__sum16 *l4csum;
	__be16 *ports;
	void *l4;

	if ((void *)(ip + 1) > data_end)
		return -HYPHA_DROP_NAT_FAILED;
	l4 = (void *)ip + (ip->ihl * 4);
	if (l4 + sizeof(struct tcphdr) > data_end && p->proto == IPPROTO_TCP)
		return -HYPHA_DROP_NAT_FAILED;
	if (l4 + sizeof(struct udphdr) > data_end)
		return -HYPHA_DROP_NAT_FAILED;
	ports = l4;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -HYPHA_DROP_NAT_FAILED;
		l4csum = &th->check;
	} else {
		struct udphdr *uh = l4;

		/* A zero UDP checksum means none: leave it so. */
		l4csum = uh->check ? &uh->check : NULL;
	}

	if (n->what & HYPHA_NAT_SADDR) {
		hypha_csum_replace4(&ip->check, ip->saddr, n->saddr);
		if (l4csum)
			hypha_csum_replace4(l4csum, ip->saddr, n->saddr);
		ip->saddr = n->saddr;
	}
	if (n->what & HYPHA_NAT_DADDR) {
		hypha_csum_replace4(&ip->check, ip->daddr, n->daddr);
		if (l4csum)
			hypha_csum_replace4(l4csum, ip->daddr, n->daddr);
		ip->daddr = n->daddr;
	}
	if (n->what & HYPHA_NAT_SPORT) {
		if (l4csum)
			hypha_csum_replace2(l4csum, ports[0], n->sport);
		ports[0] = n->sport;
	}
	if (n->what & HYPHA_NAT_DPORT) {
		if (l4csum)
			hypha_csum_replace2(l4csum, ports[1], n->dport);
		ports[1] = n->dport;
	}
	if (l4csum && p->proto == IPPROTO_UDP && *l4csum == 0)
		*l4csum = 0xffff;
	return 0;
}

#endif /* HYPHA_LIB_NAT_H */
