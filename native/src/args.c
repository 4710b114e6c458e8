/* Reading JS arguments and building JS results. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

bool hy_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv)
{
	size_t argc = n;
	napi_value undef;

	HY_NAPI_B(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	HY_NAPI_B(env, napi_get_undefined(env, &undef));
	for (size_t i = argc; i < n; i++)
		argv[i] = undef;
	return true;
}

bool hy_is_nullish(napi_env env, napi_value v)
{
	napi_valuetype t;

	if (!v || napi_typeof(env, v, &t) != napi_ok)
		return true;
	return t == napi_undefined || t == napi_null;
}

static const char *type_name(napi_env env, napi_value v)
{
	napi_valuetype t;
	bool is;

	if (napi_typeof(env, v, &t) != napi_ok)
		return "unknown";
	switch (t) {
	case napi_undefined: return "undefined";
	case napi_null: return "null";
	case napi_boolean: return "boolean";
	case napi_number: return "number";
	case napi_string: return "string";
	case napi_symbol: return "symbol";
	case napi_function: return "function";
	case napi_external: return "handle";
	case napi_bigint: return "bigint";
	case napi_object:
		if (napi_is_typedarray(env, v, &is) == napi_ok && is)
			return "typed array other than Uint8Array";
		if (napi_is_array(env, v, &is) == napi_ok && is)
			return "array";
		return "object";
	}
	return "unknown";
}

bool hy_get_int(napi_env env, napi_value v, const char *fn, const char *name, int64_t min,
		int64_t max, int64_t *out)
{
	napi_valuetype t;
	double d;

	HY_NAPI_B(env, napi_typeof(env, v, &t));
	if (t != napi_number) {
		hy_throw_code(env, HY_EINVALARG, fn, "%s must be a number, got %s", name,
			      type_name(env, v));
		return false;
	}
	HY_NAPI_B(env, napi_get_value_double(env, v, &d));
	if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max) {
		hy_throw_code(env, HY_EINVALARG, fn, "%s must be an integer in [%lld, %lld], got %g",
			      name, (long long)min, (long long)max, d);
		return false;
	}
	*out = (int64_t)d;
	return true;
}

bool hy_get_u32(napi_env env, napi_value v, const char *fn, const char *name, uint32_t *out)
{
	int64_t x;

	if (!hy_get_int(env, v, fn, name, 0, UINT32_MAX, &x))
		return false;
	*out = (uint32_t)x;
	return true;
}

bool hy_get_bytes(napi_env env, napi_value v, const char *fn, const char *name, void **data,
		  size_t *len)
{
	bool is = false;
	napi_typedarray_type type;

	HY_NAPI_B(env, napi_is_typedarray(env, v, &is));
	if (is)
		HY_NAPI_B(env, napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL));
	if (!is || type != napi_uint8_array) {
		hy_throw_code(env, HY_EINVALARG, fn, "%s must be a Uint8Array, got %s", name,
			      type_name(env, v));
		return false;
	}
	if (!*data) /* zero-length views may have no storage */
		*data = (void *)"";
	return true;
}

char *hy_get_string(napi_env env, napi_value v, const char *fn, const char *name)
{
	napi_valuetype t;
	size_t len;
	char *s;

	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
		hy_throw_code(env, HY_EINVALARG, fn, "%s must be a string, got %s", name,
			      type_name(env, v));
		return NULL;
	}
	if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
		goto napi_fail;
	s = malloc(len + 1);
	if (!s) {
		hy_throw_errno(env, "malloc", ENOMEM, NULL);
		return NULL;
	}
	if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
		free(s);
		goto napi_fail;
	}
	if (strlen(s) != len) {
		hy_throw_code(env, HY_EINVALARG, fn, "%s must not contain NUL characters", name);
		free(s);
		return NULL;
	}
	return s;
napi_fail:
	hy_napi_failed(env, napi_generic_failure, "napi_get_value_string_utf8");
	return NULL;
}

bool hy_check_opts(napi_env env, napi_value opts, const char *fn, const char *name)
{
	napi_valuetype t;

	if (hy_is_nullish(env, opts))
		return true;
	HY_NAPI_B(env, napi_typeof(env, opts, &t));
	if (t != napi_object) {
		hy_throw_code(env, HY_EINVALARG, fn, "%s must be an object, got %s", name,
			      type_name(env, opts));
		return false;
	}
	return true;
}

bool hy_get_opt(napi_env env, napi_value opts, const char *key, napi_value *out)
{
	*out = NULL;
	if (hy_is_nullish(env, opts))
		return true;
	HY_NAPI_B(env, napi_get_named_property(env, opts, key, out));
	if (hy_is_nullish(env, *out))
		*out = NULL;
	return true;
}

bool hy_set_value(napi_env env, napi_value obj, const char *key, napi_value v)
{
	HY_NAPI_B(env, napi_set_named_property(env, obj, key, v));
	return true;
}

bool hy_set_u32(napi_env env, napi_value obj, const char *key, uint32_t x)
{
	napi_value v;

	HY_NAPI_B(env, napi_create_uint32(env, x, &v));
	return hy_set_value(env, obj, key, v);
}

bool hy_set_double(napi_env env, napi_value obj, const char *key, double x)
{
	napi_value v;

	HY_NAPI_B(env, napi_create_double(env, x, &v));
	return hy_set_value(env, obj, key, v);
}

bool hy_set_bool(napi_env env, napi_value obj, const char *key, bool x)
{
	napi_value v;

	HY_NAPI_B(env, napi_get_boolean(env, x, &v));
	return hy_set_value(env, obj, key, v);
}

bool hy_set_string(napi_env env, napi_value obj, const char *key, const char *s)
{
	napi_value v;

	HY_NAPI_B(env, napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v));
	return hy_set_value(env, obj, key, v);
}

napi_value hy_new_bytes(napi_env env, size_t len, void **data)
{
	napi_value ab, arr;

	HY_NAPI(env, napi_create_arraybuffer(env, len, data, &ab));
	HY_NAPI(env, napi_create_typedarray(env, napi_uint8_array, len, ab, 0, &arr));
	return arr;
}

napi_value hy_bytes_copy(napi_env env, const void *src, size_t len)
{
	void *data;
	napi_value arr = hy_new_bytes(env, len, &data);

	if (arr && len)
		memcpy(data, src, len);
	return arr;
}

napi_value hy_undefined(napi_env env)
{
	napi_value v = NULL;

	napi_get_undefined(env, &v);
	return v;
}

bool hy_export(napi_env env, napi_value exports, const char *name, napi_callback cb)
{
	napi_value fn;

	HY_NAPI_B(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn));
	return hy_set_value(env, exports, name, fn);
}
