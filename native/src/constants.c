/* Kernel constants for JS, taken from the UAPI headers at build time so that no
 * number is copied by hand into TypeScript. Names drop their common prefix:
 * BPF_MAP_TYPE_LRU_HASH -> constants.mapTypes.LRU_HASH. */
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>

#include "args.h"
#include "errors.h"
#include "modules.h"

struct named {
	const char *name;
	uint32_t value;
};

#define C(prefix, name) { #name, prefix##name }

static const struct named map_types[] = {
	C(BPF_MAP_TYPE_, HASH), C(BPF_MAP_TYPE_, ARRAY), C(BPF_MAP_TYPE_, PROG_ARRAY),
	C(BPF_MAP_TYPE_, PERF_EVENT_ARRAY), C(BPF_MAP_TYPE_, PERCPU_HASH),
	C(BPF_MAP_TYPE_, PERCPU_ARRAY), C(BPF_MAP_TYPE_, STACK_TRACE), C(BPF_MAP_TYPE_, CGROUP_ARRAY),
	C(BPF_MAP_TYPE_, LRU_HASH), C(BPF_MAP_TYPE_, LRU_PERCPU_HASH), C(BPF_MAP_TYPE_, LPM_TRIE),
	C(BPF_MAP_TYPE_, ARRAY_OF_MAPS), C(BPF_MAP_TYPE_, HASH_OF_MAPS), C(BPF_MAP_TYPE_, DEVMAP),
	C(BPF_MAP_TYPE_, SOCKMAP), C(BPF_MAP_TYPE_, CPUMAP), C(BPF_MAP_TYPE_, XSKMAP),
	C(BPF_MAP_TYPE_, SOCKHASH), C(BPF_MAP_TYPE_, CGROUP_STORAGE),
	C(BPF_MAP_TYPE_, REUSEPORT_SOCKARRAY), C(BPF_MAP_TYPE_, PERCPU_CGROUP_STORAGE),
	C(BPF_MAP_TYPE_, QUEUE), C(BPF_MAP_TYPE_, STACK), C(BPF_MAP_TYPE_, SK_STORAGE),
	C(BPF_MAP_TYPE_, DEVMAP_HASH), C(BPF_MAP_TYPE_, STRUCT_OPS), C(BPF_MAP_TYPE_, RINGBUF),
	C(BPF_MAP_TYPE_, INODE_STORAGE), C(BPF_MAP_TYPE_, TASK_STORAGE),
	C(BPF_MAP_TYPE_, BLOOM_FILTER), C(BPF_MAP_TYPE_, USER_RINGBUF),
};

static const struct named prog_types[] = {
	C(BPF_PROG_TYPE_, SOCKET_FILTER), C(BPF_PROG_TYPE_, KPROBE), C(BPF_PROG_TYPE_, SCHED_CLS),
	C(BPF_PROG_TYPE_, SCHED_ACT), C(BPF_PROG_TYPE_, TRACEPOINT), C(BPF_PROG_TYPE_, XDP),
	C(BPF_PROG_TYPE_, PERF_EVENT), C(BPF_PROG_TYPE_, CGROUP_SKB), C(BPF_PROG_TYPE_, CGROUP_SOCK),
	C(BPF_PROG_TYPE_, LWT_IN), C(BPF_PROG_TYPE_, LWT_OUT), C(BPF_PROG_TYPE_, LWT_XMIT),
	C(BPF_PROG_TYPE_, SOCK_OPS), C(BPF_PROG_TYPE_, SK_SKB), C(BPF_PROG_TYPE_, CGROUP_DEVICE),
	C(BPF_PROG_TYPE_, SK_MSG), C(BPF_PROG_TYPE_, RAW_TRACEPOINT),
	C(BPF_PROG_TYPE_, CGROUP_SOCK_ADDR), C(BPF_PROG_TYPE_, LWT_SEG6LOCAL),
	C(BPF_PROG_TYPE_, LIRC_MODE2), C(BPF_PROG_TYPE_, SK_REUSEPORT),
	C(BPF_PROG_TYPE_, FLOW_DISSECTOR), C(BPF_PROG_TYPE_, CGROUP_SYSCTL),
	C(BPF_PROG_TYPE_, RAW_TRACEPOINT_WRITABLE), C(BPF_PROG_TYPE_, CGROUP_SOCKOPT),
	C(BPF_PROG_TYPE_, TRACING), C(BPF_PROG_TYPE_, STRUCT_OPS), C(BPF_PROG_TYPE_, EXT),
	C(BPF_PROG_TYPE_, LSM), C(BPF_PROG_TYPE_, SK_LOOKUP), C(BPF_PROG_TYPE_, SYSCALL),
};

static const struct named update_flags[] = {
	C(BPF_, ANY), C(BPF_, NOEXIST), C(BPF_, EXIST), C(BPF_F_, LOCK),
};

static const struct named map_flags[] = {
	C(BPF_F_, NO_PREALLOC), C(BPF_F_, NO_COMMON_LRU), C(BPF_F_, NUMA_NODE), C(BPF_F_, RDONLY),
	C(BPF_F_, WRONLY), C(BPF_F_, ZERO_SEED), C(BPF_F_, RDONLY_PROG), C(BPF_F_, WRONLY_PROG),
	C(BPF_F_, MMAPABLE), C(BPF_F_, INNER_MAP),
};

static const struct named test_run_flags[] = {
	C(BPF_F_TEST_, RUN_ON_CPU), C(BPF_F_TEST_, XDP_LIVE_FRAMES),
};

static const struct named xdp_actions[] = {
	C(XDP_, ABORTED), C(XDP_, DROP), C(XDP_, PASS), C(XDP_, TX), C(XDP_, REDIRECT),
};

static const struct named tc_actions[] = {
	C(TC_ACT_, UNSPEC), C(TC_ACT_, OK), C(TC_ACT_, RECLASSIFY), C(TC_ACT_, SHOT),
	C(TC_ACT_, PIPE), C(TC_ACT_, STOLEN), C(TC_ACT_, QUEUED), C(TC_ACT_, REPEAT),
	C(TC_ACT_, REDIRECT), C(TC_ACT_, TRAP),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static bool add_group(napi_env env, napi_value parent, const char *key, const struct named *items,
		      size_t n)
{
	napi_value obj;

	HY_NAPI_B(env, napi_create_object(env, &obj));
	for (size_t i = 0; i < n; i++) {
		napi_value v;

		HY_NAPI_B(env, napi_create_int32(env, (int32_t)items[i].value, &v));
		HY_NAPI_B(env, napi_set_named_property(env, obj, items[i].name, v));
	}
	HY_NAPI_B(env, napi_object_freeze(env, obj));
	return hy_set_value(env, parent, key, obj);
}

bool constants_register(napi_env env, napi_value exports)
{
	napi_value c;

	HY_NAPI_B(env, napi_create_object(env, &c));
	if (!add_group(env, c, "mapTypes", map_types, N(map_types)) ||
	    !add_group(env, c, "progTypes", prog_types, N(prog_types)) ||
	    !add_group(env, c, "updateFlags", update_flags, N(update_flags)) ||
	    !add_group(env, c, "mapFlags", map_flags, N(map_flags)) ||
	    !add_group(env, c, "testRunFlags", test_run_flags, N(test_run_flags)) ||
	    !add_group(env, c, "xdpActions", xdp_actions, N(xdp_actions)) ||
	    !add_group(env, c, "tcActions", tc_actions, N(tc_actions)))
		return false;
	HY_NAPI_B(env, napi_object_freeze(env, c));
	return hy_set_value(env, exports, "constants", c);
}
