/* Maps: create, open pinned, pin, info, lookup/update/delete, batches and dumps. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "modules.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* kernel-internal "operation not supported" */
#endif

#define DUMP_CHUNK 4096u /* entries per bpf_map_lookup_batch call; results grow by doubling */

static bool is_percpu_type(uint32_t type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

static bool is_unsupported(int err)
{
	return err == ENOTSUPP || err == EOPNOTSUPP;
}

/* Fills info and meta from the kernel; returns 0 or a positive errno. */
static int map_query(int fd, struct bpf_map_info *info, struct map_meta *meta)
{
	__u32 len = sizeof(*info);
	int ncpus;

	memset(info, 0, sizeof(*info));
	if (bpf_obj_get_info_by_fd(fd, info, &len))
		return errno;
	memset(meta, 0, sizeof(*meta));
	memcpy(meta->name, info->name, sizeof(meta->name) - 1);
	meta->type = info->type;
	meta->key_size = info->key_size;
	meta->value_size = info->value_size;
	meta->max_entries = info->max_entries;
	meta->flags = info->map_flags;
	meta->percpu = is_percpu_type(info->type);
	meta->ncpus = 1;
	meta->value_len = info->value_size;
	if (meta->percpu) {
		ncpus = libbpf_num_possible_cpus();
		if (ncpus <= 0)
			return ncpus < 0 ? -ncpus : EINVAL;
		meta->ncpus = (uint32_t)ncpus;
		meta->value_len = (((size_t)info->value_size + 7) & ~(size_t)7) * (size_t)ncpus;
	}
	return 0;
}

static void map_release(napi_env env, struct handle *h)
{
	struct map_handle *m = (struct map_handle *)h;

	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

int hy_dup(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

napi_value map_handle_from_fd(napi_env env, int fd, const char *op)
{
	struct bpf_map_info info;
	struct map_meta meta;
	struct map_handle *m;
	int err = map_query(fd, &info, &meta);

	if (err) {
		close(fd);
		hy_throw_errno(env, "bpf_obj_get_info_by_fd", err, "map from %s", op);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		close(fd);
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	m->h.kind = HANDLE_MAP;
	m->h.refs = 1;
	m->h.release = map_release;
	m->fd = fd;
	m->meta = meta;
	return handle_wrap(env, &m->h);
}

static struct map_handle *get_map(napi_env env, napi_value v, const char *fn)
{
	return (struct map_handle *)handle_get(env, v, HANDLE_MASK(HANDLE_MAP), fn, "map", true);
}

/* A key (or value) buffer of exactly `want` bytes. */
static bool get_sized(napi_env env, napi_value v, const char *fn, const struct map_handle *m,
		      const char *name, size_t want, const char *what, void **data)
{
	size_t len;

	if (!hy_get_bytes(env, v, fn, name, data, &len))
		return false;
	if (len != want) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "%s for map \"%s\" must be %zu bytes (%s), got %zu bytes", name,
			      m->meta.name, want, what, len);
		return false;
	}
	return true;
}

static bool get_key(napi_env env, napi_value v, const char *fn, const struct map_handle *m,
		    void **key)
{
	return get_sized(env, v, fn, m, "key", m->meta.key_size, "the map's key size", key);
}

static bool get_value(napi_env env, napi_value v, const char *fn, const struct map_handle *m,
		      void **value)
{
	return get_sized(env, v, fn, m, "value", m->meta.value_len,
			 m->meta.percpu ? "the map's value size rounded up to 8, times possible CPUs"
					: "the map's value size",
			 value);
}

static bool get_flags(napi_env env, napi_value v, const char *fn, uint64_t *flags)
{
	uint32_t f = 0;

	if (!hy_is_nullish(env, v) && !hy_get_u32(env, v, fn, "flags", &f))
		return false;
	*flags = f;
	return true;
}

/* mapCreate(type, keySize, valueSize, maxEntries, opts?: {name?, flags?}): MapHandle */
static napi_value js_map_create(napi_env env, napi_callback_info info)
{
	napi_value argv[5], v;
	uint32_t type, key_size, value_size, max_entries, flags = 0;
	char *name = NULL;
	int fd;
	LIBBPF_OPTS(bpf_map_create_opts, opts);

	if (!hy_args(env, info, 5, argv) || !hy_get_u32(env, argv[0], "mapCreate", "type", &type) ||
	    !hy_get_u32(env, argv[1], "mapCreate", "keySize", &key_size) ||
	    !hy_get_u32(env, argv[2], "mapCreate", "valueSize", &value_size) ||
	    !hy_get_u32(env, argv[3], "mapCreate", "maxEntries", &max_entries) ||
	    !hy_check_opts(env, argv[4], "mapCreate", "opts"))
		return NULL;
	if (!hy_get_opt(env, argv[4], "flags", &v) ||
	    (v && !hy_get_u32(env, v, "mapCreate", "opts.flags", &flags)))
		return NULL;
	if (!hy_get_opt(env, argv[4], "name", &v) ||
	    (v && !(name = hy_get_string(env, v, "mapCreate", "opts.name"))))
		return NULL;
	opts.map_flags = flags;
	fd = bpf_map_create((enum bpf_map_type)type, name, key_size, value_size, max_entries, &opts);
	if (fd < 0) {
		hy_throw_errno(env, "bpf_map_create", errno,
			       "type %u, key %u bytes, value %u bytes, %u entries, flags 0x%x%s%s%s",
			       type, key_size, value_size, max_entries, flags, name ? ", name \"" : "",
			       name ? name : "", name ? "\"" : "");
		free(name);
		return NULL;
	}
	free(name);
	return map_handle_from_fd(env, fd, "bpf_map_create");
}

/* Is fd a BPF map? ("anon_inode:bpf-map") */
static bool fd_is_map(int fd, char *kind, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, kind, len - 1);
	if (n < 0) {
		snprintf(kind, len, "unknown");
		return true; /* cannot tell: let the kernel decide later */
	}
	kind[n] = '\0';
	return !strcmp(kind, "anon_inode:bpf-map");
}

/* openPinnedMap(path): MapHandle */
static napi_value js_open_pinned_map(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	char *path, kind[128];
	int fd;

	if (!hy_args(env, info, 1, argv) ||
	    !(path = hy_get_string(env, argv[0], "openPinnedMap", "path")))
		return NULL;
	fd = bpf_obj_get(path);
	if (fd < 0) {
		hy_throw_errno(env, "bpf_obj_get", errno, "pinned map \"%s\"", path);
		free(path);
		return NULL;
	}
	if (!fd_is_map(fd, kind, sizeof(kind))) {
		hy_throw_code(env, HY_EINVALARG, "openPinnedMap", "\"%s\" is not a pinned map (%s)",
			      path, kind);
		close(fd);
		free(path);
		return NULL;
	}
	free(path);
	return map_handle_from_fd(env, fd, "bpf_obj_get");
}

/* pin(handle: MapHandle | ProgHandle, path) */
static napi_value js_pin(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct handle *h;
	char *path;
	int fd;

	if (!hy_args(env, info, 2, argv) ||
	    !(h = handle_get(env, argv[0], HANDLE_MASK(HANDLE_MAP) | HANDLE_MASK(HANDLE_PROG), "pin",
			     "handle", true)) ||
	    !(path = hy_get_string(env, argv[1], "pin", "path")))
		return NULL;
	fd = h->kind == HANDLE_MAP ? ((struct map_handle *)h)->fd : ((struct prog_handle *)h)->fd;
	if (bpf_obj_pin(fd, path)) {
		hy_throw_errno(env, "bpf_obj_pin", errno, "\"%s\"", path);
		free(path);
		return NULL;
	}
	free(path);
	return hy_undefined(env);
}

/* mapInfo(map): {id, type, name, keySize, valueSize, maxEntries, flags, perCpu, possibleCpus} */
static napi_value js_map_info(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	struct map_handle *m;
	struct bpf_map_info mi;
	struct map_meta meta;
	int err, ncpus;

	if (!hy_args(env, info, 1, argv) || !(m = get_map(env, argv[0], "mapInfo")))
		return NULL;
	err = map_query(m->fd, &mi, &meta);
	if (err) {
		hy_throw_errno(env, "bpf_obj_get_info_by_fd", err, "map \"%s\"", m->meta.name);
		return NULL;
	}
	ncpus = libbpf_num_possible_cpus();
	HY_NAPI(env, napi_create_object(env, &out));
	if (!hy_set_u32(env, out, "id", mi.id) || !hy_set_u32(env, out, "type", mi.type) ||
	    !hy_set_string(env, out, "name", mi.name) ||
	    !hy_set_u32(env, out, "keySize", mi.key_size) ||
	    !hy_set_u32(env, out, "valueSize", mi.value_size) ||
	    !hy_set_u32(env, out, "maxEntries", mi.max_entries) ||
	    !hy_set_u32(env, out, "flags", mi.map_flags) ||
	    !hy_set_bool(env, out, "perCpu", meta.percpu) ||
	    !hy_set_u32(env, out, "possibleCpus", ncpus > 0 ? (uint32_t)ncpus : 0))
		return NULL;
	return out;
}

/* mapLookup(map, key): Uint8Array | undefined */
static napi_value js_map_lookup(napi_env env, napi_callback_info info)
{
	napi_value argv[2], out;
	struct map_handle *m;
	void *key, *value;

	if (!hy_args(env, info, 2, argv) || !(m = get_map(env, argv[0], "mapLookup")) ||
	    !get_key(env, argv[1], "mapLookup", m, &key))
		return NULL;
	if (!(out = hy_new_bytes(env, m->meta.value_len, &value)))
		return NULL;
	if (bpf_map_lookup_elem(m->fd, key, value)) {
		if (errno == ENOENT)
			return hy_undefined(env);
		hy_throw_errno(env, "bpf_map_lookup_elem", errno, "map \"%s\"", m->meta.name);
		return NULL;
	}
	return out;
}

/* mapUpdate(map, key, value, flags?) */
static napi_value js_map_update(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	struct map_handle *m;
	void *key, *value;
	uint64_t flags;

	if (!hy_args(env, info, 4, argv) || !(m = get_map(env, argv[0], "mapUpdate")) ||
	    !get_key(env, argv[1], "mapUpdate", m, &key) ||
	    !get_value(env, argv[2], "mapUpdate", m, &value) ||
	    !get_flags(env, argv[3], "mapUpdate", &flags))
		return NULL;
	if (bpf_map_update_elem(m->fd, key, value, flags)) {
		hy_throw_errno(env, "bpf_map_update_elem", errno, "map \"%s\", flags %llu",
			       m->meta.name, (unsigned long long)flags);
		return NULL;
	}
	return hy_undefined(env);
}

/* mapDelete(map, key): boolean (false when the key was missing) */
static napi_value js_map_delete(napi_env env, napi_callback_info info)
{
	napi_value argv[2], out;
	struct map_handle *m;
	void *key;
	bool deleted = true;

	if (!hy_args(env, info, 2, argv) || !(m = get_map(env, argv[0], "mapDelete")) ||
	    !get_key(env, argv[1], "mapDelete", m, &key))
		return NULL;
	if (bpf_map_delete_elem(m->fd, key)) {
		if (errno != ENOENT) {
			hy_throw_errno(env, "bpf_map_delete_elem", errno, "map \"%s\"", m->meta.name);
			return NULL;
		}
		deleted = false;
	}
	HY_NAPI(env, napi_get_boolean(env, deleted, &out));
	return out;
}

/* mapGetNextKey(map, key | null): Uint8Array | undefined */
static napi_value js_map_get_next_key(napi_env env, napi_callback_info info)
{
	napi_value argv[2], out;
	struct map_handle *m;
	void *key = NULL, *next;

	if (!hy_args(env, info, 2, argv) || !(m = get_map(env, argv[0], "mapGetNextKey")))
		return NULL;
	if (!hy_is_nullish(env, argv[1]) && !get_key(env, argv[1], "mapGetNextKey", m, &key))
		return NULL;
	if (!(out = hy_new_bytes(env, m->meta.key_size, &next)))
		return NULL;
	if (bpf_map_get_next_key(m->fd, key, next)) {
		if (errno == ENOENT)
			return hy_undefined(env);
		hy_throw_errno(env, "bpf_map_get_next_key", errno, "map \"%s\"", m->meta.name);
		return NULL;
	}
	return out;
}

/* Reads keys/values arrays holding `count` entries. */
static bool get_batch(napi_env env, napi_value *argv, const char *fn, struct map_handle *m,
		      bool with_values, uint32_t *count, void **keys, void **values)
{
	size_t klen, vlen;
	uint32_t c;
	napi_value count_arg = argv[with_values ? 3 : 2];

	if (!hy_get_u32(env, count_arg, fn, "count", &c) ||
	    !hy_get_bytes(env, argv[1], fn, "keys", keys, &klen))
		return false;
	if (klen != (size_t)c * m->meta.key_size) {
		hy_throw_code(env, HY_EINVALARG, fn,
			      "keys must be count * keySize = %u * %u = %zu bytes, got %zu bytes", c,
			      m->meta.key_size, (size_t)c * m->meta.key_size, klen);
		return false;
	}
	if (with_values) {
		if (!hy_get_bytes(env, argv[2], fn, "values", values, &vlen))
			return false;
		if (vlen != (size_t)c * m->meta.value_len) {
			hy_throw_code(env, HY_EINVALARG, fn,
				      "values must be count * valueSize = %u * %zu = %zu bytes%s, got %zu bytes",
				      c, m->meta.value_len, (size_t)c * m->meta.value_len,
				      m->meta.percpu ? " (per-CPU: value size rounded up to 8, times possible CPUs)" : "",
				      vlen);
			return false;
		}
	}
	*count = c;
	return true;
}

static napi_value throw_batch(napi_env env, const struct map_handle *m, const char *op, int err,
			      uint32_t processed, uint32_t count)
{
	napi_value e = hy_errno_error(env, op, err, "map \"%s\", %u of %u entries done",
				      m->meta.name, processed, count);

	if (e) {
		hy_error_set_number(env, e, "processed", processed);
		napi_throw(env, e);
	}
	return NULL;
}

/* After a failed batch call the kernel has written back how many entries it handled,
 * unless it failed before starting: then count still holds the request. */
static uint32_t batch_done(uint32_t requested, uint32_t reported)
{
	return reported == requested ? 0 : reported;
}

/* mapUpdateBatch(map, keys, values, count, flags?)
 * The kernel's batch update only takes BPF_ANY (plus BPF_F_LOCK); NOEXIST/EXIST and
 * map types without batch support go element by element (same result, not atomic
 * either way). */
static napi_value js_map_update_batch(napi_env env, napi_callback_info info)
{
	napi_value argv[5];
	struct map_handle *m;
	void *keys, *values;
	uint32_t count, done = 0, n;
	uint64_t flags;
	bool one_by_one;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);

	if (!hy_args(env, info, 5, argv) || !(m = get_map(env, argv[0], "mapUpdateBatch")) ||
	    !get_batch(env, argv, "mapUpdateBatch", m, true, &count, &keys, &values) ||
	    !get_flags(env, argv[4], "mapUpdateBatch", &flags))
		return NULL;
	opts.elem_flags = flags;
	one_by_one = (flags & ~(uint64_t)BPF_F_LOCK) != 0;
	if (!one_by_one && count > 0) {
		n = count;
		if (!bpf_map_update_batch(m->fd, keys, values, &n, &opts))
			return hy_undefined(env);
		if (!is_unsupported(errno))
			return throw_batch(env, m, "bpf_map_update_batch", errno, batch_done(count, n), count);
	}
	for (; done < count; done++)
		if (bpf_map_update_elem(m->fd, (char *)keys + (size_t)done * m->meta.key_size,
					(char *)values + (size_t)done * m->meta.value_len, flags))
			return throw_batch(env, m, "bpf_map_update_elem", errno, done, count);
	return hy_undefined(env);
}

