/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Service translation decisions. Pure map logic over a parsed packet: the
 * caller applies the resulting rewrite with its own context's helpers (see
 * nat.h), so XDP and TC share every decision.
 *
 * Forward (client -> frontend): find the frontend, keep the flow on the
 * backend conntrack remembers, or pick one (session affinity, then a hash of
 * the flow over the selectable slots) and record the flow both ways.
 * Reverse (backend -> client): restore the frontend as the source. */
#ifndef HYPHA_LIB_LB_H
#define HYPHA_LIB_LB_H

#include "hypha/maps.h"
#include "parse.h"
#include "ct.h"
#include "time.h"
#include "snat.h"

enum {
	HYPHA_LB_PASS = 0,	/* not Service traffic */
	HYPHA_LB_NAT = 1,	/* rewrite as described by struct hypha_nat4 */
	HYPHA_LB_PUNT = 2,	/* XDP: leave it to the tc program (a flow to another node) */
};

/* hypha_lb4_new_flow modes, by attachment point. */
enum {
	HYPHA_LB_PUNT_REMOTE = 1 << 0,	/* XDP: punt outside traffic whose backend is on another node */
	HYPHA_LB_SNAT_REMOTE = 1 << 1,	/* tc on the external device: source-NAT and forward it */
};

enum {
	HYPHA_NAT_SADDR = 1 << 0,
	HYPHA_NAT_SPORT = 1 << 1,
	HYPHA_NAT_DADDR = 1 << 2,
	HYPHA_NAT_DPORT = 1 << 3,
};

struct hypha_nat4 {
	hypha_ip4_t saddr;
	hypha_ip4_t daddr;
	__be16 sport;
	__be16 dport;
	__u32 what;
	__u32 svc_id;
	__u32 forward;	/* route the rewritten packet ourselves (FIB lookup), not the stack */
};

static __always_inline const struct hypha_lb4_svc_val *
hypha_lb4_lookup(hypha_ip4_t addr, __be16 port, __u8 proto, enum hypha_lb_scope scope, __u16 slot)
{
	struct hypha_lb4_svc_key k = {
		.addr = addr, .dport = port, .proto = proto, .scope = scope, .slot = slot, .pad = 0,
	};

	return bpf_map_lookup_elem(&hypha_lb4_services_v1, &k);
}

/* Is this address a Service's own (ClusterIP, ExternalIP, LoadBalancer IP)? */
static __always_inline int hypha_lb4_is_vip(hypha_ip4_t addr)
{
	return hypha_lb4_lookup(addr, 0, 0, HYPHA_SCOPE_INTERNAL, 0) != NULL;
}

/* Flow hash for slot selection. Deterministic, so a flow whose conntrack
 * entry was evicted lands on the same backend while the set is unchanged.
 * (murmur3's finaliser over the folded tuple.) */
