/* Programs: handles, BPF_PROG_TEST_RUN and info. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "modules.h"

#define TEST_RUN_HEADROOM 256 /* default extra dataOut room for programs that grow packets */

static void prog_release(napi_env env, struct handle *h)
{
	struct prog_handle *p = (struct prog_handle *)h;

	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

napi_value prog_handle_from_fd(napi_env env, int fd)
{
	struct prog_handle *p = calloc(1, sizeof(*p));

	if (!p) {
		close(fd);
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	p->h.kind = HANDLE_PROG;
	p->h.refs = 1;
	p->h.release = prog_release;
	p->fd = fd;
	return handle_wrap(env, &p->h);
}

static struct prog_handle *get_prog(napi_env env, napi_value v, const char *fn)
{
	return (struct prog_handle *)handle_get(env, v, HANDLE_MASK(HANDLE_PROG), fn, "prog", true);
}

/* BPF_PROG_TEST_RUN stops a repeat loop with EINTR as soon as the thread has a
 * signal pending. Signals are blocked on this thread for the duration (they are
 * delivered right after), and a run interrupted anyway (e.g. by io_uring task work)
 * is retried a few times. Side effects of an interrupted partial run remain. */
static int test_run(int fd, struct bpf_test_run_opts *opts, uint32_t data_room, uint32_t ctx_room)
{
	sigset_t all, old;
	int ret, tries = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	do {
		opts->data_size_out = data_room;
		opts->ctx_size_out = ctx_room;
		ret = bpf_prog_test_run_opts(fd, opts);
	} while (ret && errno == EINTR && ++tries < 5);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

/* progTestRun(prog, {data, repeat?, ctxIn?, ctxOutSize?, dataOutSize?, flags?})
 *   -> {retval, durationNs, dataOut, ctxOut?} */
static napi_value js_prog_test_run(napi_env env, napi_callback_info info)
{
	const char *fn = "progTestRun";
	napi_value argv[2], v, out, data_out = NULL, ctx_out = NULL;
	struct prog_handle *p;
	void *data, *ctx_in = NULL, *dout = NULL, *cout = NULL;
	size_t data_len, ctx_len = 0;
	uint32_t repeat = 1, ctx_out_size = 0, data_out_size, flags = 0;
	bool want_ctx_out = false;
	LIBBPF_OPTS(bpf_test_run_opts, opts);

	if (!hy_args(env, info, 2, argv) || !(p = get_prog(env, argv[0], fn)))
		return NULL;
	if (hy_is_nullish(env, argv[1])) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts must be an object with data, got nothing");
		return NULL;
	}
	if (!hy_check_opts(env, argv[1], fn, "opts") || !hy_get_opt(env, argv[1], "data", &v))
		return NULL;
	if (!v) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.data is required (a Uint8Array)");
		return NULL;
	}
	if (!hy_get_bytes(env, v, fn, "opts.data", &data, &data_len))
		return NULL;
	if (data_len > UINT32_MAX - TEST_RUN_HEADROOM) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.data is too large (%zu bytes)", data_len);
		return NULL;
	}
	data_out_size = (uint32_t)data_len + TEST_RUN_HEADROOM;
	if (!hy_get_opt(env, argv[1], "repeat", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.repeat", &repeat)) ||
	    !hy_get_opt(env, argv[1], "ctxIn", &v) ||
	    (v && !hy_get_bytes(env, v, fn, "opts.ctxIn", &ctx_in, &ctx_len)) ||
	    !hy_get_opt(env, argv[1], "ctxOutSize", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.ctxOutSize", &ctx_out_size)))
		return NULL;
	want_ctx_out = v != NULL;
	if (!hy_get_opt(env, argv[1], "dataOutSize", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.dataOutSize", &data_out_size)) ||
	    !hy_get_opt(env, argv[1], "flags", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.flags", &flags)))
		return NULL;
	if (repeat > INT32_MAX) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.repeat must be at most %d, got %u",
			      INT32_MAX, repeat);
		return NULL;
	}
	/* Output buffers are JS-owned from the start; we trim them with subarray below. */
	if (!(data_out = hy_new_bytes(env, data_out_size, &dout)))
		return NULL;
	if (want_ctx_out && !(ctx_out = hy_new_bytes(env, ctx_out_size, &cout)))
		return NULL;
	opts.data_in = data;
	opts.data_size_in = (uint32_t)data_len;
	opts.data_out = data_out_size ? dout : NULL;
	opts.data_size_out = data_out_size;
	opts.ctx_in = ctx_len ? ctx_in : NULL;
	opts.ctx_size_in = (uint32_t)ctx_len;
	opts.ctx_out = want_ctx_out && ctx_out_size ? cout : NULL;
	opts.ctx_size_out = want_ctx_out ? ctx_out_size : 0;
	opts.repeat = (int)repeat;
	opts.flags = flags;
	if (test_run(p->fd, &opts, data_out_size, want_ctx_out ? ctx_out_size : 0)) {
		int err = errno;
		napi_value e;

		if (err == ENOSPC)
			e = hy_errno_error(env, "bpf_prog_test_run_opts", err,
					   "output did not fit: data out %u bytes (room %u), ctx out %u bytes (room %u)",
					   opts.data_size_out, data_out_size, opts.ctx_size_out,
					   want_ctx_out ? ctx_out_size : 0);
		else
			e = hy_errno_error(env, "bpf_prog_test_run_opts", err, NULL);
		if (e)
			napi_throw(env, e);
		return NULL;
	}
	HY_NAPI(env, napi_create_object(env, &out));
	if (!hy_set_u32(env, out, "retval", opts.retval) ||
	    !hy_set_u32(env, out, "durationNs", opts.duration))
		return NULL;
	if (opts.data_size_out < data_out_size) {
		napi_value ab;

		HY_NAPI(env, napi_get_typedarray_info(env, data_out, NULL, NULL, NULL, &ab, NULL));
		HY_NAPI(env, napi_create_typedarray(env, napi_uint8_array, opts.data_size_out, ab, 0,
						    &data_out));
	}
	if (!hy_set_value(env, out, "dataOut", data_out))
		return NULL;
	if (want_ctx_out) {
		if (opts.ctx_size_out < ctx_out_size) {
			napi_value ab;

			HY_NAPI(env, napi_get_typedarray_info(env, ctx_out, NULL, NULL, NULL, &ab, NULL));
			HY_NAPI(env, napi_create_typedarray(env, napi_uint8_array, opts.ctx_size_out, ab,
							    0, &ctx_out));
		}
		if (!hy_set_value(env, out, "ctxOut", ctx_out))
			return NULL;
	}
	return out;
}

/* progInfo(prog): {id, type, name, tag} */
static napi_value js_prog_info(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	struct prog_handle *p;
	struct bpf_prog_info pi;
	__u32 len = sizeof(pi);
	char tag[2 * BPF_TAG_SIZE + 1];

	if (!hy_args(env, info, 1, argv) || !(p = get_prog(env, argv[0], "progInfo")))
		return NULL;
	memset(&pi, 0, sizeof(pi));
	if (bpf_obj_get_info_by_fd(p->fd, &pi, &len)) {
		hy_throw_errno(env, "bpf_obj_get_info_by_fd", errno, NULL);
		return NULL;
	}
	for (int i = 0; i < BPF_TAG_SIZE; i++)
		snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
	HY_NAPI(env, napi_create_object(env, &out));
	if (!hy_set_u32(env, out, "id", pi.id) || !hy_set_u32(env, out, "type", pi.type) ||
	    !hy_set_string(env, out, "name", pi.name) || !hy_set_string(env, out, "tag", tag))
		return NULL;
	return out;
}

bool prog_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "progTestRun", js_prog_test_run) &&
	       hy_export(env, exports, "progInfo", js_prog_info);
}