/* mapDeleteBatch(map, keys, count): number deleted; missing keys are skipped */
static napi_value js_map_delete_batch(napi_env env, napi_callback_info info)
{
	napi_value argv[3], out;
	struct map_handle *m;
	void *keys;
	uint32_t count, done = 0, deleted = 0, n;

	if (!hy_args(env, info, 3, argv) || !(m = get_map(env, argv[0], "mapDeleteBatch")) ||
	    !get_batch(env, argv, "mapDeleteBatch", m, false, &count, &keys, NULL))
		return NULL;
	while (done < count) {
		char *k = (char *)keys + (size_t)done * m->meta.key_size;

		n = count - done;
		if (!bpf_map_delete_batch(m->fd, k, &n, NULL)) {
			deleted += n;
			done += n;
			continue;
		}
		if (errno == ENOENT && n < count - done) {
			/* the key at index n is missing: skip it */
			deleted += n;
			done += n + 1;
			continue;
		}
		if (!is_unsupported(errno))
			return throw_batch(env, m, "bpf_map_delete_batch", errno,
					   deleted + batch_done(count - done, n), count);
		for (; done < count; done++) {
			if (!bpf_map_delete_elem(m->fd, (char *)keys + (size_t)done * m->meta.key_size))
				deleted++;
			else if (errno != ENOENT)
				return throw_batch(env, m, "bpf_map_delete_elem", errno, done, count);
		}
	}
	HY_NAPI(env, napi_create_uint32(env, deleted, &out));
	return out;
}

