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
#include "frag.h"
#include "icmp_err.h"
#include "policy.h"

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
 * Route it with a FIB lookup (before the rewrite: a packet too big for the
 * next hop is answered with its header as the sender sent it), decrement
 * the TTL as a router does, and send it out; when the next hop's MAC is not
 * known yet, the kernel resolves it (bpf_redirect_neigh). */
static __always_inline int hypha_tc_fib(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					const struct hypha_nat4 *n, struct bpf_fib_lookup *fib, __u32 *mtu)
{
	int rc;

	fib->family = HYPHA_AF_INET;
	fib->l4_protocol = p->proto;
	fib->sport = (n->what & HYPHA_NAT_SPORT) ? n->sport : p->sport;
	fib->dport = (n->what & HYPHA_NAT_DPORT) ? n->dport : p->dport;
	fib->ipv4_src = (n->what & HYPHA_NAT_SADDR) ? n->saddr : p->saddr;
	fib->ipv4_dst = (n->what & HYPHA_NAT_DADDR) ? n->daddr : p->daddr;
	fib->ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ? (*mtu = fib->mtu_result, -HYPHA_DROP_FRAG_NEEDED)
							   : -HYPHA_DROP_FIB_FAILED;
	*mtu = 0;
	if (bpf_check_mtu(skb, fib->ifindex, mtu, 0, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED)
		return -HYPHA_DROP_FRAG_NEEDED;
	return rc;
}

static __always_inline int hypha_tc_send(struct __sk_buff *skb, const struct bpf_fib_lookup *fib, int rc)
{
	__u8 ttl;

	if (bpf_skb_load_bytes(skb, HYPHA_IP_TTL_OFF, &ttl, 1) || ttl <= 1)
		return -HYPHA_DROP_FIB_FAILED;
	if (bpf_l3_csum_replace(skb, HYPHA_IP_CSUM_OFF, bpf_htons(ttl << 8), bpf_htons((ttl - 1) << 8), 2))
		return -HYPHA_DROP_NAT_FAILED;
	ttl--;
	if (bpf_skb_store_bytes(skb, HYPHA_IP_TTL_OFF, &ttl, 1, 0))
		return -HYPHA_DROP_NAT_FAILED;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = HYPHA_AF_INET, .ipv4_nh = fib->ipv4_dst };

		return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
	}
	if (bpf_skb_store_bytes(skb, 0, fib->dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib->smac, ETH_ALEN, 0))
		return -HYPHA_DROP_NAT_FAILED;
	return bpf_redirect(fib->ifindex, 0);
}

/* Too big for the next hop: with DF set, answer "fragmentation needed" with
 * its MTU from this node's address the packet was sent to (path-MTU
 * discovery through NodePorts); without DF (which the stack would fragment)
 * or for an ICMP error (never answered with one), drop it. Counted as
 * HYPHA_DROP_FRAG_NEEDED either way. */
static __always_inline int hypha_tc_too_big(struct __sk_buff *skb, const struct hypha_pkt4 *p, enum hypha_hook hook,
					    __u32 mtu, __u32 svc_id)
{
	__u32 len = skb->len;
	int verdict;

	if (!p->df || p->icmp_err || !mtu || !hypha_icmp_answerable(p->saddr)) {
		hypha_account_drop(HYPHA_DROP_FRAG_NEEDED, len, hook, skb->ifindex, p, svc_id);
		return TC_ACT_SHOT;
	}
	verdict = hypha_tc_icmp4_answer(skb, p, HYPHA_ICMP_FRAG_NEEDED, mtu > 0xffff ? 0xffff : mtu);
	hypha_account_drop(verdict < 0 ? -verdict : HYPHA_DROP_FRAG_NEEDED, len, hook, skb->ifindex, p, svc_id);
	return verdict < 0 ? TC_ACT_SHOT : verdict;
}

/* A packet from a pod to a pod on this node: straight into the destination
 * pod's namespace (bpf_redirect_peer), past the node's IP stack, with the
 * TTL decremented as the routing it skips would. Returns the verdict, or 0
 * to let the stack route the packet (not a local pod, or disabled). */
