/* Type-tagged handles. A handle is a JS external wrapping one of the structs below;
 * each kind has its own Node-API type tag, so a map handle can never be mistaken
 * for a program handle, and a plain object is no handle at all.
 *
 * Lifetime (all on the JS thread):
 *  - a handle owns its kernel resources (fds, a bpf_object, a poller thread);
 *  - close() releases them at once and is idempotent; the finalizer releases what
 *    is still open when the external is garbage collected;
 *  - async work marks the handle busy; close() during that time only marks it
 *    closed and the release happens when the work completes;
 *  - the struct itself is reference counted (the external holds one reference;
 *    async work or a thread-safe function may hold more) and freed at zero. */
#ifndef HYPHA_HANDLES_H
#define HYPHA_HANDLES_H

#include <stdbool.h>
#include <stdint.h>
#include <node_api.h>

enum handle_kind {
	HANDLE_OBJECT = 0,
	HANDLE_MAP,
	HANDLE_PROG,
	HANDLE_RINGBUF,
	HANDLE_NETLINK,
	HANDLE_KIND_COUNT,
};

#define HANDLE_MASK(kind) (1u << (kind))
#define HANDLE_ANY ((1u << HANDLE_KIND_COUNT) - 1)

struct handle {
	enum handle_kind kind;
	bool closed;   /* close() called or finalized: no further use */
	bool released; /* release() has run */
	unsigned busy; /* async operations in flight */
	unsigned refs;
	/* Releases the kind's resources; called exactly once, on the JS thread. */
	void (*release)(napi_env env, struct handle *h);
};

struct obj_handle {
	struct handle h;
	struct bpf_object *obj;
	bool load_started;
	bool loaded;
};

/* What the kernel says about a map, cached when the handle is made. */
struct map_meta {
	char name[16];      /* kernel map name (BPF_OBJ_NAME_LEN), for messages */
	uint32_t type;
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t flags;
	bool percpu;
	uint32_t ncpus;     /* possible CPUs, 1 unless percpu */
	size_t value_len;   /* bytes userspace passes per value: value_size, or
			     * round_up(value_size, 8) * ncpus for per-CPU maps */
};

struct map_handle {
	struct handle h;
	int fd;
	struct map_meta meta;
};

struct prog_handle {
	struct handle h;
	int fd;
};

/* A NETLINK_ROUTE socket, bound to the network namespace it was created in. */
struct netlink_handle {
	struct handle h;
	int fd;
	uint32_t seq; /* last sequence number used */
};

const char *handle_kind_name(enum handle_kind kind);

/* Wrap h (whose refs must be 1) in a new tagged external. On failure h is released
 * and freed, an exception is pending and NULL is returned. */
napi_value handle_wrap(napi_env env, struct handle *h);

/* Unwrap a handle whose kind is in kind_mask. Throws EBADHANDLE for a non-handle or
 * a wrong kind, ECLOSED for a closed handle, EHANDLEBUSY for a busy one when !allow_busy. */
struct handle *handle_get(napi_env env, napi_value v, unsigned kind_mask, const char *fn,
			  const char *name, bool allow_busy);

void handle_ref(struct handle *h);
void handle_unref(napi_env env, struct handle *h);

/* Close: idempotent; defers the release while busy. */
void handle_close(napi_env env, struct handle *h);

void handle_busy_begin(struct handle *h);
/* Ends async work; runs a deferred release when the handle was closed meanwhile. */
void handle_busy_end(napi_env env, struct handle *h);

/* close(handle) for any kind. */
napi_value js_close(napi_env env, napi_callback_info info);

#endif
