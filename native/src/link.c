/* Attaching programs to network devices: XDP and TC (clsact + direct-action
 * filters). Everything here acts on the calling thread's network namespace. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "logcap.h"
#include "modules.h"

#define TC_DEFAULT_HANDLE 1
#define TC_DEFAULT_PRIORITY 1

/* ifNameToIndex(name): number */
static napi_value js_if_name_to_index(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	char *name;
	unsigned idx;

	if (!hy_args(env, info, 1, argv) ||
	    !(name = hy_get_string(env, argv[0], "ifNameToIndex", "name")))
		return NULL;
	idx = if_nametoindex(name);
	if (idx == 0) {
		hy_throw_errno(env, "if_nametoindex", errno ? errno : ENODEV, "interface \"%s\"", name);
		free(name);
		return NULL;
	}
	free(name);
	HY_NAPI(env, napi_create_uint32(env, idx, &out));
	return out;
}

/* ifIndexToName(ifindex): string */
static napi_value js_if_index_to_name(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	uint32_t idx;
	char name[IF_NAMESIZE];

	if (!hy_args(env, info, 1, argv) ||
	    !hy_get_u32(env, argv[0], "ifIndexToName", "ifindex", &idx))
		return NULL;
	if (!if_indextoname(idx, name)) {
		hy_throw_errno(env, "if_indextoname", errno ? errno : ENODEV, "ifindex %u", idx);
		return NULL;
	}
	HY_NAPI(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &out));
	return out;
}

static bool get_ifindex(napi_env env, napi_value v, const char *fn, int *ifindex)
{
	int64_t x;

	if (!hy_get_int(env, v, fn, "ifindex", 1, INT32_MAX, &x))
		return false;
	*ifindex = (int)x;
	return true;
}

/* opts.mode: 'native' | 'generic' | 'auto' (default) -> XDP flags */
static bool get_xdp_mode(napi_env env, napi_value opts, const char *fn, uint32_t *flags)
{
	napi_value v;
	char *mode;

	*flags = 0;
	if (!hy_get_opt(env, opts, "mode", &v))
		return false;
	if (!v)
		return true;
	if (!(mode = hy_get_string(env, v, fn, "opts.mode")))
		return false;
	if (!strcmp(mode, "native"))
		*flags = XDP_FLAGS_DRV_MODE;
	else if (!strcmp(mode, "generic"))
		*flags = XDP_FLAGS_SKB_MODE;
	else if (strcmp(mode, "auto")) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "opts.mode must be 'native', 'generic' or 'auto', got \"%s\"", mode);
		free(mode);
		return false;
	}
	free(mode);
	return true;
}

static void throw_libbpf(napi_env env, const char *op, int err, struct logcap *lc,
			 const char *fmt, int ifindex)
{
	napi_value e = hy_errno_error(env, op, err, fmt, ifindex);

	logcap_end(lc);
	if (e) {
		hy_error_set_string(env, e, "libbpfLog", logcap_text(lc));
		napi_throw(env, e);
	}
	logcap_free(lc);
}