static __always_inline int hypha_tc_redirect_local(struct __sk_buff *skb, const struct hypha_config *cfg,
						   hypha_ip4_t daddr)
{
	struct hypha_endpoint *ep;
	__u8 ttl;

	if (!cfg || !(cfg->flags & HYPHA_CFG_HOST_ROUTING))
		return 0;
	ep = bpf_map_lookup_elem(&hypha_endpoints_v1, &daddr);
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

/* The drop path of hypha_tc_exit, a function of its own: the reject frame
 * it builds stays off the main path's stack. */
static __noinline int hypha_tc_drop(struct __sk_buff *skb, int ret, enum hypha_hook hook,
				    const struct hypha_pkt4 *p, __u32 svc_id)
{
	enum hypha_drop_reason reason;
	int verdict;

	reason = -ret;
	if (hypha_drop_is_reject(reason) && p && hypha_icmp_answerable(p->saddr)) {
		__u32 len = skb->len;

		/* One packet, one reason: the refusal, or REJECT_FAILED when
		 * its answer could not be built (the event names the Service). */
		verdict = hypha_tc_reject4(skb, p);
		hypha_account_drop(verdict < 0 ? -verdict : reason, len, hook, skb->ifindex, p, svc_id);
		return verdict < 0 ? TC_ACT_SHOT : verdict;
	}
	hypha_account_drop(reason, skb->len, hook, skb->ifindex, p, svc_id);
	return TC_ACT_SHOT;
}

static __always_inline int hypha_tc_exit(struct __sk_buff *skb, int ret, enum hypha_hook hook,
					 const struct hypha_pkt4 *p, __u32 svc_id)
{
	if (ret >= 0)
		return ret == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : TC_ACT_OK;
	return hypha_tc_drop(skb, ret, hook, p, svc_id);
}

/* tc-only modes, next to hypha_lb4_new_flow's. */
#define HYPHA_TC_MASQ_REPLIES (1 << 8)	/* external device: replies to masqueraded pod flows */
#define HYPHA_TC_NOTE_INBOUND (1 << 9)	/* to a pod: note flows opened from outside the cluster */

/* Which ICMP error translations a hook makes (icmp_err.h): where the
 * packet it answers was translated the other way. */
static __always_inline int hypha_tc_icmp_err_which(int forward, int reverse, int mode)
{
	int which = 0;

	if (forward)
		which |= HYPHA_ICMP_ERR_SERVICE;
	if (reverse)
		which |= (mode & HYPHA_LB_SNAT_REMOTE) ? HYPHA_ICMP_ERR_REPLY_REMOTE : HYPHA_ICMP_ERR_REPLY;
	if (mode & HYPHA_TC_MASQ_REPLIES)
		which |= HYPHA_ICMP_ERR_MASQ_IN;
	return which;
}

/* hypha_lb4_new_flow as a function of its own (its stack is not the main
 * path's); scope_mode: mode << 1 | scope. */
static __noinline int hypha_tc_new_flow(const struct hypha_pkt4 *p, struct hypha_nat4 *nat,
					const struct hypha_config *cfg, int scope_mode, __u32 now)
{
	return hypha_lb4_new_flow(p, scope_mode & 1, cfg ? cfg->loopback_addr : 0, cfg ? cfg->snat_addr : 0,
				  scope_mode >> 1, cfg, nat, now);
}

/* An ICMP error entering or leaving a pod: related traffic of the flow it
 * quotes passes when policy let that flow through (its POLICY entry, either
 * way round: the quote is as the packet was between the pods); any other is
 * judged as an ICMP packet of its own, and not remembered. */
static __noinline int hypha_tc_policy_icmp_err(struct __sk_buff *skb, const struct hypha_pkt4 *p, enum hypha_hook hook)
{
	struct hypha_policy_flow f = {};
	struct hypha_icmp_quote q = {};
	struct hypha_ct4_key key;
	__u32 want = skb->len < 192 ? skb->len : 192;
	int reason;

	if (p->frag == HYPHA_FRAG_NONE && (skb->data_end - skb->data >= want || !bpf_skb_pull_data(skb, want)) &&
	    !hypha_icmp_quote_parse((void *)(long)skb->data, (void *)(long)skb->data_end, &q)) {
		hypha_ct_key4(&key, q.saddr, q.daddr, q.sport, q.dport, q.proto, HYPHA_CT_POLICY);
		if (hypha_ct4_lookup(&key))
			return 0;
		hypha_ct_key4(&key, q.daddr, q.saddr, q.dport, q.sport, q.proto, HYPHA_CT_POLICY);
		if (hypha_ct4_lookup(&key))
			return 0;
	}
	f.saddr = f.id_saddr = p->saddr;
	f.daddr = p->daddr;
	f.proto = p->proto;
	reason = hypha_policy_judge(&f);
	if (!reason)
		return 0;
	hypha_account_drop_ids(reason, skb->len, hook, skb->ifindex, p, 0, f.src_identity, f.dst_identity);
	return TC_ACT_SHOT;
}

/* What hypha_tc_policy returns besides 0 and TC_ACT_SHOT (the low 16 bits:
 * the proxy port, host order). */
#define HYPHA_TC_POLICY_PROXY 0x10000
#define HYPHA_TC_POLICY_TO_HOST 0x20000

/* NetworkPolicy on a packet entering or leaving a pod of this node
 * (policy.h): nat, when given, is the translation the packet is about to
 * get (the flow judged is the one after it). Returns 0 to go on,
 * TC_ACT_SHOT for a denied packet, counted and reported with the tuple
 * judged and both identities, or where an L7 flow's packet goes
 * (HYPHA_TC_POLICY_*, see hypha_tc_policy_steer). A function of its own:
 * the flow's state stays off the main path's stack. */
static __noinline int hypha_tc_policy(struct __sk_buff *skb, const struct hypha_pkt4 *p, const struct hypha_nat4 *nat,
				      enum hypha_hook hook, __u32 gen)
{
	struct hypha_policy_flow f = {};
	struct hypha_pkt4 q;
	__u32 what = nat ? nat->what : 0;
	int reason;

	if (p->icmp_err)
		return hypha_tc_policy_icmp_err(skb, p, hook);
	f.saddr = (what & HYPHA_NAT_SADDR) ? nat->saddr : p->saddr;
	f.daddr = (what & HYPHA_NAT_DADDR) ? nat->daddr : p->daddr;
	hypha_policy_ports(&f, p, (what & HYPHA_NAT_SPORT) ? nat->sport : p->sport,
			   (what & HYPHA_NAT_DPORT) ? nat->dport : p->dport);
	f.id_saddr = p->saddr;
	f.proto = p->proto;
	f.from_proxy = (skb->mark & HYPHA_MARK_FROM_PROXY) != 0;
	reason = hypha_policy_enforce(&f, p, gen);
	if (!reason) {
		if (f.action == HYPHA_POLICY_ACT_PROXY)
			return HYPHA_TC_POLICY_PROXY | bpf_ntohs(f.proxy_port);
		return f.action == HYPHA_POLICY_ACT_TO_HOST ? HYPHA_TC_POLICY_TO_HOST : 0;
	}
	q = *p;
	q.saddr = f.id_saddr;
	q.daddr = f.daddr;
	q.sport = f.sport;
	q.dport = f.dport;
	hypha_account_drop_ids(reason, skb->len, hook, skb->ifindex, &q, nat ? nat->svc_id : 0,
			       f.src_identity, f.dst_identity);
	return TC_ACT_SHOT;
}

static __always_inline int hypha_policy_on(const struct hypha_config *cfg)
{
	return cfg && (cfg->flags & HYPHA_CFG_POLICY);
}

/* Give an L7 flow's packet (already translated) to the node's stack for the
 * proxy: a SYN is assigned the proxy's listener (127.0.0.1 at the entry's
 * port); every packet is marked HYPHA_MARK_TO_PROXY, which a routing rule
 * delivers locally (src/l7/transparent.ts), where the accepted connection
 * (local address: the original destination) or the proxy's upstream socket
 * takes it. No listener: refused (fail closed: never let through). At
 * to_pod (tc egress: no socket can be assigned) a flow that was not
 * redirected where it entered is dropped. */
static __noinline int hypha_tc_policy_steer(struct __sk_buff *skb, const struct hypha_pkt4 *p, int pol,
					    enum hypha_hook hook)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	long err;

	if (pol == HYPHA_TC_POLICY_TO_HOST) {
		skb->mark |= HYPHA_MARK_TO_PROXY;
		return TC_ACT_OK;
	}
	if (hook == HYPHA_HOOK_TO_POD)
		return hypha_tc_drop(skb, -HYPHA_DROP_PROXY_NOT_REDIRECTED, hook, p, 0);
	if ((p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) == HYPHA_TCP_SYN) {
		t.ipv4.saddr = p->saddr;
		t.ipv4.sport = p->sport;
		t.ipv4.daddr = bpf_htonl(HYPHA_PROXY_ADDR);
		t.ipv4.dport = bpf_htons(pol & 0xffff);
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return hypha_tc_drop(skb, -HYPHA_DROP_PROXY_UNAVAILABLE, hook, p, 0);
		err = bpf_sk_assign(skb, sk, 0);
		bpf_sk_release(sk);
		if (err)
			return hypha_tc_drop(skb, -HYPHA_DROP_PROXY_UNAVAILABLE, hook, p, 0);
	}
	skb->mark |= HYPHA_MARK_TO_PROXY;
	return TC_ACT_OK;
}

