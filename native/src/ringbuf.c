/* Ring buffer subscriptions: a poller thread drains a BPF_MAP_TYPE_RINGBUF map and
 * hands copies of the records to JS through a thread-safe function.
 *
 * Threads and ownership:
 *  - the poller waits on an epoll set holding libbpf's ring epoll fd and an eventfd
 *    used to wake it for shutdown; after each wakeup it consumes every available
 *    record into a batch (one thread-safe call per batch, not per record);
 *  - the queue towards JS is bounded and the poller blocks when it is full, so a
 *    slow consumer pushes back into the kernel ring (producers see it full) instead
 *    of growing memory without limit;
 *  - close (or the finalizer, or environment teardown) sets `stop`, wakes the
 *    poller, aborts the thread-safe function (which also wakes a poller blocked on
 *    a full queue), joins the thread, then frees libbpf's ring buffer. Batches
 *    still queued are dropped;
 *  - the struct is shared by the external and the thread-safe function (two
 *    references); the thread-safe function's finalizer drops its reference.
 * While open, a subscription keeps the event loop alive and is itself kept alive
 * (a strong reference to its handle), like a socket: dropping the handle does not
 * silently stop delivery at the next GC. close() ends both; after that the handle
 * is collected like any other. */
#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "logcap.h"
#include "modules.h"

#define POLL_TIMEOUT_MS 500      /* upper bound on a wait; shutdown uses the eventfd */
#define QUEUE_BATCHES 64         /* batches queued towards JS before the poller blocks */
#define BATCH_FLUSH_BYTES (256u << 10)
#define FLUSH_SENTINEL (-100000) /* returned from the sample callback to flush a batch */

struct batch {
	size_t len; /* bytes used in data: records as [u32 size][bytes] */
	size_t cap;
	uint32_t count;
	uint8_t data[];
};

struct ringbuf_handle {
	struct handle h;
	napi_env env;
	int map_fd;
	int wake_fd;
	int epoll_fd;
	struct ring_buffer *rb;
	napi_threadsafe_function tsfn;
	pthread_t thread;
	bool thread_started;
	bool cleanup_hook;
	napi_ref self_ref; /* strong while open */
	atomic_bool stop;
	struct batch *batch; /* being filled by the poller thread */
};

static void cleanup_hook(void *arg);

static void ringbuf_release(napi_env env, struct handle *h)
{
	struct ringbuf_handle *r = (struct ringbuf_handle *)h;
	uint64_t one = 1;
	ssize_t ignored;

	atomic_store(&r->stop, true);
	if (r->wake_fd >= 0)
		ignored = write(r->wake_fd, &one, sizeof(one));
	(void)ignored;
	if (r->tsfn) {
		/* wakes a poller blocked on a full queue; it then sees napi_closing */
		napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
	}
	if (r->thread_started)
		pthread_join(r->thread, NULL);
	r->thread_started = false;
	r->tsfn = NULL; /* freed by Node after its finalizer ran */
	ring_buffer__free(r->rb);
	r->rb = NULL;
	free(r->batch);
	r->batch = NULL;
	if (r->epoll_fd >= 0)
		close(r->epoll_fd);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	if (r->map_fd >= 0)
		close(r->map_fd);
	r->epoll_fd = r->wake_fd = r->map_fd = -1;
	if (r->cleanup_hook) {
		r->cleanup_hook = false;
		napi_remove_env_cleanup_hook(r->env, cleanup_hook, r);
	}
	if (r->self_ref) {
		napi_delete_reference(env, r->self_ref);
		r->self_ref = NULL;
	}
}

/* Environment teardown (worker exit, process shutdown): stop the thread before
 * Node tears down the thread-safe function under it. */
static void cleanup_hook(void *arg)
{
	struct ringbuf_handle *r = arg;

	r->cleanup_hook = false;
	handle_close(r->env, &r->h);
}

