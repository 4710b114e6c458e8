/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map, defined once. Each object that includes this header shares the
 * maps through their pins (LIBBPF_PIN_BY_NAME under the loader's pin root).
 * The _vN suffix changes whenever a map's key or value layout changes, so an
 * upgraded agent never reinterprets a pinned map of the old layout. Sizes here
 * are defaults; the loader sets the installed sizes before load. */
#ifndef HYPHA_MAPS_H
#define HYPHA_MAPS_H

#include "lb.h"
#include "ct.h"
#include "drop.h"
#include "config.h"
#include "endpoint.h"
#include "ipcache.h"
#include "frag.h"
#include "policy.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct hypha_lb4_svc_key);
	__type(value, struct hypha_lb4_svc_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_lb4_services_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct hypha_lb4_backend);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_lb4_backends_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, hypha_ip4_t);
	__type(value, struct hypha_endpoint);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_endpoints_v1 SEC(".maps");

/* Frontend id -> Service port name, for tools only (no program reads it).
 * Not preallocated: its size follows the services map, which holds a slot per
 * backend, so a preallocated one would reserve 172 bytes of kernel memory for
 * every slot (360 MB at 2M) to name the one frontend in about ten of them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct hypha_lb4_svc_name);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_lb4_names_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct hypha_lb4_affinity_key);
	__type(value, struct hypha_lb4_affinity_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_lb4_affinity_v1 SEC(".maps");

/* One LRU list shared by all CPUs. Per-CPU lists (BPF_F_NO_COMMON_LRU) are
 * cheaper per new flow (no shared lock in bpf_lru_pop_free), but split the
 * capacity: on a 64-CPU node each CPU may hold max_entries / 64, and a busy
 * CPU evicts its own idle flows (a lost reply entry breaks the connection)
 * while the map is mostly empty. The shared list keeps max_entries for
 * whichever CPU needs them; bench-lb measures both (capacity rows). The
 * loader carries the entries of an older per-CPU map over (loader.ts). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct hypha_ct4_key);
	__type(value, struct hypha_ct4_entry);
	__uint(max_entries, 262144);
#ifdef HYPHA_CT_PERCPU_LRU	/* bench-ct's build of the layout before issue 11 */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
#endif
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_ct4_v1 SEC(".maps");

/* The conntrack map the programs use, through one more lookup: slot 0 is the
 * map in use (hypha_ct4_v1 as created), slot 1 the previous one while the
 * agent grows conntrack online: a new, larger map takes slot 0 for every
 * program at once, a lookup that misses it finds the flows of the old one in
 * slot 1 until the agent has carried them over and empties slot 1
 * (lib/ct.h hypha_ct4_lookup). No program reads hypha_ct4_v1 directly. */
struct ct4_inner_def {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct hypha_ct4_key);
	__type(value, struct hypha_ct4_entry);
	__uint(max_entries, 1);
#ifdef HYPHA_CT_PERCPU_LRU	/* an inner map's flags must be the template's */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
#endif
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 2);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct ct4_inner_def);
} hypha_ct4_maps_v1 SEC(".maps") = {
	.values = { [0] = (struct ct4_inner_def *)&hypha_ct4_v1 },
};

/* Datagrams being fragmented: the ports their first fragment carried, for
 * the later ones (frag.h). Entries are small and short-lived; LRU makes room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct hypha_frag4_key);
	__type(value, struct hypha_frag4_ports);
	__uint(max_entries, 8192);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_frag4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct hypha_drop_counter);
	__uint(max_entries, HYPHA_DROP_MAX + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_drops_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_events_v1 SEC(".maps");

/* Drop events the ring had no room for (its reader is behind): `packets`
 * counts the drops that got no event (`bytes` stays 0). One slot, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct hypha_drop_counter);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_events_lost_v1 SEC(".maps");

/* v2: snat_port_min/max took the place of the padding. v3: the NodePort
 * range and the mark bit. v4: policy_generation (the loader carries v3's
 * settings over and removes its pin). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct hypha_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_config_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct hypha_ipcache_key);
	__type(value, struct hypha_ipcache_val);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_ipcache_v1 SEC(".maps");

/* NetworkPolicy (policy.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, hypha_ip4_t);
	__type(value, struct hypha_policy_ep);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_policy_eps_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct hypha_policy_key);
	__type(value, struct hypha_policy_val);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_policy_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct hypha_ipcache_key);
	__type(value, struct hypha_policy_cidr_val);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_policy_cidr_v1 SEC(".maps");

#endif /* HYPHA_MAPS_H */
