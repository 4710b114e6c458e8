/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The ipcache: what the datapath knows about an address of the cluster,
 * by longest prefix. The agent writes the cluster's pod pool, every node's
 * pod CIDR and every node address. An address with no entry is outside the
 * cluster ("world"): pod traffic to it is masqueraded to the node's address.
 * The identity field is for network policy (security identity of the
 * address's owner); 0 until policy assigns identities. */
#ifndef HYPHA_IPCACHE_H
#define HYPHA_IPCACHE_H

#include "compiler.h"

/* BPF_MAP_TYPE_LPM_TRIE key: prefixlen counts the bits of addr that match. */
struct hypha_ipcache_key {
	__u32 prefixlen;
	hypha_ip4_t addr;
};
HYPHA_ASSERT_SIZE(struct hypha_ipcache_key, 8);

enum __attribute__((packed)) hypha_ipcache_flags {
	HYPHA_IPC_F_CLUSTER = 1 << 0,	/* inside the cluster: never masqueraded */
	HYPHA_IPC_F_POD = 1 << 1,	/* a pod address or pod CIDR */
	HYPHA_IPC_F_NODE = 1 << 2,	/* a node's own address */
	HYPHA_IPC_F_LOCAL = 1 << 3,	/* on this node */
	HYPHA_IPC_F__WIDTH = 0xffff,
};
_Static_assert(sizeof(enum hypha_ipcache_flags) == 2, "ipcache flags are two bytes");

struct hypha_ipcache_val {
	__u32 identity;			/* security identity (policy); 0: none yet */
	hypha_ip4_t node_addr;		/* the node hosting it (pods), or 0 */
	enum hypha_ipcache_flags flags;
	__u16 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_ipcache_val, 12);

#endif /* HYPHA_IPCACHE_H */
