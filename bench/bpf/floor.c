/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The floor of `make bench-lb`: a tc program that only returns. Measured with
 * the same packet and repeat count as the translation program, it shows what
 * BPF_PROG_TEST_RUN itself costs per run. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int bench_floor(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