/* xdpAttach(ifindex, prog, opts?: {mode?, replaceProgId?}) */
static napi_value js_xdp_attach(napi_env env, napi_callback_info info)
{
	const char *fn = "xdpAttach";
	napi_value argv[3], v;
	int ifindex, old_fd = -1;
	uint32_t flags, replace_id = 0;
	struct prog_handle *p;
	struct logcap lc;
	LIBBPF_OPTS(bpf_xdp_attach_opts, opts);

	if (!hy_args(env, info, 3, argv) || !get_ifindex(env, argv[0], fn, &ifindex) ||
	    !(p = (struct prog_handle *)handle_get(env, argv[1], HANDLE_MASK(HANDLE_PROG), fn,
						   "prog", true)) ||
	    !hy_check_opts(env, argv[2], fn, "opts") || !get_xdp_mode(env, argv[2], fn, &flags) ||
	    !hy_get_opt(env, argv[2], "replaceProgId", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.replaceProgId", &replace_id)))
		return NULL;
	if (replace_id) {
		/* XDP_FLAGS_REPLACE: the kernel swaps atomically, and only if the program
		 * attached now is still the one we expect (EEXIST otherwise). */
		old_fd = bpf_prog_get_fd_by_id(replace_id);
		if (old_fd < 0) {
			hy_throw_errno(env, "bpf_prog_get_fd_by_id", errno,
				       "opts.replaceProgId %u", replace_id);
			return NULL;
		}
		opts.old_prog_fd = old_fd;
		flags |= XDP_FLAGS_REPLACE;
	}
	logcap_begin(&lc);
	if (bpf_xdp_attach(ifindex, p->fd, flags, &opts)) {
		int err = errno;

		if (old_fd >= 0)
			close(old_fd);
		throw_libbpf(env, "bpf_xdp_attach", err, &lc, "ifindex %d", ifindex);
		return NULL;
	}
	logcap_end(&lc);
	logcap_free(&lc);
	if (old_fd >= 0)
		close(old_fd);
	return hy_undefined(env);
}

/* xdpDetach(ifindex, opts?: {mode?}) */
static napi_value js_xdp_detach(napi_env env, napi_callback_info info)
{
	const char *fn = "xdpDetach";
	napi_value argv[2];
	int ifindex;
	uint32_t flags;
	struct logcap lc;

	if (!hy_args(env, info, 2, argv) || !get_ifindex(env, argv[0], fn, &ifindex) ||
	    !hy_check_opts(env, argv[1], fn, "opts") || !get_xdp_mode(env, argv[1], fn, &flags))
		return NULL;
	logcap_begin(&lc);
	if (bpf_xdp_detach(ifindex, flags, NULL)) {
		throw_libbpf(env, "bpf_xdp_detach", errno, &lc, "ifindex %d", ifindex);
		return NULL;
	}
	logcap_end(&lc);
	logcap_free(&lc);
	return hy_undefined(env);
}

/* xdpQuery(ifindex): {progId, mode: 'native'|'generic'|'offload'|'multi'|'none'} */
static napi_value js_xdp_query(napi_env env, napi_callback_info info)
{
	const char *fn = "xdpQuery";
	napi_value argv[1], out;
	int ifindex;
	const char *mode;
	uint32_t prog_id;
	struct logcap lc;
	LIBBPF_OPTS(bpf_xdp_query_opts, opts);

	if (!hy_args(env, info, 1, argv) || !get_ifindex(env, argv[0], fn, &ifindex))
		return NULL;
	logcap_begin(&lc);
	if (bpf_xdp_query(ifindex, 0, &opts)) {
		throw_libbpf(env, "bpf_xdp_query", errno, &lc, "ifindex %d", ifindex);
		return NULL;
	}
	logcap_end(&lc);
	logcap_free(&lc);
	switch (opts.attach_mode) {
	case XDP_ATTACHED_DRV:
		mode = "native";
		prog_id = opts.drv_prog_id ? opts.drv_prog_id : opts.prog_id;
		break;
	case XDP_ATTACHED_SKB:
		mode = "generic";
		prog_id = opts.skb_prog_id ? opts.skb_prog_id : opts.prog_id;
		break;
	case XDP_ATTACHED_HW:
		mode = "offload";
		prog_id = opts.hw_prog_id ? opts.hw_prog_id : opts.prog_id;
		break;
	case XDP_ATTACHED_MULTI:
		mode = "multi";
		prog_id = opts.drv_prog_id ? opts.drv_prog_id : opts.skb_prog_id;
		break;
	default:
		mode = "none";
		prog_id = 0;
		break;
	}
	HY_NAPI(env, napi_create_object(env, &out));
	if (!hy_set_u32(env, out, "progId", prog_id) || !hy_set_string(env, out, "mode", mode) ||
	    !hy_set_u32(env, out, "nativeProgId", opts.drv_prog_id) ||
	    !hy_set_u32(env, out, "genericProgId", opts.skb_prog_id))
		return NULL;
	return out;
}

/* Reads (ifindex, direction, ...opts: {handle?, priority?}) into a hook and tc opts. */
static bool get_tc_target(napi_env env, napi_value *argv, napi_value opts_arg, const char *fn,
			  struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)
{
	napi_value v;
	char *dir;
	int ifindex;
	uint32_t handle = TC_DEFAULT_HANDLE, priority = TC_DEFAULT_PRIORITY;

	if (!get_ifindex(env, argv[0], fn, &ifindex) ||
	    !(dir = hy_get_string(env, argv[1], fn, "direction")))
		return false;
	if (!strcmp(dir, "ingress"))
		hook->attach_point = BPF_TC_INGRESS;
	else if (!strcmp(dir, "egress"))
		hook->attach_point = BPF_TC_EGRESS;
	else {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "direction must be 'ingress' or 'egress', got \"%s\"", dir);
		free(dir);
		return false;
	}
	free(dir);
	hook->ifindex = ifindex;
	if (!hy_check_opts(env, opts_arg, fn, "opts") || !hy_get_opt(env, opts_arg, "handle", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.handle", &handle)) ||
	    !hy_get_opt(env, opts_arg, "priority", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.priority", &priority)))
		return false;
	if (handle == 0 || priority == 0 || priority > 0xffff) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "opts.handle must be non-zero and opts.priority in [1, 65535], got handle %u priority %u",
			      handle, priority);
		return false;
	}
	opts->handle = handle;
	opts->priority = priority;
	return true;
}

static const char *dir_name(const struct bpf_tc_hook *hook)
{
	return hook->attach_point == BPF_TC_INGRESS ? "ingress" : "egress";
}

static void throw_tc(napi_env env, const char *op, int err, struct logcap *lc,
		     const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts)
{
	napi_value e = hy_errno_error(env, op, err, "ifindex %d %s handle %u priority %u",
				      hook->ifindex, dir_name(hook), opts->handle, opts->priority);

	logcap_end(lc);
	if (e) {
		hy_error_set_string(env, e, "libbpfLog", logcap_text(lc));
		napi_throw(env, e);
	}
	logcap_free(lc);
}

/* tcAttach(ifindex, direction, prog, opts?: {handle?, priority?}) */
static napi_value js_tc_attach(napi_env env, napi_callback_info info)
{
	const char *fn = "tcAttach";
	napi_value argv[4];
	struct prog_handle *p;
	struct logcap lc;
	LIBBPF_OPTS(bpf_tc_hook, hook);
	LIBBPF_OPTS(bpf_tc_opts, opts);

	if (!hy_args(env, info, 4, argv) ||
	    !get_tc_target(env, argv, argv[3], fn, &hook, &opts) ||
	    !(p = (struct prog_handle *)handle_get(env, argv[2], HANDLE_MASK(HANDLE_PROG), fn,
						   "prog", true)))
		return NULL;
	logcap_begin(&lc);
	/* the clsact qdisc holds both directions; it may exist already */
	if (bpf_tc_hook_create(&hook) && errno != EEXIST) {
		throw_tc(env, "bpf_tc_hook_create", errno, &lc, &hook, &opts);
		return NULL;
	}
	opts.prog_fd = p->fd;
	opts.flags = BPF_TC_F_REPLACE;
	if (bpf_tc_attach(&hook, &opts)) {
		opts.prog_fd = 0;
		throw_tc(env, "bpf_tc_attach", errno, &lc, &hook, &opts);
		return NULL;
	}
	logcap_end(&lc);
	logcap_free(&lc);
	return hy_undefined(env);
}

/* Does the device have a clsact qdisc? Without one, the kernel answers filter
 * requests with EINVAL, which would hide the "nothing attached" case. */
static bool no_clsact(int err)
{
	return err == EINVAL || err == ENOENT;
}

/* tcDetach(ifindex, direction, opts?): boolean (false when nothing was attached) */
static napi_value js_tc_detach(napi_env env, napi_callback_info info)
{
	const char *fn = "tcDetach";
	napi_value argv[3], out;
	struct logcap lc;
	bool detached = true;
	LIBBPF_OPTS(bpf_tc_hook, hook);
	LIBBPF_OPTS(bpf_tc_opts, opts);

	if (!hy_args(env, info, 3, argv) || !get_tc_target(env, argv, argv[2], fn, &hook, &opts))
		return NULL;
	logcap_begin(&lc);
	if (bpf_tc_detach(&hook, &opts)) {
		int err = errno;
		LIBBPF_OPTS(bpf_tc_opts, q, .handle = opts.handle, .priority = opts.priority);

		/* ENOENT: no such filter. EINVAL: maybe no clsact qdisc; confirm with a
		 * query, which fails the same way when there is nothing to find. */
		if (err == ENOENT || (err == EINVAL && bpf_tc_query(&hook, &q) && no_clsact(errno))) {
			detached = false;
		} else {
			throw_tc(env, "bpf_tc_detach", err, &lc, &hook, &opts);
			return NULL;
		}
	}
	logcap_end(&lc);
	logcap_free(&lc);
	HY_NAPI(env, napi_get_boolean(env, detached, &out));
	return out;
}

/* tcQuery(ifindex, direction, opts?): {progId} | undefined */
static napi_value js_tc_query(napi_env env, napi_callback_info info)
{
	const char *fn = "tcQuery";
	napi_value argv[3], out;
	struct logcap lc;
	LIBBPF_OPTS(bpf_tc_hook, hook);
	LIBBPF_OPTS(bpf_tc_opts, opts);

	if (!hy_args(env, info, 3, argv) || !get_tc_target(env, argv, argv[2], fn, &hook, &opts))
		return NULL;
	logcap_begin(&lc);
	if (bpf_tc_query(&hook, &opts)) {
		if (no_clsact(errno)) {
			logcap_end(&lc);
			logcap_free(&lc);
			return hy_undefined(env);
		}
		throw_tc(env, "bpf_tc_query", errno, &lc, &hook, &opts);
		return NULL;
	}
	logcap_end(&lc);
	logcap_free(&lc);
	HY_NAPI(env, napi_create_object(env, &out));
	if (!hy_set_u32(env, out, "progId", opts.prog_id))
		return NULL;
	return out;
}

/* attachType names -> the cgroup socket-address hooks socket LB uses */
static bool get_cgroup_attach_type(napi_env env, napi_value v, const char *fn, enum bpf_attach_type *out)
{
	static const struct { const char *name; enum bpf_attach_type type; } types[] = {
		{ "connect4", BPF_CGROUP_INET4_CONNECT },
		{ "sendmsg4", BPF_CGROUP_UDP4_SENDMSG },
		{ "recvmsg4", BPF_CGROUP_UDP4_RECVMSG },
		{ "getpeername4", BPF_CGROUP_INET4_GETPEERNAME },
	};
	char *name = hy_get_string(env, v, fn, "attachType");
	size_t i;

	if (!name)
		return false;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (!strcmp(name, types[i].name)) {
			*out = types[i].type;
			free(name);
			return true;
		}
	}
	hy_throw_errno(env, fn, EINVAL, "attachType \"%s\" is not connect4, sendmsg4, recvmsg4 or getpeername4", name);
	free(name);
	return false;
}

/* cgroupAttach(prog, cgroupPath, attachType, linkPin): a bpf_link from the
 * cgroup's hook to prog, pinned at linkPin so it outlives the caller; when
 * linkPin holds a link already, its program is replaced (atomically). */
static napi_value js_cgroup_attach(napi_env env, napi_callback_info info)
{
	const char *fn = "cgroupAttach";
	napi_value argv[4];
	struct prog_handle *p;
	enum bpf_attach_type type;
	char *cgroup = NULL, *pin = NULL;
	int cg_fd = -1, link_fd = -1;
	napi_value ret = NULL;

	if (!hy_args(env, info, 4, argv) ||
	    !(p = (struct prog_handle *)handle_get(env, argv[0], HANDLE_MASK(HANDLE_PROG), fn, "prog", true)) ||
	    !(cgroup = hy_get_string(env, argv[1], fn, "cgroupPath")) ||
	    !get_cgroup_attach_type(env, argv[2], fn, &type) ||
	    !(pin = hy_get_string(env, argv[3], fn, "linkPin")))
		goto out;
	link_fd = bpf_obj_get(pin);
	if (link_fd >= 0) {
		if (bpf_link_update(link_fd, p->fd, NULL)) {
			hy_throw_errno(env, "bpf_link_update", errno, "link %s", pin);
			goto out;
		}
		ret = hy_undefined(env);
		goto out;
	}
	if (errno != ENOENT) {
		hy_throw_errno(env, "bpf_obj_get", errno, "link %s", pin);
		goto out;
	}
	cg_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg_fd < 0) {
		hy_throw_errno(env, "open", errno, "cgroup %s", cgroup);
		goto out;
	}
	link_fd = bpf_link_create(p->fd, cg_fd, type, NULL);
	if (link_fd < 0) {
		hy_throw_errno(env, "bpf_link_create", errno, "cgroup %s", cgroup);
		goto out;
	}
	if (bpf_obj_pin(link_fd, pin)) {
		hy_throw_errno(env, "bpf_obj_pin", errno, "link %s", pin);
		goto out;
	}
	ret = hy_undefined(env);
out:
	if (link_fd >= 0)
		close(link_fd);
	if (cg_fd >= 0)
		close(cg_fd);
	free(cgroup);
	free(pin);
	return ret;
}

