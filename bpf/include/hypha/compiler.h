/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Compiler and helper plumbing shared by every Hypha BPF object. */
#ifndef HYPHA_COMPILER_H
#define HYPHA_COMPILER_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Compile-time layout checks: a map key or value whose size drifts breaks the
 * pinned maps of a running node, so every ABI struct asserts its size. */
#define HYPHA_ASSERT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), #type " must be " #size " bytes")

/* An IPv4 address in network byte order. A distinct typedef so the layout
 * generator (scripts/gen-abi.ts) can render it as a dotted quad. */
typedef __be32 hypha_ip4_t;

#endif /* HYPHA_COMPILER_H */
