/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack garbage collection. Entries expire lazily: the programs treat a
 * timed-out entry as absent but leave it in the map, and the LRU map only
 * makes room by evicting, which under a high connection rate can take a
 * flow's entry between its SYN and its SYN-ACK (the entry is new and not yet
 * referenced) or an idle long-lived flow's. The agent runs this program
 * through BPF_PROG_TEST_RUN: one pass over the map in the kernel deletes
 * every timed-out entry, each checked against the clock at the moment it is
 * visited (no copy to user space that a reopened flow could outrun).
 * The return value is the number deleted; the first 8 bytes of the packet
 * become {deleted, visited} (u32, host order). */
#include "lib/ct.h"
#include <linux/pkt_cls.h>

struct bpf_map;

struct hypha_ct_gc_pass {
	__u32 now;
	__u32 deleted;
	__u32 visited;
};

static long hypha_ct_gc_visit(struct bpf_map *map, const struct hypha_ct4_key *key,
			      struct hypha_ct4_entry *entry, struct hypha_ct_gc_pass *pass)
{
	pass->visited++;
	if (hypha_ct_expired(entry, pass->now) && !bpf_map_delete_elem(&hypha_ct4_v1, key))
		pass->deleted++;
	return 0;
}

SEC("tc")
int hypha_ct_gc(struct __sk_buff *skb)
{
	struct hypha_ct_gc_pass pass = { .now = hypha_now() };
	__u32 out[2];

	bpf_for_each_map_elem(&hypha_ct4_v1, hypha_ct_gc_visit, &pass, 0);
	out[0] = pass.deleted;
	out[1] = pass.visited;
	bpf_skb_store_bytes(skb, 0, out, sizeof(out), 0);
	return pass.deleted;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
