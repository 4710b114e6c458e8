/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* NetworkPolicy enforcement (maps: hypha/policy.h).
 *
 * A packet of a pod flow is judged where it enters or leaves a pod of this
 * node: egress of its source when the source is a local pod, ingress of its
 * destination when that is one. The tuple judged is the one between the
 * pods, after Service translation (a flow to a ClusterIP is judged against
 * the backend it was given) and before a reply's translation is undone.
 *
 * Allowed flows are remembered in conntrack (HYPHA_CT_POLICY, keyed as the
 * first judged packet was) with the low byte of the config's
 * policy_generation:
 *  - a packet of the flow's own direction under the same generation passes
 *    with one lookup; under another it is judged again, and a flow policy
 *    now denies loses its entry and its packets;
 *  - a packet matching the entry backwards is a reply and passes;
 *  - anything else is a new flow, judged, and remembered when allowed.
 * Denied packets are dropped silently (the upstream specs and Cilium do not
 * answer them), counted per direction, and reported with both identities.
 *
 * L7: an entry with a proxy port allows the flow only through the node's
 * proxy. Its POLICY entry says so (HYPHA_CT_F_PROXY), and every packet of
 * that direction is steered there (tc.h, hypha_tc_policy_steer). The proxy's
 * own connections (marked HYPHA_MARK_FROM_PROXY) take such entries as plain
 * allows, and their POLICY entry (HYPHA_CT_F_PROXY_UPSTREAM) sends their
 * replies to the proxy instead of the pod they are addressed to. */
#ifndef HYPHA_LIB_POLICY_H
#define HYPHA_LIB_POLICY_H

#include "hypha/maps.h"
#include "ct.h"
#include "drop.h"

