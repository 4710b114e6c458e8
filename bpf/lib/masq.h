/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Masquerade: a local pod's traffic to an address outside the cluster (no
 * ipcache entry: not the pod pool, not a node) leaves with the node's
 * address and a source port from the SNAT range; replies are restored to the
 * pod. Decisions only: the caller rewrites the packet (nat.h). */
#ifndef HYPHA_LIB_MASQ_H
#define HYPHA_LIB_MASQ_H

#include "lb.h"
#include "snat.h"

/* Can this packet be tracked for masquerade: TCP or UDP with ports, or an
 * ICMP echo of the given direction (requests leave, replies come back). */
static __always_inline int hypha_masq_keyable(const struct hypha_pkt4 *p, __u8 echo)
{
	if (p->proto == IPPROTO_ICMP)
		return p->frag == HYPHA_FRAG_NONE && p->icmp_echo == echo;
	return hypha_has_ports(p);
}

/* The flow's "ports": an echo request's identifier is its source port, an
 * echo reply's its destination port, so request and reply keys line up as
 * TCP's do. */
static __always_inline __be16 hypha_masq_sport(const struct hypha_pkt4 *p)
{
	if (p->proto != IPPROTO_ICMP)
		return p->sport;
	return p->icmp_echo == HYPHA_ECHO_REQUEST ? p->icmp_id : 0;
}

static __always_inline __be16 hypha_masq_dport(const struct hypha_pkt4 *p)
{
	if (p->proto != IPPROTO_ICMP)
		return p->dport;
	return p->icmp_echo == HYPHA_ECHO_REPLY ? p->icmp_id : 0;
}

static __always_inline const struct hypha_ipcache_val *hypha_ipcache_lookup(hypha_ip4_t addr)
{
	struct hypha_ipcache_key k = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&hypha_ipcache_v1, &k);
}

/* Egress of the external device. Returns HYPHA_LB_PASS (not ours),
 * HYPHA_LB_NAT (source rewrite in *nat) or a negative drop reason. */
static __always_inline int hypha_masq_egress(const struct hypha_pkt4 *p, const struct hypha_config *cfg,
					     struct hypha_nat4 *nat, __u32 now)
{
	const struct hypha_ipcache_val *dst;
	struct hypha_ct4_entry *out, *in, entry = {};
	struct hypha_ct4_key key, rkey;
	__be16 sport, dport;
	__u8 flags;
	int ret;

	if (!cfg || !(cfg->flags & HYPHA_CFG_MASQUERADE))
		return HYPHA_LB_PASS;
	/* Only this node's pods are masqueraded; the node's own traffic and
	 * anything it forwards for others leave as they are. */
	if (!bpf_map_lookup_elem(&hypha_endpoints_v1, &p->saddr))
		return HYPHA_LB_PASS;
	dst = hypha_ipcache_lookup(p->daddr);
	if (dst && (dst->flags & HYPHA_IPC_F_CLUSTER))
		return HYPHA_LB_PASS;
	/* A later fragment whose first was not seen has no ports to be
	 * translated by: refused with a reason rather than sent with the
	 * pod's address. (A fragmented ICMP echo is not masqueraded.) */
	if (p->frag == HYPHA_FRAG_LATER && !p->frag_ports && p->proto != IPPROTO_ICMP)
		return -HYPHA_DROP_FRAG_NOT_FOUND;
	/* TCP and UDP by their ports, ICMP echo requests by their identifier
	 * (in the source port's place). Other ICMP has nothing to map replies
	 * back by: not masqueraded. */
	if (!hypha_masq_keyable(p, HYPHA_ECHO_REQUEST))
		return HYPHA_LB_PASS;
	if (!cfg->snat_addr)
		return -HYPHA_DROP_NO_SNAT_ADDR;
	sport = hypha_masq_sport(p);
	dport = hypha_masq_dport(p);

	hypha_ct_key4(&key, p->saddr, p->daddr, sport, dport, p->proto, HYPHA_CT_INBOUND);
	in = hypha_ct4_lookup(&key);
	if (in && !hypha_ct_expired(in, now))
		return HYPHA_LB_PASS; /* the pod answers a flow the outside opened */

	key.dir = HYPHA_CT_MASQ_OUT;
	out = hypha_ct4_lookup(&key);
	if (out && (hypha_ct_expired(out, now) || hypha_ct_is_reopen(out, p) || out->nat_addr2 != cfg->snat_addr))
		out = NULL; /* a new flow on this tuple (or the node's address changed) */
	if (out) {
		/* The claim on the port lives as long as the flow does, also
		 * when only this side speaks (UDP). If it was lost (evicted,
		 * or timed out while only the other side spoke), it is taken
		 * again for the same port when that is still free. */
		hypha_ct_key4(&rkey, p->daddr, out->nat_addr2, dport, out->nat_port2, p->proto, HYPHA_CT_MASQ_IN);
		in = hypha_ct4_lookup(&rkey);
		if (in && !hypha_ct_expired(in, now) && in->nat_addr == p->saddr && in->nat_port == sport) {
			hypha_ct_refresh(in, p, now);
		} else {
			if (in && hypha_ct_expired(in, now))
				hypha_ct4_delete(&rkey);
			entry.nat_addr = p->saddr;
			entry.nat_port = sport;
			entry.flags = hypha_ct_next_flags(out->flags, p);
			entry.expires = now + hypha_ct_lifetime(p->proto, entry.flags);
			if (hypha_ct4_update(&rkey, &entry, BPF_NOEXIST))
				out = NULL; /* the port went to another flow: start over */
		}
	}
	if (out) {
		hypha_ct_refresh(out, p, now);
		nat->saddr = out->nat_addr2;
		nat->sport = out->nat_port2;
		nat->what = HYPHA_NAT_SADDR | HYPHA_NAT_SPORT;
		return HYPHA_LB_NAT;
	}

