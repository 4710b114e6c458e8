// SPDX-License-Identifier: Apache-2.0
/*
 * hypha-cni: the CNI plugin binary a container runtime executes, installed as
 * /opt/cni/bin/hypha (conflist plugin "type": "hypha").
 *
 * A thin wrapper: it reads the CNI environment and the network configuration
 * on stdin, checks what it can check alone, sends ONE request to the Hypha
 * agent over the agent's root-only UNIX socket, and prints the agent's answer
 * as the CNI result. It never runs another process. docs/cni.md describes the
 * protocol; src/cni/protocol.ts is the agent's side of it.
 *
 *   VERSION           answered here, agent or no agent.
 *   agent unreachable ADD, CHECK, GC: code 11 (try again later); STATUS: 50;
 *                     DEL: the request is queued on disk for the agent to
 *                     replay when it starts, and DEL succeeds.
 *
 * Errors go to stdout as the CNI error object (exit 1); logs go to stderr as
 * JSON lines shaped like pino's, only when something fails or when
 * HYPHA_CNI_LOG=debug.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define DEFAULT_AGENT_SOCKET "/var/run/hypha/cni.sock"
#define DEFAULT_DEL_QUEUE_DIR "/var/lib/hypha/cni-del-queue"
#define DEFAULT_TIMEOUT_SECONDS 120.0
#define MAX_TIMEOUT_SECONDS 3600.0
#define MAX_STDIN_BYTES (4 << 20)
#define MAX_RESPONSE_BYTES (4 << 20)
#define MAX_CONTAINER_ID 200
#define MAX_IFNAME 15

/* CNI error codes (SPEC.md) and Hypha's own (src/cni/errors.ts). */
enum {
	ERR_INCOMPATIBLE_VERSION = 1,
	ERR_INVALID_ENV = 4,
	ERR_IO = 5,
	ERR_DECODE = 6,
	ERR_INVALID_CONFIG = 7,
	ERR_TRY_AGAIN_LATER = 11,
	ERR_NOT_AVAILABLE = 50,
	ERR_BAD_NETNS = 101,
};

/* pino's numeric levels */
enum { LOG_DEBUG = 20, LOG_INFO = 30, LOG_WARN = 40, LOG_ERROR = 50 };

static const char *const versions[] = { "0.3.1", "0.4.0", "1.0.0", "1.1.0" };
#define N_VERSIONS (sizeof(versions) / sizeof(versions[0]))
#define LATEST_VERSION "1.1.0"

