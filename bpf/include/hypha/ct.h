/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking for translated flows.
 *
 * A translated flow owns two entries:
 *  - SERVICE, keyed by the client's original tuple (client -> frontend),
 *    remembers the backend so every packet of the flow goes to the same one;
 *  - REPLY, keyed by the reply tuple as the backend sends it
 *    (backend -> client), holds the frontend to restore as the source.
 * Both carry their own translation, so a flow survives its backend being
 * removed or its Service changing, as it does under kube-proxy's conntrack. */
#ifndef HYPHA_CT_H
#define HYPHA_CT_H

#include "compiler.h"

enum __attribute__((packed)) hypha_ct_dir {
	HYPHA_CT_SERVICE = 1,
	HYPHA_CT_REPLY = 2,
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
	HYPHA_CT_F_HAIRPIN = 1 << 1,	/* client is its own backend: source rewritten to the loopback address */
	HYPHA_CT_F_EXTERNAL = 1 << 2,	/* created by traffic from outside the node */
	HYPHA_CT_F_SEEN_NON_SYN = 1 << 3,	/* handshake went on: established lifetime */
	HYPHA_CT_F__WIDTH = 0xff,
};
_Static_assert(sizeof(enum hypha_ct_flags) == 1, "ct flags are one byte");

struct hypha_ct4_entry {
	hypha_ip4_t nat_addr;		/* SERVICE: backend address; REPLY: frontend address */
	hypha_ip4_t nat_addr2;		/* hairpin: SERVICE: loopback source; REPLY: client address */
	__be16 nat_port;		/* SERVICE: backend port; REPLY: frontend port */
	enum hypha_ct_flags flags;
	__u8 pad;
	__u32 svc_id;
	__u32 backend_id;
	__u32 expires;			/* seconds, bpf_ktime_get_coarse_ns() based */
};
HYPHA_ASSERT_SIZE(struct hypha_ct4_entry, 24);

/* Lifetimes in seconds (Cilium's defaults). */
#define HYPHA_CT_LIFETIME_TCP_SYN	60
#define HYPHA_CT_LIFETIME_TCP		21600
#define HYPHA_CT_LIFETIME_TCP_CLOSING	10
#define HYPHA_CT_LIFETIME_NONTCP	60

#endif /* HYPHA_CT_H */