static __always_inline __u32 hypha_lb4_hash(const struct hypha_pkt4 *p)
{
	__u32 h = p->saddr * 0x9e3779b1u;

	h ^= p->daddr + 0x7f4a7c15u + (h << 6) + (h >> 2);
	h ^= (((__u32)p->sport << 16) | p->dport) + 0x165667b1u + (h << 6) + (h >> 2);
	h ^= p->proto;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static __always_inline const struct hypha_lb4_backend *
hypha_lb4_affinity_backend(const struct hypha_pkt4 *p, const struct hypha_lb4_svc_val *svc,
			   __u32 now, __u32 *backend_id)
{
	struct hypha_lb4_affinity_key ak = { .client = p->saddr, .svc_id = svc->svc_id };
	struct hypha_lb4_affinity_val *av;
	const struct hypha_lb4_backend *b;

	av = bpf_map_lookup_elem(&hypha_lb4_affinity_v1, &ak);
	if (!av || now - av->last_used > svc->affinity_timeout)
		return NULL;
	b = bpf_map_lookup_elem(&hypha_lb4_backends_v1, &av->backend_id);
	/* Still this frontend's, and still taking new flows? */
	if (!b || b->svc_id != svc->svc_id)
		return NULL;
	if ((b->flags & HYPHA_BACKEND_F_TERMINATING) &&
	    !(svc->flags & HYPHA_SVC_F_TERMINATING_FALLBACK))
		return NULL;
	if ((svc->flags & HYPHA_SVC_F_LOCAL_ONLY) && !(b->flags & HYPHA_BACKEND_F_LOCAL))
		return NULL;
	*backend_id = av->backend_id;
	return b;
}

static __always_inline void hypha_lb4_affinity_record(const struct hypha_pkt4 *p, __u32 svc_id,
						      __u32 backend_id, __u32 now)
{
	struct hypha_lb4_affinity_key ak = { .client = p->saddr, .svc_id = svc_id };
	struct hypha_lb4_affinity_val av = { .backend_id = backend_id, .last_used = now };

	bpf_map_update_elem(&hypha_lb4_affinity_v1, &ak, &av, BPF_ANY);
}

/* The source rewrite a SERVICE entry carries, if any. */
static __always_inline void hypha_lb4_snat(const struct hypha_ct4_entry *ct, struct hypha_nat4 *nat)
{
	if (ct->flags & HYPHA_CT_F_SNAT_ADDR) {
		nat->saddr = ct->nat_addr2;
		nat->what |= HYPHA_NAT_SADDR;
	}
	if (ct->flags & HYPHA_CT_F_SNAT_PORT) {
		nat->sport = ct->nat_port2;
		nat->what |= HYPHA_NAT_SPORT;
	}
}

/* The reply entry of a flow, from its SERVICE entry (key: the client's tuple). */
static __always_inline void hypha_lb4_reply_key(struct hypha_ct4_key *k, const struct hypha_pkt4 *p,
						const struct hypha_ct4_entry *ct)
{
	hypha_ct_key4(k, ct->nat_addr, (ct->flags & HYPHA_CT_F_SNAT_ADDR) ? ct->nat_addr2 : p->saddr,
		      ct->nat_port, ct->nat_port2, p->proto, HYPHA_CT_REPLY);
}

/* Is the backend a flow was sent to still the right one for a packet of it?
 * It may have left the Service, the Service may be gone (its backends go
 * with it), or its address may now belong to another Service (another
 * frontend id): then the flow is re-selected, as Cilium does. A backend
 * that is only terminating keeps its open flows, but a new connection on
 * the tuple (a SYN) goes elsewhere. (Backends are per frontend: their ids
 * are never shared between Services, and a reused id names another pod.) */
static __always_inline int hypha_lb4_backend_valid(const struct hypha_ct4_entry *ct, const struct hypha_pkt4 *p)
{
	const struct hypha_lb4_backend *b;
	__u32 id = ct->backend_id;

	b = bpf_map_lookup_elem(&hypha_lb4_backends_v1, &id);
	if (!b || b->svc_id != ct->svc_id || b->addr != ct->nat_addr || b->port != ct->nat_port)
		return 0;
	if ((b->flags & HYPHA_BACKEND_F_TERMINATING) && p->proto == IPPROTO_TCP &&
	    (p->tcp_flags & (HYPHA_TCP_SYN | HYPHA_TCP_ACK)) == HYPHA_TCP_SYN)
		return 0;
	return 1;
}

/* A FIN or RST seen by one of a flow's entries closes the other too: each
 * entry sees only its own direction, and a reply entry left open would keep
 * its tuple for the established lifetime after the flow is gone. */
static __always_inline void hypha_ct_close_peer(const struct hypha_ct4_key *k, const struct hypha_pkt4 *p,
						__u32 now)
{
	struct hypha_ct4_entry *peer = hypha_ct4_lookup(k);

	if (peer)
		hypha_ct_refresh(peer, p, now);
}

static __always_inline int hypha_ct_closes(const struct hypha_pkt4 *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (HYPHA_TCP_FIN | HYPHA_TCP_RST));
}

