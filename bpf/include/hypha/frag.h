/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 fragments of TCP and UDP datagrams: only the first fragment carries
 * the ports, so the first one seen records them, keyed by what every
 * fragment of the datagram repeats (addresses, protocol, IP id), and later
 * fragments look them up to find their flow's translation. */
#ifndef HYPHA_FRAG_H
#define HYPHA_FRAG_H

#include "compiler.h"

struct hypha_frag4_key {
	hypha_ip4_t saddr;
	hypha_ip4_t daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_frag4_key, 12);

struct hypha_frag4_ports {
	__be16 sport;
	__be16 dport;
};
HYPHA_ASSERT_SIZE(struct hypha_frag4_ports, 4);

#endif /* HYPHA_FRAG_H */
