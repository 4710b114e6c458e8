/* Capturing libbpf's log output per thread. */
#include "logcap.h"

#include <bpf/libbpf.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOGCAP_MAX (1u << 20) /* keep at most 1 MiB of libbpf output per capture */

static _Thread_local struct logcap *current;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

static bool reserve(struct logcap *lc, size_t n)
{
	size_t cap = lc->cap ? lc->cap : 4096;
	char *nb;

	if (lc->len + n + 1 <= lc->cap)
		return true;
	while (cap < lc->len + n + 1)
		cap *= 2;
	nb = realloc(lc->buf, cap);
	if (!nb)
		return false;
	lc->buf = nb;
	lc->cap = cap;
	return true;
}

static void append(struct logcap *lc, const char *s, size_t n)
{
	static const char marker[] = "... (libbpf log truncated)\n";
	bool cut = false;

	if (lc->truncated)
		return;
	if (lc->len + n > LOGCAP_MAX) {
		n = LOGCAP_MAX - lc->len;
		cut = true;
	}
	if (!reserve(lc, n + sizeof(marker))) {
		lc->truncated = true;
		return;
	}
	memcpy(lc->buf + lc->len, s, n);
	lc->len += n;
	if (cut) {
		memcpy(lc->buf + lc->len, marker, sizeof(marker) - 1);
		lc->len += sizeof(marker) - 1;
		lc->truncated = true;
	}
	lc->buf[lc->len] = '\0';
}

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char small[1024];
	char *msg = small;
	va_list ap2;
	int n;

	if (level == LIBBPF_DEBUG)
		return 0;
	if (!current) {
		if (level == LIBBPF_WARN)
			return vfprintf(stderr, fmt, ap);
		return 0;
	}
	va_copy(ap2, ap);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n >= (int)sizeof(small)) {
		msg = malloc((size_t)n + 1);
		if (msg)
			vsnprintf(msg, (size_t)n + 1, fmt, ap2);
	}
	va_end(ap2);
	if (n > 0 && msg)
		append(current, msg, (size_t)n);
	if (msg != small)
		free(msg);
	return n;
}

static void install(void)
{
	libbpf_set_print(print_fn);
}

void logcap_install(void)
{
	pthread_once(&install_once, install);
}

void logcap_begin(struct logcap *lc)
{
	memset(lc, 0, sizeof(*lc));
	logcap_install();
	lc->prev = current;
	current = lc;
}

void logcap_end(struct logcap *lc)
{
	if (current == lc)
		current = lc->prev;
}

void logcap_free(struct logcap *lc)
{
	free(lc->buf);
	lc->buf = NULL;
	lc->len = lc->cap = 0;
}

const char *logcap_text(const struct logcap *lc)
{
	return lc->buf ? lc->buf : "";
}

char *text_tail(const char *text, int max_lines)
{
	size_t len = strlen(text);
	const char *p = text + len;
	int lines = 0;

	/* ignore trailing newlines, then walk back max_lines line starts */
	while (p > text && p[-1] == '\n')
		p--;
	while (p > text) {
		if (p[-1] == '\n' && ++lines >= max_lines)
			break;
		p--;
	}
	return strdup(p);
}
