/* rtnetlink transport: a NETLINK_ROUTE socket in a chosen network namespace, and
 * request/response exchanges on it off the JS thread.
 *
 * The messages themselves are built and parsed in TypeScript
 * (src/datapath/rtnl-codec.ts); here we only number them, ask for an ACK, send
 * them one at a time and collect what the kernel answers to each: the reply
 * messages of a GET or a dump, and the final status (NLMSG_ERROR, or NLMSG_DONE
 * for a dump) with the kernel's extended ACK message. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "handles.h"
#include "modules.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define RCVBUF_SIZE (4 << 20)
#define RECV_INITIAL (32 << 10) /* the kernel sizes dump chunks by the reader's buffer, up to 32 KiB */
#define MAX_MESSAGES 4096
#define MAX_MESSAGE_SIZE (1 << 20)
#define DEFAULT_TIMEOUT_MS 30000

static void netlink_release(napi_env env, struct handle *h)
{
	struct netlink_handle *n = (struct netlink_handle *)h;

	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}

/* Options that make the socket better but whose absence is no reason to fail:
 * each exists since Linux 4.20 at the latest. */
static void set_flag(int fd, int opt)
{
	int one = 1;

	(void)setsockopt(fd, SOL_NETLINK, opt, &one, sizeof(one));
}

/* netlinkOpen(netnsPath?: string): NetlinkHandle */
static napi_value js_netlink_open(napi_env env, napi_callback_info info)
{
	const char *fn = "netlinkOpen";
	napi_value argv[1];
	char *path = NULL;
	struct netns_failure f;
	struct netlink_handle *n;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd, size = RCVBUF_SIZE;

	if (!hy_args(env, info, 1, argv))
		return NULL;
	if (!hy_is_nullish(env, argv[0]) && !(path = hy_get_string(env, argv[0], fn, "netnsPath")))
		return NULL;
	fd = netns_socket(path, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE, &f);
	free(path);
	if (fd < 0) {
		hy_throw_errno(env, f.op, f.err, "%s", f.detail);
		return NULL;
	}
	/* A big buffer so that a dump or a burst of replies is never dropped
	 * (ENOBUFS); FORCE passes over net.core.rmem_max with CAP_NET_ADMIN. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	set_flag(fd, NETLINK_EXT_ACK);      /* the kernel's reason, as text */
	set_flag(fd, NETLINK_CAP_ACK);      /* errors do not echo our whole request */
	set_flag(fd, NETLINK_GET_STRICT_CHK); /* dump filters (table, ifindex) honoured */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = errno;

		close(fd);
		hy_throw_errno(env, "bind", err, "netlink socket");
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		close(fd);
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	n->h.kind = HANDLE_NETLINK;
	n->h.refs = 1;
	n->h.release = netlink_release;
	n->fd = fd;
	n->seq = (uint32_t)time(NULL);
	return handle_wrap(env, &n->h);
}

/* What came back for one request. */
struct reply {
	int err;               /* positive errno, 0 ok */
	bool skipped;          /* not sent: an earlier request failed */
	bool interrupted;      /* a dump message had NLM_F_DUMP_INTR */
	char *extack;          /* NLMSGERR_ATTR_MSG */
	int64_t extack_off;    /* NLMSGERR_ATTR_OFFS, -1 when absent */
	uint32_t first, count; /* its messages: pool.offs[first .. first+count) */
};

/* Reply messages of all requests, back to back. */
struct pool {
	uint8_t *data;
	size_t len, cap;
	size_t *offs; /* start of each message; its length is in its header */
	uint32_t n, ncap;
};

struct transact_work {
	napi_async_work work;
	napi_deferred deferred;
	struct netlink_handle *nl;
	int fd;
	bool stop_on_error;
	uint32_t timeout_ms;
	uint32_t count;
	uint8_t *msgs;    /* the requests, back to back (copied from JS) */
	size_t *msg_off;  /* start of each */
	struct reply *replies;
	struct pool pool;
	uint8_t *buf;     /* receive buffer */
	size_t buf_cap;
	int fatal;        /* allocation failure in the worker */
};

