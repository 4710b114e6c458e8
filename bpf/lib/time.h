/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef HYPHA_LIB_TIME_H
#define HYPHA_LIB_TIME_H

#include "hypha/compiler.h"

/* Seconds on the monotonic clock; conntrack and affinity timestamps use it,
 * and so does the agent when it garbage-collects (CLOCK_MONOTONIC). */
static __always_inline __u32 hypha_now(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
}

#endif /* HYPHA_LIB_TIME_H */