/* An established flow of a Service: the backend conntrack recorded, while
 * that backend still serves it (hypha_lb4_backend_valid); otherwise the old
 * reply entry goes and the packet is handled as a new flow. Packets with
 * ports: whole datagrams, first fragments, and later fragments whose first
 * was seen. */
static __always_inline int hypha_lb4_established(const struct hypha_pkt4 *p, struct hypha_nat4 *nat, __u32 now,
						 int punt_remote, const struct hypha_config *cfg)
{
	struct hypha_ct4_entry *ct;
	struct hypha_ct4_key key, rkey;
	__u8 gen = cfg ? (__u8)cfg->lb_generation : 0, flags;
	__u32 expires;

	if (!hypha_has_ports(p))
		return HYPHA_LB_PASS;
	hypha_ct_key4(&key, p->saddr, p->daddr, p->sport, p->dport, p->proto, HYPHA_CT_SERVICE);
	ct = hypha_ct4_lookup(&key);
	if (!ct || hypha_ct_expired(ct, now) || hypha_ct_is_reopen(ct, p))
		return HYPHA_LB_PASS;
	if (punt_remote && (ct->flags & HYPHA_CT_F_REMOTE))
		return HYPHA_LB_PUNT;
	/* The backend is looked up again only when it may have changed: the
	 * load-balancer maps changed since this flow's last check, a new
	 * connection on the tuple (SYN), or once a second anyway (when the
	 * entry's lifetime moves on; a byte of generation could wrap). */
	flags = hypha_ct_next_flags(ct->flags, p);
	expires = now + hypha_ct_lifetime(p->proto, flags);
	if (unlikely(ct->lb_gen != gen || (p->tcp_flags & HYPHA_TCP_SYN) || ct->expires != expires)) {
		if (!hypha_lb4_backend_valid(ct, p)) {
			hypha_lb4_reply_key(&rkey, p, ct);
			hypha_ct4_delete(&rkey);
			hypha_ct4_delete(&key);
			return HYPHA_LB_PASS;
		}
		if (ct->lb_gen != gen)
			ct->lb_gen = gen;
	}
	hypha_ct_store(ct, flags, expires);
	if (unlikely(hypha_ct_closes(p))) {
		hypha_lb4_reply_key(&rkey, p, ct);
		hypha_ct_close_peer(&rkey, p, now);
	}
	nat->svc_id = ct->svc_id;
	nat->daddr = ct->nat_addr;
	nat->dport = ct->nat_port;
	nat->what = HYPHA_NAT_DADDR | HYPHA_NAT_DPORT;
	nat->forward = !!(ct->flags & HYPHA_CT_F_REMOTE);
	hypha_lb4_snat(ct, nat);
	return HYPHA_LB_NAT;
}

static __always_inline int hypha_port_in(__be16 port, __u16 min, __u16 max)
{
	__u16 p = bpf_ntohs(port);

	return p >= min && p <= max;
}

static __always_inline int hypha_nodeport_range(const struct hypha_config *cfg, __be16 port)
{
	if (cfg && cfg->nodeport_min && cfg->nodeport_max >= cfg->nodeport_min)
		return hypha_port_in(port, cfg->nodeport_min, cfg->nodeport_max);
	return hypha_port_in(port, HYPHA_NODEPORT_MIN, HYPHA_NODEPORT_MAX);
}

/* A reply to the node's own connection from a port in the NodePort range
 * (its ephemeral range may overlap it): noted on the way out (to_netdev),
 * so the answer is not taken for a new NodePort flow. */
