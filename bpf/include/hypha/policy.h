/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* NetworkPolicy in the datapath (bpf/lib/policy.h enforces it; the agent's
 * src/datapath/policy-maps.ts writes these maps from src/policy's output).
 *
 * - hypha_policy_eps: a pod on this node -> its identity and which
 *   directions are enforced (default deny). A pod without an entry, or with
 *   a direction's flag clear, is open in that direction.
 * - hypha_policy: one LPM trie for every pod of this node. A key names the
 *   pod, the peer's identity (0: any peer) and the direction in full, then
 *   the protocol and destination port as a prefix: prefixlen 72 matches
 *   every protocol and port, 80 every port of one protocol, 80 + n the ports
 *   whose first n bits are dport's (a port range is a few such prefixes).
 *   A packet is allowed when a lookup with the peer's identity, its CIDR
 *   identity or 0 finds an entry.
 * - hypha_policy_cidr: ipBlock prefixes -> their node-local CIDR identity
 *   (an LPM of its own: a pod's /32 in the ipcache must not hide the blocks
 *   its address lies in).
 * Allowed flows are remembered in the conntrack map (HYPHA_CT_POLICY) with
 * the config's policy_generation; their replies pass without a lookup. */
#ifndef HYPHA_POLICY_H
#define HYPHA_POLICY_H

#include "compiler.h"

enum __attribute__((packed)) hypha_policy_dir {
	HYPHA_POLICY_INGRESS = 1,
	HYPHA_POLICY_EGRESS = 2,
};
_Static_assert(sizeof(enum hypha_policy_dir) == 1, "policy dir is one byte");

/* The prefixlen of a key that matches every protocol (and port), every port
 * of its protocol, and one exact port. */
#define HYPHA_POLICY_PREFIX_ANY_PROTO	72
#define HYPHA_POLICY_PREFIX_ANY_PORT	80
#define HYPHA_POLICY_PREFIX_FULL	96

struct hypha_policy_key {
	__u32 prefixlen;
	hypha_ip4_t ep_addr;		/* the pod on this node the entry belongs to */
	__u32 identity;			/* peer identity; 0 matches every peer */
	enum hypha_policy_dir dir;
	__u8 proto;			/* IPPROTO_TCP, _UDP, _SCTP (prefix) */
	__be16 dport;			/* destination port (prefix) */
};
HYPHA_ASSERT_SIZE(struct hypha_policy_key, 16);

enum __attribute__((packed)) hypha_policy_flags {
	HYPHA_POLICY_F_ALLOW = 1 << 0,
	HYPHA_POLICY_F__WIDTH = 0xff,
};
_Static_assert(sizeof(enum hypha_policy_flags) == 1, "policy flags are one byte");

struct hypha_policy_val {
	enum hypha_policy_flags flags;
	__u8 pad;
	__be16 proxy_port;		/* L7: the local proxy port for the flow; 0 none */
};
HYPHA_ASSERT_SIZE(struct hypha_policy_val, 4);

enum __attribute__((packed)) hypha_policy_ep_flags {
	HYPHA_POLICY_EP_INGRESS = 1 << 0,	/* ingress enforced: default deny */
	HYPHA_POLICY_EP_EGRESS = 1 << 1,	/* egress enforced: default deny */
	HYPHA_POLICY_EP_F__WIDTH = 0xff,
};
_Static_assert(sizeof(enum hypha_policy_ep_flags) == 1, "policy ep flags are one byte");

struct hypha_policy_ep {
	__u32 identity;			/* the pod's own security identity */
	enum hypha_policy_ep_flags flags;
	__u8 pad[3];
};
HYPHA_ASSERT_SIZE(struct hypha_policy_ep, 8);

struct hypha_policy_cidr_val {
	__u32 identity;			/* CIDR identity (1 << 24 and up) */
};
HYPHA_ASSERT_SIZE(struct hypha_policy_cidr_val, 4);

#endif /* HYPHA_POLICY_H */