static bool pool_add(struct pool *p, const struct nlmsghdr *h)
{
	size_t len = h->nlmsg_len;

	if (p->n == p->ncap) {
		uint32_t ncap = p->ncap ? p->ncap * 2 : 64;
		size_t *offs = realloc(p->offs, ncap * sizeof(*offs));

		if (!offs)
			return false;
		p->offs = offs;
		p->ncap = ncap;
	}
	if (p->len + len > p->cap) {
		size_t cap = p->cap ? p->cap : 16384;
		uint8_t *data;

		while (cap < p->len + len)
			cap *= 2;
		if (!(data = realloc(p->data, cap)))
			return false;
		p->data = data;
		p->cap = cap;
	}
	memcpy(p->data + p->len, h, len);
	p->offs[p->n++] = p->len;
	p->len += len;
	return true;
}

/* Extended ACK attributes after an NLMSG_ERROR or NLMSG_DONE payload. */
static void parse_extack(struct reply *r, const uint8_t *tlv, size_t len)
{
	while (len >= NLA_HDRLEN) {
		const struct nlattr *a = (const struct nlattr *)tlv;
		size_t alen = a->nla_len, step = NLA_ALIGN(alen);

		if (alen < NLA_HDRLEN || alen > len)
			return;
		const uint8_t *data = tlv + NLA_HDRLEN;
		size_t dlen = alen - NLA_HDRLEN;

		switch (a->nla_type & NLA_TYPE_MASK) {
		case NLMSGERR_ATTR_MSG:
			if (!r->extack && dlen > 0)
				r->extack = strndup((const char *)data, dlen);
			break;
		case NLMSGERR_ATTR_OFFS:
			if (dlen >= 4) {
				uint32_t off;

				memcpy(&off, data, 4);
				r->extack_off = off;
			}
			break;
		}
		if (step >= len)
			return;
		tlv += step;
		len -= step;
	}
}

/* Final status of a request from its NLMSG_ERROR. */
static void on_error_msg(struct reply *r, const struct nlmsghdr *h)
{
	const uint8_t *p = NLMSG_DATA(h);
	size_t len = h->nlmsg_len - NLMSG_HDRLEN, skip;
	int error;

	if (len < sizeof(int)) {
		r->err = EBADMSG;
		return;
	}
	memcpy(&error, p, sizeof(error));
	r->err = error < 0 ? -error : error; /* 0: the ACK */
	if (!(h->nlmsg_flags & NLM_F_ACK_TLVS) || len < sizeof(struct nlmsgerr))
		return;
	/* The echoed request: only its header when capped, else all of it. */
	skip = sizeof(int) + sizeof(struct nlmsghdr);
	if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
		const struct nlmsghdr *orig = (const struct nlmsghdr *)(p + sizeof(int));

		skip = sizeof(int) + NLMSG_ALIGN(orig->nlmsg_len);
	}
	if (skip < len)
		parse_extack(r, p + skip, len - skip);
}

