/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket load balancing for the node's own network namespace (bpf/sock/). */
#ifndef HYPHA_SOCK_H
#define HYPHA_SOCK_H

#include "compiler.h"

/* Which network namespace is the node's: only sockets there are
 * translated (pods' traffic is translated by tc on their devices). 0: off. */
struct hypha_sock_cfg {
	__u64 netns_cookie;
};
HYPHA_ASSERT_SIZE(struct hypha_sock_cfg, 8);

/* What a socket was connected or sent to, by the backend it really talks
 * to: replies (recvmsg) and getpeername() show the Service again. */
struct hypha_sock_rev_key {
	__u64 cookie;		/* the socket's (bpf_get_socket_cookie) */
	hypha_ip4_t addr;	/* the backend */
	__be16 port;
	__u16 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_sock_rev_key, 16);

struct hypha_sock_rev_val {
	hypha_ip4_t addr;	/* the Service frontend */
	__be16 port;
	__u16 pad;
};
HYPHA_ASSERT_SIZE(struct hypha_sock_rev_val, 8);

#endif /* HYPHA_SOCK_H */