static __always_inline int hypha_lb4_host_reply(const struct hypha_pkt4 *p, __u32 now)
{
	struct hypha_ct4_entry *ct;
	struct hypha_ct4_key key;

	hypha_ct_key4(&key, p->saddr, p->daddr, p->sport, p->dport, p->proto, HYPHA_CT_HOST);
	ct = hypha_ct4_lookup(&key);
	if (!ct || hypha_ct_expired(ct, now))
		return 0;
	hypha_ct_refresh(ct, p, now);
	return 1;
}

/* Is this a reply of a translated flow? XDP asks before it takes a packet
 * for a new flow, and leaves such replies to tc. (Replies to the node's own
 * connections are recognised in hypha_lb4_new_flow, on every hook.) */
static __always_inline int hypha_lb4_is_reply(const struct hypha_pkt4 *p, __u32 now)
{
	struct hypha_ct4_entry *ct;
	struct hypha_ct4_key key;

	if (!hypha_has_ports(p))
		return 0;
	hypha_ct_key4(&key, p->saddr, p->daddr, p->sport, p->dport, p->proto, HYPHA_CT_REPLY);
	ct = hypha_ct4_lookup(&key);
	return ct && !hypha_ct_expired(ct, now);
}

/* A packet to a Service frontend that is not (or no longer) a tracked flow:
 * returns HYPHA_LB_PASS (not Service traffic), HYPHA_LB_NAT (a new flow, with
 * *nat filled) or a negative drop reason; hypha_drop_is_reject() tells which
 * reasons get an ICMP answer. Call hypha_lb4_established() first. */
