/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Incremental Internet checksum updates (RFC 1624, eqn. 3) for programs that
 * write packet memory directly (XDP). TC programs use the kernel's
 * bpf_l3/l4_csum_replace instead, which also handle CHECKSUM_PARTIAL skbs. */
#ifndef HYPHA_LIB_CSUM_H
#define HYPHA_LIB_CSUM_H

#include "hypha/compiler.h"

static __always_inline __u16 hypha_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* HC' = ~(~HC + ~m + m'), on the 16-bit words as they sit in memory: the
 * one's complement sum does not depend on byte order. */
static __always_inline void hypha_csum_replace4(__sum16 *csum, __u32 from, __u32 to)
{
	__u32 sum = (__u16)~*csum;

	sum += (__u16)~(from & 0xffff) + (__u16)~(from >> 16);
	sum += (to & 0xffff) + (to >> 16);
	*csum = ~hypha_csum_fold(sum);
}

static __always_inline void hypha_csum_replace2(__sum16 *csum, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~*csum;

	sum += (__u16)~from;
	sum += to;
	*csum = ~hypha_csum_fold(sum);
}

/* Full checksum of a buffer on the stack whose length is a multiple of 4. */
static __always_inline __u16 hypha_csum_buf(void *buf, __u32 len)
{
	__s64 sum = bpf_csum_diff(0, 0, buf, len, 0);

	return ~hypha_csum_fold((__u32)sum);
}

#endif /* HYPHA_LIB_CSUM_H */
