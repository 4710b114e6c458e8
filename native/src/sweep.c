/* Sweeps: deleting a map's expired entries in bounded steps (mapSweepAsync).
 *
 * A sweep reads the map with BPF_MAP_LOOKUP_BATCH, `batch` entries per call,
 * and nominates every entry whose u32 deadline (at expiresOffset in the value,
 * seconds of CLOCK_MONOTONIC_COARSE, compared like serial numbers) is past.
 * Nominated keys go, up to perRun at a time, into a scratch array map (key
 * u32 index, value one key of the swept map) with one BPF_MAP_UPDATE_BATCH,
 * and a program is test-run on them: its input's first 4 bytes hold their
 * count n (u32, host order), the keys sit at indexes 0..n-1, and its return
 * value says how many it deleted. The program decides: a nomination is only a
 * hint read from a copy, so the program must re-check each entry in the
 * kernel (bpf/tc/ct_gc.c does). Every kernel call thus handles at most
 * max(batch, perRun) entries; the one exception is a hash bucket holding more
 * than `batch` entries, which the kernel cannot split (ENOSPC): the chunk is
 * then doubled for the rest of the sweep.
 *
 * Everything runs on a worker thread, on our own dups of the three fds, so
 * closing a handle meanwhile is safe. Two sweeps sharing one scratch map at
 * once may run each other's nominations: still only what the program accepts
 * is deleted. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "modules.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524
#endif

#define SWEEP_DEFAULT_BATCH 4096u
#define SWEEP_MAX_BATCH (1u << 20)
#define SWEEP_MAX_CHUNK (1u << 24) /* after ENOSPC doublings */
#define SWEEP_DATA_LEN 64u	   /* program input: n, then zeros (tc needs >= 14 bytes) */

struct sweep_work {
	napi_async_work work;
	napi_deferred deferred;
	int map_fd, keys_fd, prog_fd;
	struct map_meta map, keys;
	uint32_t batch, per_run, expires_offset;
	/* results */
	uint64_t visited, nominated, deleted;
	uint32_t lookups, runs;
	uint64_t max_call_ns, max_call_cpu_ns, max_run_ns, total_ns, cpu_ns;
	int err; /* positive errno on failure */
	const char *op;
};

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* When a kernel call started: wall clock, and this thread's CPU time (which
 * leaves out the time it waited for a CPU on a busy machine). */
struct call_start {
	uint64_t wall, cpu;
};

static struct call_start call_begin(void)
{
	return (struct call_start){ mono_ns(), clock_ns(CLOCK_THREAD_CPUTIME_ID) };
}

/* What bpf_ktime_get_coarse_ns() / 1e9 reads in the kernel. */
static uint32_t coarse_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

static void note_call(struct sweep_work *w, struct call_start start)
{
	uint64_t wall = mono_ns() - start.wall, cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - start.cpu;

	if (wall > w->max_call_ns)
		w->max_call_ns = wall;
	if (cpu > w->max_call_cpu_ns)
		w->max_call_cpu_ns = cpu;
}

static bool is_unsupported(int err)
{
	return err == ENOTSUPP || err == EOPNOTSUPP;
}

/* Hands n nominated keys to the program; false with w->err set on failure. */
static bool sweep_flush(struct sweep_work *w, const uint32_t *idx, const void *keys, uint32_t n)
{
	uint8_t data[SWEEP_DATA_LEN] = { 0 };
	uint32_t done = n;
	struct call_start start = call_begin();
	LIBBPF_OPTS(bpf_map_batch_opts, bopts);
	LIBBPF_OPTS(bpf_test_run_opts, ropts);

	if (bpf_map_update_batch(w->keys_fd, idx, keys, &done, &bopts)) {
		if (!is_unsupported(errno)) {
			w->err = errno;
			w->op = "bpf_map_update_batch";
			return false;
		}
		for (uint32_t i = 0; i < n; i++)
			if (bpf_map_update_elem(w->keys_fd, &idx[i],
						(const uint8_t *)keys + (size_t)i * w->map.key_size, BPF_ANY)) {
				w->err = errno;
				w->op = "bpf_map_update_elem";
				return false;
			}
	}
	note_call(w, start);
	memcpy(data, &n, sizeof(n));
	ropts.data_in = data;
	ropts.data_size_in = sizeof(data);
	ropts.repeat = 1;
	start = call_begin();
	if (hy_test_run(w->prog_fd, &ropts, 0, 0)) {
		w->err = errno;
		w->op = "bpf_prog_test_run_opts";
		return false;
	}
	note_call(w, start);
	if (ropts.duration > w->max_run_ns)
		w->max_run_ns = ropts.duration;
	w->runs++;
	w->nominated += n;
	w->deleted += ropts.retval;
	return true;
}

