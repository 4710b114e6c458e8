/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Runtime configuration the agent writes into the config map (one entry). */
#ifndef HYPHA_CONFIG_H
#define HYPHA_CONFIG_H

#include "compiler.h"

enum hypha_config_flags {
	HYPHA_CFG_DROP_EVENTS = 1 << 0,	/* send a ring-buffer event for every drop */
	HYPHA_CFG_HOST_ROUTING = 1 << 1,	/* deliver to local pods with bpf_redirect_peer */
	HYPHA_CFG_MASQUERADE = 1 << 2,	/* source-NAT pod traffic leaving the cluster to snat_addr */
	HYPHA_CFG_POLICY = 1 << 3,	/* track every pod flow and enforce NetworkPolicy (policy.h) */
	HYPHA_CFG_L7 = 1 << 4,		/* some policy entry names the L7 proxy: the external device
					 * steers its flows too (tc.h, hypha_tc_netdev_l7) */
};

/* skb->mark bit from_pod sets on every packet it has handled, so to_pod on
 * the same node skips a lookup from_pod already made. A mark never leaves the
 * node's network namespace: a veth scrubs it when the packet crosses into
 * another namespace, and it is not carried on a wire. The agent configures
 * the bit (seen_mark; another component may own this one); 0 in the config
 * means this default. */
#define HYPHA_MARK_SEEN 0x00400000

/* L7 redirection (src/l7/transparent.ts has the same numbers): packets
 * given to the node's proxy, or to its upstream sockets, carry TO_PROXY (a
 * routing rule delivers them locally); the proxy's own connections carry
 * FROM_PROXY (SO_MARK), so they are not redirected again. The proxy listens
 * on 127.0.0.1 at the port its policy entries name. */
#define HYPHA_MARK_TO_PROXY 0x00200000
#define HYPHA_MARK_FROM_PROXY 0x00100000
#define HYPHA_PROXY_ADDR 0x7f000001

/* The NodePort range when the config gives none (Kubernetes' default). */
#define HYPHA_NODEPORT_MIN 30000
#define HYPHA_NODEPORT_MAX 32767

/* Source NAT ports when the config gives none: above the default ephemeral
 * range (32768-60999) and the NodePort range (30000-32767). */
#define HYPHA_SNAT_PORT_MIN 61000
#define HYPHA_SNAT_PORT_MAX 65535

struct hypha_config {
	enum hypha_config_flags flags;
	/* Source address for hairpin flows (a pod reaching itself through a
	 * Service); Cilium's default is 169.254.42.1. 0 disables hairpin SNAT. */
	hypha_ip4_t loopback_addr;
	/* The node's address: the source of traffic from outside that is
	 * forwarded to a backend on another node, so the reply comes back here.
	 * 0: such traffic is dropped (HYPHA_DROP_NO_SNAT_ADDR). It is also
	 * the address pod traffic leaving the cluster is masqueraded to. */
	hypha_ip4_t snat_addr;
	/* Source ports a source NAT may give a flow (masquerade, a clashing
	 * tuple, outside traffic to another node): the agent picks them
	 * outside the NodePort range and the node's ephemeral range, so a
	 * translated flow never takes a port the node's own sockets or a
	 * NodePort use. 0, 0: HYPHA_SNAT_PORT_MIN/MAX. */
	__u16 snat_port_min;
	__u16 snat_port_max;
	/* The cluster's NodePort range: a source port in it is never kept by
	 * a source NAT (the reply would look like a new NodePort flow), and
	 * the node's own connections from such ports are tracked so their
	 * replies are not taken for one. 0, 0: HYPHA_NODEPORT_MIN/MAX. */
	__u16 nodeport_min;
	__u16 nodeport_max;
	/* The skb->mark bit(s) of HYPHA_MARK_SEEN; 0: that default. */
	__u32 seen_mark;
	/* Bumped by the agent after every change to the load-balancer maps: a
	 * flow whose conntrack entry was checked under another generation
	 * re-checks that its backend still serves it (lb.h). */
	__u32 lb_generation;
	/* A second run of source-NAT ports (0, 0: none): the agent gives the
	 * free runs on both sides of the NodePort and ephemeral ranges, so a
	 * busy client's clashing tuples do not run out of ports. */
	__u16 snat_port_min2;
	__u16 snat_port_max2;
	/* Bumped by the agent after every change to the policy maps: an open
	 * flow whose verdict was stored under another generation is judged
	 * again at its next packet (a policy that now denies it stops it). */
	__u32 policy_generation;
	__u32 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_config, 40);

#endif /* HYPHA_CONFIG_H */