/* Reserved identities (src/identity/labels.ts). */
#define HYPHA_IDENTITY_WORLD 2

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* One pod flow as judged: the tuple between the pods, and whose identity
 * and locality the source address stands for (a hairpin flow's source is
 * the loopback address by then, but it is the pod's flow). */
struct hypha_policy_flow {
	hypha_ip4_t saddr;	/* conntrack key */
	hypha_ip4_t daddr;
	__be16 sport;
	__be16 dport;
	hypha_ip4_t id_saddr;	/* the source's address for identity and locality */
	__u8 proto;
	__u8 from_proxy;	/* in: the L7 proxy's own connection */
	__u8 action;		/* out: HYPHA_POLICY_ACT_* */
	__u8 pad;
	__u32 src_identity;	/* out: for drop events */
	__u32 dst_identity;
	__be16 proxy_port;	/* out: the L7 proxy port of the entry that allowed it; 0 none */
	__u16 pad2;
};

enum hypha_policy_action {
	HYPHA_POLICY_ACT_PASS = 0,
	HYPHA_POLICY_ACT_PROXY = 1,	/* give the packet to the L7 proxy at proxy_port */
	HYPHA_POLICY_ACT_TO_HOST = 2,	/* a reply to the proxy's upstream: to the node's stack */
};

/* The identity the ipcache gives an address (most specific prefix); world
 * when it has none. */
static __always_inline __u32 hypha_identity_of(hypha_ip4_t addr)
{
	struct hypha_ipcache_key k = { .prefixlen = 32, .addr = addr };
	struct hypha_ipcache_val *v = bpf_map_lookup_elem(&hypha_ipcache_v1, &k);

	return v ? v->identity : HYPHA_IDENTITY_WORLD;
}

static __always_inline __u32 hypha_cidr_identity_of(hypha_ip4_t addr)
{
	struct hypha_ipcache_key k = { .prefixlen = 32, .addr = addr };
	struct hypha_policy_cidr_val *v = bpf_map_lookup_elem(&hypha_policy_cidr_v1, &k);

	return v ? v->identity : 0;
}

/* Does an entry of ep's direction allow this peer, protocol and port? Three
 * lookups at most: the peer's identity, its CIDR identity, any peer. *proxy:
 * the L7 proxy port of the entry that allows it (0: none). */
static __always_inline int hypha_policy_allows(hypha_ip4_t ep, enum hypha_policy_dir dir, __u32 peer,
					       hypha_ip4_t peer_addr, __u8 proto, __be16 dport, __be16 *proxy)
{
	struct hypha_policy_key k = {
		.prefixlen = HYPHA_POLICY_PREFIX_FULL, .ep_addr = ep, .identity = peer, .dir = dir,
		.proto = proto, .dport = dport,
	};
	struct hypha_policy_val *v;
	__u32 cidr;

	v = bpf_map_lookup_elem(&hypha_policy_v1, &k);
	if (!v) {
		cidr = hypha_cidr_identity_of(peer_addr);
		if (cidr) {
			k.identity = cidr;
			v = bpf_map_lookup_elem(&hypha_policy_v1, &k);
		}
	}
	if (!v && peer) {
		k.identity = 0;
		v = bpf_map_lookup_elem(&hypha_policy_v1, &k);
	}
	if (!v)
		return 0;
	*proxy = v->proxy_port;
	return 1;
}

/* The verdict of the policies of this node's pods on a flow: 0, or the
 * drop reason. Fills in the identities. */
static __always_inline int hypha_policy_judge(struct hypha_policy_flow *f)
{
	struct hypha_policy_ep *src = bpf_map_lookup_elem(&hypha_policy_eps_v1, &f->id_saddr);
	struct hypha_policy_ep *dst = bpf_map_lookup_elem(&hypha_policy_eps_v1, &f->daddr);
	/* Ports matter to TCP, UDP and SCTP; other protocols match only
	 * entries for every protocol. */
	__be16 dport = (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP || f->proto == IPPROTO_SCTP) ? f->dport : 0;
	__be16 egress_proxy = 0, ingress_proxy = 0;

	f->src_identity = src ? src->identity : hypha_identity_of(f->id_saddr);
	f->dst_identity = dst ? dst->identity : hypha_identity_of(f->daddr);
	if (src && (src->flags & HYPHA_POLICY_EP_EGRESS) &&
	    !hypha_policy_allows(f->id_saddr, HYPHA_POLICY_EGRESS, f->dst_identity, f->daddr, f->proto, dport,
				 &egress_proxy))
		return HYPHA_DROP_POLICY_EGRESS;
	if (dst && (dst->flags & HYPHA_POLICY_EP_INGRESS) &&
	    !hypha_policy_allows(f->daddr, HYPHA_POLICY_INGRESS, f->src_identity, f->id_saddr, f->proto, dport,
				 &ingress_proxy))
		return HYPHA_DROP_POLICY_INGRESS;
	/* One proxy checks both directions' HTTP rules; only TCP goes there. */
	f->proxy_port = (f->from_proxy || f->proto != IPPROTO_TCP) ? 0 : (egress_proxy ? egress_proxy : ingress_proxy);
	return 0;
}

/* Judge a packet (p: its protocol and TCP flags) of flow f, remembering
 * allowed flows: 0 to let it pass, or the drop reason. */
static __noinline int hypha_policy_enforce(struct hypha_policy_flow *f, const struct hypha_pkt4 *p, __u32 gen)
{
	struct hypha_ct4_entry *e, entry = {};
	struct hypha_ct4_key key;
	__u32 now = hypha_now();
	int reason;

	hypha_ct_key4(&key, f->saddr, f->daddr, f->sport, f->dport, f->proto, HYPHA_CT_POLICY);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now) && !hypha_ct_is_reopen(e, p)) {
		if (e->pol_gen != (__u8)gen) {
			reason = hypha_policy_judge(f);
			if (reason) {
				hypha_ct4_delete(&key);
				return reason;
			}
			e->pol_gen = gen;
			/* A flow sent to the proxy that never got past its SYN (no
			 * connection to move) goes where the new policy says: no
			 * http rule covers it any more, so not to the proxy. */
			if ((e->flags & HYPHA_CT_F_PROXY) && !f->proxy_port && !(e->flags & HYPHA_CT_F_SEEN_NON_SYN)) {
				e->flags &= ~HYPHA_CT_F_PROXY;
				e->nat_port = 0;
			}
		}
		/* A flow at the proxy stays there (the proxy judges each request
		 * against the rules of the moment). */
		if (e->flags & HYPHA_CT_F_PROXY) {
			f->action = HYPHA_POLICY_ACT_PROXY;
			f->proxy_port = e->nat_port;
		}
		hypha_ct_refresh(e, p, now);
		return 0;
	}
	/* A reply: the flow the other way was allowed. (It is judged again by
	 * that direction's next packet when the policy changes.) */
	hypha_ct_key4(&key, f->daddr, f->saddr, f->dport, f->sport, f->proto, HYPHA_CT_POLICY);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now) && !hypha_ct_is_reused_reply(e, p)) {
		if (e->flags & HYPHA_CT_F_PROXY_UPSTREAM)
			f->action = HYPHA_POLICY_ACT_TO_HOST;
		hypha_ct_refresh(e, p, now);
		return 0;
	}
	reason = hypha_policy_judge(f);
	if (reason)
		return reason;
	hypha_ct_key4(&key, f->saddr, f->daddr, f->sport, f->dport, f->proto, HYPHA_CT_POLICY);
	entry.flags = hypha_ct_next_flags(0, p);
	if (f->proxy_port) {
		entry.flags |= HYPHA_CT_F_PROXY;
		entry.nat_port = f->proxy_port;
		f->action = HYPHA_POLICY_ACT_PROXY;
	}
	if (f->from_proxy)
		entry.flags |= HYPHA_CT_F_PROXY_UPSTREAM;
	entry.expires = now + hypha_ct_lifetime(p->proto, entry.flags);
	entry.pol_gen = gen;
	/* Not remembered (map refused): the flow still passes; its next packet
	 * is judged again. */
	hypha_ct4_update(&key, &entry, BPF_ANY);
	return 0;
}

/* The ports a flow is keyed by: TCP, UDP and SCTP ports; an ICMP echo's
 * identifier on both sides (so a reply's swapped key is the request's). */
static __always_inline void hypha_policy_ports(struct hypha_policy_flow *f, const struct hypha_pkt4 *p,
					       __be16 sport, __be16 dport)
{
	if (p->icmp_echo) {
		f->sport = p->icmp_id;
		f->dport = p->icmp_id;
	} else {
		f->sport = sport;
		f->dport = dport;
	}
}

#endif /* HYPHA_LIB_POLICY_H */