static __always_inline int hypha_lb4_new_flow(const struct hypha_pkt4 *p, enum hypha_lb_scope scope,
					      __u32 loopback, __u32 snat_addr, int mode,
					      const struct hypha_config *cfg, struct hypha_nat4 *nat, __u32 now)
{
	const struct hypha_lb4_svc_val *svc, *slot;
	const struct hypha_lb4_backend *b = NULL;
	struct hypha_ct4_entry *ct, entry = {};
	struct hypha_ct4_key key;
	__u32 backend_id = 0, n;
	__u8 flags;

	if (!hypha_has_ports(p)) {
		/* A later fragment whose first was not seen carries no ports,
		 * other protocols have none: neither can be translated. Refuse
		 * them only when they are aimed at a Service address; anything
		 * else is not ours. */
		if (!hypha_lb4_is_vip(p->daddr))
			return HYPHA_LB_PASS;
		return p->frag == HYPHA_FRAG_LATER ? -HYPHA_DROP_FRAG_NOT_FOUND
						   : -HYPHA_DROP_UNSUPPORTED_L4;
	}

	/* A later fragment starts no flow: its first fragment did (and the
	 * flow would have been found), or was lost. It is never answered
	 * either (no ICMP error about a non-first fragment, RFC 1122). */
	if (p->frag == HYPHA_FRAG_LATER)
		return hypha_lb4_is_vip(p->daddr) ? -HYPHA_DROP_FRAG_NOT_FOUND : HYPHA_LB_PASS;

	svc = hypha_lb4_lookup(p->daddr, p->dport, p->proto, scope, 0);
	if (!svc) {
		/* A Service address on a port it does not serve is refused at
		 * once, like kube-proxy does, instead of vanishing in routing. */
		if (hypha_lb4_is_vip(p->daddr))
			return -HYPHA_DROP_UNKNOWN_SERVICE_PORT;
		return HYPHA_LB_PASS;
	}
	nat->svc_id = svc->svc_id;
	/* The reply of the node's own connection from a port that is also a
	 * NodePort: not a new flow. */
	if (scope == HYPHA_SCOPE_EXTERNAL && (svc->flags & HYPHA_SVC_F_NODEPORT) &&
	    hypha_lb4_host_reply(p, now))
		return HYPHA_LB_PASS;

	if (svc->count == 0)
		return (svc->flags & HYPHA_SVC_F_LOCAL_ONLY) ? -HYPHA_DROP_NO_LOCAL_BACKEND
							     : -HYPHA_DROP_NO_BACKEND;

	if (svc->flags & HYPHA_SVC_F_AFFINITY)
		b = hypha_lb4_affinity_backend(p, svc, now, &backend_id);
	if (!b) {
		n = hypha_lb4_hash(p) % svc->count + 1;
		slot = hypha_lb4_lookup(p->daddr, p->dport, p->proto, scope, (__u16)n);
		if (!slot)
			return -HYPHA_DROP_SLOT_MISSING;
		backend_id = slot->backend_id;
		b = bpf_map_lookup_elem(&hypha_lb4_backends_v1, &backend_id);
		if (!b)
			return -HYPHA_DROP_BACKEND_MISSING;
	}
	flags = hypha_ct_next_flags(0, p);
	if (scope == HYPHA_SCOPE_EXTERNAL) {
		flags |= HYPHA_CT_F_EXTERNAL;
		/* From outside to a backend on another node: the reply must come
		 * back through this node, so the source becomes this node (as
		 * kube-proxy masquerades it). XDP leaves that to tc, which can
		 * forward the packet itself. */
		if (!(b->flags & HYPHA_BACKEND_F_LOCAL)) {
			if (mode & HYPHA_LB_PUNT_REMOTE)
				return HYPHA_LB_PUNT;
			if (!(mode & HYPHA_LB_SNAT_REMOTE) || !snat_addr)
				return -HYPHA_DROP_NO_SNAT_ADDR;
			flags |= HYPHA_CT_F_REMOTE | HYPHA_CT_F_SNAT_ADDR;
			loopback = snat_addr;	/* the source it gets, below */
		}
	}
	/* A pod reaching itself through a Service: the packet must not come
	 * back with its own address as the source, or the pod's stack drops
	 * it as a martian. Use the loopback address as the source instead. */
	if (b->addr == p->saddr && loopback)
		flags |= HYPHA_CT_F_SNAT_ADDR;
	if (svc->flags & HYPHA_SVC_F_AFFINITY)
		hypha_lb4_affinity_record(p, svc->svc_id, backend_id, now);

	entry.svc_id = svc->svc_id;
	entry.backend_id = backend_id;

	/* The reply entry first, keyed as the backend will answer: it decides
	 * the flow's source port. */
	hypha_ct_key4(&key, b->addr, (flags & HYPHA_CT_F_SNAT_ADDR) ? loopback : p->saddr,
		      b->port, p->sport, p->proto, HYPHA_CT_REPLY);
	entry.nat_addr = p->daddr;
	entry.nat_port = p->dport;
	entry.nat_addr2 = p->saddr;
	entry.nat_port2 = p->sport;
	entry.flags = flags;
	entry.expires = now + hypha_ct_lifetime(p->proto, flags);
	ct = hypha_ct4_lookup(&key);
	if ((flags & HYPHA_CT_F_REMOTE) ||
	    (ct && !hypha_ct_expired(ct, now) &&
	     (ct->nat_addr != p->daddr || ct->nat_port != p->dport ||
	      ct->nat_addr2 != p->saddr || ct->nat_port2 != p->sport))) {
		/* A flow source-NATed to the node towards another node never
		 * keeps the client's port: in the NodePort range the backend's
		 * answer to node:port would look like a new NodePort flow, in
		 * the node's ephemeral range it could meet the node's own
		 * connection to the same backend. It gets a port from the
		 * source-NAT range, which the agent keeps clear of both. */
		/* The tuple the backend would see belongs to a flow of another
		 * frontend that has not timed out (one client port, two
		 * Services, one backend): move this flow to a free source port,
		 * as netfilter's NAT does. A flow that only closed counts too:
		 * reusing its tuple at once for another frontend loses the SYN
		 * at the backend (measured: retransmission timeouts at high
		 * connection rates), so it is treated like netfilter's CLOSE. */
		int ret;

		entry.flags = flags | HYPHA_CT_F_SNAT_PORT;
		ret = hypha_snat_claim(&key, &entry, cfg, hypha_lb4_hash(p), now);
		if (ret < 0)
			return ret;
		flags |= HYPHA_CT_F_SNAT_PORT;
	} else if (hypha_ct4_update(&key, &entry, BPF_ANY)) {
		return -HYPHA_DROP_CT_CREATE_FAILED;
	}

	/* The service entry: where this flow goes, and its new source. */
	entry.lb_gen = cfg ? (__u8)cfg->lb_generation : 0;
	entry.nat_addr = b->addr;
	entry.nat_port = b->port;
	entry.nat_addr2 = loopback;
	entry.nat_port2 = key.dport;
	entry.flags = flags;
	hypha_ct_key4(&key, p->saddr, p->daddr, p->sport, p->dport, p->proto, HYPHA_CT_SERVICE);
	if (hypha_ct4_update(&key, &entry, BPF_ANY))
		return -HYPHA_DROP_CT_CREATE_FAILED;

	nat->daddr = b->addr;
	nat->dport = b->port;
	nat->what = HYPHA_NAT_DADDR | HYPHA_NAT_DPORT;
	nat->forward = !!(flags & HYPHA_CT_F_REMOTE);
	hypha_lb4_snat(&entry, nat);
	return HYPHA_LB_NAT;
}