static void sweep_execute(napi_env env, void *data)
{
	struct sweep_work *w = data;
	size_t token_size = w->map.key_size > 8 ? w->map.key_size : 8;
	uint8_t *tok[2] = { malloc(token_size), malloc(token_size) };
	uint32_t chunk = w->batch, n, now, *idx = malloc((size_t)w->per_run * sizeof(*idx));
	uint8_t *keys = malloc((size_t)chunk * w->map.key_size);
	uint8_t *values = malloc((size_t)chunk * w->map.value_len);
	uint8_t *nominated = malloc((size_t)w->per_run * w->map.key_size);
	uint32_t count = 0;
	struct call_start begin = call_begin(), start;
	int cur = 0, err;
	bool first = true;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);

	if (!tok[0] || !tok[1] || !idx || !keys || !values || !nominated) {
		w->err = ENOMEM;
		w->op = "malloc";
		goto out;
	}
	for (uint32_t i = 0; i < w->per_run; i++)
		idx[i] = i;
	for (;;) {
		n = chunk;
		start = call_begin();
		err = bpf_map_lookup_batch(w->map_fd, first ? NULL : tok[cur], tok[cur ^ 1], keys, values,
					   &n, &opts)
			      ? errno
			      : 0;
		note_call(w, start);
		if (err == ENOSPC && n == 0 && chunk < SWEEP_MAX_CHUNK) {
			/* one bucket holds more than a chunk: grow, retry from the same cursor */
			uint8_t *k = realloc(keys, (size_t)chunk * 2 * w->map.key_size);
			uint8_t *v = k ? realloc(values, (size_t)chunk * 2 * w->map.value_len) : NULL;

			if (k)
				keys = k;
			if (v)
				values = v;
			if (!k || !v) {
				w->err = ENOMEM;
				w->op = "realloc";
				break;
			}
			chunk *= 2;
			continue;
		}
		if (err && err != ENOENT) {
			w->err = err;
			w->op = "bpf_map_lookup_batch";
			break;
		}
		w->lookups++;
		w->visited += n;
		now = coarse_seconds();
		for (uint32_t i = 0; i < n; i++) {
			uint32_t expires;

			memcpy(&expires, values + (size_t)i * w->map.value_len + w->expires_offset,
			       sizeof(expires));
			if ((int32_t)(expires - now) >= 0)
				continue;
			memcpy(nominated + (size_t)count * w->map.key_size,
			       keys + (size_t)i * w->map.key_size, w->map.key_size);
			if (++count == w->per_run) {
				if (!sweep_flush(w, idx, nominated, count))
					goto out;
				count = 0;
			}
		}
		if (err == ENOENT) /* end of map */
			break;
		first = false;
		cur ^= 1;
	}
	if (!w->err && count)
		sweep_flush(w, idx, nominated, count);
out:
	w->total_ns = mono_ns() - begin.wall;
	w->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - begin.cpu;
	free(tok[0]);
	free(tok[1]);
	free(idx);
	free(keys);
	free(values);
	free(nominated);
}

static void sweep_free(struct sweep_work *w)
{
	if (w->map_fd >= 0)
		close(w->map_fd);
	if (w->keys_fd >= 0)
		close(w->keys_fd);
	if (w->prog_fd >= 0)
		close(w->prog_fd);
	free(w);
}

/* Counts so far; on a failure they say what was done before it. */
static bool sweep_counts(napi_env env, napi_value obj, const struct sweep_work *w)
{
	return hy_set_double(env, obj, "visited", (double)w->visited) &&
	       hy_set_double(env, obj, "nominated", (double)w->nominated) &&
	       hy_set_double(env, obj, "deleted", (double)w->deleted) &&
	       hy_set_u32(env, obj, "lookups", w->lookups) && hy_set_u32(env, obj, "runs", w->runs) &&
	       hy_set_double(env, obj, "maxCallNs", (double)w->max_call_ns) &&
	       hy_set_double(env, obj, "maxCallCpuNs", (double)w->max_call_cpu_ns) &&
	       hy_set_double(env, obj, "maxRunNs", (double)w->max_run_ns) &&
	       hy_set_double(env, obj, "durationNs", (double)w->total_ns) &&
	       hy_set_double(env, obj, "cpuNs", (double)w->cpu_ns);
}

static void sweep_complete(napi_env env, napi_status status, void *data)
{
	struct sweep_work *w = data;
	napi_value out = NULL, error = NULL;

	if (status != napi_ok) {
		error = hy_code_error(env, HY_ENAPI, "mapSweepAsync", "async work failed (status %d)",
				      (int)status);
	} else if (w->err) {
		error = hy_errno_error(env, w->op, w->err,
				       "sweeping map \"%s\" after %llu entries (%llu deleted)", w->map.name,
				       (unsigned long long)w->visited, (unsigned long long)w->deleted);
		if (error) {
			hy_error_set_number(env, error, "visited", (double)w->visited);
			hy_error_set_number(env, error, "deleted", (double)w->deleted);
		}
	} else if (napi_create_object(env, &out) != napi_ok || !sweep_counts(env, out, w)) {
		out = NULL;
		napi_get_and_clear_last_exception(env, &error);
	}
	hy_settle(env, w->deferred, out, error);
	napi_delete_async_work(env, w->work);
	sweep_free(w);
}

