/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared body of the TC programs: parse, decide, rewrite, and the single exit
 * path that turns a negative drop reason into a counter, an optional event,
 * and either a reject or a drop. */
#ifndef HYPHA_LIB_TC_H
#define HYPHA_LIB_TC_H

#include <linux/pkt_cls.h>
#include "lb.h"
#include "nat.h"
#include "icmp.h"
#include "drop.h"
#include "masq.h"

/* Headers live in the linear part of nearly every skb; when a parse runs out
 * of linear data but the packet is longer, pull the headers in and retry.
 * (Pulling unconditionally would copy the head of every cloned TCP skb.) */
static __always_inline int hypha_tc_parse4(struct __sk_buff *skb, struct hypha_pkt4 *p)
{
	int ret = hypha_parse4((void *)(long)skb->data, (void *)(long)skb->data_end, p);

	if (ret == -HYPHA_DROP_INVALID_PACKET && skb->data_end - skb->data < skb->len) {
		__u32 want = skb->len < 128 ? skb->len : 128;

		if (bpf_skb_pull_data(skb, want))
			return ret;
		ret = hypha_parse4((void *)(long)skb->data, (void *)(long)skb->data_end, p);
	}
	p->len = skb->len;
	return ret;
}

/* The mark bit from_pod sets on packets it handled (configurable). */
static __always_inline __u32 hypha_seen_mark(const struct hypha_config *cfg)
{
	return cfg && cfg->seen_mark ? cfg->seen_mark : HYPHA_MARK_SEEN;
}

#define HYPHA_AF_INET 2
#define HYPHA_IP_TTL_OFF (HYPHA_L3_OFF + offsetof(struct iphdr, ttl))

/* Forward a rewritten packet ourselves: it came in on the external device
 * and goes to another node (or back to an outside client), with one of this
 * node's addresses as its source, which the stack would drop as a martian.
 * Route it with a FIB lookup, decrement the TTL as a router does, and send
 * it out; when the next hop's MAC is not known yet, the kernel resolves it
 * (bpf_redirect_neigh). */
static __always_inline int hypha_tc_forward(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					    const struct hypha_nat4 *n)
{
	struct bpf_fib_lookup fib = {};
	__u8 ttl;
	int rc;

	fib.family = HYPHA_AF_INET;
	fib.l4_protocol = p->proto;
	fib.sport = (n->what & HYPHA_NAT_SPORT) ? n->sport : p->sport;
	fib.dport = (n->what & HYPHA_NAT_DPORT) ? n->dport : p->dport;
	fib.ipv4_src = (n->what & HYPHA_NAT_SADDR) ? n->saddr : p->saddr;
	fib.ipv4_dst = (n->what & HYPHA_NAT_DADDR) ? n->daddr : p->daddr;
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -HYPHA_DROP_FIB_FAILED;
	if (bpf_skb_load_bytes(skb, HYPHA_IP_TTL_OFF, &ttl, 1) || ttl <= 1)
		return -HYPHA_DROP_FIB_FAILED;
	if (bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, bpf_htons(ttl << 8), bpf_htons((ttl - 1) << 8), 2))
		return -HYPHA_DROP_NAT_FAILED;
	ttl--;
	if (bpf_skb_store_bytes(skb, HYPHA_IP_TTL_OFF, &ttl, 1, 0))
		return -HYPHA_DROP_NAT_FAILED;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = HYPHA_AF_INET, .ipv4_nh = fib.ipv4_dst };

		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
		return -HYPHA_DROP_NAT_FAILED;
	return bpf_redirect(fib.ifindex, 0);
}

/* A packet from a pod to a pod on this node: straight into the destination
 * pod's namespace (bpf_redirect_peer), past the node's IP stack, with the
 * TTL decremented as the routing it skips would. Returns the verdict, or 0
 * to let the stack route the packet (not a local pod, or disabled). */
static __always_inline int hypha_tc_redirect_local(struct __sk_buff *skb, hypha_ip4_t daddr)
{
	struct hypha_endpoint *ep = bpf_map_lookup_elem(&hypha_endpoints_v1, &daddr);
	__u8 ttl;

	if (!ep || ep->ifindex == skb->ifindex)
		return 0;
	if (bpf_skb_load_bytes(skb, HYPHA_IP_TTL_OFF, &ttl, 1) || ttl <= 1)
		return 0; /* the stack answers with time exceeded */
	if (bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, bpf_htons(ttl << 8), bpf_htons((ttl - 1) << 8), 2))
		return 0;
	ttl--;
	if (bpf_skb_store_bytes(skb, HYPHA_IP_TTL_OFF, &ttl, 1, 0))
		return 0;
	return bpf_redirect_peer(ep->ifindex, 0);
}

static __always_inline int hypha_tc_exit(struct __sk_buff *skb, int ret, enum hypha_hook hook,
					 const struct hypha_pkt4 *p, __u32 svc_id)
{
	enum hypha_drop_reason reason;
	int verdict;

	if (ret >= 0)
		return ret == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : TC_ACT_OK;
	reason = -ret;
	hypha_account_drop(reason, skb->len, hook, skb->ifindex, p, svc_id);
	if (!hypha_drop_is_reject(reason))
		return TC_ACT_SHOT;
	verdict = hypha_tc_reject4(skb, p);
	if (verdict < 0) {
		hypha_account_drop(-verdict, skb->len, hook, skb->ifindex, p, svc_id);
		return TC_ACT_SHOT;
	}
	return verdict;
}