/* ---- dumps ---------------------------------------------------------------- */

struct dump_result {
	uint8_t *keys;
	uint8_t *values;
	size_t count;
	size_t cap;
	int err; /* positive errno on failure */
	const char *op;
};

static int dump_reserve(struct dump_result *r, const struct map_meta *m, size_t need)
{
	size_t cap = r->cap ? r->cap : (need > 64 ? need : 64);
	uint8_t *k, *v;

	if (need <= r->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	k = realloc(r->keys, cap * m->key_size + 1);
	if (!k)
		return ENOMEM;
	r->keys = k;
	v = realloc(r->values, cap * m->value_len + 1);
	if (!v)
		return ENOMEM;
	r->values = v;
	r->cap = cap;
	return 0;
}

static void dump_reset(struct dump_result *r)
{
	free(r->keys);
	free(r->values);
	memset(r, 0, sizeof(*r));
}

/* Fallback iteration with get_next_key + lookup (LPM tries, and maps without batch
 * support). A key deleted between the two calls is skipped. A key deleted while it
 * is the cursor makes hash maps restart from the beginning, so the walk stops after
 * max_entries entries to stay finite; it may then contain duplicates. */
static void dump_iterate(int fd, const struct map_meta *m, struct dump_result *r)
{
	uint8_t *prev = malloc(m->key_size + 1), *next = malloc(m->key_size + 1);
	bool first = true;

	if (!prev || !next) {
		r->err = ENOMEM;
		r->op = "malloc";
		goto out;
	}
	while (r->count < m->max_entries) {
		if (bpf_map_get_next_key(fd, first ? NULL : prev, next)) {
			if (errno != ENOENT) {
				r->err = errno;
				r->op = "bpf_map_get_next_key";
			}
			break;
		}
		first = false;
		if ((r->err = dump_reserve(r, m, r->count + 1))) {
			r->op = "realloc";
			break;
		}
		if (bpf_map_lookup_elem(fd, next, r->values + r->count * m->value_len)) {
			if (errno != ENOENT) {
				r->err = errno;
				r->op = "bpf_map_lookup_elem";
				break;
			}
		} else {
			memcpy(r->keys + r->count * m->key_size, next, m->key_size);
			r->count++;
		}
		memcpy(prev, next, m->key_size);
	}
out:
	free(prev);
	free(next);
}

/* Dump with bpf_map_lookup_batch in chunks, falling back to iteration when the map
 * type has no batch support. Hash batches walk bucket by bucket, which copes with
 * concurrent inserts and deletes (each entry present throughout is seen once). */
static void dump_map(int fd, const struct map_meta *m, struct dump_result *r)
{
	size_t token_size = m->key_size > 8 ? m->key_size : 8;
	uint8_t *tok[2] = { malloc(token_size), malloc(token_size) };
	uint32_t chunk = DUMP_CHUNK, n;
	int cur = 0, err;
	bool first = true;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);

	memset(r, 0, sizeof(*r));
	if (!tok[0] || !tok[1]) {
		r->err = ENOMEM;
		r->op = "malloc";
		goto out;
	}
	for (;;) {
		if ((r->err = dump_reserve(r, m, r->count + chunk))) {
			r->op = "realloc";
			break;
		}
		n = chunk;
		err = bpf_map_lookup_batch(fd, first ? NULL : tok[cur], tok[cur ^ 1],
					   r->keys + r->count * m->key_size,
					   r->values + r->count * m->value_len, &n, &opts)
			      ? errno
			      : 0;
		if (err == 0 || err == ENOENT) {
			r->count += n;
			first = false;
			cur ^= 1;
			if (err == ENOENT) /* end of map */
				break;
			continue;
		}
		if (err == ENOSPC && n == 0 && chunk < (1u << 24)) {
			chunk *= 2; /* one hash bucket holds more than a chunk */
			continue;
		}
		if (first && (is_unsupported(err) || err == EINVAL)) {
			dump_reset(r);
			dump_iterate(fd, m, r);
			break;
		}
		r->err = err;
		r->op = "bpf_map_lookup_batch";
		break;
	}
out:
	free(tok[0]);
	free(tok[1]);
}