/* Poller thread: append one record to the current batch. */
static int on_sample(void *ctx, void *data, size_t size)
{
	struct ringbuf_handle *r = ctx;
	struct batch *b = r->batch;
	size_t need = sizeof(uint32_t) + size;

	if (atomic_load(&r->stop))
		return FLUSH_SENTINEL;
	if (!b || b->len + need > b->cap) {
		size_t cap = b ? b->cap * 2 : 64u << 10;
		struct batch *nb;

		while (cap < (b ? b->len : 0) + need)
			cap *= 2;
		nb = realloc(b, sizeof(*nb) + cap);
		if (!nb)
			return FLUSH_SENTINEL; /* record lost; memory is short */
		if (!b)
			nb->len = nb->count = 0;
		nb->cap = cap;
		r->batch = b = nb;
	}
	uint32_t sz = (uint32_t)size;
	memcpy(b->data + b->len, &sz, sizeof(sz));
	memcpy(b->data + b->len + sizeof(sz), data, size);
	b->len += need;
	b->count++;
	return b->len >= BATCH_FLUSH_BYTES ? FLUSH_SENTINEL : 0;
}

/* Poller thread: queue the current batch for JS. False once closing. */
static bool flush(struct ringbuf_handle *r)
{
	struct batch *b = r->batch;

	if (!b || b->count == 0)
		return true;
	r->batch = NULL;
	if (napi_call_threadsafe_function(r->tsfn, b, napi_tsfn_blocking) != napi_ok) {
		free(b);
		return false;
	}
	return true;
}

static void *poller(void *arg)
{
	struct ringbuf_handle *r = arg;
	struct epoll_event ev[2];
	int n, err;

	while (!atomic_load(&r->stop)) {
		n = epoll_wait(r->epoll_fd, ev, 2, POLL_TIMEOUT_MS);
		if (n < 0 && errno != EINTR)
			break;
		if (atomic_load(&r->stop))
			break;
		do {
			err = ring_buffer__consume(r->rb);
			if (!flush(r))
				return NULL;
		} while (err == FLUSH_SENTINEL && !atomic_load(&r->stop));
		if (err < 0 && err != FLUSH_SENTINEL)
			break; /* the ring is unusable: stop delivering (close() still works) */
	}
	flush(r);
	return NULL;
}

/* JS thread: deliver one batch. env is NULL when the function is being torn down. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data)
{
	struct ringbuf_handle *r = context;
	struct batch *b = data;
	size_t off = 0;
	napi_value undef, arg, result;

	if (!env || !js_cb || !b) {
		free(b);
		return;
	}
	if (napi_get_undefined(env, &undef) != napi_ok) {
		free(b);
		return;
	}
	for (uint32_t i = 0; i < b->count && !r->h.closed; i++) {
		uint32_t sz;

		memcpy(&sz, b->data + off, sizeof(sz));
		off += sizeof(sz);
		arg = hy_bytes_copy(env, b->data + off, sz);
		off += sz;
		if (!arg)
			break;
		if (napi_call_function(env, undef, js_cb, 1, &arg, &result) != napi_ok) {
			/* onRecord threw: report it as an uncaught exception (what a throwing
			 * event listener does) and drop the rest of this batch */
			napi_value error;

			if (napi_get_and_clear_last_exception(env, &error) == napi_ok)
				napi_fatal_exception(env, error);
			break;
		}
	}
	free(b);
}

static void tsfn_finalize(napi_env env, void *data, void *hint)
{
	struct ringbuf_handle *r = data;

	handle_unref(env, &r->h);
}

static napi_value fail(napi_env env, struct ringbuf_handle *r, const char *op, int err,
		       struct logcap *lc)
{
	napi_value e = hy_errno_error(env, op, err, NULL);

	if (e && lc)
		hy_error_set_string(env, e, "libbpfLog", logcap_text(lc));
	handle_close(env, &r->h);
	handle_unref(env, &r->h);
	if (e)
		napi_throw(env, e);
	return NULL;
}