/* At the external device (with HYPHA_CFG_L7): the flows of clients on other
 * nodes to a pod of this node whose ingress entry names the proxy, and the
 * replies to the proxy's upstream whose server is on another node, go to
 * the proxy like from_pod's do (hypha_tc_policy_steer's return values; 0:
 * the usual path, where to_pod judges the flow). nat: the translation the
 * packet gets here, if any. */
static __noinline int hypha_tc_netdev_l7(const struct hypha_pkt4 *p, const struct hypha_nat4 *nat, __u32 gen)
{
	struct hypha_policy_flow f = {};
	struct hypha_ct4_entry *e, entry = {};
	struct hypha_ct4_key key;
	struct hypha_policy_ep *ep;
	__u32 what = nat ? nat->what : 0, now = hypha_now();

	f.saddr = f.id_saddr = (what & HYPHA_NAT_SADDR) ? nat->saddr : p->saddr;
	f.daddr = (what & HYPHA_NAT_DADDR) ? nat->daddr : p->daddr;
	f.sport = (what & HYPHA_NAT_SPORT) ? nat->sport : p->sport;
	f.dport = (what & HYPHA_NAT_DPORT) ? nat->dport : p->dport;
	f.proto = p->proto;
	hypha_ct_key4(&key, f.daddr, f.saddr, f.dport, f.sport, f.proto, HYPHA_CT_POLICY);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now) && (e->flags & HYPHA_CT_F_PROXY_UPSTREAM)) {
		hypha_ct_refresh(e, p, now);
		return HYPHA_TC_POLICY_TO_HOST;
	}
	ep = bpf_map_lookup_elem(&hypha_policy_eps_v1, &f.daddr);
	if (!ep || !(ep->flags & HYPHA_POLICY_EP_INGRESS))
		return 0;
	hypha_ct_key4(&key, f.saddr, f.daddr, f.sport, f.dport, f.proto, HYPHA_CT_POLICY);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now) && !hypha_ct_is_reopen(e, p)) {
		if (!(e->flags & HYPHA_CT_F_PROXY))
			return 0;
		hypha_ct_refresh(e, p, now);
		return HYPHA_TC_POLICY_PROXY | bpf_ntohs(e->nat_port);
	}
	if ((p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) != HYPHA_TCP_SYN || hypha_policy_judge(&f) || !f.proxy_port)
		return 0; /* denied or not covered: to_pod judges it as ever */
	entry.flags = hypha_ct_next_flags(0, p) | HYPHA_CT_F_PROXY;
	entry.nat_port = f.proxy_port;
	entry.expires = now + hypha_ct_lifetime(p->proto, entry.flags);
	entry.pol_gen = gen;
	hypha_ct4_update(&key, &entry, BPF_ANY);
	return HYPHA_TC_POLICY_PROXY | bpf_ntohs(f.proxy_port);
}