static void free_external(napi_env env, void *data, void *hint)
{
	int64_t adjusted;

	free(data);
	napi_adjust_external_memory(env, -(int64_t)(uintptr_t)hint, &adjusted);
}

/* A Uint8Array over malloc()ed memory, taking ownership of it (zero copy where the
 * runtime allows external buffers, otherwise a copy). data is freed on failure. */
static napi_value bytes_take(napi_env env, uint8_t *data, size_t len)
{
	napi_value ab, arr;
	napi_status s;
	int64_t adjusted;
	void *copy;

	if (len == 0) {
		free(data);
		return hy_new_bytes(env, 0, &copy);
	}
	s = napi_create_external_arraybuffer(env, data, len, free_external, (void *)(uintptr_t)len,
					     &ab);
	if (s == napi_ok) {
		napi_adjust_external_memory(env, (int64_t)len, &adjusted);
	} else {
		s = napi_create_arraybuffer(env, len, &copy, &ab);
		if (s == napi_ok)
			memcpy(copy, data, len);
		free(data);
		if (s != napi_ok) {
			hy_napi_failed(env, s, "napi_create_arraybuffer");
			return NULL;
		}
	}
	HY_NAPI(env, napi_create_typedarray(env, napi_uint8_array, len, ab, 0, &arr));
	return arr;
}

