/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Source ports for source NAT (masquerade, clashing tuples): chosen from the
 * configured range (outside the NodePort and ephemeral ranges) and claimed by
 * creating the reply-side conntrack entry with BPF_NOEXIST, so two CPUs can
 * never hand one port to two flows. */
#ifndef HYPHA_LIB_SNAT_H
#define HYPHA_LIB_SNAT_H

#include "hypha/maps.h"
#include "ct.h"

static __always_inline __u16 hypha_snat_port(const struct hypha_config *cfg, __u32 h, __u32 i)
{
	__u32 min = HYPHA_SNAT_PORT_MIN, max = HYPHA_SNAT_PORT_MAX, min2 = 0, n1, n2 = 0, k;

	if (cfg && cfg->snat_port_min && cfg->snat_port_max >= cfg->snat_port_min) {
		min = cfg->snat_port_min;
		max = cfg->snat_port_max;
		if (cfg->snat_port_min2 && cfg->snat_port_max2 >= cfg->snat_port_min2) {
			min2 = cfg->snat_port_min2;
			n2 = cfg->snat_port_max2 - min2 + 1;
		}
	}
	n1 = max - min + 1;
	/* One sequence over both runs, as if they were one. */
	k = (h + i * 7919) % (n1 + n2);
	return k < n1 ? min + k : min2 + (k - n1);
}

/* Does a claim hold the same translation (the same flow's)? */
static __always_inline int hypha_ct_same_mapping(const struct hypha_ct4_entry *a, const struct hypha_ct4_entry *b)
{
	return a->nat_addr == b->nat_addr && a->nat_port == b->nat_port &&
	       a->nat_addr2 == b->nat_addr2 && a->nat_port2 == b->nat_port2;
}

/* Claim a port: key is the reply-side entry with everything but dport set;
 * dport is varied over the range from hash h (the same flow tries the same
 * ports in the same order, so it finds its own claim first). A timed-out
 * holder of a port is removed first; a claim holding the same translation
 * is this flow's and is reused. Returns 0 with key->dport the claimed port, or
 * -HYPHA_DROP_NAT_NO_PORT when every try is taken. */
static __always_inline int hypha_snat_claim(struct hypha_ct4_key *key, const struct hypha_ct4_entry *entry,
					    const struct hypha_config *cfg, __u32 h, __u32 now)
{
	struct hypha_ct4_entry *ct;
	__u32 i;

	for (i = 0; i < HYPHA_SNAT_TRIES; i++) {
		key->dport = bpf_htons(hypha_snat_port(cfg, h, i));
		ct = hypha_ct4_lookup(key);
		if (ct && hypha_ct_same_mapping(ct, entry)) {
			/* This flow's own earlier claim (a reopened or
			 * re-selected flow): keep its port. */
			if (!hypha_ct4_update(key, entry, BPF_EXIST))
				return 0;
			continue;
		}
		if (ct) {
			if (!hypha_ct_expired(ct, now))
				continue;
			hypha_ct4_delete(key);
		}
		if (!hypha_ct4_update(key, entry, BPF_NOEXIST))
			return 0;
	}
	return -HYPHA_DROP_NAT_NO_PORT;
}

#endif /* HYPHA_LIB_SNAT_H */
