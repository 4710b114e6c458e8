/* What each file contributes: a register function that adds its JS functions to
 * the exports object, plus the few constructors other files share. */
#ifndef HYPHA_MODULES_H
#define HYPHA_MODULES_H

#include <stdbool.h>
#include <stdint.h>
#include <node_api.h>

#include "handles.h"

bool obj_register(napi_env env, napi_value exports);
bool map_register(napi_env env, napi_value exports);
bool prog_register(napi_env env, napi_value exports);
bool link_register(napi_env env, napi_value exports);
bool ringbuf_register(napi_env env, napi_value exports);
bool netlink_register(napi_env env, napi_value exports);
bool constants_register(napi_env env, napi_value exports);
bool sweep_register(napi_env env, napi_value exports);
bool sock_register(napi_env env, napi_value exports);

/* A map handle owning fd (closed on failure). op names the call that produced fd. */
napi_value map_handle_from_fd(napi_env env, int fd, const char *op);
/* A program handle owning fd (closed on failure). */
napi_value prog_handle_from_fd(napi_env env, int fd);

struct bpf_test_run_opts;
/* BPF_PROG_TEST_RUN with signals held off (retried on EINTR); data_room and
 * ctx_room are the output room, restored in opts before every try. 0 or -1 and
 * errno. Safe on any thread. */
int hy_test_run(int fd, struct bpf_test_run_opts *opts, uint32_t data_room, uint32_t ctx_room);

/* dup() with O_CLOEXEC; -1 and errno on failure. */
int hy_dup(int fd);

/* Why netns_socket failed: the call, its errno and a detail naming the path. */
struct netns_failure {
	const char *op;
	int err;
	char detail[4200];
};

/* socket(domain, type, protocol) in the network namespace at path (a /run/netns
 * file, /proc/<pid>/ns/net, or /proc/<pid>/fd/<n> of an nsfs fd), or in the
 * caller's namespace when path is NULL. -1 with *f filled on failure. */
int netns_socket(const char *path, int domain, int type, int protocol, struct netns_failure *f);

#endif
