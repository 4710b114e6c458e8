/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Drop reasons, per-reason counters and drop events.
 *
 * Codes are append-only: a code's meaning never changes, because counters in
 * pinned maps and tools reading old events keep using it. A "reject" reason
 * is a packet answered with ICMP port unreachable instead of forwarded. */
#ifndef HYPHA_DROP_H
#define HYPHA_DROP_H

#include "compiler.h"

enum hypha_drop_reason {
	HYPHA_DROP_INVALID_PACKET = 1,		/* truncated or malformed header */
	HYPHA_DROP_FRAG_NOT_SUPPORTED = 2,	/* IP fragment of a Service flow */
	HYPHA_DROP_NO_BACKEND = 3,		/* reject: the Service has no ready backend */
	HYPHA_DROP_NO_LOCAL_BACKEND = 4,	/* reject: traffic policy Local, no backend on this node */
	HYPHA_DROP_UNKNOWN_SERVICE_PORT = 5,	/* reject: Service address, port not served */
	HYPHA_DROP_UNSUPPORTED_L4 = 6,		/* protocol other than TCP/UDP to a Service address */
	HYPHA_DROP_SLOT_MISSING = 7,		/* master counts a slot that is absent (map inconsistent) */
	HYPHA_DROP_BACKEND_MISSING = 8,		/* slot names a backend that is absent (map inconsistent) */
	HYPHA_DROP_CT_CREATE_FAILED = 9,	/* conntrack entry could not be written */
	HYPHA_DROP_NAT_FAILED = 10,		/* packet rewrite helper failed */
	HYPHA_DROP_REJECT_FAILED = 11,		/* ICMP answer could not be built (counted instead of the reason it answers) */
	HYPHA_DROP_NAT_NO_PORT = 12,		/* no free source port for a source NAT (clashing tuple, masquerade) */
	HYPHA_DROP_NO_SNAT_ADDR = 13,		/* outside traffic to a backend on another node, no node address to source it from */
	HYPHA_DROP_FIB_FAILED = 14,		/* no route to forward a packet to another node or back out */
	HYPHA_DROP_FRAG_NOT_FOUND = 15,		/* later fragment of a Service flow whose first fragment was not seen (lost or out of order) */
	HYPHA_DROP_FRAG_NEEDED = 16,		/* answered with ICMP fragmentation needed (or dropped without DF): too big for the next hop */
	HYPHA_DROP_POLICY_EGRESS = 17,		/* NetworkPolicy: the source pod's egress policy allows no such flow */
	HYPHA_DROP_POLICY_INGRESS = 18,		/* NetworkPolicy: the destination pod's ingress policy allows no such flow */
	HYPHA_DROP_PROXY_UNAVAILABLE = 19,	/* L7: an HTTP rule covers the flow and no proxy listens: refused */
	HYPHA_DROP_PROXY_NOT_REDIRECTED = 20,	/* L7: an HTTP rule covers the flow where it cannot be given to
						 * the proxy (to_pod: a client on another node): dropped */
	HYPHA_DROP_MAX = 255,
};

/* Reasons answered with ICMP destination unreachable (port unreachable),
 * like kube-proxy's REJECT rules: the client fails at once. A source no ICMP
 * error may go to (broadcast, multicast, 0/8, loopback) gets no answer: the
 * packet is dropped under the same reason. */
static __always_inline int hypha_drop_is_reject(enum hypha_drop_reason r)
{
	return r == HYPHA_DROP_NO_BACKEND || r == HYPHA_DROP_NO_LOCAL_BACKEND ||
	       r == HYPHA_DROP_UNKNOWN_SERVICE_PORT || r == HYPHA_DROP_PROXY_UNAVAILABLE;
}

/* Reasons answered with ICMP fragmentation needed (path-MTU discovery). */
static __always_inline int hypha_drop_is_frag_needed(enum hypha_drop_reason r)
{
	return r == HYPHA_DROP_FRAG_NEEDED;
}

/* Attachment point that saw the packet. */
enum __attribute__((packed)) hypha_hook {
	HYPHA_HOOK_FROM_POD = 1,	/* tc ingress, pod's host-side veth */
	HYPHA_HOOK_TO_POD = 2,		/* tc egress, pod's host-side veth */
	HYPHA_HOOK_FROM_NETDEV = 3,	/* tc ingress, node's external device */
	HYPHA_HOOK_XDP = 4,		/* xdp, node's external device */
	HYPHA_HOOK_TO_NETDEV = 5,	/* tc egress, node's external device */
	HYPHA_HOOK__WIDTH = 0xff,
};
_Static_assert(sizeof(enum hypha_hook) == 1, "hook is one byte");

struct hypha_drop_counter {
	__u64 packets;
	__u64 bytes;
};
HYPHA_ASSERT_SIZE(struct hypha_drop_counter, 16);

/* Written to the events ring buffer when HYPHA_CFG_DROP_EVENTS is set. */
struct hypha_drop_event {
	__u64 ts_ns;
	enum hypha_drop_reason reason;
	__u32 ifindex;
	hypha_ip4_t saddr;
	hypha_ip4_t daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	enum hypha_hook hook;
	__u16 pad;
	__u32 svc_id;
	/* Policy drops: the identities of the packet's source and destination
	 * (after Service translation, daddr/dport are the backend's); 0 otherwise. */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 pad2;
};
HYPHA_ASSERT_SIZE(struct hypha_drop_event, 48);

#endif /* HYPHA_DROP_H */
