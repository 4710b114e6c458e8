/* Sockets in another network namespace.
 *
 * A socket belongs to the network namespace of the thread that created it, for its
 * whole life. So a socket "in" a pod's namespace is made on a short-lived thread
 * that enters the namespace (setns), calls socket() and exits: no thread of the
 * process that runs JS or libuv work ever changes namespace, and nothing has to
 * switch back (a failed switch back would leave a pool thread in the wrong
 * namespace for whatever it runs next). The thread blocks every signal, so no
 * handler ever runs inside the other namespace. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "modules.h"

struct socket_job {
	int nsfd;
	int domain, type, protocol;
	int fd;        /* result */
	int err;       /* positive errno */
	const char *op;
};

static void *socket_thread(void *arg)
{
	struct socket_job *j = arg;

	if (setns(j->nsfd, CLONE_NEWNET)) {
		j->err = errno;
		j->op = "setns";
		return NULL;
	}
	j->fd = socket(j->domain, j->type, j->protocol);
	if (j->fd < 0) {
		j->err = errno;
		j->op = "socket";
	}
	return NULL; /* the thread's reference to the namespace goes with it */
}

static void fail_with(struct netns_failure *f, const char *op, int err, const char *fmt,
		      const char *path)
{
	f->op = op;
	f->err = err;
	snprintf(f->detail, sizeof(f->detail), fmt, path);
}

int netns_socket(const char *path, int domain, int type, int protocol, struct netns_failure *f)
{
	struct socket_job j = { .nsfd = -1, .domain = domain, .type = type, .protocol = protocol, .fd = -1 };
	sigset_t all, old;
	struct statfs st;
	pthread_attr_t attr;
	pthread_t thread;
	int err;

	if (!path) {
		j.fd = socket(domain, type, protocol);
		if (j.fd < 0)
			fail_with(f, "socket", errno, "%s", "");
		return j.fd;
	}
	j.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (j.nsfd < 0) {
		fail_with(f, "open", errno, "netns \"%s\"", path);
		return -1;
	}
	/* A clear message for the common mistake (a path that is no namespace at all)
	 * instead of setns's bare EINVAL; setns still decides for nsfs files of other
	 * namespace types. */
	if (fstatfs(j.nsfd, &st) == 0 && st.f_type != NSFS_MAGIC) {
		close(j.nsfd);
		fail_with(f, "setns", EINVAL, "\"%s\" is not a network namespace (not an nsfs file)",
			  path);
		return -1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* inherited by the new thread */
	err = pthread_create(&thread, &attr, socket_thread, &j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err) {
		close(j.nsfd);
		fail_with(f, "pthread_create", err, "for netns \"%s\"", path);
		return -1;
	}
	pthread_join(thread, NULL);
	close(j.nsfd);
	if (j.fd < 0) {
		if (j.err == EINVAL && !strcmp(j.op, "setns"))
			fail_with(f, "setns", EINVAL, "\"%s\" is not a network namespace", path);
		else
			fail_with(f, j.op, j.err, "in netns \"%s\"", path);
	}
	return j.fd;
}