/* A reply of a translated flow: put the frontend back as the source. */
static __always_inline int hypha_lb4_reverse(const struct hypha_pkt4 *p, struct hypha_nat4 *nat, __u32 now,
					     int only_remote)
{
	struct hypha_ct4_entry *ct;
	struct hypha_ct4_key key;

	if (!hypha_has_ports(p))
		return HYPHA_LB_PASS;
	hypha_ct_key4(&key, p->saddr, p->daddr, p->sport, p->dport, p->proto, HYPHA_CT_REPLY);
	ct = hypha_ct4_lookup(&key);
	if (!ct || hypha_ct_expired(ct, now))
		return HYPHA_LB_PASS;
	/* On the external device only replies of forwarded flows are ours;
	 * replies for local pods are restored on their way to the pod. */
	if (only_remote && !(ct->flags & HYPHA_CT_F_REMOTE))
		return HYPHA_LB_PASS;
	/* A SYN-ACK on a closed flow's reply entry answers a new connection
	 * that reuses the tuple without the Service (the client dialled this
	 * backend directly from the port its Service flow had): not ours, and
	 * the stale entry would turn every reply into the Service's. */
	if (hypha_ct_is_reused_reply(ct, p)) {
		hypha_ct4_delete(&key);
		return HYPHA_LB_PASS;
	}
	hypha_ct_refresh(ct, p, now);
	if (hypha_ct_closes(p)) {
		/* the SERVICE entry, keyed by the client's original tuple */
		hypha_ct_key4(&key, ct->nat_addr2, ct->nat_addr, ct->nat_port2, ct->nat_port, p->proto,
			      HYPHA_CT_SERVICE);
		hypha_ct_close_peer(&key, p, now);
	}
	nat->forward = !!(ct->flags & HYPHA_CT_F_REMOTE);
	nat->saddr = ct->nat_addr;
	nat->sport = ct->nat_port;
	nat->svc_id = ct->svc_id;
	nat->what = HYPHA_NAT_SADDR | HYPHA_NAT_SPORT;
	if (ct->flags & HYPHA_CT_F_SNAT_ADDR) {
		nat->daddr = ct->nat_addr2;
		nat->what |= HYPHA_NAT_DADDR;
	}
	if (ct->flags & HYPHA_CT_F_SNAT_PORT) {
		nat->dport = ct->nat_port2;
		nat->what |= HYPHA_NAT_DPORT;
	}
	return HYPHA_LB_NAT;
}

#endif /* HYPHA_LIB_LB_H */
