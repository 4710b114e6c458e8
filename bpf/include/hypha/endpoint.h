/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Pods on this node: pod address -> its host-side veth. from_pod hands
 * packets for a local pod straight into that pod's namespace
 * (bpf_redirect_peer), past the node's IP stack. */
#ifndef HYPHA_ENDPOINT_H
#define HYPHA_ENDPOINT_H

#include "compiler.h"

enum hypha_endpoint_flags {
	HYPHA_ENDPOINT_F__RESERVED = 0,
};

struct hypha_endpoint {
	__u32 ifindex;			/* host-side veth (its peer is the pod's eth0) */
	enum hypha_endpoint_flags flags;
};
HYPHA_ASSERT_SIZE(struct hypha_endpoint, 8);

#endif /* HYPHA_ENDPOINT_H */