/* The proxy's upstream leaving for a server on another node (with
 * HYPHA_CFG_L7): noted so its replies go to the proxy at from_netdev. */
static __noinline void hypha_tc_note_upstream(const struct hypha_pkt4 *p, __u32 gen)
{
	struct hypha_ct4_entry *e, entry = {};
	struct hypha_ct4_key key;
	__u32 now = hypha_now();

	hypha_ct_key4(&key, p->saddr, p->daddr, p->sport, p->dport, p->proto, HYPHA_CT_POLICY);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now) && !hypha_ct_is_reopen(e, p)) {
		hypha_ct_refresh(e, p, now);
		return;
	}
	entry.flags = hypha_ct_next_flags(0, p) | HYPHA_CT_F_PROXY_UPSTREAM;
	entry.expires = now + hypha_ct_lifetime(p->proto, entry.flags);
	entry.pol_gen = gen;
	hypha_ct4_update(&key, &entry, BPF_ANY);
}

/* Rewrite a packet and forward it ourselves (see hypha_tc_fib). A function
 * of its own: the FIB lookup's state stays off the main path's stack. */
static __noinline int hypha_tc_nat_forward(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					   const struct hypha_nat4 *nat, enum hypha_hook hook, __u32 seen)
{
	struct bpf_fib_lookup fib = {};
	__u32 mtu = 0;
	int rc, ret;

	rc = hypha_tc_fib(skb, p, nat, &fib, &mtu);
	if (rc == -HYPHA_DROP_FRAG_NEEDED)
		return hypha_tc_too_big(skb, p, hook, mtu, nat->svc_id);
	if (rc < 0)
		return hypha_tc_exit(skb, rc, hook, p, nat->svc_id);
	ret = hypha_tc_nat4(skb, p, nat);
	if (ret == 0) {
		/* Forwarded by us: to_netdev must not take it for the node's
		 * own traffic. */
		skb->mark |= seen;
		ret = hypha_tc_send(skb, &fib, rc);
	}
	return hypha_tc_exit(skb, ret, hook, p, nat->svc_id);
}

