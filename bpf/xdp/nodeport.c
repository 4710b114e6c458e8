/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* XDP on the node's external device: NodePort, ExternalIP and LoadBalancer-IP
 * traffic from outside to a backend on this node is translated before the
 * stack sees it, and refused with an ICMP answer sent straight back out
 * (XDP_TX) when a Service has no backend. Flows to a backend on another node,
 * and everything else, are passed on untouched (the tc program next to it
 * handles the former). */
#include "lib/lb.h"
#include "lib/nat.h"
#include "lib/icmp.h"
#include "lib/drop.h"
#include "lib/frag.h"

static __always_inline int hypha_xdp_exit(struct xdp_md *ctx, int ret, const struct hypha_pkt4 *p,
					  __u32 svc_id)
{
	__u32 len = ctx->data_end - ctx->data;
	enum hypha_drop_reason reason;
	int verdict;

	if (ret >= 0)
		return XDP_PASS;
	reason = -ret;
	if (hypha_drop_is_reject(reason) && p && hypha_icmp_answerable(p->saddr)) {
		/* one packet, one reason (see hypha_tc_exit) */
		verdict = hypha_xdp_reject4(ctx, p);
		hypha_account_drop(verdict < 0 ? -verdict : reason, len, HYPHA_HOOK_XDP, ctx->ingress_ifindex, p, svc_id);
		return verdict < 0 ? XDP_DROP : verdict;
	}
	hypha_account_drop(reason, len, HYPHA_HOOK_XDP, ctx->ingress_ifindex, p, svc_id);
	return XDP_DROP;
}

SEC("xdp")
int hypha_xdp_nodeport(struct xdp_md *ctx)
{
	const struct hypha_config *cfg;
	struct hypha_nat4 nat = {};
	struct hypha_pkt4 p = {};
	__u32 now, zero = 0;
	int ret;

	ret = hypha_parse4((void *)(long)ctx->data, (void *)(long)ctx->data_end, &p);
	if (ret == HYPHA_PARSE_NOT_IPV4)
		return XDP_PASS;
	if (ret < 0)
		return hypha_xdp_exit(ctx, ret, NULL, 0);

	/* No hairpin from outside: the client is never its own backend. A flow
	 * to a backend on another node is left to the tc program (PUNT): it can
	 * forward the source-NATed packet past the stack. */
	/* VLAN-tagged frames belong to a VLAN device on top of this one (tc
	 * leaves them alone too); ICMP errors are translated by tc. */
	if (p.icmp_err)
		return XDP_PASS;
	hypha_frag_track(&p);
	now = hypha_now();
	cfg = bpf_map_lookup_elem(&hypha_config_v4, &zero);
	ret = hypha_lb4_established(&p, &nat, now, 1, cfg);
	/* A reply of a flow tc forwards (or of the node's own connection) is
	 * never a new flow, whatever port it comes to. */
	if (ret == HYPHA_LB_PASS && hypha_lb4_is_reply(&p, now))
		return XDP_PASS;
	if (ret == HYPHA_LB_PASS)
		ret = hypha_lb4_new_flow(&p, HYPHA_SCOPE_EXTERNAL, 0, 0, HYPHA_LB_PUNT_REMOTE, cfg, &nat, now);
	if (ret == HYPHA_LB_PUNT)
		return XDP_PASS;
	if (ret == HYPHA_LB_NAT)
		ret = hypha_xdp_nat4(ctx, &p, &nat);
	return hypha_xdp_exit(ctx, ret, &p, nat.svc_id);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
