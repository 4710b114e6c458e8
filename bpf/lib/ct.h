/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack helpers: lifetimes from TCP flags, lazy expiry, refresh that only
 * writes when something changed (a write per packet would bounce the entry's
 * cache line between CPUs). Stale entries are also evicted by the LRU map. */
#ifndef HYPHA_LIB_CT_H
#define HYPHA_LIB_CT_H

#include "hypha/maps.h"
#include "parse.h"
#include "time.h"

/* The conntrack map in use, or the previous one during a growth (slot 1). */
static __always_inline void *hypha_ct4_map(__u32 slot)
{
	return bpf_map_lookup_elem(&hypha_ct4_maps_v1, &slot);
}

/* A flow's entry: in the map in use, else (a growth is carrying the flows
 * over) in the previous one. */
static __always_inline struct hypha_ct4_entry *hypha_ct4_lookup(const struct hypha_ct4_key *key)
{
	struct hypha_ct4_entry *e;
	void *map = hypha_ct4_map(0);

	if (!map)
		return NULL;
	e = bpf_map_lookup_elem(map, key);
	if (e)
		return e;
	map = hypha_ct4_map(1);
	return map ? bpf_map_lookup_elem(map, key) : NULL;
}

/* Write into the map in use. During a growth the previous map counts too:
 * BPF_NOEXIST fails for a key it holds (a source port one of its flows has),
 * BPF_EXIST succeeds for one. */
static __always_inline long hypha_ct4_update(const struct hypha_ct4_key *key,
					     const struct hypha_ct4_entry *entry, __u64 flags)
{
	void *map = hypha_ct4_map(0), *prev;

	if (!map)
		return -1;
	prev = hypha_ct4_map(1);
	if (prev && flags != BPF_ANY && bpf_map_lookup_elem(prev, key)) {
		if (flags == BPF_NOEXIST)
			return -17; /* EEXIST */
		flags = BPF_ANY;
	}
	return bpf_map_update_elem(map, key, entry, flags);
}

/* Delete from the map in use and, during a growth, the previous one
 * (a flow ended must not come back with the carry-over). 0: one held it. */
static __always_inline long hypha_ct4_delete(const struct hypha_ct4_key *key)
{
	void *map = hypha_ct4_map(0), *prev = hypha_ct4_map(1);
	long r = map ? bpf_map_delete_elem(map, key) : -1;

	if (prev && !bpf_map_delete_elem(prev, key))
		r = 0;
	return r;
}

static __always_inline __u8 hypha_ct_next_flags(__u8 flags, const struct hypha_pkt4 *p)
{
	if (p->proto != IPPROTO_TCP)
		return flags;
	if (p->tcp_flags & (HYPHA_TCP_FIN | HYPHA_TCP_RST))
		flags |= HYPHA_CT_F_CLOSING;
	if (!(p->tcp_flags & HYPHA_TCP_SYN))
		flags |= HYPHA_CT_F_SEEN_NON_SYN;
	return flags;
}

static __always_inline __u32 hypha_ct_lifetime(__u8 proto, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return HYPHA_CT_LIFETIME_NONTCP;
	if (flags & HYPHA_CT_F_CLOSING)
		return HYPHA_CT_LIFETIME_TCP_CLOSING;
	if (flags & HYPHA_CT_F_SEEN_NON_SYN)
		return HYPHA_CT_LIFETIME_TCP;
	return HYPHA_CT_LIFETIME_TCP_SYN;
}

static __always_inline int hypha_ct_expired(const struct hypha_ct4_entry *e, __u32 now)
{
	return (__s32)(e->expires - now) < 0;
}

/* An open flow: not timed out, and no FIN or RST seen. */
static __always_inline int hypha_ct_live(const struct hypha_ct4_entry *e, __u32 now)
{
	return !hypha_ct_expired(e, now) && !(e->flags & HYPHA_CT_F_CLOSING);
}

/* A SYN without ACK on a closing entry is a new connection reusing the tuple. */
static __always_inline int hypha_ct_is_reopen(const struct hypha_ct4_entry *e,
					      const struct hypha_pkt4 *p)
{
	return p->proto == IPPROTO_TCP && (e->flags & HYPHA_CT_F_CLOSING) &&
	       (p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) == HYPHA_TCP_SYN;
}

/* A SYN-ACK on a closing reply entry answers a connection that reused the
 * tuple (a reopened Service flow would have renewed the entry first). */
static __always_inline int hypha_ct_is_reused_reply(const struct hypha_ct4_entry *e,
						    const struct hypha_pkt4 *p)
{
	return p->proto == IPPROTO_TCP && (e->flags & HYPHA_CT_F_CLOSING) &&
	       (p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) == (HYPHA_TCP_SYN | HYPHA_TCP_ACK);
}

/* Store what a packet makes of an entry, writing only what changed. */
static __always_inline void hypha_ct_store(struct hypha_ct4_entry *e, __u8 flags, __u32 expires)
{
	if (flags != e->flags)
		e->flags = flags;
	if (expires != e->expires)
		e->expires = expires;
}

static __always_inline void hypha_ct_refresh(struct hypha_ct4_entry *e,
					     const struct hypha_pkt4 *p, __u32 now)
{
	__u8 flags = hypha_ct_next_flags(e->flags, p);

	hypha_ct_store(e, flags, now + hypha_ct_lifetime(p->proto, flags));
}

static __always_inline void hypha_ct_key4(struct hypha_ct4_key *k, hypha_ip4_t saddr,
					  hypha_ip4_t daddr, __be16 sport, __be16 dport,
					  __u8 proto, enum hypha_ct_dir dir)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->dir = dir;
	k->pad = 0;
}

#endif /* HYPHA_LIB_CT_H */