/* An ICMP error: translated if it is about one of our flows (icmp_err.h),
 * then delivered like the flow's packets are. */
static __noinline int hypha_tc_icmp_err_path(struct __sk_buff *skb, const struct hypha_pkt4 *p, enum hypha_hook hook,
					     int which, const struct hypha_config *cfg)
{
	struct hypha_nat4 nat = {};
	int ret, rc;

	ret = hypha_tc_icmp_err(skb, p, which, &nat, hypha_now());
	if (ret != HYPHA_LB_DONE)
		return hypha_tc_exit(skb, ret, hook, p, 0);
	ret = 0;
	if (nat.forward) {
		struct bpf_fib_lookup fib = {};
		__u32 mtu = 0;

		rc = hypha_tc_fib(skb, p, &nat, &fib, &mtu);
		/* an ICMP error too big to forward is not answered */
		ret = rc < 0 ? (rc == -HYPHA_DROP_FRAG_NEEDED ? -HYPHA_DROP_FIB_FAILED : rc) : hypha_tc_send(skb, &fib, rc);
	} else if (nat.what & HYPHA_NAT_DADDR) {
		int verdict = hypha_tc_redirect_local(skb, cfg, nat.daddr);

		if (verdict)
			return verdict;
	}
	return hypha_tc_exit(skb, ret, hook, p, nat.svc_id);
}

/* scope: where the traffic comes from; forward: translate new and tracked
 * flows to frontends; reverse: restore frontends on replies; mode: see
 * hypha_lb4_new_flow (HYPHA_LB_SNAT_REMOTE on the external device) and
 * HYPHA_TC_MASQ_REPLIES. */
static __always_inline int hypha_tc_handle(struct __sk_buff *skb, enum hypha_hook hook,
					   enum hypha_lb_scope scope, int forward, int reverse, int mode)
{
	__u32 zero = 0;
	struct hypha_config *cfg = bpf_map_lookup_elem(&hypha_config_v4, &zero);
	struct hypha_nat4 nat = {};
	struct hypha_pkt4 p = {};
	__u32 now, seen = hypha_seen_mark(cfg);
	int ret, reversed = 0, pol = 0;

	/* Already looked at by from_pod on this node (a pod talking to a
	 * local pod): nothing left for to_pod to restore. */
	if (!forward && (skb->mark & seen))
		return TC_ACT_OK;
	/* A VLAN-tagged frame (the kernel moved the tag into the skb) is for
	 * a VLAN device on top of this one: left to it, as XDP leaves it. */
	if (skb->vlan_present)
		return TC_ACT_OK;
	ret = hypha_tc_parse4(skb, &p);
	if (ret == HYPHA_PARSE_NOT_IPV4)
		return TC_ACT_OK;
	if (ret < 0)
		return hypha_tc_exit(skb, ret, hook, NULL, 0);
	now = hypha_now();
	ret = HYPHA_LB_PASS;