/* netnsCookie(): the calling thread's network namespace cookie (SO_NETNS_COOKIE), as a bigint */
static napi_value js_netns_cookie(napi_env env, napi_callback_info info)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	napi_value out;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	(void)info;
	if (fd < 0) {
		hy_throw_errno(env, "socket", errno, NULL);
		return NULL;
	}
	if (getsockopt(fd, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len)) {
		int err = errno;

		close(fd);
		hy_throw_errno(env, "getsockopt", err, "SO_NETNS_COOKIE");
		return NULL;
	}
	close(fd);
	HY_NAPI(env, napi_create_bigint_uint64(env, cookie, &out));
	return out;
}

bool link_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "ifNameToIndex", js_if_name_to_index) &&
	       hy_export(env, exports, "ifIndexToName", js_if_index_to_name) &&
	       hy_export(env, exports, "xdpAttach", js_xdp_attach) &&
	       hy_export(env, exports, "xdpDetach", js_xdp_detach) &&
	       hy_export(env, exports, "xdpQuery", js_xdp_query) &&
	       hy_export(env, exports, "tcAttach", js_tc_attach) &&
	       hy_export(env, exports, "tcDetach", js_tc_detach) &&
	       hy_export(env, exports, "tcQuery", js_tc_query) &&
	       hy_export(env, exports, "cgroupAttach", js_cgroup_attach) &&
	       hy_export(env, exports, "netnsCookie", js_netns_cookie);
}
