/* Building JS errors. Every failure becomes an Error with:
 *   code  - errno name ('ENOENT', 'E2BIG', ...) or one of the non-errno codes below
 *   errno - positive errno, 0 for non-errno problems
 *   op    - the libbpf/syscall function that failed (or the JS function for bad arguments)
 * Functions named hy_throw_* throw and return nothing useful; the caller returns NULL. */
#ifndef HYPHA_ERRORS_H
#define HYPHA_ERRORS_H

#include <stdbool.h>
#include <stddef.h>
#include <node_api.h>

#define HY_EBADHANDLE "EBADHANDLE" /* not a handle, or a handle of the wrong kind */
#define HY_ECLOSED "ECLOSED"       /* handle already closed */
#define HY_EINVALARG "EINVALARG"   /* bad argument type, size or value */
#define HY_EBUSY "EHANDLEBUSY"     /* handle in use by an async operation */
#define HY_ENAPI "ENAPI"           /* a Node-API call failed (should not happen) */

/* Name of an errno value: "ENOENT"; kernel-internal values such as 524 get their
 * kernel names ("ENOTSUPP"); unknown values become "ERRNO_<n>". */
const char *hy_errno_name(int err, char *buf, size_t len);
/* strerror() with kernel-internal values spelled out. */
const char *hy_errno_text(int err, char *buf, size_t len);

/* Create (not throw) an errno error: message "<op>: <detail>: <strerror> (<CODE>)". */
napi_value hy_errno_error(napi_env env, const char *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void hy_throw_errno(napi_env env, const char *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Same, with a multi-line trailer (e.g. a log tail) after the "(<CODE>)" part. */
napi_value hy_errno_error_trailer(napi_env env, const char *op, int err, const char *detail,
				  const char *trailer);

/* Create/throw an error with a non-errno code (errno 0). EBADHANDLE and EINVALARG
 * are TypeErrors, the others plain Errors. Message: "<op>: <formatted>". */
napi_value hy_code_error(napi_env env, const char *code, const char *op, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void hy_throw_code(napi_env env, const char *code, const char *op, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A Node-API call returned a non-ok status: unless an exception is already pending,
 * throw an ENAPI error describing it. */
void hy_napi_failed(napi_env env, napi_status status, const char *what);

/* For promise-returning functions: turn the pending exception into a rejected
 * promise, so callers see one failure path. NULL if even that fails. */
napi_value hy_reject_pending(napi_env env);

/* End an async call's promise: resolved with value, or (value NULL) rejected
 * with error, or with undefined when no error object could be made. */
void hy_settle(napi_env env, napi_deferred deferred, napi_value value, napi_value error);

/* Attach a string property (e.g. verifierLog) to an error object; best effort. */
void hy_error_set_string(napi_env env, napi_value err, const char *key, const char *value);
void hy_error_set_number(napi_env env, napi_value err, const char *key, double value);

/* Call a Node-API function; on failure throw and return NULL from the caller. */
#define HY_NAPI(env, call)                                   \
	do {                                                 \
		napi_status hy_s_ = (call);                  \
		if (hy_s_ != napi_ok) {                      \
			hy_napi_failed((env), hy_s_, #call); \
			return NULL;                         \
		}                                            \
	} while (0)

/* Same, for functions returning bool. */
#define HY_NAPI_B(env, call)                                 \
	do {                                                 \
		napi_status hy_s_ = (call);                  \
		if (hy_s_ != napi_ok) {                      \
			hy_napi_failed((env), hy_s_, #call); \
			return false;                        \
		}                                            \
	} while (0)

#endif
