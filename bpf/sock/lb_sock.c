/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services for the node's own sockets (kube-proxy's OUTPUT chain): a process
 * in the node's network namespace (the kubelet, a hostNetwork pod, anything
 * on the host) that connects or sends to a ClusterIP, ExternalIP or one of
 * the node's NodePorts gets a backend at connect()/sendmsg() time, as
 * Cilium's socket LB does. Nothing is rewritten per packet: the socket talks
 * to the backend directly, recvmsg() and getpeername() show the Service.
 *
 * Attached to the cgroup v2 root (every process of the machine), so each
 * program first checks the socket's network namespace against the node's
 * (hypha_sock_cfg_v1) and leaves every other namespace alone: pods, other
 * nodes of a one-machine cluster (kind, the tests) and the machine's root
 * namespace. */
#include <linux/bpf.h>
#include <linux/in.h>
#include "lib/lb.h"
#include "hypha/sock.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct hypha_sock_cfg);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_sock_cfg_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct hypha_sock_rev_key);
	__type(value, struct hypha_sock_rev_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hypha_sock_rev_v1 SEC(".maps");

/* <linux/net.h> is not for BPF programs. */
#define HYPHA_SOCK_STREAM 1
#define HYPHA_SOCK_DGRAM 2

#define SOCK_PASS 1
#define SOCK_REJECT 0

static __always_inline int hypha_sock_ours(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct hypha_sock_cfg *cfg = bpf_map_lookup_elem(&hypha_sock_cfg_v1, &zero);

	return cfg && cfg->netns_cookie && bpf_get_netns_cookie(ctx) == cfg->netns_cookie;
}

/* connect() or sendmsg() to a frontend: the destination becomes a backend. */
static __always_inline int hypha_sock_translate(struct bpf_sock_addr *ctx, __u8 proto)
{
	const struct hypha_lb4_svc_val *svc, *slot;
	const struct hypha_lb4_backend *b;
	struct hypha_sock_rev_key rk = {};
	struct hypha_sock_rev_val rv = {};
	hypha_ip4_t addr = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u32 backend_id, n;

	if (!hypha_sock_ours(ctx))
		return SOCK_PASS;
	svc = hypha_lb4_lookup(addr, port, proto, HYPHA_SCOPE_INTERNAL, 0);
	if (!svc) {
		/* A Service address on a port it does not serve: refused, as
		 * from a pod. */
		return hypha_lb4_is_vip(addr) ? SOCK_REJECT : SOCK_PASS;
	}
	if (svc->count == 0)
		return SOCK_REJECT;
	n = bpf_get_prandom_u32() % svc->count + 1;
	slot = hypha_lb4_lookup(addr, port, proto, HYPHA_SCOPE_INTERNAL, (__u16)n);
	if (!slot)
		return SOCK_REJECT;
	backend_id = slot->backend_id;
	b = bpf_map_lookup_elem(&hypha_lb4_backends_v1, &backend_id);
	if (!b)
		return SOCK_REJECT;
	ctx->user_ip4 = b->addr;
	ctx->user_port = (__u32)b->port;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = b->addr;
	rk.port = b->port;
	rv.addr = addr;
	rv.port = port;
	bpf_map_update_elem(&hypha_sock_rev_v1, &rk, &rv, BPF_ANY);
	return SOCK_PASS;
}

/* recvmsg() or getpeername(): a backend's address shows as the Service's. */
static __always_inline int hypha_sock_reverse(struct bpf_sock_addr *ctx)
{
	struct hypha_sock_rev_key rk = {};
	struct hypha_sock_rev_val *rv;

	if (!hypha_sock_ours(ctx))
		return SOCK_PASS;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = ctx->user_ip4;
	rk.port = (__be16)ctx->user_port;
	rv = bpf_map_lookup_elem(&hypha_sock_rev_v1, &rk);
	if (rv) {
		ctx->user_ip4 = rv->addr;
		ctx->user_port = (__u32)rv->port;
	}
	return SOCK_PASS;
}

SEC("cgroup/connect4")
int hypha_sock_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != HYPHA_SOCK_STREAM && ctx->type != HYPHA_SOCK_DGRAM)
		return SOCK_PASS;
	return hypha_sock_translate(ctx, ctx->type == HYPHA_SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
}

SEC("cgroup/sendmsg4")
int hypha_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return hypha_sock_translate(ctx, IPPROTO_UDP);
}

SEC("cgroup/recvmsg4")
int hypha_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return hypha_sock_reverse(ctx);
}

SEC("cgroup/getpeername4")
int hypha_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return hypha_sock_reverse(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