enum command { CMD_ADD, CMD_DEL, CMD_CHECK, CMD_GC, CMD_STATUS, CMD_VERSION };
static const struct {
	const char *name;
	int since; /* index into versions[] of the first version with the command */
	bool attachment; /* needs CNI_CONTAINERID and CNI_IFNAME */
	bool netns; /* needs CNI_NETNS */
} commands[] = {
	[CMD_ADD] = { "ADD", 0, true, true },
	[CMD_DEL] = { "DEL", 0, true, false },
	[CMD_CHECK] = { "CHECK", 1, true, true },
	[CMD_GC] = { "GC", 3, false, false },
	[CMD_STATUS] = { "STATUS", 3, false, false },
	[CMD_VERSION] = { "VERSION", 0, false, false },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

struct shim {
	const char *command_name;
	enum command command;
	const char *container_id;
	const char *netns;
	const char *ifname;
	const char *args;
	const char *path;
	/* The version errors are reported in: the config's, else the latest. */
	char cni_version[33];
	bool debug;
	struct timespec t0;
	const char *socket_path;
	const char *queue_dir;
	double timeout_s;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

static double since_ms(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A JSON string for any C string: bytes that are not valid UTF-8 become '?'. */
static json_t *jstr(const char *s)
{
	if (!s)
		s = "";
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s);
	char *copy = malloc(n + 1);
	if (!copy)
		return json_string("");
	for (size_t i = 0; i < n; i++)
		copy[i] = ((unsigned char)s[i] < 0x80) ? s[i] : '?';
	copy[n] = '\0';
	j = json_string(copy);
	free(copy);
	return j ? j : json_string("");
}

static bool valid_utf8(const char *s)
{
	json_t *j = json_string(s);
	if (!j)
		return false;
	json_decref(j);
	return true;
}

/*
 * Quote a value for a message: "value" with control characters and
 * non-ASCII bytes escaped, at most about 120 characters.
 */
static const char *quote(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	if (len < 8) {
		buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 6 < len; p++) {
		if (o > 120) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (*p == '"' || *p == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f) {
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", *p);
		} else {
			buf[o++] = (char)*p;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Logging: one JSON line per event on stderr, pino's shape.               */

static void log_event(const struct shim *s, int level, const char *msg, json_t *extra)
{
	if (level < LOG_WARN && !s->debug) {
		json_decref(extra);
		return;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	json_t *line = json_object();
	json_object_set_new(line, "level", json_integer(level));
	json_object_set_new(line, "time", json_integer((json_int_t)tv.tv_sec * 1000 + tv.tv_usec / 1000));
	json_object_set_new(line, "pid", json_integer(getpid()));
	json_object_set_new(line, "hostname", jstr(host));
	json_object_set_new(line, "name", json_string("hypha-cni"));
	if (s->command_name)
		json_object_set_new(line, "command", jstr(s->command_name));
	if (s->container_id && *s->container_id)
		json_object_set_new(line, "containerId", jstr(s->container_id));
	if (s->ifname && *s->ifname)
		json_object_set_new(line, "ifname", jstr(s->ifname));
	if (s->netns && *s->netns)
		json_object_set_new(line, "netns", jstr(s->netns));
	if (extra) {
		json_object_update(line, extra);
		json_decref(extra);
	}
	json_object_set_new(line, "ms", json_real((double)(long)(since_ms(&s->t0) * 10) / 10));
	json_object_set_new(line, "msg", jstr(msg));
	char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
	if (text) {
		fprintf(stderr, "%s\n", text);
		free(text);
	}
	json_decref(line);
}

/* ------------------------------------------------------------------------ */
/* Results                                                                  */

static void print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text) {
		fputs(text, stdout);
		fputc('\n', stdout);
		free(text);
	}
	fflush(stdout);
}

/* Print the CNI error object, log it, exit 1. */
static void __attribute__((noreturn)) error_exit(const struct shim *s, int code, const char *msg, const char *details)
{
	json_t *err = json_object();
	json_object_set_new(err, "cniVersion", jstr(s->cni_version));
	json_object_set_new(err, "code", json_integer(code));
	json_object_set_new(err, "msg", jstr(msg));
	if (details && *details)
		json_object_set_new(err, "details", jstr(details));
	print_json(err);
	json_decref(err);
	json_t *extra = json_object();
	json_object_set_new(extra, "code", json_integer(code));
	if (details && *details)
		json_object_set_new(extra, "details", jstr(details));
	log_event(s, LOG_ERROR, msg, extra);
	exit(1);
}

static void __attribute__((noreturn, format(printf, 3, 4))) fail(const struct shim *s, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	error_exit(s, code, msg, NULL);
}

/* ------------------------------------------------------------------------ */
/* Input                                                                    */

static char *read_stdin(const struct shim *s, size_t *len)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		fail(s, ERR_IO, "out of memory reading stdin");
	for (;;) {
		if (n == cap) {
			if (cap >= MAX_STDIN_BYTES)
				fail(s, ERR_IO, "the network configuration on stdin is larger than %d bytes", MAX_STDIN_BYTES);
			cap *= 2;
			char *grown = realloc(buf, cap);
			if (!grown)
				fail(s, ERR_IO, "out of memory reading stdin");
			buf = grown;
		}
		ssize_t r = read(STDIN_FILENO, buf + n, cap - n);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EBADF && n == 0)
				break; /* no stdin at all */
			fail(s, ERR_IO, "reading the network configuration from stdin failed: %s", strerror(errno));
		}
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

static int version_index(const char *v)
{
	for (size_t i = 0; i < N_VERSIONS; i++)
		if (strcmp(v, versions[i]) == 0)
			return (int)i;
	return -1;
}

/* CNI_CONTAINERID: alphanumeric first, then alphanumerics, '_', '.', '-'. */
static void check_container_id(const struct shim *s, const char *id)
{
	char q[160];
	if (!id || !*id)
		fail(s, ERR_INVALID_ENV, "CNI_CONTAINERID is not set");
	if (strlen(id) > MAX_CONTAINER_ID)
		fail(s, ERR_INVALID_ENV, "CNI_CONTAINERID %s is longer than %d characters", quote(id, q, sizeof(q)), MAX_CONTAINER_ID);
	bool ok = isalnum((unsigned char)id[0]) && isascii((unsigned char)id[0]);
	for (const char *p = id; ok && *p; p++)
		ok = isascii((unsigned char)*p) && (isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-');
	if (!ok)
		fail(s, ERR_INVALID_ENV, "CNI_CONTAINERID %s must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
		     quote(id, q, sizeof(q)));
}

/* CNI_IFNAME: 1-15 bytes of UTF-8, not "." or "..", no '/', ':' or whitespace. */
static void check_ifname(const struct shim *s, const char *name)
{
	char q[160];
	if (!name || !*name)
		fail(s, ERR_INVALID_ENV, "CNI_IFNAME is not set");
	if (strlen(name) > MAX_IFNAME)
		fail(s, ERR_INVALID_ENV, "CNI_IFNAME %s is longer than %d bytes", quote(name, q, sizeof(q)), MAX_IFNAME);
	bool ok = strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && valid_utf8(name);
	for (const char *p = name; ok && *p; p++)
		ok = *p != '/' && *p != ':' && !isspace((unsigned char)*p);
	if (!ok)
		fail(s, ERR_INVALID_ENV, "CNI_IFNAME %s is not a valid interface name (no '/', ':', whitespace, '.' or '..')",
		     quote(name, q, sizeof(q)));
}

static const char *ns_type_name(int type)
{
	switch (type) {
	case CLONE_NEWNS: return "mount";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWPID: return "pid";
	case CLONE_NEWCGROUP: return "cgroup";
#ifdef CLONE_NEWTIME
	case CLONE_NEWTIME: return "time";
#endif
	default: return "non-network";
	}
}

/* CNI_NETNS must name a network namespace, and not the one this process is in. */
static void check_netns(const struct shim *s)
{
	char q[160];
	quote(s->netns, q, sizeof(q));
	int fd = open(s->netns, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			fail(s, ERR_BAD_NETNS, "CNI_NETNS %s does not exist", q);
		fail(s, ERR_BAD_NETNS, "CNI_NETNS %s cannot be opened: %s", q, strerror(errno));
	}
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0)
		fail(s, ERR_BAD_NETNS, "CNI_NETNS %s is not a namespace", q);
	if (type != CLONE_NEWNET)
		fail(s, ERR_BAD_NETNS, "CNI_NETNS %s is a %s namespace, not a network namespace", q, ns_type_name(type));
	struct stat target, own;
	if (fstat(fd, &target) == 0 && stat("/proc/self/ns/net", &own) == 0 && target.st_dev == own.st_dev &&
	    target.st_ino == own.st_ino)
		fail(s, ERR_BAD_NETNS, "CNI_NETNS %s is the plugin's own network namespace, not a container's", q);
	close(fd);
}

/* An optional absolute-path string field of the plugin config. */
static const char *path_field(const struct shim *s, json_t *config, const char *key, const char *dflt, size_t max)
{
	json_t *v = json_object_get(config, key);
	if (!v)
		return dflt;
	char q[160];
	if (!json_is_string(v)) {
		char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		fail(s, ERR_INVALID_CONFIG, "invalid network configuration: %s: %s must be an absolute path", key,
		     quote(text ? text : "?", q, sizeof(q)));
	}
	const char *p = json_string_value(v);
	if (p[0] != '/' || strlen(p) > max)
		fail(s, ERR_INVALID_CONFIG, "invalid network configuration: %s: %s must be an absolute path of at most %zu bytes", key,
		     quote(p, q, sizeof(q)), max);
	return p;
}

/* ------------------------------------------------------------------------ */
/* Talking to the agent                                                     */

enum outcome { AGENT_ANSWERED, AGENT_UNREACHABLE, AGENT_TIMEOUT, AGENT_BAD_ANSWER };

struct reply {
	enum outcome outcome;
	char reason[256];
	json_t *response;
};

static double remaining_s(const struct shim *s)
{
	return s->timeout_s - since_ms(&s->t0) / 1e3;
}

static void set_send_timeout(int fd, double seconds)
{
	if (seconds < 0.001)
		seconds = 0.001;
	struct timeval tv = { .tv_sec = (time_t)seconds, .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6) };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void call_agent(const struct shim *s, const char *req, size_t len, struct reply *r)
{
	memset(r, 0, sizeof(*r));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r->outcome = AGENT_UNREACHABLE;
		snprintf(r->reason, sizeof(r->reason), "socket: %s", strerror(errno));
		return;
	}
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, s->socket_path, strlen(s->socket_path) + 1); /* length checked: < sizeof(sun_path) */
	/* A blocking connect on a UNIX socket waits for room in the listen backlog up to SO_SNDTIMEO. */
	set_send_timeout(fd, remaining_s(s));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		r->outcome = (e == EAGAIN || e == EINPROGRESS) ? AGENT_TIMEOUT : AGENT_UNREACHABLE;
		snprintf(r->reason, sizeof(r->reason), "connect: %s", strerror(e));
		close(fd);
		return;
	}
	for (size_t off = 0; off < len;) {
		set_send_timeout(fd, remaining_s(s));
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			r->outcome = (e == EAGAIN || e == EWOULDBLOCK) ? AGENT_TIMEOUT : AGENT_UNREACHABLE;
			snprintf(r->reason, sizeof(r->reason), "sending the request: %s", strerror(e));
			close(fd);
			return;
		}
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);

	size_t cap = 16384, n = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			r->outcome = AGENT_BAD_ANSWER;
			snprintf(r->reason, sizeof(r->reason), "out of memory reading the answer");
			close(fd);
			return;
		}
		double left = remaining_s(s);
		if (left <= 0) {
			r->outcome = AGENT_TIMEOUT;
			snprintf(r->reason, sizeof(r->reason), "no answer within %g s (agentTimeoutSeconds)", s->timeout_s);
			break;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			continue; /* re-checks the deadline above */
		if (n == cap) {
			if (cap >= MAX_RESPONSE_BYTES) {
				r->outcome = AGENT_BAD_ANSWER;
				snprintf(r->reason, sizeof(r->reason), "the answer is larger than %d bytes", MAX_RESPONSE_BYTES);
				break;
			}
			cap *= 2;
			char *grown = realloc(buf, cap);
			if (!grown) {
				free(buf);
				buf = NULL;
				continue;
			}
			buf = grown;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			r->outcome = AGENT_UNREACHABLE;
			snprintf(r->reason, sizeof(r->reason), "the agent closed the connection without answering (%s)", strerror(errno));
			break;
		}
		if (got == 0) {
			json_error_t jerr;
			if (n == 0) {
				r->outcome = AGENT_UNREACHABLE;
				snprintf(r->reason, sizeof(r->reason), "the agent closed the connection without answering");
			} else if (!(r->response = json_loadb(buf, n, 0, &jerr))) {
				/* A cut-off answer is an agent that died while writing it. */
				bool truncated = json_error_code(&jerr) == json_error_premature_end_of_input;
				r->outcome = truncated ? AGENT_UNREACHABLE : AGENT_BAD_ANSWER;
				snprintf(r->reason, sizeof(r->reason), "%s: %s", truncated ? "the agent closed the connection mid-answer" : "the answer is not JSON", jerr.text);
			} else {
				r->outcome = AGENT_ANSWERED;
			}
			break;
		}
		n += (size_t)got;
	}
	free(buf);
	close(fd);
}

