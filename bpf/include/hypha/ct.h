/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking for translated flows.
 *
 * A translated flow owns two entries:
 *  - SERVICE, keyed by the client's original tuple (client -> frontend),
 *    remembers the backend so every packet of the flow goes to the same one;
 *  - REPLY, keyed by the reply tuple as the backend sends it
 *    (backend -> client), holds the frontend to restore as the source.
 * Both carry their own translation, so a flow survives its backend being
 * removed or its Service changing, as it does under kube-proxy's conntrack.
 *
 * A flow may also need its source rewritten (source NAT): a pod reaching
 * itself through a Service (address -> loopback), or a client port that
 * another live flow already uses towards the same backend (port -> a free
 * one, as netfilter's NAT does on a tuple clash). The SERVICE entry then says
 * what the source becomes; the REPLY entry, keyed by that new source, says
 * what the destination goes back to.
 *
 * Masquerade (pod traffic leaving the cluster) owns two entries of its own:
 * MASQ_OUT keyed by the pod's tuple (nat_addr2/nat_port2: the node address and
 * port it leaves with) and MASQ_IN keyed by the reply tuple towards that
 * node address and port (nat_addr/nat_port: the pod's address and port). The
 * MASQ_IN entry is the port's claim: it is created with BPF_NOEXIST. */
#ifndef HYPHA_CT_H
#define HYPHA_CT_H

#include "compiler.h"

enum __attribute__((packed)) hypha_ct_dir {
	HYPHA_CT_SERVICE = 1,
	HYPHA_CT_REPLY = 2,
	HYPHA_CT_MASQ_OUT = 3,	/* pod -> outside, as the pod sent it: the source it gets */
	HYPHA_CT_MASQ_IN = 4,	/* outside -> node:port, as the reply arrives: the pod it goes to */
	HYPHA_CT_INBOUND = 5,	/* pod -> outside, keyed as the pod answers a flow the outside opened:
				 * its replies leave unmasqueraded */
	HYPHA_CT_HOST = 6,	/* outside -> node, keyed as the reply to the node's own connection
				 * from a port in the NodePort range arrives: not a NodePort flow */
	HYPHA_CT_POLICY = 7,	/* a flow policy allowed, keyed as its first packet passed the check
				 * (after Service translation): its replies pass (policy.h) */
};
_Static_assert(sizeof(enum hypha_ct_dir) == 1, "ct dir is one byte");

struct hypha_ct4_key {
	hypha_ip4_t saddr;
	hypha_ip4_t daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	enum hypha_ct_dir dir;
	__u16 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_ct4_key, 16);

enum __attribute__((packed)) hypha_ct_flags {
	HYPHA_CT_F_CLOSING = 1 << 0,	/* FIN or RST seen: short lifetime, a new SYN starts over */
	HYPHA_CT_F_SNAT_ADDR = 1 << 1,	/* source address rewritten (hairpin: the loopback address) */
	HYPHA_CT_F_EXTERNAL = 1 << 2,	/* created by traffic from outside the node */
	HYPHA_CT_F_SEEN_NON_SYN = 1 << 3,	/* handshake went on: established lifetime */
	HYPHA_CT_F_SNAT_PORT = 1 << 4,	/* source port rewritten (tuple clash) */
	HYPHA_CT_F_REMOTE = 1 << 5,	/* from outside to a backend on another node: source-NATed to
					 * this node and forwarded by FIB lookup, both ways */
	HYPHA_CT_F_PROXY = 1 << 6,	/* POLICY: an HTTP rule covers the flow: its packets go to the
					 * node's L7 proxy (nat_port: the proxy's port) */
	HYPHA_CT_F_PROXY_UPSTREAM = 1 << 7,	/* POLICY: the L7 proxy's own connection: its replies go
						 * to the proxy, not to the pod it speaks for */
	HYPHA_CT_F__WIDTH = 0xff,
};
_Static_assert(sizeof(enum hypha_ct_flags) == 1, "ct flags are one byte");

struct hypha_ct4_entry {
	hypha_ip4_t nat_addr;		/* SERVICE: backend address; REPLY: frontend address (new source) */
	hypha_ip4_t nat_addr2;		/* SNAT_ADDR: SERVICE: new source address; REPLY: client address (new destination) */
	__be16 nat_port;		/* SERVICE: backend port; REPLY: frontend port (new source port) */
	__be16 nat_port2;		/* SNAT_PORT: SERVICE: new source port; REPLY: client port (new destination port) */
	enum hypha_ct_flags flags;
	__u8 lb_gen;			/* SERVICE: low byte of the config's lb_generation when the backend was last checked */
	__u8 pol_gen;			/* POLICY: low byte of the config's policy_generation when the flow was last judged */
	__u8 pad;
	__u32 svc_id;
	__u32 backend_id;
	__u32 expires;			/* seconds, bpf_ktime_get_coarse_ns() based */
};
HYPHA_ASSERT_SIZE(struct hypha_ct4_entry, 28);

/* How many source ports a source NAT tries (see hypha_config's range). */
#define HYPHA_SNAT_TRIES	32

/* Lifetimes in seconds (Cilium's defaults). */
#define HYPHA_CT_LIFETIME_TCP_SYN	60
#define HYPHA_CT_LIFETIME_TCP		21600
#define HYPHA_CT_LIFETIME_TCP_CLOSING	10
#define HYPHA_CT_LIFETIME_NONTCP	60

#endif /* HYPHA_CT_H */
