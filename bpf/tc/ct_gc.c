/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack garbage collection. Entries expire lazily: the programs treat a
 * timed-out entry as absent but leave it in the map, and the LRU map only
 * makes room by evicting, which under a high connection rate can take a
 * flow's entry between its SYN and its SYN-ACK (the entry is new and not yet
 * referenced) or an idle long-lived flow's. So the agent deletes timed-out
 * entries itself, in bounded steps (native mapSweepAsync, on a worker thread):
 *
 *  1. read the map with BPF_MAP_LOOKUP_BATCH, a chunk of entries per call
 *     (its cursor resumes where the last chunk ended);
 *  2. pick the entries whose `expires` is past (CLOCK_MONOTONIC_COARSE
 *     seconds, the clock of bpf_ktime_get_coarse_ns) as candidates;
 *  3. write up to HYPHA_CT_GC_KEYS candidate keys into hypha_ct_gc_keys_v1
 *     and run this program (BPF_PROG_TEST_RUN) on them: it looks each one up
 *     again and deletes it only if it is still timed out now.
 *
 * No kernel call handles more than one chunk or HYPHA_CT_GC_KEYS entries, so
 * a pass over millions of entries never holds a CPU for long (the earlier
 * design walked the whole map with bpf_for_each_map_elem in one run with
 * preemption off: ~0.1 s at 512 k entries, more at the largest sizes).
 * Step 3 keeps what that design guaranteed: the copy in user space only
 * nominates; the decision is taken in the kernel against the entry as it is
 * at the moment of the delete, so a flow that was refreshed or reopened
 * after its entry was read keeps it. (What neither design can close is the
 * instant between this program's check and its delete: a packet on another
 * CPU that rewrites a timed-out entry in those nanoseconds loses the write,
 * and the flow starts over on its next packet.)
 *
 * A chunked walk of a map that changes meanwhile may see an entry twice or
 * miss one (a hash bucket that gains or loses entries between two calls):
 * harmless, a twice-seen entry is deleted once, a missed one by the next pass.
 *
 * Input: the first 4 bytes of the packet hold n (u32, host order), the number
 * of keys at indexes 0..n-1 of hypha_ct_gc_keys_v1. Return value: how many
 * entries were deleted. */
#include "lib/ct.h"

/* Candidates per run. The map is this program's scratch space, pinned so the
 * agent can open it by name (src/datapath/loader.ts; a test checks the name
 * and layout against this object's BTF). Change the size with the _vN. */
#define HYPHA_CT_GC_KEYS 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct hypha_ct4_key);
	__uint(max_entries, HYPHA_CT_GC_KEYS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_ct_gc_keys_v1 SEC(".maps");

struct hypha_ct_gc_run {
	__u32 now;
	__u32 deleted;
};

static long hypha_ct_gc_one(__u32 i, struct hypha_ct_gc_run *run)
{
	const struct hypha_ct4_key *key = bpf_map_lookup_elem(&hypha_ct_gc_keys_v1, &i);
	const struct hypha_ct4_entry *e;

	if (!key)
		return 1;
	e = hypha_ct4_lookup(key);
	if (e && hypha_ct_expired(e, run->now) && !hypha_ct4_delete(key))
		run->deleted++;
	return 0;
}

SEC("tc")
int hypha_ct_gc(struct __sk_buff *skb)
{
	struct hypha_ct_gc_run run = { .now = hypha_now() };
	__u32 n = 0;

	if (bpf_skb_load_bytes(skb, 0, &n, sizeof(n)))
		return 0;
	if (n > HYPHA_CT_GC_KEYS)
		n = HYPHA_CT_GC_KEYS;
	bpf_loop(n, hypha_ct_gc_one, &run, 0);
	return run.deleted;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
