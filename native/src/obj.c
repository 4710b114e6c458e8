/* BPF objects: open (with pin root and map sizes), load on a worker thread with the
 * verifier and libbpf logs captured, list maps and programs, hand out map and
 * program handles that outlive the object. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "logcap.h"
#include "modules.h"

/* Per-program verifier log buffer. malloc() of this size is an mmap, so only the
 * pages the kernel writes are ever backed by memory. Since 6.4 the kernel keeps the
 * tail of an overlong log (the part that explains the failure). */
#define VERIFIER_LOG_SIZE (16u << 20)
#define LOG_TAIL_LINES 40

static void obj_release(napi_env env, struct handle *h)
{
	struct obj_handle *o = (struct obj_handle *)h;

	bpf_object__close(o->obj); /* NULL-safe */
	o->obj = NULL;
}

static struct obj_handle *get_obj(napi_env env, napi_value v, const char *fn)
{
	return (struct obj_handle *)handle_get(env, v, HANDLE_MASK(HANDLE_OBJECT), fn, "obj", false);
}

static void throw_with_log(napi_env env, const char *op, int err, struct logcap *lc,
			   const char *detail)
{
	napi_value e;
	char *tail = text_tail(logcap_text(lc), 10);
	char *trailer = NULL;

	if (tail && tail[0] && asprintf(&trailer, "--- libbpf log (last lines) ---\n%s", tail) < 0)
		trailer = NULL;
	e = hy_errno_error_trailer(env, op, err, detail, trailer);
	free(tail);
	free(trailer);
	if (!e)
		return;
	hy_error_set_string(env, e, "libbpfLog", logcap_text(lc));
	napi_throw(env, e);
}

/* Applies opts.maxEntries ({name: n}) to the opened object. */
static bool apply_max_entries(napi_env env, struct bpf_object *obj, napi_value sizes)
{
	const char *fn = "openObject";
	napi_value names, key, value;
	uint32_t count, n;
	char *name;
	struct bpf_map *map;

	if (!hy_check_opts(env, sizes, fn, "opts.maxEntries"))
		return false;
	HY_NAPI_B(env, napi_get_property_names(env, sizes, &names));
	HY_NAPI_B(env, napi_get_array_length(env, names, &count));
	for (uint32_t i = 0; i < count; i++) {
		HY_NAPI_B(env, napi_get_element(env, names, i, &key));
		if (!(name = hy_get_string(env, key, fn, "opts.maxEntries key")))
			return false;
		HY_NAPI_B(env, napi_get_property(env, sizes, key, &value));
		if (!hy_get_u32(env, value, fn, "opts.maxEntries value", &n)) {
			free(name);
			return false;
		}
		map = bpf_object__find_map_by_name(obj, name);
		if (!map) {
			hy_throw_code(env, HY_EINVALARG, fn,
				      "opts.maxEntries names map \"%s\", which the object does not have",
				      name);
			free(name);
			return false;
		}
		if (bpf_map__set_max_entries(map, n)) {
			hy_throw_errno(env, "bpf_map__set_max_entries", errno, "map \"%s\" to %u", name,
				       n);
			free(name);
			return false;
		}
		free(name);
	}
	return true;
}

