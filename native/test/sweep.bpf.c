// SPDX-License-Identifier: GPL-2.0
/* Test fixture for mapSweepAsync: a map of expiring entries, its scratch key
 * array, and programs that take the nominated keys (count n in the first 4
 * bytes of the input, keys at indexes 0..n-1). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SWEEP_KEYS 64

struct entry {
	__u32 tag;
	__u32 expires; /* seconds of bpf_ktime_get_coarse_ns(): expiresOffset 4 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct entry);
} timed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SWEEP_KEYS);
	__type(key, __u32);
	__type(value, __u64);
} sweep_keys SEC(".maps");

/* Every key sweep_record was handed, with how often. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} nominated SEC(".maps");

struct run {
	__u32 now;
	__u32 done;
};

static __u32 input_count(struct __sk_buff *skb)
{
	__u32 n = 0;

	bpf_skb_load_bytes(skb, 0, &n, sizeof(n));
	return n > SWEEP_KEYS ? SWEEP_KEYS : n;
}

static long delete_one(__u32 i, struct run *r)
{
	__u64 *key = bpf_map_lookup_elem(&sweep_keys, &i);
	struct entry *e;

	if (!key)
		return 1;
	e = bpf_map_lookup_elem(&timed, key);
	if (e && (__s32)(e->expires - r->now) < 0 && !bpf_map_delete_elem(&timed, key))
		r->done++;
	return 0;
}

/* Deletes each nominee that is still expired. */
SEC("tc")
int sweep_delete(struct __sk_buff *skb)
{
	struct run r = { .now = bpf_ktime_get_coarse_ns() / 1000000000ULL };

	bpf_loop(input_count(skb), delete_one, &r, 0);
	return r.done;
}

static long record_one(__u32 i, struct run *r)
{
	__u64 *key = bpf_map_lookup_elem(&sweep_keys, &i);
	__u32 one = 1, *seen;

	if (!key)
		return 1;
	seen = bpf_map_lookup_elem(&nominated, key);
	if (seen)
		__sync_fetch_and_add(seen, 1);
	else
		bpf_map_update_elem(&nominated, key, &one, BPF_NOEXIST);
	return 0;
}

/* Deletes nothing: notes what it was handed, returns 0. */
SEC("tc")
int sweep_record(struct __sk_buff *skb)
{
	struct run r = { 0 };

	bpf_loop(input_count(skb), record_one, &r, 0);
	return 0;
}

/* A program type without BPF_PROG_TEST_RUN: every run fails. */
SEC("kprobe/hypha_sweep_test")
int sweep_cannot_run(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
