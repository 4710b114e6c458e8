// SPDX-License-Identifier: GPL-2.0
/* Test fixture: every run writes one 16-byte record {seq, packet length, 0xfeedf00d}
 * to a ring buffer. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u64 seq;
	__u32 len;
	__u32 magic;
};
_Static_assert(sizeof(struct event) == 16, "event layout");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seq SEC(".maps");

SEC("xdp")
int emit(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *s = bpf_map_lookup_elem(&seq, &key);
	struct event e = {};

	if (!s)
		return XDP_ABORTED;
	e.seq = __sync_fetch_and_add(s, 1);
	e.len = ctx->data_end - ctx->data;
	e.magic = 0xfeedf00d;
	if (bpf_ringbuf_output(&events, &e, sizeof(e), 0))
		return XDP_DROP; /* ring full */
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
