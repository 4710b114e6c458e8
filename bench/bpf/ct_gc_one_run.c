/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The conntrack GC as it was before bounded batches (bpf/tc/ct_gc.c until
 * e266480), kept only as bench/ct-gc.ts's peer: one BPF_PROG_TEST_RUN walks
 * the whole map with bpf_for_each_map_elem and deletes every timed-out entry.
 * Returns the number deleted; the packet's first 8 bytes become {deleted,
 * visited} (u32, host order). */
#include "lib/ct.h"

struct bpf_map;

struct one_run_pass {
	__u32 now;
	__u32 deleted;
	__u32 visited;
};

static long one_run_visit(struct bpf_map *map, const struct hypha_ct4_key *key,
			  struct hypha_ct4_entry *entry, struct one_run_pass *pass)
{
	pass->visited++;
	if (hypha_ct_expired(entry, pass->now) && !bpf_map_delete_elem(&hypha_ct4_v1, key))
		pass->deleted++;
	return 0;
}

SEC("tc")
int ct_gc_one_run(struct __sk_buff *skb)
{
	struct one_run_pass pass = { .now = hypha_now() };
	__u32 out[2];

	bpf_for_each_map_elem(&hypha_ct4_v1, one_run_visit, &pass, 0);
	out[0] = pass.deleted;
	out[1] = pass.visited;
	bpf_skb_store_bytes(skb, 0, out, sizeof(out), 0);
	return pass.deleted;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
