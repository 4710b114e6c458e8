/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Fragments of TCP and UDP datagrams (see hypha/frag.h): the first fragment
 * seen records its ports; a later one takes them from there, so every hook
 * translates every fragment of a datagram as its flow. A later fragment that
 * arrives before its first (reordered) or whose first was lost keeps
 * frag_ports 0: it has no ports, and is treated as such. */
#ifndef HYPHA_LIB_FRAG_H
#define HYPHA_LIB_FRAG_H

#include "hypha/maps.h"
#include "parse.h"

static __always_inline void hypha_frag_track(struct hypha_pkt4 *p)
{
	struct hypha_frag4_key k;
	struct hypha_frag4_ports *v, ports;

	if (p->frag == HYPHA_FRAG_NONE || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP))
		return;
	k.saddr = p->saddr;
	k.daddr = p->daddr;
	k.id = p->ip_id;
	k.proto = p->proto;
	k.pad = 0;
	if (p->frag == HYPHA_FRAG_FIRST) {
		ports.sport = p->sport;
		ports.dport = p->dport;
		bpf_map_update_elem(&hypha_frag4_v1, &k, &ports, BPF_ANY);
		return;
	}
	v = bpf_map_lookup_elem(&hypha_frag4_v1, &k);
	if (!v)
		return;
	p->sport = v->sport;
	p->dport = v->dport;
	p->frag_ports = 1;
}

#endif /* HYPHA_LIB_FRAG_H */
