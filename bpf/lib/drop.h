/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The one place a drop reason becomes a counter and, when enabled, an event. */
#ifndef HYPHA_LIB_DROP_H
#define HYPHA_LIB_DROP_H

#include "hypha/maps.h"
#include "parse.h"

/* identities: a policy drop's source and destination identity (0: none). */
static __always_inline void hypha_account_drop_ids(enum hypha_drop_reason reason, __u32 len,
						   enum hypha_hook hook, __u32 ifindex,
						   const struct hypha_pkt4 *p, __u32 svc_id,
						   __u32 src_identity, __u32 dst_identity)
{
	__u32 key = reason;
	struct hypha_drop_counter *c;
	struct hypha_config *cfg;
	struct hypha_drop_event *e;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&hypha_drops_v1, &key);
	if (c) {
		/* Per-CPU slot: no atomics needed. */
		c->packets++;
		c->bytes += len;
	}

	cfg = bpf_map_lookup_elem(&hypha_config_v4, &zero);
	if (!cfg || !(cfg->flags & HYPHA_CFG_DROP_EVENTS))
		return;
	e = bpf_ringbuf_reserve(&hypha_events_v1, sizeof(*e), 0);
	if (!e) {
		/* Ring full: count the event that was not written (events
		 * only: keeping len live past the reserve costs stack that
		 * from_pod does not have). */
		c = bpf_map_lookup_elem(&hypha_events_lost_v1, &zero);
		if (c)
			c->packets++;
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->reason = reason;
	e->ifindex = ifindex;
	e->saddr = p ? p->saddr : 0;
	e->daddr = p ? p->daddr : 0;
	e->sport = p ? p->sport : 0;
	e->dport = p ? p->dport : 0;
	e->proto = p ? p->proto : 0;
	e->hook = hook;
	e->pad = 0;
	e->svc_id = svc_id;
	e->src_identity = src_identity;
	e->dst_identity = dst_identity;
	e->pad2 = 0;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void hypha_account_drop(enum hypha_drop_reason reason, __u32 len,
					       enum hypha_hook hook, __u32 ifindex,
					       const struct hypha_pkt4 *p, __u32 svc_id)
{
	hypha_account_drop_ids(reason, len, hook, ifindex, p, svc_id, 0, 0);
}

#endif /* HYPHA_LIB_DROP_H */
