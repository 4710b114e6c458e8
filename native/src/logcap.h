/* Capturing libbpf's own log output.
 *
 * libbpf_set_print() is process-global. We install one print function, once
 * (pthread_once), and route each message to a capture buffer that belongs to the
 * calling thread (a _Thread_local pointer set by logcap_begin). libbpf prints on
 * the thread that called it, so two loads running at once on two worker threads
 * each get their own log, without a lock held across a whole load. Messages from
 * threads without a capture go to stderr (warnings only), as libbpf does by default. */
#ifndef HYPHA_LOGCAP_H
#define HYPHA_LOGCAP_H

#include <stdbool.h>
#include <stddef.h>

struct logcap {
	char *buf;
	size_t len;
	size_t cap;
	bool truncated;
	struct logcap *prev; /* captures nest */
};

void logcap_install(void);
void logcap_begin(struct logcap *lc);
void logcap_end(struct logcap *lc);
void logcap_free(struct logcap *lc);
/* The captured text ("" when none). */
const char *logcap_text(const struct logcap *lc);

/* The last max_lines lines of text, malloc()ed; NULL on allocation failure. */
char *text_tail(const char *text, int max_lines);

#endif
