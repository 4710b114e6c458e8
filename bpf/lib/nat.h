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
 * (CHECKSUM_PARTIAL from a local pod, COMPLETE from a NIC). Addresses are part
 * of the pseudo-header (BPF_F_PSEUDO_HDR), ports are not, and a
 * CHECKSUM_PARTIAL skb must only see the former, so the two are updated
 * separately. When both addresses (or both ports) change, they sit side by
 * side: one checksum difference and one store cover the pair; when one
 * changes, a direct replace is fewer helper calls. A UDP checksum of zero
 * means "none" and must stay zero: BPF_F_MARK_MANGLED_0. */
static __always_inline int hypha_tc_rewrite(struct __sk_buff *skb, __u32 csum_off, __u64 l4f, int l3,
					    __u32 off, __u32 old0, __u32 new0, __u32 old1, __u32 new1,
					    int change0, int change1, __u32 size)
{
	__u32 oldv[2] = { old0, old1 };
	__u32 newv[2] = { new0, new1 };
	__s64 diff;

	if (change0 && change1) {
		if (size == 4) {
			diff = bpf_csum_diff(oldv, 8, newv, 8, 0);
		} else {
			__u32 o = (old0 & 0xffff) | (old1 << 16), n = (new0 & 0xffff) | (new1 << 16);

			diff = bpf_csum_diff(&o, 4, &n, 4, 0);
			newv[0] = n;
		}
		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, l4f) ||
		    (l3 && bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, 0, diff, 0)))
			return -HYPHA_DROP_NAT_FAILED;
		return bpf_skb_store_bytes(skb, off, newv, 2 * size, 0) ? -HYPHA_DROP_NAT_FAILED : 0;
	}
	if (change1) {
		off += size;
		old0 = old1;
		new0 = new1;
	}
	if (bpf_l4_csum_replace(skb, csum_off, old0, new0, l4f | size) ||
	    (l3 && bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, old0, new0, size)))
		return -HYPHA_DROP_NAT_FAILED;
	if (size == 4)
		return bpf_skb_store_bytes(skb, off, &new0, 4, 0) ? -HYPHA_DROP_NAT_FAILED : 0;
	{
		__u16 v = new0;

		return bpf_skb_store_bytes(skb, off, &v, 2, 0) ? -HYPHA_DROP_NAT_FAILED : 0;
	}
}

/* ICMP echo (masquerade): addresses are not in the ICMP checksum, the
 * identifier is; "sport" (requests) and "dport" (replies) name the
 * identifier's new value. */
#define HYPHA_ICMP_CSUM_OFF(p) ((p)->l4_off + 2)
#define HYPHA_ICMP_ID_OFF(p) ((p)->l4_off + 4)

static __always_inline int hypha_tc_nat4_icmp(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					      const struct hypha_nat4 *n)
{
	if (n->what & HYPHA_NAT_SADDR) {
		if (bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, p->saddr, n->saddr, 4) ||
		    bpf_skb_store_bytes(skb, HYPHA_IP_SADDR_OFF, &n->saddr, 4, 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	if (n->what & HYPHA_NAT_DADDR) {
		if (bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, p->daddr, n->daddr, 4) ||
		    bpf_skb_store_bytes(skb, HYPHA_IP_SADDR_OFF + 4, &n->daddr, 4, 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	if (n->what & (HYPHA_NAT_SPORT | HYPHA_NAT_DPORT)) {
		__be16 id = (n->what & HYPHA_NAT_SPORT) ? n->sport : n->dport;

		if (bpf_l4_csum_replace(skb, HYPHA_ICMP_CSUM_OFF(p), p->icmp_id, id, 2) ||
		    bpf_skb_store_bytes(skb, HYPHA_ICMP_ID_OFF(p), &id, 2, 0))
			return -HYPHA_DROP_NAT_FAILED;
	}
	return 0;
}

static __always_inline int hypha_tc_nat4_ports(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					       const struct hypha_nat4 *n)
{
	__u32 csum_off = p->l4_off + (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							      : offsetof(struct udphdr, check));
	__u64 l4f = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	int ret = 0;

	if (n->what & (HYPHA_NAT_SADDR | HYPHA_NAT_DADDR))
		ret = hypha_tc_rewrite(skb, csum_off, l4f | BPF_F_PSEUDO_HDR, 1, HYPHA_IP_SADDR_OFF,
				       p->saddr, n->saddr, p->daddr, n->daddr,
				       !!(n->what & HYPHA_NAT_SADDR), !!(n->what & HYPHA_NAT_DADDR), 4);
	if (!ret && (n->what & (HYPHA_NAT_SPORT | HYPHA_NAT_DPORT)))
		ret = hypha_tc_rewrite(skb, csum_off, l4f, 0, p->l4_off,
				       p->sport, n->sport, p->dport, n->dport,
				       !!(n->what & HYPHA_NAT_SPORT), !!(n->what & HYPHA_NAT_DPORT), 2);
	return ret;
}

/* A later fragment: no L4 header, only the addresses change (the L4
 * checksum, in the first fragment, covers them and was fixed there). */
static __always_inline int hypha_tc_nat4_l3(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					    const struct hypha_nat4 *n)
{
	struct hypha_nat4 a = *n;

	a.what &= HYPHA_NAT_SADDR | HYPHA_NAT_DADDR;
	return hypha_tc_nat4_icmp(skb, p, &a);
}

static __always_inline int hypha_tc_nat4(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					 const struct hypha_nat4 *n)
{
	if (p->frag == HYPHA_FRAG_LATER)
		return hypha_tc_nat4_l3(skb, p, n);
	if (p->proto == IPPROTO_ICMP)
		return hypha_tc_nat4_icmp(skb, p, n);
	return hypha_tc_nat4_ports(skb, p, n);
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
	if (p->frag == HYPHA_FRAG_LATER) {
		/* no L4 header: addresses only */
		if (n->what & HYPHA_NAT_SADDR) {
			hypha_csum_replace4(&ip->check, ip->saddr, n->saddr);
			ip->saddr = n->saddr;
		}
		if (n->what & HYPHA_NAT_DADDR) {
			hypha_csum_replace4(&ip->check, ip->daddr, n->daddr);
			ip->daddr = n->daddr;
		}
		return 0;
	}
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