	if (p.icmp_err) {
		if ((hook == HYPHA_HOOK_FROM_POD || hook == HYPHA_HOOK_TO_POD) && hypha_policy_on(cfg) &&
		    hypha_tc_policy(skb, &p, NULL, hook, cfg->policy_generation) == TC_ACT_SHOT)
			return TC_ACT_SHOT;
		return hypha_tc_icmp_err_path(skb, &p, hook, hypha_tc_icmp_err_which(forward, reverse, mode), cfg);
	}

	hypha_frag_track(&p);
	/* Most likely first: a packet of a tracked flow (either direction)
	 * costs one or two lookups; only new flows reach the Service map. */
	if (forward)
		ret = hypha_lb4_established(&p, &nat, now, 0, cfg);
	if (ret == HYPHA_LB_PASS && reverse) {
		ret = hypha_lb4_reverse(&p, &nat, now, mode & HYPHA_LB_SNAT_REMOTE);
		/* A reply whose translation is undone here: policy judges it as
		 * it is now, between the pods. */
		reversed = ret == HYPHA_LB_NAT;
	}
	if (ret == HYPHA_LB_PASS && forward)
		ret = hypha_tc_new_flow(&p, &nat, cfg, (mode << 1) | scope, now);
	/* Policy after the Service decision (a ClusterIP flow is judged as
	 * the flow to its backend) and before any rewrite or redirect. */
	if (ret >= 0 && (hook == HYPHA_HOOK_FROM_POD || hook == HYPHA_HOOK_TO_POD) && hypha_policy_on(cfg)) {
		pol = hypha_tc_policy(skb, &p, ret == HYPHA_LB_NAT && !reversed ? &nat : NULL, hook, cfg->policy_generation);
		if (pol == TC_ACT_SHOT)
			return TC_ACT_SHOT;
	}
	if (ret >= 0 && hook == HYPHA_HOOK_FROM_NETDEV && p.proto == IPPROTO_TCP && hypha_policy_on(cfg) &&
	    (cfg->flags & HYPHA_CFG_L7))
		pol = hypha_tc_netdev_l7(&p, ret == HYPHA_LB_NAT && !reversed ? &nat : NULL, cfg->policy_generation);
	if (ret == HYPHA_LB_PASS && (mode & HYPHA_TC_MASQ_REPLIES)) {
		ret = hypha_masq_ingress(&p, &nat, now);
		/* Straight into the pod below: its ingress policy first. */
		if (ret == HYPHA_LB_NAT && hypha_policy_on(cfg) &&
		    hypha_tc_policy(skb, &p, &nat, hook, cfg->policy_generation) == TC_ACT_SHOT)
			return TC_ACT_SHOT;
		if (ret == HYPHA_LB_NAT) {
			ret = hypha_tc_nat4(skb, &p, &nat);
			/* The pod may have dialled a Service whose backend is
			 * outside the cluster (the API server behind the
			 * kubernetes ClusterIP): its reply gets the frontend
			 * back here too, as the redirect below skips to_pod. */
			/* (nat is reused: this program's stack is at its limit.) */
			hypha_ip4_t pod = nat.daddr;

			if (ret == 0 && hypha_has_ports(&p)) {
				p.daddr = nat.daddr;
				p.dport = nat.dport;
				__builtin_memset(&nat, 0, sizeof(nat));
				if (hypha_lb4_reverse(&p, &nat, now, 0) == HYPHA_LB_NAT)
					ret = hypha_tc_nat4(skb, &p, &nat);
			}
			if (ret == 0) {
				int verdict = hypha_tc_redirect_local(skb, cfg, pod);

				if (verdict)
					return verdict;
			}
			return hypha_tc_exit(skb, ret, hook, &p, 0);
		}
	}
	if (ret == HYPHA_LB_PASS && (mode & HYPHA_TC_NOTE_INBOUND)) {
		if (cfg && (cfg->flags & HYPHA_CFG_MASQUERADE))
			hypha_masq_note_inbound(&p, now);
	}
	if (ret == HYPHA_LB_NAT) {
		if (nat.forward)
			return hypha_tc_nat_forward(skb, &p, &nat, hook, seen);
		ret = hypha_tc_nat4(skb, &p, &nat);
	}
	if (ret == 0 && pol)
		return hypha_tc_policy_steer(skb, &p, pol, hook);
	if (ret == 0 && hook == HYPHA_HOOK_FROM_POD) {
		int verdict = hypha_tc_redirect_local(skb, cfg, (nat.what & HYPHA_NAT_DADDR) ? nat.daddr : p.daddr);

		if (verdict)
			return verdict;
		skb->mark |= seen;
	}
	return hypha_tc_exit(skb, ret, hook, &p, nat.svc_id);
}