	/* A later fragment starts nothing: its first fragment's flow is
	 * gone (timed out or evicted in between). */
	if (p->frag == HYPHA_FRAG_LATER)
		return -HYPHA_DROP_FRAG_NOT_FOUND;
	/* Only a flow the pod opens is masqueraded: a TCP segment other than
	 * a SYN without a translation belongs to a connection opened from
	 * outside (or before the agent was there), and leaves as it is. */
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) != HYPHA_TCP_SYN)
		return HYPHA_LB_PASS;
	flags = hypha_ct_next_flags(0, p);
	entry.nat_addr = p->saddr;
	entry.nat_port = sport;
	entry.flags = flags;
	entry.expires = now + hypha_ct_lifetime(p->proto, flags);
	hypha_ct_key4(&rkey, p->daddr, cfg->snat_addr, dport, 0, p->proto, HYPHA_CT_MASQ_IN);
	ret = hypha_snat_claim(&rkey, &entry, cfg, hypha_lb4_hash(p), now);
	if (ret < 0)
		return ret;

	entry.nat_addr = 0;
	entry.nat_port = 0;
	entry.nat_addr2 = cfg->snat_addr;
	entry.nat_port2 = rkey.dport;
	if (hypha_ct4_update(&key, &entry, BPF_ANY)) {
		hypha_ct4_delete(&rkey);
		return -HYPHA_DROP_CT_CREATE_FAILED;
	}
	nat->saddr = cfg->snat_addr;
	nat->sport = rkey.dport;
	nat->what = HYPHA_NAT_SADDR | HYPHA_NAT_SPORT;
	return HYPHA_LB_NAT;
}

/* Ingress of the external device: a reply to a masqueraded flow goes back
 * to its pod. Returns HYPHA_LB_PASS or HYPHA_LB_NAT (destination rewrite). */
static __always_inline int hypha_masq_ingress(const struct hypha_pkt4 *p, struct hypha_nat4 *nat, __u32 now)
{
	struct hypha_ct4_entry *in;
	struct hypha_ct4_key key;

	if (!hypha_masq_keyable(p, HYPHA_ECHO_REPLY))
		return HYPHA_LB_PASS;
	hypha_ct_key4(&key, p->saddr, p->daddr, hypha_masq_sport(p), hypha_masq_dport(p), p->proto, HYPHA_CT_MASQ_IN);
	in = hypha_ct4_lookup(&key);
	if (!in || hypha_ct_expired(in, now))
		return HYPHA_LB_PASS;
	hypha_ct_refresh(in, p, now);
	/* A FIN or RST from outside closes the flow's other entry too. */
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (HYPHA_TCP_FIN | HYPHA_TCP_RST))) {
		struct hypha_ct4_entry *out;

		hypha_ct_key4(&key, in->nat_addr, p->saddr, in->nat_port, p->sport, p->proto, HYPHA_CT_MASQ_OUT);
		out = hypha_ct4_lookup(&key);
		if (out)
			hypha_ct_refresh(out, p, now);
	}
	nat->daddr = in->nat_addr;
	nat->dport = in->nat_port;
	nat->what = HYPHA_NAT_DADDR | HYPHA_NAT_DPORT;
	return HYPHA_LB_NAT;
}

/* On the way to a local pod (to_pod): a flow opened from outside the
 * cluster straight to the pod (its address routed there) is noted, so the
 * pod's answers are not masqueraded (they must keep the address the client
 * dialled). Written when the first packet arrives, refreshed by later ones. */
static __always_inline void hypha_masq_note_inbound(const struct hypha_pkt4 *p, __u32 now)
{
	const struct hypha_ipcache_val *src;
	struct hypha_ct4_entry *e, entry = {};
	struct hypha_ct4_key key;

	if (!hypha_has_ports(p))
		return;
	src = hypha_ipcache_lookup(p->saddr);
	if (src && (src->flags & HYPHA_IPC_F_CLUSTER))
		return;
	hypha_ct_key4(&key, p->daddr, p->saddr, p->dport, p->sport, p->proto, HYPHA_CT_INBOUND);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now)) {
		hypha_ct_refresh(e, p, now);
		return;
	}
	entry.flags = hypha_ct_next_flags(0, p);
	entry.expires = now + hypha_ct_lifetime(p->proto, entry.flags);
	hypha_ct4_update(&key, &entry, BPF_ANY);
}

#endif /* HYPHA_LIB_MASQ_H */
