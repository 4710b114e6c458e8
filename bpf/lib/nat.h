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

/* TC: the kernel's checksum helpers know the skb's checksum state
 * (CHECKSUM_PARTIAL from a local pod, COMPLETE from a NIC). Address changes
 * and port changes are each folded into one checksum difference: addresses
 * are part of the pseudo-header (BPF_F_PSEUDO_HDR), ports are not, and a
 * CHECKSUM_PARTIAL skb must only see the former. A UDP checksum of zero means
 * "none" and must stay zero: BPF_F_MARK_MANGLED_0. The two addresses, and the
 * two ports, sit side by side, so each pair is one store. */
static __always_inline int hypha_tc_nat4(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					 const struct hypha_nat4 *n)
{
	__u32 csum_off = p->l4_off + (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							      : offsetof(struct udphdr, check));
	__u64 l4f = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 old_addr[2] = { p->saddr, p->daddr };
	__be32 new_addr[2] = {
		(n->what & HYPHA_NAT_SADDR) ? n->saddr : p->saddr,
		(n->what & HYPHA_NAT_DADDR) ? n->daddr : p->daddr,
	};
	__be16 old_ports[2] = { p->sport, p->dport };
	__be16 new_ports[2] = {
		(n->what & HYPHA_NAT_SPORT) ? n->sport : p->sport,
		(n->what & HYPHA_NAT_DPORT) ? n->dport : p->dport,
	};
	__s64 diff;

	if (n->what & (HYPHA_NAT_SADDR | HYPHA_NAT_DADDR)) {
		diff = bpf_csum_diff(old_addr, sizeof(old_addr), new_addr, sizeof(new_addr), 0);
		if (diff < 0 ||
		    bpf_l4_csum_replace(skb, csum_off, 0, diff, l4f | BPF_F_PSEUDO_HDR) ||
		    bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, 0, diff, 0) ||
		    bpf_skb_store_bytes(skb, HYPHA_IP_SADDR_OFF, new_addr, sizeof(new_addr), 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	if (n->what & (HYPHA_NAT_SPORT | HYPHA_NAT_DPORT)) {
		diff = bpf_csum_diff((__be32 *)old_ports, sizeof(old_ports), (__be32 *)new_ports, sizeof(new_ports), 0);
		if (diff < 0 ||
		    bpf_l4_csum_replace(skb, csum_off, 0, diff, l4f) ||
		    bpf_skb_store_bytes(skb, p->l4_off, new_ports, sizeof(new_ports), 0))
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