/* The node's own connection from a port in the NodePort range, on its way
 * out: note it (keyed as its replies arrive) so they are not taken for new
 * NodePort flows. TCP from its SYN on, UDP from any datagram; packets of
 * translated flows carry the mark and are not the node's own. */
static __always_inline void hypha_tc_note_host(struct __sk_buff *skb, const struct hypha_pkt4 *p,
					       const struct hypha_config *cfg, __u32 now)
{
	struct hypha_ct4_entry *e, entry = {};
	struct hypha_ct4_key key;

	if (!hypha_has_ports(p) || p->frag != HYPHA_FRAG_NONE || !hypha_nodeport_range(cfg, p->sport) ||
	    (skb->mark & hypha_seen_mark(cfg)) || bpf_map_lookup_elem(&hypha_endpoints_v1, &p->saddr))
		return;
	hypha_ct_key4(&key, p->daddr, p->saddr, p->dport, p->sport, p->proto, HYPHA_CT_HOST);
	e = hypha_ct4_lookup(&key);
	if (e && !hypha_ct_expired(e, now)) {
		hypha_ct_refresh(e, p, now);
		return;
	}
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) != HYPHA_TCP_SYN)
		return;
	entry.flags = hypha_ct_next_flags(0, p);
	entry.expires = now + hypha_ct_lifetime(p->proto, entry.flags);
	hypha_ct4_update(&key, &entry, BPF_ANY);
}

/* tc egress of the external device: masquerade of pod traffic that leaves
 * the cluster, ICMP errors pods send about masqueraded flows, and notes of
 * the node's own connections from NodePort-range ports. Anything this
 * program cannot parse is not a pod's and passes. */
static __always_inline int hypha_tc_to_netdev(struct __sk_buff *skb)
{
	__u32 zero = 0, now = hypha_now();
	struct hypha_config *cfg;
	struct hypha_nat4 nat = {};
	struct hypha_pkt4 p = {};
	int ret;

	if (skb->vlan_present)
		return TC_ACT_OK;
	ret = hypha_tc_parse4(skb, &p);
	if (ret != HYPHA_PARSE_OK)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&hypha_config_v4, &zero);
	if (p.icmp_err) {
		if (!cfg || !(cfg->flags & HYPHA_CFG_MASQUERADE))
			return TC_ACT_OK;
		ret = hypha_tc_icmp_err(skb, &p, HYPHA_ICMP_ERR_MASQ_OUT, &nat, now);
		return hypha_tc_exit(skb, ret == HYPHA_LB_DONE ? 0 : ret, HYPHA_HOOK_TO_NETDEV, &p, 0);
	}
	hypha_frag_track(&p);
	/* The reply of a NodePort (or ExternalIP) flow whose backend is this
	 * node itself (a hostNetwork endpoint): the host stack answered from
	 * the backend's port, and no other hook saw it; the frontend goes back
	 * here, as kube-proxy's conntrack un-DNAT does. */
	if (hypha_lb4_reverse(&p, &nat, now, 0) == HYPHA_LB_NAT) {
		ret = hypha_tc_nat4(skb, &p, &nat);
		return hypha_tc_exit(skb, ret, HYPHA_HOOK_TO_NETDEV, &p, 0);
	}
	__builtin_memset(&nat, 0, sizeof(nat));
	hypha_tc_note_host(skb, &p, cfg, now);
	if ((skb->mark & HYPHA_MARK_FROM_PROXY) && p.proto == IPPROTO_TCP && cfg && (cfg->flags & HYPHA_CFG_L7))
		hypha_tc_note_upstream(&p, cfg->policy_generation);
	ret = hypha_masq_egress(&p, cfg, &nat, now);
	if (ret == HYPHA_LB_NAT)
		ret = hypha_tc_nat4(skb, &p, &nat);
	return hypha_tc_exit(skb, ret, HYPHA_HOOK_TO_NETDEV, &p, 0);
}

#endif /* HYPHA_LIB_TC_H */
