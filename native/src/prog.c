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
int hy_test_run(int fd, struct bpf_test_run_opts *opts, uint32_t data_room, uint32_t ctx_room)
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

/* The options both test runs take: opts.data (required), repeat, dataOutSize
 * (default: the input's length plus TEST_RUN_HEADROOM) and flags. */
struct run_args {
	void *data;
	size_t data_len;
	uint32_t repeat, data_out_size, flags;
};

static bool get_run_args(napi_env env, napi_value opts, const char *fn, struct run_args *a)
{
	napi_value v;

	a->repeat = 1;
	a->flags = 0;
	if (hy_is_nullish(env, opts)) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts must be an object with data, got nothing");
		return false;
	}
	if (!hy_check_opts(env, opts, fn, "opts") || !hy_get_opt(env, opts, "data", &v))
		return false;
	if (!v) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.data is required (a Uint8Array)");
		return false;
	}
	if (!hy_get_bytes(env, v, fn, "opts.data", &a->data, &a->data_len))
		return false;
	if (a->data_len > UINT32_MAX - TEST_RUN_HEADROOM) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.data is too large (%zu bytes)", a->data_len);
		return false;
	}
	a->data_out_size = (uint32_t)a->data_len + TEST_RUN_HEADROOM;
	if (!hy_get_opt(env, opts, "repeat", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.repeat", &a->repeat)) ||
	    !hy_get_opt(env, opts, "dataOutSize", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.dataOutSize", &a->data_out_size)) ||
	    !hy_get_opt(env, opts, "flags", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.flags", &a->flags)))
		return false;
	if (a->repeat > INT32_MAX) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.repeat must be at most %d, got %u",
			      INT32_MAX, a->repeat);
		return false;
	}
	return true;
}

/* progTestRun(prog, {data, repeat?, ctxIn?, ctxOutSize?, dataOutSize?, flags?})
 *   -> {retval, durationNs, dataOut, ctxOut?} */
static napi_value js_prog_test_run(napi_env env, napi_callback_info info)
{
	const char *fn = "progTestRun";
	napi_value argv[2], v, out, data_out = NULL, ctx_out = NULL;
	struct prog_handle *p;
	struct run_args a;
	void *ctx_in = NULL, *dout = NULL, *cout = NULL;
	size_t ctx_len = 0;
	uint32_t ctx_out_size = 0, data_out_size;
	bool want_ctx_out = false;
	LIBBPF_OPTS(bpf_test_run_opts, opts);

	if (!hy_args(env, info, 2, argv) || !(p = get_prog(env, argv[0], fn)) ||
	    !get_run_args(env, argv[1], fn, &a))
		return NULL;
	if (!hy_get_opt(env, argv[1], "ctxIn", &v) ||
	    (v && !hy_get_bytes(env, v, fn, "opts.ctxIn", &ctx_in, &ctx_len)) ||
	    !hy_get_opt(env, argv[1], "ctxOutSize", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.ctxOutSize", &ctx_out_size)))
		return NULL;
	want_ctx_out = v != NULL;
	data_out_size = a.data_out_size;
	/* Output buffers are JS-owned from the start; we trim them with subarray below. */
	if (!(data_out = hy_new_bytes(env, data_out_size, &dout)))
		return NULL;
	if (want_ctx_out && !(ctx_out = hy_new_bytes(env, ctx_out_size, &cout)))
		return NULL;
	opts.data_in = a.data;
	opts.data_size_in = (uint32_t)a.data_len;
	opts.data_out = data_out_size ? dout : NULL;
	opts.data_size_out = data_out_size;
	opts.ctx_in = ctx_len ? ctx_in : NULL;
	opts.ctx_size_in = (uint32_t)ctx_len;
	opts.ctx_out = want_ctx_out && ctx_out_size ? cout : NULL;
	opts.ctx_size_out = want_ctx_out ? ctx_out_size : 0;
	opts.repeat = (int)a.repeat;
	opts.flags = a.flags;
	if (hy_test_run(p->fd, &opts, data_out_size, want_ctx_out ? ctx_out_size : 0)) {
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

/* progTestRunAsync(prog, {data, repeat?, dataOutSize?, flags?})
 *   -> Promise<{retval, durationNs, dataOut}>
 * The same run on a worker thread, for programs that take long (a pass over a
 * large map): the JS thread goes on meanwhile. The input is copied and the
 * output is ours until the run ends; the program fd is our own dup, so
 * close(prog) during the run cannot pull it away. No ctx in or out. */
struct run_work {
	napi_async_work work;
	napi_deferred deferred;
	int fd;
	struct bpf_test_run_opts opts;
	void *data_in, *data_out;
	uint32_t data_room;
	int ret, err;
};

static void run_work_free(struct run_work *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->data_in);
	free(w->data_out);
	free(w);
}

static void run_execute(napi_env env, void *data)
{
	struct run_work *w = data;

	w->ret = hy_test_run(w->fd, &w->opts, w->data_room, 0);
	w->err = w->ret ? errno : 0;
}

static void run_complete(napi_env env, napi_status status, void *data)
{
	struct run_work *w = data;
	napi_value out = NULL, error = NULL, bytes;
	void *dst;

	if (status != napi_ok)
		error = hy_code_error(env, HY_ENAPI, "progTestRunAsync", "async work failed (status %d)",
				      (int)status);
	else if (w->ret)
		error = hy_errno_error(env, "bpf_prog_test_run_opts", w->err, NULL);
	else if (napi_create_object(env, &out) != napi_ok ||
		 !hy_set_u32(env, out, "retval", w->opts.retval) ||
		 !hy_set_u32(env, out, "durationNs", w->opts.duration) ||
		 !(bytes = hy_new_bytes(env, w->opts.data_size_out, &dst)) ||
		 (memcpy(dst, w->data_out, w->opts.data_size_out), !hy_set_value(env, out, "dataOut", bytes))) {
		out = NULL;
		napi_get_and_clear_last_exception(env, &error);
	}
	hy_settle(env, w->deferred, out, error);
	napi_delete_async_work(env, w->work);
	run_work_free(w);
}

static napi_value js_prog_test_run_async(napi_env env, napi_callback_info info)
{
	const char *fn = "progTestRunAsync";
	napi_value argv[2], v, promise, name;
	struct prog_handle *p;
	struct run_work *w;
	struct run_args a;
	napi_status s;

	if (!hy_args(env, info, 2, argv) || !(p = get_prog(env, argv[0], fn)) ||
	    !get_run_args(env, argv[1], fn, &a))
		return NULL;
	if (a.data_len == 0) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.data must not be empty");
		return NULL;
	}
	if (!hy_get_opt(env, argv[1], "ctxIn", &v))
		return NULL;
	if (v || !hy_get_opt(env, argv[1], "ctxOutSize", &v) || v) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "opts.ctxIn and opts.ctxOutSize are not supported here (use progTestRun)");
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	w->fd = -1;
	w->data_in = malloc(a.data_len);
	w->data_out = malloc(a.data_out_size ? a.data_out_size : 1);
	if (!w->data_in || !w->data_out) {
		run_work_free(w);
		hy_throw_errno(env, "malloc", ENOMEM, NULL);
		return NULL;
	}
	memcpy(w->data_in, a.data, a.data_len);
	w->fd = hy_dup(p->fd);
	if (w->fd < 0) {
		hy_throw_errno(env, "dup", errno, "prog fd");
		run_work_free(w);
		return NULL;
	}
	w->opts.sz = sizeof(w->opts);
	w->opts.data_in = w->data_in;
	w->opts.data_size_in = (uint32_t)a.data_len;
	w->opts.data_out = a.data_out_size ? w->data_out : NULL;
	w->opts.data_size_out = a.data_out_size;
	w->opts.repeat = (int)a.repeat;
	w->opts.flags = a.flags;
	w->data_room = a.data_out_size;
	if ((s = napi_create_string_utf8(env, "hypha:progTestRun", NAPI_AUTO_LENGTH, &name)) != napi_ok ||
	    (s = napi_create_async_work(env, NULL, name, run_execute, run_complete, w, &w->work)) != napi_ok) {
		run_work_free(w);
		hy_napi_failed(env, s, "napi_create_async_work");
		return NULL;
	}
	if ((s = napi_create_promise(env, &w->deferred, &promise)) != napi_ok ||
	    (s = napi_queue_async_work(env, w->work)) != napi_ok) {
		napi_delete_async_work(env, w->work);
		run_work_free(w);
		hy_napi_failed(env, s, "napi_queue_async_work");
		return NULL;
	}
	return promise;
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
	       hy_export(env, exports, "progTestRunAsync", js_prog_test_run_async) &&
	       hy_export(env, exports, "progInfo", js_prog_info);
}