/* ------------------------------------------------------------------------ */
/* The DEL queue                                                            */

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	size_t n = strlen(dir);
	if (n >= sizeof(tmp))
		return errno = ENAMETOOLONG, -1;
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* <containerId>.<ifname, %XX except [A-Za-z0-9_-]>.json, as protocol.ts delQueueFileName. */
static int queue_file_name(const struct shim *s, char *out, size_t len)
{
	size_t o = (size_t)snprintf(out, len, "%s.", s->container_id);
	for (const unsigned char *p = (const unsigned char *)s->ifname; *p; p++) {
		if (o + 4 >= len)
			return -1;
		if (isascii(*p) && (isalnum(*p) || *p == '_' || *p == '-'))
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", *p);
	}
	if (o + 6 >= len)
		return -1;
	memcpy(out + o, ".json", 6);
	return 0;
}

/* Write the request to the queue dir: tmp file, fsync, rename, fsync dir. Returns 0, or -1 with why. */
static int queue_del(const struct shim *s, json_t *request, const char *why, char *err, size_t errlen)
{
	char name[NAME_MAX + 1], tmp[NAME_MAX + 64];
	if (queue_file_name(s, name, sizeof(name)) < 0)
		return snprintf(err, errlen, "the queue file name for this attachment is too long"), -1;
	snprintf(tmp, sizeof(tmp), ".%s.tmp.%d", name, (int)getpid());
	if (mkdir_p(s->queue_dir) < 0)
		return snprintf(err, errlen, "creating %s: %s", s->queue_dir, strerror(errno)), -1;
	int dfd = open(s->queue_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return snprintf(err, errlen, "opening %s: %s", s->queue_dir, strerror(errno)), -1;

	struct timeval tv;
	gettimeofday(&tv, NULL);
	json_object_set_new(request, "queuedAt", json_integer((json_int_t)tv.tv_sec * 1000 + tv.tv_usec / 1000));
	json_object_set_new(request, "reason", jstr(why));
	json_object_del(request, "pid");
	char *text = json_dumps(request, JSON_COMPACT);
	if (!text) {
		close(dfd);
		return snprintf(err, errlen, "encoding the request failed"), -1;
	}
	size_t len = strlen(text);
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = -1;
	if (fd < 0) {
		snprintf(err, errlen, "creating %s/%s: %s", s->queue_dir, tmp, strerror(errno));
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			snprintf(err, errlen, "writing %s/%s: %s", s->queue_dir, tmp, strerror(errno));
			goto out_unlink;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0) {
		snprintf(err, errlen, "fsync %s/%s: %s", s->queue_dir, tmp, strerror(errno));
		goto out_unlink;
	}
	close(fd);
	fd = -1;
	if (renameat(dfd, tmp, dfd, name) < 0) {
		snprintf(err, errlen, "renaming %s/%s: %s", s->queue_dir, tmp, strerror(errno));
		goto out_unlink;
	}
	if (fsync(dfd) < 0) {
		snprintf(err, errlen, "fsync %s: %s", s->queue_dir, strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
out_unlink:
	unlinkat(dfd, tmp, 0);
out:
	if (fd >= 0)
		close(fd);
	close(dfd);
	free(text);
	return rc;
}

/* ------------------------------------------------------------------------ */

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v ? v : "";
}

static void answer_version(const struct shim *s, json_t *stdin_json)
{
	json_t *asked = json_is_object(stdin_json) ? json_object_get(stdin_json, "cniVersion") : NULL;
	json_t *out = json_object();
	json_object_set_new(out, "cniVersion", json_is_string(asked) ? json_copy(asked) : json_string(LATEST_VERSION));
	json_t *list = json_array();
	for (size_t i = 0; i < N_VERSIONS; i++)
		json_array_append_new(list, json_string(versions[i]));
	json_object_set_new(out, "supportedVersions", list);
	print_json(out);
	json_decref(out);
	log_event(s, LOG_DEBUG, "version", NULL);
}

int main(void)
{
	struct shim s = { .timeout_s = DEFAULT_TIMEOUT_SECONDS };
	clock_gettime(CLOCK_MONOTONIC, &s.t0);
	signal(SIGPIPE, SIG_IGN);
	snprintf(s.cni_version, sizeof(s.cni_version), "%s", LATEST_VERSION);
	s.debug = strcmp(env("HYPHA_CNI_LOG"), "debug") == 0;
	s.command_name = env("CNI_COMMAND");

	/* Run by hand without a command (or on a terminal): say so rather than wait for stdin. */
	if (!*s.command_name)
		fail(&s, ERR_INVALID_ENV, "CNI_COMMAND is not set (this is a CNI plugin: a container runtime runs it)");
	size_t in_len = 0;
	char *in = isatty(STDIN_FILENO) ? calloc(1, 1) : read_stdin(&s, &in_len);
	json_error_t jerr;
	memset(&jerr, 0, sizeof(jerr));
	json_t *config = in_len > 0 ? json_loadb(in, in_len, 0, &jerr) : NULL;
	json_t *cv = json_is_object(config) ? json_object_get(config, "cniVersion") : NULL;
	if (json_is_string(cv) && json_string_length(cv) < sizeof(s.cni_version))
		snprintf(s.cni_version, sizeof(s.cni_version), "%s", json_string_value(cv));

	char q[160];
	size_t c = 0;
	while (c < N_COMMANDS && strcmp(s.command_name, commands[c].name) != 0)
		c++;
	if (c == N_COMMANDS)
		fail(&s, ERR_INVALID_ENV, "CNI_COMMAND %s is not one of ADD, DEL, CHECK, GC, STATUS, VERSION",
		     quote(s.command_name, q, sizeof(q)));
	s.command = (enum command)c;
	if (s.command == CMD_VERSION) {
		answer_version(&s, config);
		return 0;
	}

	if (in_len == 0)
		fail(&s, ERR_DECODE, "the network configuration on stdin is empty");
	if (!config)
		fail(&s, ERR_DECODE, "the network configuration on stdin is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
		     jerr.column);
	if (!json_is_object(config))
		fail(&s, ERR_DECODE, "the network configuration on stdin is not a JSON object");
	if (!cv)
		fail(&s, ERR_INCOMPATIBLE_VERSION, "cniVersion is missing (read as 0.1.0); supported: 0.3.1, 0.4.0, 1.0.0, 1.1.0");
	int v = json_is_string(cv) ? version_index(json_string_value(cv)) : -1;
	if (v < 0) {
		char *text = json_dumps(cv, JSON_COMPACT | JSON_ENCODE_ANY);
		fail(&s, ERR_INCOMPATIBLE_VERSION, "cniVersion %s is not supported; supported: 0.3.1, 0.4.0, 1.0.0, 1.1.0",
		     text ? text : "?");
	}
	if (v < commands[s.command].since)
		fail(&s, ERR_INCOMPATIBLE_VERSION, "CNI_COMMAND %s needs cniVersion %s or later; the configuration has cniVersion \"%s\"",
		     s.command_name, versions[commands[s.command].since], versions[v]);

	s.container_id = env("CNI_CONTAINERID");
	s.ifname = env("CNI_IFNAME");
	s.netns = env("CNI_NETNS");
	s.args = env("CNI_ARGS");
	s.path = env("CNI_PATH");
	if (commands[s.command].attachment) {
		check_container_id(&s, s.container_id);
		check_ifname(&s, s.ifname);
	}
	if (commands[s.command].netns && !*s.netns)
		fail(&s, ERR_INVALID_ENV, "CNI_NETNS is not set");
	if (!valid_utf8(s.netns))
		fail(&s, ERR_INVALID_ENV, "CNI_NETNS %s is not valid UTF-8", quote(s.netns, q, sizeof(q)));
	if (!valid_utf8(s.args))
		fail(&s, ERR_INVALID_ENV, "CNI_ARGS %s is not valid UTF-8", quote(s.args, q, sizeof(q)));
	if (!valid_utf8(s.path))
		fail(&s, ERR_INVALID_ENV, "CNI_PATH %s is not valid UTF-8", quote(s.path, q, sizeof(q)));
	if (commands[s.command].netns)
		check_netns(&s);

	s.socket_path = path_field(&s, config, "agentSocket", DEFAULT_AGENT_SOCKET, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	s.queue_dir = path_field(&s, config, "delQueueDir", DEFAULT_DEL_QUEUE_DIR, PATH_MAX - NAME_MAX - 2);
	json_t *tmo = json_object_get(config, "agentTimeoutSeconds");
	if (tmo) {
		double t = json_is_number(tmo) ? json_number_value(tmo) : -1;
		if (!(t > 0 && t <= MAX_TIMEOUT_SECONDS)) {
			char *text = json_dumps(tmo, JSON_COMPACT | JSON_ENCODE_ANY);
			fail(&s, ERR_INVALID_CONFIG, "invalid network configuration: agentTimeoutSeconds: %s must be a number of seconds above 0 and at most %g",
			     text ? text : "?", MAX_TIMEOUT_SECONDS);
		}
		s.timeout_s = t;
	}

	json_t *request = json_object();
	json_object_set_new(request, "command", json_string(s.command_name));
	json_object_set_new(request, "containerId", json_string(s.container_id));
	json_object_set_new(request, "netns", json_string(s.netns));
	json_object_set_new(request, "ifname", json_string(s.ifname));
	json_object_set_new(request, "args", json_string(s.args));
	json_object_set_new(request, "path", json_string(s.path));
	json_object_set_new(request, "pid", json_integer(getpid()));
	json_object_set(request, "config", config);
	char *wire = json_dumps(request, JSON_COMPACT);
	if (!wire)
		fail(&s, ERR_IO, "encoding the request failed");

	struct reply r;
	call_agent(&s, wire, strlen(wire), &r);
	free(wire);

	if (r.outcome == AGENT_UNREACHABLE || r.outcome == AGENT_TIMEOUT) {
		char why[512];
		snprintf(why, sizeof(why), "agent at %s: %s", s.socket_path, r.reason);
		if (s.command == CMD_DEL) {
			char qerr[512];
			if (queue_del(&s, request, why, qerr, sizeof(qerr)) == 0) {
				json_t *extra = json_object();
				json_object_set_new(extra, "reason", jstr(why));
				json_object_set_new(extra, "queue", jstr(s.queue_dir));
				log_event(&s, LOG_WARN, "agent not reachable: DEL queued for the agent to replay", extra);
				return 0;
			}
			fail(&s, ERR_TRY_AGAIN_LATER, "try again later: %s; queueing the DEL failed: %s", why, qerr);
		}
		if (s.command == CMD_STATUS)
			fail(&s, ERR_NOT_AVAILABLE, "plugin not available: %s", why);
		fail(&s, ERR_TRY_AGAIN_LATER, "try again later: %s", why);
	}
	if (r.outcome == AGENT_BAD_ANSWER)
		fail(&s, ERR_IO, "the agent at %s answered with something that is not a response: %s", s.socket_path, r.reason);

	json_t *ok = json_object_get(r.response, "ok");
	if (json_is_true(ok)) {
		json_t *result = json_object_get(r.response, "result");
		if (json_is_object(result))
			print_json(result);
		else if (s.command == CMD_ADD)
			fail(&s, ERR_IO, "the agent at %s answered ADD without a result", s.socket_path);
		log_event(&s, LOG_DEBUG, "done", NULL);
		return 0;
	}
	json_t *err = json_object_get(r.response, "error");
	json_t *code = json_object_get(err, "code");
	json_t *msg = json_object_get(err, "msg");
	json_t *details = json_object_get(err, "details");
	if (!json_is_false(ok) || !json_is_integer(code) || !json_is_string(msg))
		fail(&s, ERR_IO, "the agent at %s answered with something that is not a response", s.socket_path);
	error_exit(&s, (int)json_integer_value(code), json_string_value(msg), json_is_string(details) ? json_string_value(details) : NULL);
}