/* ringbufOpen(map, onRecord): RingbufHandle */
static napi_value js_ringbuf_open(napi_env env, napi_callback_info info)
{
	const char *fn = "ringbufOpen";
	napi_value argv[2], name, result;
	napi_valuetype t;
	struct map_handle *m;
	struct ringbuf_handle *r;
	struct logcap lc;
	struct epoll_event ev = { .events = EPOLLIN };
	napi_status s;
	int err;

	if (!hy_args(env, info, 2, argv) ||
	    !(m = (struct map_handle *)handle_get(env, argv[0], HANDLE_MASK(HANDLE_MAP), fn, "map",
						  true)))
		return NULL;
	HY_NAPI(env, napi_typeof(env, argv[1], &t));
	if (t != napi_function) {
		hy_throw_code(env, HY_EINVALARG, fn, "onRecord must be a function");
		return NULL;
	}
	if (m->meta.type != BPF_MAP_TYPE_RINGBUF) {
		hy_throw_code(env, HY_EINVALARG, fn, "map must be a ring buffer (type %u), got type %u",
			      BPF_MAP_TYPE_RINGBUF, m->meta.type);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	r->h.kind = HANDLE_RINGBUF;
	r->h.refs = 1;
	r->h.release = ringbuf_release;
	r->env = env;
	r->wake_fd = r->epoll_fd = -1;
	atomic_init(&r->stop, false);

	if ((r->map_fd = hy_dup(m->fd)) < 0)
		return fail(env, r, "dup", errno, NULL);
	logcap_begin(&lc);
	r->rb = ring_buffer__new(r->map_fd, on_sample, r, NULL);
	err = errno;
	logcap_end(&lc);
	if (!r->rb) {
		fail(env, r, "ring_buffer__new", err, &lc);
		logcap_free(&lc);
		return NULL;
	}
	logcap_free(&lc);
	if ((r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return fail(env, r, "eventfd", errno, NULL);
	if ((r->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return fail(env, r, "epoll_create1", errno, NULL);
	ev.data.fd = ring_buffer__epoll_fd(r->rb);
	if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, ev.data.fd, &ev))
		return fail(env, r, "epoll_ctl", errno, NULL);
	ev.data.fd = r->wake_fd;
	if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, r->wake_fd, &ev))
		return fail(env, r, "epoll_ctl", errno, NULL);

	HY_NAPI(env, napi_create_string_utf8(env, "hypha:ringbuf", NAPI_AUTO_LENGTH, &name));
	s = napi_create_threadsafe_function(env, argv[1], NULL, name, QUEUE_BATCHES, 1, r,
					    tsfn_finalize, r, call_js, &r->tsfn);
	if (s != napi_ok) {
		hy_napi_failed(env, s, "napi_create_threadsafe_function");
		r->tsfn = NULL;
		handle_close(env, &r->h);
		handle_unref(env, &r->h);
		return NULL;
	}
	handle_ref(&r->h); /* the thread-safe function's reference */
	/* registered after the thread-safe function, so it runs before Node's own
	 * teardown of that function (hooks run in reverse order) */
	if (napi_add_env_cleanup_hook(env, cleanup_hook, r) == napi_ok)
		r->cleanup_hook = true;
	if ((err = pthread_create(&r->thread, NULL, poller, r)))
		return fail(env, r, "pthread_create", err, NULL);
	r->thread_started = true;
	if (!(result = handle_wrap(env, &r->h)))
		return NULL;
	if ((s = napi_create_reference(env, result, 1, &r->self_ref)) != napi_ok) {
		r->self_ref = NULL;
		handle_close(env, &r->h);
		hy_napi_failed(env, s, "napi_create_reference");
		return NULL;
	}
	return result;
}

bool ringbuf_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "ringbufOpen", js_ringbuf_open);
}