/* {keys, values, count}; consumes r's buffers. */
static napi_value dump_to_js(napi_env env, struct dump_result *r, const struct map_meta *m)
{
	napi_value out, keys, values;
	uint8_t *k = r->keys, *v = r->values;
	size_t klen = r->count * m->key_size, vlen = r->count * m->value_len;
	uint8_t *shrunk;

	r->keys = r->values = NULL;
	/* give back unused capacity before handing the buffers to the GC */
	if (klen && (shrunk = realloc(k, klen)))
		k = shrunk;
	if (vlen && (shrunk = realloc(v, vlen)))
		v = shrunk;
	keys = bytes_take(env, k, klen);
	if (!keys) {
		free(v);
		return NULL;
	}
	if (!(values = bytes_take(env, v, vlen)))
		return NULL;
	HY_NAPI(env, napi_create_object(env, &out));
	if (!hy_set_value(env, out, "keys", keys) || !hy_set_value(env, out, "values", values) ||
	    !hy_set_double(env, out, "count", (double)r->count))
		return NULL;
	return out;
}

/* mapDump(map): {keys, values, count} */
static napi_value js_map_dump(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct map_handle *m;
	struct dump_result r;

	if (!hy_args(env, info, 1, argv) || !(m = get_map(env, argv[0], "mapDump")))
		return NULL;
	dump_map(m->fd, &m->meta, &r);
	if (r.err) {
		hy_throw_errno(env, r.op, r.err, "dumping map \"%s\" after %zu entries", m->meta.name,
			       r.count);
		dump_reset(&r);
		return NULL;
	}
	return dump_to_js(env, &r, &m->meta);
}

