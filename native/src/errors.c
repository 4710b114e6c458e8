/* Building JS errors with code, errno and op. */
#include "errors.h"
#include "args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kernel-internal errno values (include/linux/errno.h) that leak to userspace. */
static const struct {
	int err;
	const char *name;
	const char *text;
} kernel_errnos[] = {
	{ 512, "ERESTARTSYS", "Restart system call" },
	{ 515, "ENOIOCTLCMD", "No ioctl command" },
	{ 524, "ENOTSUPP", "Operation not supported (kernel ENOTSUPP)" },
	{ 525, "ETOOSMALL", "Buffer or request is too small" },
	{ 526, "ESERVERFAULT", "Server fault" },
	{ 527, "EBADTYPE", "Type not supported by server" },
};

const char *hy_errno_name(int err, char *buf, size_t len)
{
	const char *name = strerrorname_np(err);

	if (name)
		return name;
	for (size_t i = 0; i < sizeof(kernel_errnos) / sizeof(kernel_errnos[0]); i++)
		if (kernel_errnos[i].err == err)
			return kernel_errnos[i].name;
	snprintf(buf, len, "ERRNO_%d", err);
	return buf;
}

const char *hy_errno_text(int err, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(kernel_errnos) / sizeof(kernel_errnos[0]); i++)
		if (kernel_errnos[i].err == err)
			return kernel_errnos[i].text;
	return strerror_r(err, buf, len); /* GNU variant: returns the string */
}

static void set_props(napi_env env, napi_value error, const char *code, int err, const char *op)
{
	napi_value v;

	if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &v) == napi_ok)
		napi_set_named_property(env, error, "code", v);
	if (napi_create_int32(env, err, &v) == napi_ok)
		napi_set_named_property(env, error, "errno", v);
	if (napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &v) == napi_ok)
		napi_set_named_property(env, error, "op", v);
}

static napi_value make_error(napi_env env, bool type_error, const char *code, int err,
			     const char *op, const char *message)
{
	napi_value msg, error = NULL;

	if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok)
		return NULL;
	if ((type_error ? napi_create_type_error : napi_create_error)(env, NULL, msg, &error) != napi_ok)
		return NULL;
	set_props(env, error, code, err, op);
	return error;
}

napi_value hy_errno_error_trailer(napi_env env, const char *op, int err, const char *detail,
				  const char *trailer)
{
	char namebuf[32], textbuf[128];
	const char *name, *text;
	char *message = NULL;
	napi_value e;
	int n;

	if (err <= 0) /* defensive: callers pass positive errno values */
		err = err < 0 ? -err : EIO;
	name = hy_errno_name(err, namebuf, sizeof(namebuf));
	text = hy_errno_text(err, textbuf, sizeof(textbuf));
	n = asprintf(&message, "%s: %s%s%s (%s)%s%s", op, detail && detail[0] ? detail : "",
		     detail && detail[0] ? ": " : "", text, name, trailer && trailer[0] ? "\n" : "",
		     trailer ? trailer : "");
	if (n < 0)
		return make_error(env, false, name, err, op, text);
	e = make_error(env, false, name, err, op, message);
	free(message);
	return e;
}

static napi_value verrno_error(napi_env env, const char *op, int err, const char *fmt, va_list ap)
{
	char detail[1024];

	detail[0] = '\0';
	if (fmt)
		vsnprintf(detail, sizeof(detail), fmt, ap);
	return hy_errno_error_trailer(env, op, err, detail, NULL);
}

napi_value hy_errno_error(napi_env env, const char *op, int err, const char *fmt, ...)
{
	va_list ap;
	napi_value e;

	va_start(ap, fmt);
	e = verrno_error(env, op, err, fmt, ap);
	va_end(ap);
	return e;
}

void hy_throw_errno(napi_env env, const char *op, int err, const char *fmt, ...)
{
	va_list ap;
	napi_value e;

	va_start(ap, fmt);
	e = verrno_error(env, op, err, fmt, ap);
	va_end(ap);
	if (e)
		napi_throw(env, e);
}

static napi_value vcode_error(napi_env env, const char *code, const char *op, const char *fmt,
			      va_list ap)
{
	char detail[1024], message[1400];
	bool type_error = !strcmp(code, HY_EBADHANDLE) || !strcmp(code, HY_EINVALARG);

	vsnprintf(detail, sizeof(detail), fmt, ap);
	snprintf(message, sizeof(message), "%s: %s", op, detail);
	return make_error(env, type_error, code, 0, op, message);
}

napi_value hy_code_error(napi_env env, const char *code, const char *op, const char *fmt, ...)
{
	va_list ap;
	napi_value e;

	va_start(ap, fmt);
	e = vcode_error(env, code, op, fmt, ap);
	va_end(ap);
	return e;
}

void hy_throw_code(napi_env env, const char *code, const char *op, const char *fmt, ...)
{
	va_list ap;
	napi_value e;

	va_start(ap, fmt);
	e = vcode_error(env, code, op, fmt, ap);
	va_end(ap);
	if (e)
		napi_throw(env, e);
}

void hy_napi_failed(napi_env env, napi_status status, const char *what)
{
	bool pending = false;
	const napi_extended_error_info *info = NULL;

	if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
		return;
	napi_get_last_error_info(env, &info);
	hy_throw_code(env, HY_ENAPI, "node-api", "%s failed: %s (status %d)", what,
		      info && info->error_message ? info->error_message : "unknown error",
		      (int)status);
}

void hy_error_set_string(napi_env env, napi_value err, const char *key, const char *value)
{
	napi_value v;

	if (err && napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v) == napi_ok)
		napi_set_named_property(env, err, key, v);
}

void hy_error_set_number(napi_env env, napi_value err, const char *key, double value)
{
	napi_value v;

	if (err && napi_create_double(env, value, &v) == napi_ok)
		napi_set_named_property(env, err, key, v);
}

napi_value hy_reject_pending(napi_env env)
{
	napi_value error = NULL, promise;
	napi_deferred deferred;
	bool pending = false;

	if (napi_is_exception_pending(env, &pending) != napi_ok || !pending)
		return NULL;
	if (napi_get_and_clear_last_exception(env, &error) != napi_ok)
		return NULL;
	if (napi_create_promise(env, &deferred, &promise) != napi_ok ||
	    napi_reject_deferred(env, deferred, error) != napi_ok) {
		napi_throw(env, error);
		return NULL;
	}
	return promise;
}

void hy_settle(napi_env env, napi_deferred deferred, napi_value value, napi_value error)
{
	if (value)
		napi_resolve_deferred(env, deferred, value);
	else
		napi_reject_deferred(env, deferred, error ? error : hy_undefined(env));
}