/* openObject(path, opts?: {pinRoot?, maxEntries?}): ObjectHandle */
static napi_value js_open_object(napi_env env, napi_callback_info info)
{
	const char *fn = "openObject";
	napi_value argv[2], v, sizes, result = NULL;
	char *path = NULL, *pin_root = NULL;
	struct bpf_object *obj;
	struct obj_handle *o;
	struct logcap lc;
	LIBBPF_OPTS(bpf_object_open_opts, opts);

	if (!hy_args(env, info, 2, argv) || !(path = hy_get_string(env, argv[0], fn, "path")))
		return NULL;
	if (!hy_check_opts(env, argv[1], fn, "opts") || !hy_get_opt(env, argv[1], "pinRoot", &v) ||
	    (v && !(pin_root = hy_get_string(env, v, fn, "opts.pinRoot"))) ||
	    !hy_get_opt(env, argv[1], "maxEntries", &sizes))
		goto out;
	opts.pin_root_path = pin_root;

	logcap_begin(&lc);
	obj = bpf_object__open_file(path, &opts);
	logcap_end(&lc);
	if (!obj) {
		char detail[4200];

		snprintf(detail, sizeof(detail), "\"%s\"", path);
		throw_with_log(env, "bpf_object__open_file", errno, &lc, detail);
		logcap_free(&lc);
		goto out;
	}
	logcap_free(&lc);
	if (sizes && !apply_max_entries(env, obj, sizes)) {
		bpf_object__close(obj);
		goto out;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		bpf_object__close(obj);
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		goto out;
	}
	o->h.kind = HANDLE_OBJECT;
	o->h.refs = 1;
	o->h.release = obj_release;
	o->obj = obj;
	result = handle_wrap(env, &o->h);
out:
	free(path);
	free(pin_root);
	return result;
}

struct load_work {
	napi_async_work work;
	napi_deferred deferred;
	struct obj_handle *o;
	int err;                /* positive errno */
	struct logcap log;      /* libbpf's output during the load */
	char *failed_prog;      /* first program with a verifier log */
	char *failed_section;
	char *verifier_log;
};

static void load_execute(napi_env env, void *data)
{
	struct load_work *w = data;
	struct bpf_object *obj = w->o->obj;
	struct bpf_program *prog;
	size_t n = 0, i = 0;
	char **bufs;

	bpf_object__for_each_program(prog, obj)
		n++;
	bufs = calloc(n + 1, sizeof(*bufs));
	if (!bufs) {
		w->err = ENOMEM;
		return;
	}
	/* libbpf loads each program with log level 0 and, if the kernel rejects it,
	 * retries with level 1 into the buffer given here (libbpf >= 0.8). */
	bpf_object__for_each_program(prog, obj) {
		bufs[i] = malloc(VERIFIER_LOG_SIZE);
		if (bufs[i]) {
			bufs[i][0] = '\0';
			bpf_program__set_log_buf(prog, bufs[i], VERIFIER_LOG_SIZE);
		}
		i++;
	}

	logcap_begin(&w->log);
	if (bpf_object__load(obj))
		w->err = errno ? errno : EINVAL;
	logcap_end(&w->log);

	i = 0;
	bpf_object__for_each_program(prog, obj) {
		if (w->err && !w->failed_prog && bufs[i] && bufs[i][0]) {
			w->failed_prog = strdup(bpf_program__name(prog));
			w->failed_section = strdup(bpf_program__section_name(prog));
			w->verifier_log = strdup(bufs[i]);
		}
		free(bufs[i]); /* libbpf keeps the pointer but never reads it after load */
		i++;
	}
	free(bufs);
}

static napi_value load_error(napi_env env, struct load_work *w)
{
	char *vtail = w->verifier_log ? text_tail(w->verifier_log, LOG_TAIL_LINES) : NULL;
	char *ltail = text_tail(logcap_text(&w->log), 12);
	char *detail = NULL, *trailer = NULL;
	napi_value e;

	if (w->failed_prog) {
		if (asprintf(&detail, "program \"%s\" (section \"%s\") rejected by the verifier",
			     w->failed_prog, w->failed_section ? w->failed_section : "?") < 0)
			detail = NULL;
		if (asprintf(&trailer, "--- verifier log (last %d lines) ---\n%s", LOG_TAIL_LINES,
			     vtail ? vtail : "") < 0)
			trailer = NULL;
	} else if (ltail && ltail[0]) {
		if (asprintf(&trailer, "--- libbpf log (last lines) ---\n%s", ltail) < 0)
			trailer = NULL;
	}
	e = hy_errno_error_trailer(env, "bpf_object__load", w->err, detail, trailer);
	free(detail);
	free(trailer);
	free(vtail);
	free(ltail);
	if (!e)
		return NULL;
	hy_error_set_string(env, e, "verifierLog", w->verifier_log ? w->verifier_log : "");
	hy_error_set_string(env, e, "libbpfLog", logcap_text(&w->log));
	if (w->failed_prog)
		hy_error_set_string(env, e, "program", w->failed_prog);
	return e;
}