struct dump_work {
	napi_async_work work;
	napi_deferred deferred;
	int fd; /* our own dup: close(map) during the dump cannot pull it away */
	struct map_meta meta;
	struct dump_result r;
};

static void dump_execute(napi_env env, void *data)
{
	struct dump_work *w = data;

	dump_map(w->fd, &w->meta, &w->r);
}

static void dump_complete(napi_env env, napi_status status, void *data)
{
	struct dump_work *w = data;
	napi_value result = NULL, error = NULL;

	close(w->fd);
	if (status != napi_ok) {
		error = hy_code_error(env, HY_ENAPI, "mapDumpAsync", "async work failed (status %d)",
				      (int)status);
	} else if (w->r.err) {
		error = hy_errno_error(env, w->r.op, w->r.err, "dumping map \"%s\" after %zu entries",
				       w->meta.name, w->r.count);
	} else {
		result = dump_to_js(env, &w->r, &w->meta);
		if (!result) { /* exception pending: turn it into the rejection */
			napi_get_and_clear_last_exception(env, &error);
		}
	}
	hy_settle(env, w->deferred, result, error);
	dump_reset(&w->r);
	napi_delete_async_work(env, w->work);
	free(w);
}

/* mapDumpAsync(map): Promise<{keys, values, count}> */
static napi_value js_map_dump_async_impl(napi_env env, napi_callback_info info)
{
	napi_value argv[1], promise, name;
	struct map_handle *m;
	struct dump_work *w;
	napi_status s;

	if (!hy_args(env, info, 1, argv) || !(m = get_map(env, argv[0], "mapDumpAsync")))
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	w->fd = hy_dup(m->fd);
	if (w->fd < 0) {
		hy_throw_errno(env, "dup", errno, "map fd");
		free(w);
		return NULL;
	}
	w->meta = m->meta;
	if ((s = napi_create_string_utf8(env, "hypha:mapDump", NAPI_AUTO_LENGTH, &name)) != napi_ok ||
	    (s = napi_create_async_work(env, NULL, name, dump_execute, dump_complete, w, &w->work)) !=
		    napi_ok) {
		close(w->fd);
		free(w);
		hy_napi_failed(env, s, "napi_create_async_work");
		return NULL;
	}
	if ((s = napi_create_promise(env, &w->deferred, &promise)) != napi_ok ||
	    (s = napi_queue_async_work(env, w->work)) != napi_ok) {
		napi_delete_async_work(env, w->work);
		close(w->fd);
		free(w);
		hy_napi_failed(env, s, "napi_queue_async_work");
		return NULL;
	}
	return promise;
}

