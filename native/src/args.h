/* Reading JS arguments and building JS results. Every reader throws an EINVALARG
 * TypeError naming the function and the argument and returns false (or NULL) on bad
 * input; the caller then returns NULL. The TypeScript layer validates more kindly;
 * these checks only make sure nothing here can crash on a wrong value. */
#ifndef HYPHA_ARGS_H
#define HYPHA_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

/* Fetch up to n arguments; missing ones are undefined. */
bool hy_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv);

bool hy_is_nullish(napi_env env, napi_value v);

/* An integral number in [0, 2^32). */
bool hy_get_u32(napi_env env, napi_value v, const char *fn, const char *name, uint32_t *out);
/* An integral number in [min, max]. */
bool hy_get_int(napi_env env, napi_value v, const char *fn, const char *name, int64_t min,
		int64_t max, int64_t *out);
/* A Uint8Array (Buffer is one). The data stays valid while v is reachable. */
bool hy_get_bytes(napi_env env, napi_value v, const char *fn, const char *name, void **data,
		  size_t *len);
/* A string, returned malloc()ed (caller frees); NULL after throwing. */
char *hy_get_string(napi_env env, napi_value v, const char *fn, const char *name);

/* opts must be undefined, null or an object. */
bool hy_check_opts(napi_env env, napi_value opts, const char *fn, const char *name);
/* Property `key` of opts; *out is NULL when opts is nullish or the property is undefined. */
bool hy_get_opt(napi_env env, napi_value opts, const char *key, napi_value *out);

/* Result builders. They return false after a failure (exception pending). */
bool hy_set_u32(napi_env env, napi_value obj, const char *key, uint32_t v);
bool hy_set_double(napi_env env, napi_value obj, const char *key, double v);
bool hy_set_bool(napi_env env, napi_value obj, const char *key, bool v);
bool hy_set_string(napi_env env, napi_value obj, const char *key, const char *v);
bool hy_set_value(napi_env env, napi_value obj, const char *key, napi_value v);

/* A fresh Uint8Array of len bytes; *data points at its storage. NULL after throwing. */
napi_value hy_new_bytes(napi_env env, size_t len, void **data);
/* A Uint8Array copy of data. */
napi_value hy_bytes_copy(napi_env env, const void *data, size_t len);

napi_value hy_undefined(napi_env env);

/* Register a function on exports; false after a failure. */
bool hy_export(napi_env env, napi_value exports, const char *name, napi_callback cb);

#endif
