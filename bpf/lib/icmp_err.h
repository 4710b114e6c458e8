/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP errors (destination unreachable, fragmentation needed, time exceeded,
 * parameter problem) about a translated flow. The error quotes the packet
 * that caused it as that packet was on the wire, translated; whoever it goes
 * to knows the flow by its other name. So the quote, and the outer header
 * where it names a translated address, get the flow's translation undone,
 * found in conntrack as a packet of the flow's other direction would find it
 * (the quote, read backwards, is such a packet):
 *
 *  A  quote is a Service flow's forward packet (client -> backend): the error
 *     goes to the client; look up the REPLY entry; the quote's destination
 *     becomes the frontend (and its source the client, if source-NATed).
 *  B  quote is a Service reply (frontend -> client): the error goes to the
 *     frontend; look up the SERVICE entry; the quote's source and the outer
 *     destination become the backend.
 *  C  quote is a masqueraded packet (node:port -> server): MASQ_IN; the quote's
 *     source and the outer destination become the pod.
 *  D  quote is a restored masquerade reply (server -> pod): MASQ_OUT; the
 *     quote's destination and the outer source become the node's.
 *
 * Checksums: a quoted address changes with the quoted IP checksum, which
 * leaves the ICMP checksum as it was; a quoted port changes the ICMP
 * checksum. The quoted L4 checksum is not updated (receivers do not check a
 * quote's; Cilium does the same). Quotes of ICMP echoes (a masqueraded ping)
 * are not translated. */
#ifndef HYPHA_LIB_ICMP_ERR_H
#define HYPHA_LIB_ICMP_ERR_H

#include "lb.h"
#include "masq.h"

enum {
	HYPHA_ICMP_ERR_SERVICE = 1 << 0,	/* B */
	HYPHA_ICMP_ERR_REPLY = 1 << 1,		/* A */
	HYPHA_ICMP_ERR_REPLY_REMOTE = 1 << 2,	/* A, only for flows forwarded to another node */
	HYPHA_ICMP_ERR_MASQ_IN = 1 << 3,	/* C */
	HYPHA_ICMP_ERR_MASQ_OUT = 1 << 4,	/* D */
};

#define HYPHA_LB_DONE 3	/* rewritten already; nat says where it goes */

struct hypha_icmp_quote {
	hypha_ip4_t saddr;
	hypha_ip4_t daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad;
	__u16 ip_off;	/* quoted IP header */
	__u16 l4_off;	/* quoted ports */
	__u16 icmp_off;
};

/* Read the quote. TC: call with the headers pulled into the linear part. */
static __always_inline int hypha_icmp_quote_parse(void *data, void *data_end, struct hypha_icmp_quote *q)
{
	struct iphdr *ip = data + HYPHA_L3_OFF, *in;
	__u8 *icmp;
	__be16 *ports;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return -1;
	icmp = (void *)ip + ip->ihl * 4;
	in = (void *)(icmp + 8);
	if ((void *)(in + 1) > data_end || in->version != 4 || in->ihl < 5)
		return -1;
	/* Only a quote of a whole datagram or a first fragment has ports. */
	if (bpf_ntohs(in->frag_off) & 0x1fff)
		return -1;
	if (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP)
		return -1;
	ports = (void *)in + in->ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return -1;
	q->saddr = in->saddr;
	q->daddr = in->daddr;
	q->proto = in->protocol;
	q->sport = ports[0];
	q->dport = ports[1];
	q->icmp_off = (void *)icmp - data;
	q->ip_off = (void *)in - data;
	q->l4_off = (void *)ports - data;
	return 0;
}

/* What the quote and the outer header become (0: unchanged). */
struct hypha_icmp_rewrite {
	hypha_ip4_t q_saddr, q_daddr, o_saddr, o_daddr;
	__be16 q_sport, q_dport;
	__u32 forward;
	__u32 svc_id;
};

static __always_inline int hypha_icmp_err_lookup(const struct hypha_icmp_quote *q, int which,
						 struct hypha_icmp_rewrite *rw, hypha_ip4_t outer_saddr, __u32 now)
{
	struct hypha_ct4_entry *ct;
	struct hypha_ct4_key key;

	/* The quote read backwards: a packet of the flow's other direction. */
	hypha_ct_key4(&key, q->daddr, q->saddr, q->dport, q->sport, q->proto, HYPHA_CT_SERVICE);
	if (which & HYPHA_ICMP_ERR_SERVICE) {
		ct = hypha_ct4_lookup(&key);
		if (ct && !hypha_ct_expired(ct, now)) {	/* B */
			rw->q_saddr = ct->nat_addr;
			rw->q_sport = ct->nat_port;
			rw->o_daddr = ct->nat_addr;
			if (ct->flags & HYPHA_CT_F_SNAT_ADDR) {
				rw->q_daddr = ct->nat_addr2;
				if (outer_saddr == q->daddr)
					rw->o_saddr = ct->nat_addr2;
			}
			if (ct->flags & HYPHA_CT_F_SNAT_PORT)
				rw->q_dport = ct->nat_port2;
			rw->forward = !!(ct->flags & HYPHA_CT_F_REMOTE);
			rw->svc_id = ct->svc_id;
			return 1;
		}
	}
	if (which & (HYPHA_ICMP_ERR_REPLY | HYPHA_ICMP_ERR_REPLY_REMOTE)) {
		key.dir = HYPHA_CT_REPLY;
		ct = hypha_ct4_lookup(&key);
		if (ct && !hypha_ct_expired(ct, now) &&
		    ((which & HYPHA_ICMP_ERR_REPLY) || (ct->flags & HYPHA_CT_F_REMOTE))) {	/* A */
			rw->q_daddr = ct->nat_addr;
			rw->q_dport = ct->nat_port;
			if (outer_saddr == q->daddr)
				rw->o_saddr = ct->nat_addr;	/* the backend itself answered */
			if (ct->flags & HYPHA_CT_F_SNAT_ADDR) {
				rw->q_saddr = ct->nat_addr2;
				rw->o_daddr = ct->nat_addr2;
			}
			if (ct->flags & HYPHA_CT_F_SNAT_PORT)
				rw->q_sport = ct->nat_port2;
			rw->forward = !!(ct->flags & HYPHA_CT_F_REMOTE);
			rw->svc_id = ct->svc_id;
			return 1;
		}
	}
	if (which & HYPHA_ICMP_ERR_MASQ_IN) {
		key.dir = HYPHA_CT_MASQ_IN;
		ct = hypha_ct4_lookup(&key);
		if (ct && !hypha_ct_expired(ct, now)) {	/* C */
			rw->q_saddr = ct->nat_addr;
			rw->q_sport = ct->nat_port;
			rw->o_daddr = ct->nat_addr;
			return 1;
		}
	}
	if (which & HYPHA_ICMP_ERR_MASQ_OUT) {
		key.dir = HYPHA_CT_MASQ_OUT;
		ct = hypha_ct4_lookup(&key);
		if (ct && !hypha_ct_expired(ct, now)) {	/* D */
			rw->q_daddr = ct->nat_addr2;
			rw->q_dport = ct->nat_port2;
			rw->o_saddr = ct->nat_addr2;
			return 1;
		}
	}
	return 0;
}

static __always_inline int hypha_tc_set_addr(struct __sk_buff *skb, __u32 off, __u32 csum_off,
					     hypha_ip4_t old, hypha_ip4_t new)
{
	if (!new || new == old)
		return 0;
	if (bpf_l3_csum_replace(skb, csum_off, old, new, 4) || bpf_skb_store_bytes(skb, off, &new, 4, 0))
		return -HYPHA_DROP_NAT_FAILED;
	return 0;
}

static __always_inline int hypha_tc_set_quoted_port(struct __sk_buff *skb, __u32 off, __u32 icmp_csum_off,
						    __be16 old, __be16 new)
{
	if (!new || new == old)
		return 0;
	if (bpf_l4_csum_replace(skb, icmp_csum_off, old, new, 2) || bpf_skb_store_bytes(skb, off, &new, 2, 0))
		return -HYPHA_DROP_NAT_FAILED;
	return 0;
}

/* Translate an ICMP error about a tracked flow. Returns HYPHA_LB_PASS (not
 * about one of ours), HYPHA_LB_DONE with nat's daddr/forward saying where the
 * error now goes, or a negative drop reason. */
static __always_inline int hypha_tc_icmp_err(struct __sk_buff *skb, const struct hypha_pkt4 *p, int which,
					     struct hypha_nat4 *nat, __u32 now)
{
	struct hypha_icmp_rewrite rw = {};
	struct hypha_icmp_quote q = {};
	__u32 want = skb->len < 192 ? skb->len : 192;
	int ret;

	if (p->frag != HYPHA_FRAG_NONE)
		return HYPHA_LB_PASS;
	if (skb->data_end - skb->data < want && bpf_skb_pull_data(skb, want))
		return HYPHA_LB_PASS;
	if (hypha_icmp_quote_parse((void *)(long)skb->data, (void *)(long)skb->data_end, &q))
		return HYPHA_LB_PASS;
	if (!hypha_icmp_err_lookup(&q, which, &rw, p->saddr, now))
		return HYPHA_LB_PASS;

	ret = hypha_tc_set_addr(skb, q.ip_off + offsetof(struct iphdr, saddr), q.ip_off + offsetof(struct iphdr, check),
				q.saddr, rw.q_saddr);
	if (!ret)
		ret = hypha_tc_set_addr(skb, q.ip_off + offsetof(struct iphdr, daddr),
					q.ip_off + offsetof(struct iphdr, check), q.daddr, rw.q_daddr);
	if (!ret)
		ret = hypha_tc_set_quoted_port(skb, q.l4_off, q.icmp_off + 2, q.sport, rw.q_sport);
	if (!ret)
		ret = hypha_tc_set_quoted_port(skb, q.l4_off + 2, q.icmp_off + 2, q.dport, rw.q_dport);
	if (!ret)
		ret = hypha_tc_set_addr(skb, HYPHA_IP_SADDR_OFF, HYPHA_IP_CSUM_OFF, p->saddr, rw.o_saddr);
	if (!ret)
		ret = hypha_tc_set_addr(skb, HYPHA_IP_SADDR_OFF + 4, HYPHA_IP_CSUM_OFF, p->daddr, rw.o_daddr);
	if (ret)
		return ret;
	nat->what = 0;
	if (rw.o_saddr && rw.o_saddr != p->saddr) {
		nat->saddr = rw.o_saddr;
		nat->what |= HYPHA_NAT_SADDR;
	}
	if (rw.o_daddr && rw.o_daddr != p->daddr) {
		nat->daddr = rw.o_daddr;
		nat->what |= HYPHA_NAT_DADDR;
	}
	nat->forward = rw.forward;
	nat->svc_id = rw.svc_id;
	return HYPHA_LB_DONE;
}

#endif /* HYPHA_LIB_ICMP_ERR_H */