/* The sizes and shapes a sweep needs; throws EINVALARG naming what is wrong. */
static bool sweep_check(napi_env env, const char *fn, struct sweep_work *w)
{
	if (w->map.percpu) {
		hy_throw_code(env, HY_EINVALARG, fn, "map \"%s\" is per-CPU: sweeps read one value per key",
			      w->map.name);
		return false;
	}
	if ((uint64_t)w->expires_offset + 4 > w->map.value_size) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "opts.expiresOffset %u: a u32 there does not fit in map \"%s\"'s %u-byte values",
			      w->expires_offset, w->map.name, w->map.value_size);
		return false;
	}
	if (w->keys.type != BPF_MAP_TYPE_ARRAY || w->keys.key_size != 4 ||
	    w->keys.value_size != w->map.key_size) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "keys map \"%s\" must be an array of %u-byte values (map \"%s\"'s keys), got type %u, key %u bytes, value %u bytes",
			      w->keys.name, w->map.key_size, w->map.name, w->keys.type, w->keys.key_size,
			      w->keys.value_size);
		return false;
	}
	if (w->batch < 1 || w->batch > SWEEP_MAX_BATCH) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.batch must be in 1..%u, got %u", SWEEP_MAX_BATCH,
			      w->batch);
		return false;
	}
	if (w->per_run < 1 || w->per_run > w->keys.max_entries) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "opts.perRun must be in 1..%u (keys map \"%s\"'s size), got %u",
			      w->keys.max_entries, w->keys.name, w->per_run);
		return false;
	}
	return true;
}

/* mapSweepAsync(map, keys, prog, {expiresOffset, batch?, perRun?})
 *   -> Promise<{visited, nominated, deleted, lookups, runs, maxCallNs, maxCallCpuNs, maxRunNs,
 *               durationNs, cpuNs}> */
static napi_value js_map_sweep_async_impl(napi_env env, napi_callback_info info)
{
	const char *fn = "mapSweepAsync";
	napi_value argv[4], v, promise, name;
	struct map_handle *m, *k;
	struct prog_handle *p;
	struct sweep_work *w;
	napi_status s;

	if (!hy_args(env, info, 4, argv) ||
	    !(m = (struct map_handle *)handle_get(env, argv[0], HANDLE_MASK(HANDLE_MAP), fn, "map", true)) ||
	    !(k = (struct map_handle *)handle_get(env, argv[1], HANDLE_MASK(HANDLE_MAP), fn, "keys", true)) ||
	    !(p = (struct prog_handle *)handle_get(env, argv[2], HANDLE_MASK(HANDLE_PROG), fn, "prog", true)))
		return NULL;
	if (hy_is_nullish(env, argv[3])) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts must be an object with expiresOffset, got nothing");
		return NULL;
	}
	if (!hy_check_opts(env, argv[3], fn, "opts"))
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	w->map_fd = w->keys_fd = w->prog_fd = -1;
	w->map = m->meta;
	w->keys = k->meta;
	w->batch = SWEEP_DEFAULT_BATCH;
	w->per_run = k->meta.max_entries;
	if (!hy_get_opt(env, argv[3], "expiresOffset", &v))
		goto fail;
	if (!v) {
		hy_throw_code(env, HY_EINVALARG, fn, "opts.expiresOffset is required (a byte offset in the value)");
		goto fail;
	}
	if (!hy_get_u32(env, v, fn, "opts.expiresOffset", &w->expires_offset) ||
	    !hy_get_opt(env, argv[3], "batch", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.batch", &w->batch)) ||
	    !hy_get_opt(env, argv[3], "perRun", &v) ||
	    (v && !hy_get_u32(env, v, fn, "opts.perRun", &w->per_run)) || !sweep_check(env, fn, w))
		goto fail;
	if ((w->map_fd = hy_dup(m->fd)) < 0 || (w->keys_fd = hy_dup(k->fd)) < 0 ||
	    (w->prog_fd = hy_dup(p->fd)) < 0) {
		hy_throw_errno(env, "dup", errno, "map, keys or prog fd");
		goto fail;
	}
	if ((s = napi_create_string_utf8(env, "hypha:mapSweep", NAPI_AUTO_LENGTH, &name)) != napi_ok ||
	    (s = napi_create_async_work(env, NULL, name, sweep_execute, sweep_complete, w, &w->work)) !=
		    napi_ok) {
		hy_napi_failed(env, s, "napi_create_async_work");
		goto fail;
	}
	if ((s = napi_create_promise(env, &w->deferred, &promise)) != napi_ok ||
	    (s = napi_queue_async_work(env, w->work)) != napi_ok) {
		napi_delete_async_work(env, w->work);
		hy_napi_failed(env, s, "napi_queue_async_work");
		goto fail;
	}
	return promise;
fail:
	sweep_free(w);
	return NULL;
}

static napi_value js_map_sweep_async(napi_env env, napi_callback_info info)
{
	napi_value promise = js_map_sweep_async_impl(env, info);

	return promise ? promise : hy_reject_pending(env);
}

bool sweep_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "mapSweepAsync", js_map_sweep_async);
}
