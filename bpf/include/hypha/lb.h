/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Load-balancer map layouts: Service frontends, backends, session affinity.
 *
 * A frontend (address, port, protocol) seen from one scope has a master entry
 * at slot 0 holding the number of selectable backends, followed by one entry
 * per backend at slots 1..count. Selecting a backend is one hash of the flow
 * plus two lookups, whatever the number of Services. */
#ifndef HYPHA_LB_H
#define HYPHA_LB_H

#include "compiler.h"

/* Where the traffic comes from decides which backends it may use:
 * internalTrafficPolicy applies to pods on this node, externalTrafficPolicy
 * to traffic arriving on the node's external devices. */
enum __attribute__((packed)) hypha_lb_scope {
	HYPHA_SCOPE_INTERNAL = 0,
	HYPHA_SCOPE_EXTERNAL = 1,
};
_Static_assert(sizeof(enum hypha_lb_scope) == 1, "scope is one byte");

struct hypha_lb4_svc_key {
	hypha_ip4_t addr;		/* ClusterIP, ExternalIP, LB IP or node IP */
	__be16 dport;			/* 0 together with proto 0: the VIP marker */
	__u8 proto;			/* IPPROTO_TCP / IPPROTO_UDP */
	enum hypha_lb_scope scope;
	__u16 slot;			/* 0: master entry; 1..count: backends */
	__u16 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_lb4_svc_key, 12);

enum __attribute__((packed)) hypha_svc_flags {
	HYPHA_SVC_F_AFFINITY = 1 << 0,		/* sessionAffinity: ClientIP */
	HYPHA_SVC_F_LOCAL_ONLY = 1 << 1,	/* traffic policy Local for this scope */
	HYPHA_SVC_F_NODEPORT = 1 << 2,
	HYPHA_SVC_F_EXTERNAL_IP = 1 << 3,
	HYPHA_SVC_F_LOADBALANCER = 1 << 4,
	HYPHA_SVC_F_VIP_MARKER = 1 << 5,	/* address belongs to a Service */
	HYPHA_SVC_F_TERMINATING_FALLBACK = 1 << 6, /* only terminating backends left */
	HYPHA_SVC_F__WIDTH = 0xffff,		/* keeps the enum two bytes wide */
};
_Static_assert(sizeof(enum hypha_svc_flags) == 2, "svc flags are two bytes");

struct hypha_lb4_svc_val {
	__u32 backend_id;		/* slots 1..count */
	__u16 count;			/* master: number of selectable backends */
	enum hypha_svc_flags flags;	/* master */
	__u32 svc_id;			/* frontend id, shared by both scopes */
	__u32 affinity_timeout;		/* master: seconds, with HYPHA_SVC_F_AFFINITY */
};
HYPHA_ASSERT_SIZE(struct hypha_lb4_svc_val, 16);

enum __attribute__((packed)) hypha_backend_flags {
	HYPHA_BACKEND_F_TERMINATING = 1 << 0,	/* serving but terminating: no new flows */
	HYPHA_BACKEND_F_LOCAL = 1 << 1,		/* runs on this node */
	HYPHA_BACKEND_F__WIDTH = 0xff,
};
_Static_assert(sizeof(enum hypha_backend_flags) == 1, "backend flags are one byte");

/* Backends are per frontend: the same pod behind two Services has two ids,
 * so a backend's state and its affinity belong to exactly one frontend. */
struct hypha_lb4_backend {
	hypha_ip4_t addr;
	__be16 port;
	__u8 proto;
	enum hypha_backend_flags flags;
	__u32 svc_id;
};
HYPHA_ASSERT_SIZE(struct hypha_lb4_backend, 12);

struct hypha_lb4_affinity_key {
	hypha_ip4_t client;
	__u32 svc_id;
};
HYPHA_ASSERT_SIZE(struct hypha_lb4_affinity_key, 8);

struct hypha_lb4_affinity_val {
	__u32 backend_id;
	__u32 last_used;		/* seconds, bpf_ktime_get_coarse_ns() based */
};
HYPHA_ASSERT_SIZE(struct hypha_lb4_affinity_val, 8);

/* Which Service port a frontend belongs to ("namespace/name:port"), for
 * people and tools (`hypha service list` with the agent down). Not read by
 * any program. Longer names are cut. */
struct hypha_lb4_svc_name {
	char name[120];
};
HYPHA_ASSERT_SIZE(struct hypha_lb4_svc_name, 120);

#endif /* HYPHA_LB_H */