static napi_value js_map_dump_async(napi_env env, napi_callback_info info)
{
	napi_value promise = js_map_dump_async_impl(env, info);

	return promise ? promise : hy_reject_pending(env);
}

/* mapSetInner(outer, slot, inner | null): put a map into a slot of an
 * array of maps (its fd is what the kernel takes), or empty the slot. */
static napi_value js_map_set_inner(napi_env env, napi_callback_info info)
{
	const char *fn = "mapSetInner";
	napi_value argv[3];
	napi_valuetype t;
	struct map_handle *outer, *inner = NULL;
	uint32_t slot;
	int fd;

	if (!hy_args(env, info, 3, argv) || !(outer = get_map(env, argv[0], fn)) ||
	    !hy_get_u32(env, argv[1], fn, "slot", &slot))
		return NULL;
	HY_NAPI(env, napi_typeof(env, argv[2], &t));
	if (t != napi_null && t != napi_undefined && !(inner = get_map(env, argv[2], fn)))
		return NULL;
	if (inner) {
		fd = inner->fd;
		if (bpf_map_update_elem(outer->fd, &slot, &fd, BPF_ANY)) {
			hy_throw_errno(env, "bpf_map_update_elem", errno, "map \"%s\" slot %u <- map \"%s\"",
				       outer->meta.name, slot, inner->meta.name);
			return NULL;
		}
	} else if (bpf_map_delete_elem(outer->fd, &slot) && errno != ENOENT) {
		hy_throw_errno(env, "bpf_map_delete_elem", errno, "map \"%s\" slot %u", outer->meta.name, slot);
		return NULL;
	}
	return hy_undefined(env);
}

bool map_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "mapCreate", js_map_create) &&
	       hy_export(env, exports, "openPinnedMap", js_open_pinned_map) &&
	       hy_export(env, exports, "pin", js_pin) &&
	       hy_export(env, exports, "mapInfo", js_map_info) &&
	       hy_export(env, exports, "mapLookup", js_map_lookup) &&
	       hy_export(env, exports, "mapUpdate", js_map_update) &&
	       hy_export(env, exports, "mapDelete", js_map_delete) &&
	       hy_export(env, exports, "mapGetNextKey", js_map_get_next_key) &&
	       hy_export(env, exports, "mapUpdateBatch", js_map_update_batch) &&
	       hy_export(env, exports, "mapDeleteBatch", js_map_delete_batch) &&
	       hy_export(env, exports, "mapDump", js_map_dump) &&
	       hy_export(env, exports, "mapDumpAsync", js_map_dump_async) &&
	       hy_export(env, exports, "mapSetInner", js_map_set_inner);
}
