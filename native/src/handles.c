/* Type-tagged handles: creation, unwrapping, close and finalization. */
#include "handles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "errors.h"

/* One random 128-bit tag per kind. */
static const napi_type_tag kind_tags[HANDLE_KIND_COUNT] = {
	[HANDLE_OBJECT] = { 0x6879706861000001ULL, 0x9c1d2f8e4b7a3e01ULL },
	[HANDLE_MAP] = { 0x6879706861000002ULL, 0x9c1d2f8e4b7a3e02ULL },
	[HANDLE_PROG] = { 0x6879706861000003ULL, 0x9c1d2f8e4b7a3e03ULL },
	[HANDLE_RINGBUF] = { 0x6879706861000004ULL, 0x9c1d2f8e4b7a3e04ULL },
	[HANDLE_NETLINK] = { 0x6879706861000005ULL, 0x9c1d2f8e4b7a3e05ULL },
};

const char *handle_kind_name(enum handle_kind kind)
{
	switch (kind) {
	case HANDLE_OBJECT: return "object";
	case HANDLE_MAP: return "map";
	case HANDLE_PROG: return "prog";
	case HANDLE_RINGBUF: return "ringbuf";
	case HANDLE_NETLINK: return "netlink";
	default: return "unknown";
	}
}

static void release_once(napi_env env, struct handle *h)
{
	if (h->released)
		return;
	h->released = true;
	if (h->release)
		h->release(env, h);
}

void handle_ref(struct handle *h)
{
	h->refs++;
}

void handle_unref(napi_env env, struct handle *h)
{
	if (--h->refs > 0)
		return;
	release_once(env, h); /* no-op unless something skipped close */
	free(h);
}

void handle_close(napi_env env, struct handle *h)
{
	if (h->closed)
		return;
	h->closed = true;
	if (h->busy == 0)
		release_once(env, h);
}

void handle_busy_begin(struct handle *h)
{
	h->busy++;
	handle_ref(h);
}

void handle_busy_end(napi_env env, struct handle *h)
{
	if (--h->busy == 0 && h->closed)
		release_once(env, h);
	handle_unref(env, h);
}

static void finalize(napi_env env, void *data, void *hint)
{
	struct handle *h = data;

	handle_close(env, h);
	handle_unref(env, h);
}

napi_value handle_wrap(napi_env env, struct handle *h)
{
	napi_value v;
	napi_status s;

	s = napi_create_external(env, h, finalize, NULL, &v);
	if (s != napi_ok) {
		handle_close(env, h);
		handle_unref(env, h);
		hy_napi_failed(env, s, "napi_create_external");
		return NULL;
	}
	/* From here the finalizer owns h; a failed tag makes an inert external that the
	 * GC will finalize. */
	s = napi_type_tag_object(env, v, &kind_tags[h->kind]);
	if (s != napi_ok) {
		handle_close(env, h);
		hy_napi_failed(env, s, "napi_type_tag_object");
		return NULL;
	}
	return v;
}

/* Which kind of handle is v? The kinds in `first` are tried before the others:
 * each check is a property lookup, and the expected kind is the common case. */
static bool kind_of(napi_env env, napi_value v, unsigned first, enum handle_kind *kind)
{
	napi_valuetype t;
	bool match;

	if (!v || napi_typeof(env, v, &t) != napi_ok || t != napi_external)
		return false;
	for (int pass = 0; pass < 2; pass++) {
		for (int k = 0; k < HANDLE_KIND_COUNT; k++) {
			bool in_first = (first & HANDLE_MASK(k)) != 0;

			if (in_first != (pass == 0))
				continue;
			if (napi_check_object_type_tag(env, v, &kind_tags[k], &match) == napi_ok && match) {
				*kind = (enum handle_kind)k;
				return true;
			}
		}
	}
	return false;
}

static const char *article(const char *word)
{
	return strchr("aeiou", word[0]) ? "an" : "a";
}

static void describe_mask(unsigned mask, char *buf, size_t len)
{
	size_t off = 0;
	int n = 0;

	buf[0] = '\0';
	for (int k = 0; k < HANDLE_KIND_COUNT && off < len; k++) {
		if (!(mask & HANDLE_MASK(k)))
			continue;
		off += snprintf(buf + off, len - off, "%s%s", n++ ? " or " : "",
				handle_kind_name((enum handle_kind)k));
	}
}

struct handle *handle_get(napi_env env, napi_value v, unsigned kind_mask, const char *fn,
			  const char *name, bool allow_busy)
{
	enum handle_kind kind;
	struct handle *h = NULL;
	char want[64];

	describe_mask(kind_mask, want, sizeof(want));
	if (!kind_of(env, v, kind_mask, &kind)) {
		hy_throw_code(env, HY_EBADHANDLE, fn, "%s must be %s %s handle, got a non-handle value",
			      name, article(want), want);
		return NULL;
	}
	if (!(kind_mask & HANDLE_MASK(kind))) {
		hy_throw_code(env, HY_EBADHANDLE, fn, "%s must be %s %s handle, got %s %s handle", name,
			      article(want), want, article(handle_kind_name(kind)),
			      handle_kind_name(kind));
		return NULL;
	}
	if (napi_get_value_external(env, v, (void **)&h) != napi_ok || !h) {
		hy_throw_code(env, HY_EBADHANDLE, fn, "%s is not a valid handle", name);
		return NULL;
	}
	if (h->closed) {
		hy_throw_code(env, HY_ECLOSED, fn, "%s handle %s is closed", handle_kind_name(kind),
			      name);
		return NULL;
	}
	if (h->busy && !allow_busy) {
		hy_throw_code(env, HY_EBUSY, fn, "%s handle %s is busy with an async operation",
			      handle_kind_name(kind), name);
		return NULL;
	}
	return h;
}

napi_value js_close(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	enum handle_kind kind;
	struct handle *h = NULL;

	if (!hy_args(env, info, 1, argv))
		return NULL;
	if (!kind_of(env, argv[0], HANDLE_ANY, &kind)) {
		hy_throw_code(env, HY_EBADHANDLE, "close", "handle must be a handle, got a non-handle value");
		return NULL;
	}
	HY_NAPI(env, napi_get_value_external(env, argv[0], (void **)&h));
	if (h)
		handle_close(env, h);
	return hy_undefined(env);
}