/* tc-only modes, next to hypha_lb4_new_flow's. */
#define HYPHA_TC_MASQ_REPLIES (1 << 8)	/* external device: replies to masqueraded pod flows */
#define HYPHA_TC_NOTE_INBOUND (1 << 9)	/* to a pod: note flows opened from outside the cluster */

/* scope: where the traffic comes from; forward: translate new and tracked
 * flows to frontends; reverse: restore frontends on replies; mode: see
 * hypha_lb4_new_flow (HYPHA_LB_SNAT_REMOTE on the external device) and
 * HYPHA_TC_MASQ_REPLIES. */
static __always_inline int hypha_tc_handle(struct __sk_buff *skb, enum hypha_hook hook,
					   enum hypha_lb_scope scope, int forward, int reverse, int mode)
{
	__u32 zero = 0;
	struct hypha_config *cfg = bpf_map_lookup_elem(&hypha_config_v3, &zero);
	struct hypha_nat4 nat = {};
	struct hypha_pkt4 p = {};
	__u32 now, seen = hypha_seen_mark(cfg);
	int ret;

	/* Already looked at by from_pod on this node (a pod talking to a
	 * local pod): nothing left for to_pod to restore. */
	if (!forward && (skb->mark & seen))
		return TC_ACT_OK;
	ret = hypha_tc_parse4(skb, &p);
	if (ret == HYPHA_PARSE_NOT_IPV4)
		return TC_ACT_OK;
	if (ret < 0)
		return hypha_tc_exit(skb, ret, hook, NULL, 0);

	/* Most likely first: a packet of a tracked flow (either direction)
	 * costs one or two lookups; only new flows reach the Service map. */
	now = hypha_now();
	ret = HYPHA_LB_PASS;
	if (forward)
		ret = hypha_lb4_established(&p, &nat, now, 0);
	if (ret == HYPHA_LB_PASS && reverse)
		ret = hypha_lb4_reverse(&p, &nat, now, mode & HYPHA_LB_SNAT_REMOTE);
	if (ret == HYPHA_LB_PASS && forward) {
		ret = hypha_lb4_new_flow(&p, scope, cfg ? cfg->loopback_addr : 0, cfg ? cfg->snat_addr : 0,
					 mode, cfg, &nat, now);
	}
	if (ret == HYPHA_LB_PASS && (mode & HYPHA_TC_MASQ_REPLIES)) {
		ret = hypha_masq_ingress(&p, &nat, now);
		if (ret == HYPHA_LB_NAT) {
			ret = hypha_tc_nat4(skb, &p, &nat);
			if (ret == 0) {
				if (cfg && (cfg->flags & HYPHA_CFG_HOST_ROUTING)) {
					int verdict = hypha_tc_redirect_local(skb, nat.daddr);

					if (verdict)
						return verdict;
				}
			}
			return hypha_tc_exit(skb, ret, hook, &p, 0);
		}
	}
	if (ret == HYPHA_LB_PASS && (mode & HYPHA_TC_NOTE_INBOUND)) {
		if (cfg && (cfg->flags & HYPHA_CFG_MASQUERADE))
			hypha_masq_note_inbound(&p, now);
	}
	if (ret == HYPHA_LB_NAT) {
		ret = hypha_tc_nat4(skb, &p, &nat);
		if (ret == 0 && nat.forward)
			ret = hypha_tc_forward(skb, &p, &nat);
	}
	if (ret == 0 && hook == HYPHA_HOOK_FROM_POD) {
		if (cfg && (cfg->flags & HYPHA_CFG_HOST_ROUTING)) {
			int verdict = hypha_tc_redirect_local(skb, (nat.what & HYPHA_NAT_DADDR) ? nat.daddr : p.daddr);

			if (verdict)
				return verdict;
		}
		skb->mark |= seen;
	}
	return hypha_tc_exit(skb, ret, hook, &p, nat.svc_id);
}

/* tc egress of the external device: masquerade of pod traffic that leaves
 * the cluster. Anything this program cannot parse is not a pod's and passes. */
static __always_inline int hypha_tc_to_netdev(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct hypha_config *cfg;
	struct hypha_nat4 nat = {};
	struct hypha_pkt4 p = {};
	int ret;

	ret = hypha_tc_parse4(skb, &p);
	if (ret != HYPHA_PARSE_OK)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&hypha_config_v3, &zero);
	ret = hypha_masq_egress(&p, cfg, &nat, hypha_now());
	if (ret == HYPHA_LB_NAT)
		ret = hypha_tc_nat4(skb, &p, &nat);
	return hypha_tc_exit(skb, ret, HYPHA_HOOK_TO_NETDEV, &p, 0);
}

#endif /* HYPHA_LIB_TC_H */