static void load_complete(napi_env env, napi_status status, void *data)
{
	struct load_work *w = data;
	napi_value e = NULL, undef;

	if (status != napi_ok)
		e = hy_code_error(env, HY_ENAPI, "loadObject", "async work failed (status %d)",
				  (int)status);
	else if (w->err)
		e = load_error(env, w);
	if (status == napi_ok && !w->err) {
		w->o->loaded = true;
		napi_get_undefined(env, &undef);
		napi_resolve_deferred(env, w->deferred, undef);
	} else {
		if (!e)
			napi_get_and_clear_last_exception(env, &e);
		napi_reject_deferred(env, w->deferred, e ? e : hy_undefined(env));
	}
	handle_busy_end(env, &w->o->h);
	napi_delete_async_work(env, w->work);
	logcap_free(&w->log);
	free(w->failed_prog);
	free(w->failed_section);
	free(w->verifier_log);
	free(w);
}

/* loadObject(obj): Promise<void> */
static napi_value js_load_object_impl(napi_env env, napi_callback_info info)
{
	napi_value argv[1], promise, name;
	struct obj_handle *o;
	struct load_work *w;
	napi_status s;

	if (!hy_args(env, info, 1, argv) || !(o = get_obj(env, argv[0], "loadObject")))
		return NULL;
	if (o->load_started) {
		hy_throw_code(env, HY_EINVALARG, "loadObject",
			      "object was already loaded (or a load failed); open it again");
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	w->o = o;
	if ((s = napi_create_string_utf8(env, "hypha:loadObject", NAPI_AUTO_LENGTH, &name)) != napi_ok ||
	    (s = napi_create_async_work(env, NULL, name, load_execute, load_complete, w, &w->work)) !=
		    napi_ok) {
		free(w);
		hy_napi_failed(env, s, "napi_create_async_work");
		return NULL;
	}
	if ((s = napi_create_promise(env, &w->deferred, &promise)) != napi_ok ||
	    (s = napi_queue_async_work(env, w->work)) != napi_ok) {
		napi_delete_async_work(env, w->work);
		free(w);
		hy_napi_failed(env, s, "napi_queue_async_work");
		return NULL;
	}
	o->load_started = true;
	handle_busy_begin(&o->h);
	return promise;
}

/* objectMaps(obj): {name, type, keySize, valueSize, maxEntries}[] */
static napi_value js_object_maps(napi_env env, napi_callback_info info)
{
	napi_value argv[1], arr, item;
	struct obj_handle *o;
	struct bpf_map *map;
	uint32_t i = 0;

	if (!hy_args(env, info, 1, argv) || !(o = get_obj(env, argv[0], "objectMaps")))
		return NULL;
	HY_NAPI(env, napi_create_array(env, &arr));
	bpf_object__for_each_map(map, o->obj) {
		HY_NAPI(env, napi_create_object(env, &item));
		if (!hy_set_string(env, item, "name", bpf_map__name(map)) ||
		    !hy_set_u32(env, item, "type", bpf_map__type(map)) ||
		    !hy_set_u32(env, item, "keySize", bpf_map__key_size(map)) ||
		    !hy_set_u32(env, item, "valueSize", bpf_map__value_size(map)) ||
		    !hy_set_u32(env, item, "maxEntries", bpf_map__max_entries(map)))
			return NULL;
		HY_NAPI(env, napi_set_element(env, arr, i++, item));
	}
	return arr;
}

/* objectPrograms(obj): {name, section, type}[] */
static napi_value js_object_programs(napi_env env, napi_callback_info info)
{
	napi_value argv[1], arr, item;
	struct obj_handle *o;
	struct bpf_program *prog;
	uint32_t i = 0;

	if (!hy_args(env, info, 1, argv) || !(o = get_obj(env, argv[0], "objectPrograms")))
		return NULL;
	HY_NAPI(env, napi_create_array(env, &arr));
	bpf_object__for_each_program(prog, o->obj) {
		HY_NAPI(env, napi_create_object(env, &item));
		if (!hy_set_string(env, item, "name", bpf_program__name(prog)) ||
		    !hy_set_string(env, item, "section", bpf_program__section_name(prog)) ||
		    !hy_set_u32(env, item, "type", bpf_program__type(prog)))
			return NULL;
		HY_NAPI(env, napi_set_element(env, arr, i++, item));
	}
	return arr;
}

/* Common part of objectMap/objectProgram: a loaded object and a name. */
static struct obj_handle *get_loaded(napi_env env, napi_callback_info info, const char *fn,
				     char **name)
{
	napi_value argv[2];
	struct obj_handle *o;

	if (!hy_args(env, info, 2, argv) || !(o = get_obj(env, argv[0], fn)))
		return NULL;
	if (!o->loaded) {
		hy_throw_code(env, HY_EINVALARG, fn, "object is not loaded; call loadObject first");
		return NULL;
	}
	if (!(*name = hy_get_string(env, argv[1], fn, "name")))
		return NULL;
	return o;
}

/* objectMap(obj, name): MapHandle with its own fd */
static napi_value js_object_map(napi_env env, napi_callback_info info)
{
	struct obj_handle *o;
	struct bpf_map *map;
	char *name;
	int fd;

	if (!(o = get_loaded(env, info, "objectMap", &name)))
		return NULL;
	map = bpf_object__find_map_by_name(o->obj, name);
	if (!map) {
		hy_throw_errno(env, "bpf_object__find_map_by_name", ENOENT, "no map named \"%s\"",
			       name);
		free(name);
		return NULL;
	}
	if (bpf_map__fd(map) < 0 || (fd = hy_dup(bpf_map__fd(map))) < 0) {
		hy_throw_errno(env, "dup", bpf_map__fd(map) < 0 ? EBADF : errno, "fd of map \"%s\"",
			       name);
		free(name);
		return NULL;
	}
	free(name);
	return map_handle_from_fd(env, fd, "objectMap");
}

/* objectProgram(obj, name): ProgHandle with its own fd */
static napi_value js_object_program(napi_env env, napi_callback_info info)
{
	struct obj_handle *o;
	struct bpf_program *prog;
	char *name;
	int fd;

	if (!(o = get_loaded(env, info, "objectProgram", &name)))
		return NULL;
	prog = bpf_object__find_program_by_name(o->obj, name);
	if (!prog) {
		hy_throw_errno(env, "bpf_object__find_program_by_name", ENOENT,
			       "no program named \"%s\"", name);
		free(name);
		return NULL;
	}
	if (bpf_program__fd(prog) < 0 || (fd = hy_dup(bpf_program__fd(prog))) < 0) {
		hy_throw_errno(env, "dup", bpf_program__fd(prog) < 0 ? EBADF : errno,
			       "fd of program \"%s\" (not loaded: autoload off?)", name);
		free(name);
		return NULL;
	}
	free(name);
	return prog_handle_from_fd(env, fd);
}

static napi_value js_load_object(napi_env env, napi_callback_info info)
{
	napi_value promise = js_load_object_impl(env, info);

	return promise ? promise : hy_reject_pending(env);
}

bool obj_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "openObject", js_open_object) &&
	       hy_export(env, exports, "loadObject", js_load_object) &&
	       hy_export(env, exports, "objectMaps", js_object_maps) &&
	       hy_export(env, exports, "objectPrograms", js_object_programs) &&
	       hy_export(env, exports, "objectMap", js_object_map) &&
	       hy_export(env, exports, "objectProgram", js_object_program);
}
