/* What each file contributes: a register function that adds its JS functions to
 * the exports object, plus the few constructors other files share. */
#ifndef HYPHA_MODULES_H
#define HYPHA_MODULES_H

#include <stdbool.h>
#include <node_api.h>

#include "handles.h"

bool obj_register(napi_env env, napi_value exports);
bool map_register(napi_env env, napi_value exports);
bool prog_register(napi_env env, napi_value exports);
bool link_register(napi_env env, napi_value exports);
bool ringbuf_register(napi_env env, napi_value exports);
bool netns_register(napi_env env, napi_value exports);
bool constants_register(napi_env env, napi_value exports);

/* A map handle owning fd (closed on failure). op names the call that produced fd. */
napi_value map_handle_from_fd(napi_env env, int fd, const char *op);
/* A program handle owning fd (closed on failure). */
napi_value prog_handle_from_fd(napi_env env, int fd);

/* dup() with O_CLOEXEC; -1 and errno on failure. */
int hy_dup(int fd);

#endif