/* Final status of a dump from its NLMSG_DONE (an int, then extack attributes). */
static void on_done_msg(struct reply *r, const struct nlmsghdr *h)
{
	const uint8_t *p = NLMSG_DATA(h);
	size_t len = h->nlmsg_len - NLMSG_HDRLEN;
	int error;

	if (len < sizeof(int))
		return;
	memcpy(&error, p, sizeof(error));
	if (error < 0 && !r->err)
		r->err = -error;
	if ((h->nlmsg_flags & NLM_F_ACK_TLVS) && len > sizeof(int))
		parse_extack(r, p + sizeof(int), len - sizeof(int));
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the socket is readable or the deadline passes: 0, ETIMEDOUT or an errno. */
static int wait_readable(int fd, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	for (;;) {
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return ETIMEDOUT;
		n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return errno;
	}
}

/* One datagram into w->buf (grown when the datagram is larger: MSG_TRUNC on a
 * peek tells its size before anything is lost). Returns its length, or -errno. */
static ssize_t recv_datagram(struct transact_work *w, int64_t deadline)
{
	for (;;) {
		struct sockaddr_nl from;
		struct iovec iov;
		struct msghdr mh;
		ssize_t n;
		int err;

		n = recv(w->fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if ((err = wait_readable(w->fd, deadline)))
					return -err;
				continue;
			}
			return -errno; /* ENOBUFS: the kernel dropped something for us */
		}
		if ((size_t)n > w->buf_cap) {
			size_t cap = w->buf_cap;
			uint8_t *b;

			while (cap < (size_t)n)
				cap *= 2;
			if (!(b = realloc(w->buf, cap)))
				return -ENOMEM;
			w->buf = b;
			w->buf_cap = cap;
		}
		iov.iov_base = w->buf;
		iov.iov_len = w->buf_cap;
		memset(&mh, 0, sizeof(mh));
		mh.msg_name = &from;
		mh.msg_namelen = sizeof(from);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		n = recvmsg(w->fd, &mh, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		if (mh.msg_flags & MSG_TRUNC) /* cannot happen after the peek; never parse half */
			continue;
		if (mh.msg_namelen < sizeof(from) || from.nl_pid != 0)
			continue; /* not from the kernel */
		return n;
	}
}

/* Sends request i and reads until its final status. */
static void transact_one(struct transact_work *w, uint32_t i)
{
	struct reply *r = &w->replies[i];
	struct nlmsghdr *req = (struct nlmsghdr *)(w->msgs + w->msg_off[i]);
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	int64_t deadline = now_ms() + w->timeout_ms;
	uint32_t seq = ++w->nl->seq;
	bool final = false;
	ssize_t n;

	if (seq == 0) /* 0 is what unsolicited notifications carry */
		seq = ++w->nl->seq;
	req->nlmsg_seq = seq;
	req->nlmsg_pid = 0;
	req->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	r->first = w->pool.n;
	for (;;) {
		n = sendto(w->fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
		if (n >= 0 || errno != EINTR)
			break;
	}
	if (n < 0) {
		r->err = errno;
		return;
	}
	while (!final) {
		n = recv_datagram(w, deadline);
		if (n == -ENOBUFS) {
			/* Something addressed to us was dropped. Report it, and keep reading:
			 * the final status may still come (the timeout ends the wait if not). */
			r->err = ENOBUFS;
			continue;
		}
		if (n < 0) {
			if (!r->err || -n != ETIMEDOUT)
				r->err = (int)-n;
			break;
		}
		int left = (int)n;

		for (struct nlmsghdr *h = (struct nlmsghdr *)w->buf; NLMSG_OK(h, left);
		     h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_seq != seq)
				continue; /* late answer to an earlier request that timed out */
			if (h->nlmsg_type == NLMSG_ERROR) {
				int enobufs = r->err;

				on_error_msg(r, h);
				if (enobufs && !r->err)
					r->err = enobufs;
				final = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_DONE) {
				on_done_msg(r, h);
				final = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_NOOP || h->nlmsg_type == NLMSG_OVERRUN)
				continue;
			if (h->nlmsg_flags & NLM_F_DUMP_INTR)
				r->interrupted = true;
			if (!pool_add(&w->pool, h)) {
				w->fatal = ENOMEM;
				r->err = ENOMEM;
				final = true;
				break;
			}
		}
	}
	r->count = w->pool.n - r->first;
}

static void transact_execute(napi_env env, void *data)
{
	struct transact_work *w = data;
	bool stop = false;

	w->buf_cap = RECV_INITIAL;
	if (!(w->buf = malloc(w->buf_cap))) {
		w->fatal = ENOMEM;
		return;
	}
	for (uint32_t i = 0; i < w->count; i++) {
		struct reply *r = &w->replies[i];

		r->extack_off = -1;
		if (stop || w->fatal) {
			r->skipped = true;
			r->err = ECANCELED;
			r->first = w->pool.n;
			continue;
		}
		transact_one(w, i);
		if (r->err && w->stop_on_error)
			stop = true;
	}
}

static void transact_free(struct transact_work *w)
{
	if (w->replies)
		for (uint32_t i = 0; i < w->count; i++)
			free(w->replies[i].extack);
	free(w->replies);
	free(w->msgs);
	free(w->msg_off);
	free(w->pool.data);
	free(w->pool.offs);
	free(w->buf);
	free(w);
}

static napi_value build_replies(napi_env env, struct transact_work *w)
{
	napi_value out, ab = NULL, item, list, view;
	void *dst = NULL;
	char namebuf[32], textbuf[128];

	if (w->fatal) {
		hy_throw_errno(env, "netlinkTransact", w->fatal, "while collecting replies");
		return NULL;
	}
	if (w->pool.len) {
		HY_NAPI(env, napi_create_arraybuffer(env, w->pool.len, &dst, &ab));
		memcpy(dst, w->pool.data, w->pool.len);
	}
	HY_NAPI(env, napi_create_array_with_length(env, w->count, &out));
	for (uint32_t i = 0; i < w->count; i++) {
		struct reply *r = &w->replies[i];

		HY_NAPI(env, napi_create_object(env, &item));
		if (!hy_set_u32(env, item, "errno", (uint32_t)r->err))
			return NULL;
		if (r->err && (!hy_set_string(env, item, "code", hy_errno_name(r->err, namebuf, sizeof(namebuf))) ||
			       !hy_set_string(env, item, "strerror", hy_errno_text(r->err, textbuf, sizeof(textbuf)))))
			return NULL;
		if (r->extack && !hy_set_string(env, item, "extack", r->extack))
			return NULL;
		if (r->extack_off >= 0 && !hy_set_double(env, item, "extackOffset", (double)r->extack_off))
			return NULL;
		if (r->skipped && !hy_set_bool(env, item, "skipped", true))
			return NULL;
		if (r->interrupted && !hy_set_bool(env, item, "interrupted", true))
			return NULL;
		HY_NAPI(env, napi_create_array_with_length(env, r->count, &list));
		for (uint32_t k = 0; k < r->count; k++) {
			size_t off = w->pool.offs[r->first + k];
			const struct nlmsghdr *h = (const struct nlmsghdr *)(w->pool.data + off);

			HY_NAPI(env, napi_create_typedarray(env, napi_uint8_array, h->nlmsg_len, ab, off, &view));
			HY_NAPI(env, napi_set_element(env, list, k, view));
		}
		if (!hy_set_value(env, item, "messages", list))
			return NULL;
		HY_NAPI(env, napi_set_element(env, out, i, item));
	}
	return out;
}

static void transact_complete(napi_env env, napi_status status, void *data)
{
	struct transact_work *w = data;
	napi_value out = NULL, error = NULL;

	if (status != napi_ok)
		error = hy_code_error(env, HY_ENAPI, "netlinkTransact", "async work failed (status %d)",
				      (int)status);
	else if (!(out = build_replies(env, w)))
		napi_get_and_clear_last_exception(env, &error);
	hy_settle(env, w->deferred, out, error);
	handle_busy_end(env, &w->nl->h); /* a close() meanwhile closes the socket now */
	napi_delete_async_work(env, w->work);
	transact_free(w);
}

/* Copies messages (an array of complete netlink messages) into w. */
static bool get_messages(napi_env env, napi_value arr, const char *fn, struct transact_work *w)
{
	bool is_array = false;
	uint32_t count;
	size_t total = 0;
	char name[48];

	HY_NAPI_B(env, napi_is_array(env, arr, &is_array));
	if (!is_array) {
		hy_throw_code(env, HY_EINVALARG, fn, "messages must be an array of Uint8Array");
		return false;
	}
	HY_NAPI_B(env, napi_get_array_length(env, arr, &count));
	if (count > MAX_MESSAGES) {
		hy_throw_code(env, HY_EINVALARG, fn, "messages must hold at most %d messages, got %u",
			      MAX_MESSAGES, count);
		return false;
	}
	w->count = count;
	w->msg_off = calloc(count ? count : 1, sizeof(*w->msg_off));
	w->replies = calloc(count ? count : 1, sizeof(*w->replies));
	if (!w->msg_off || !w->replies) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return false;
	}
	/* Two passes: check and size, then copy (the arrays stay reachable meanwhile). */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < count; i++) {
			napi_value v;
			void *data;
			size_t len;
			uint32_t nlen;

			snprintf(name, sizeof(name), "messages[%u]", i);
			HY_NAPI_B(env, napi_get_element(env, arr, i, &v));
			if (!hy_get_bytes(env, v, fn, name, &data, &len))
				return false;
			if (pass == 1) {
				memcpy(w->msgs + w->msg_off[i], data, len);
				continue;
			}
			if (len < NLMSG_HDRLEN || len > MAX_MESSAGE_SIZE) {
				hy_throw_code(env, HY_EINVALARG, fn,
					      "%s must be a netlink message of %d to %d bytes, got %zu", name,
					      NLMSG_HDRLEN, MAX_MESSAGE_SIZE, len);
				return false;
			}
			memcpy(&nlen, data, sizeof(nlen));
			if (nlen != len) {
				hy_throw_code(env, HY_EINVALARG, fn,
					      "%s has nlmsg_len %u but is %zu bytes long", name, nlen, len);
				return false;
			}
			w->msg_off[i] = total;
			total += NLMSG_ALIGN(len);
		}
		if (pass == 0 && !(w->msgs = malloc(total ? total : 1))) {
			hy_throw_errno(env, "malloc", ENOMEM, NULL);
			return false;
		}
	}
	return true;
}

/* netlinkTransact(h, messages, opts?: {stopOnError?, timeoutMs?}): Promise<NetlinkReply[]> */
static napi_value js_netlink_transact_impl(napi_env env, napi_callback_info info)
{
	const char *fn = "netlinkTransact";
	napi_value argv[3], v, promise, name;
	struct netlink_handle *nl;
	struct transact_work *w;
	napi_status s;
	int64_t timeout = DEFAULT_TIMEOUT_MS;
	bool stop = true;

	if (!hy_args(env, info, 3, argv))
		return NULL;
	nl = (struct netlink_handle *)handle_get(env, argv[0], HANDLE_MASK(HANDLE_NETLINK), fn, "h",
						 false);
	if (!nl || !hy_check_opts(env, argv[2], fn, "opts"))
		return NULL;
	if (!hy_get_opt(env, argv[2], "stopOnError", &v))
		return NULL;
	if (v) {
		napi_valuetype t;

		HY_NAPI(env, napi_typeof(env, v, &t));
		if (t != napi_boolean) {
			hy_throw_code(env, HY_EINVALARG, fn, "opts.stopOnError must be a boolean");
			return NULL;
		}
		HY_NAPI(env, napi_get_value_bool(env, v, &stop));
	}
	if (!hy_get_opt(env, argv[2], "timeoutMs", &v) ||
	    (v && !hy_get_int(env, v, fn, "opts.timeoutMs", 1, 3600000, &timeout)))
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w) {
		hy_throw_errno(env, "calloc", ENOMEM, NULL);
		return NULL;
	}
	w->nl = nl;
	w->fd = nl->fd;
	w->stop_on_error = stop;
	w->timeout_ms = (uint32_t)timeout;
	if (!get_messages(env, argv[1], fn, w)) {
		transact_free(w);
		return NULL;
	}
	if ((s = napi_create_string_utf8(env, "hypha:netlinkTransact", NAPI_AUTO_LENGTH, &name)) != napi_ok ||
	    (s = napi_create_async_work(env, NULL, name, transact_execute, transact_complete, w, &w->work)) !=
		    napi_ok) {
		transact_free(w);
		hy_napi_failed(env, s, "napi_create_async_work");
		return NULL;
	}
	if ((s = napi_create_promise(env, &w->deferred, &promise)) != napi_ok ||
	    (s = napi_queue_async_work(env, w->work)) != napi_ok) {
		napi_delete_async_work(env, w->work);
		transact_free(w);
		hy_napi_failed(env, s, "napi_queue_async_work");
		return NULL;
	}
	handle_busy_begin(&nl->h);
	return promise;
}

static napi_value js_netlink_transact(napi_env env, napi_callback_info info)
{
	napi_value promise = js_netlink_transact_impl(env, info);

	return promise ? promise : hy_reject_pending(env);
}

bool netlink_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "netlinkOpen", js_netlink_open) &&
	       hy_export(env, exports, "netlinkTransact", js_netlink_transact);
}
