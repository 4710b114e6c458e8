// acceptd: the benchmark's TCP (and optionally UDP) endpoint.
//
//   acceptd --ports 8080[,8081...] [--threads N] [--udp] [--bind IP] [--reply-byte C]
//
// Every thread owns one listening socket per port (SO_REUSEPORT spreads connections
// across them) and an epoll instance. A connection is accepted, sent one byte and
// closed at once, so the server ends the connection: the client reads the byte and can
// reset (connrate does), leaving no TIME_WAIT on the client. With --udp each port also
// answers every datagram with the same single byte.
//
// Prints {"ready":true,...} once every socket listens; SIGUSR1 prints the counters,
// SIGTERM/SIGINT print them and exit 0. The listen backlog asks for 65535 and gets
// net.core.somaxconn of the namespace (setting it is the caller's job).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PORTS 64
#define MAX_THREADS 256

struct config {
  int ports[MAX_PORTS];
  int nports;
  int threads;
  int udp;
  struct in_addr bind;
  char reply;
};

struct worker {
  const struct config *cfg;
  int epfd;
  int tcp[MAX_PORTS];
  int udp[MAX_PORTS];
  _Atomic unsigned long long accepted;
  _Atomic unsigned long long accept_errors;
  _Atomic unsigned long long datagrams;
  pthread_t tid;
};

static void die(const char *what, int err) {
  fprintf(stderr, "acceptd: %s: %s\n", what, strerror(err));
  exit(1);
}

static void usage(const char *msg) {
  fprintf(stderr,
          "acceptd: %s\n"
          "usage: acceptd --ports P[,P...] [--threads N] [--udp] [--bind IP] [--reply-byte C]\n",
          msg);
  exit(2);
}

static int parse_int(const char *s, const char *flag, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s \"%s\" is not an integer in %ld-%ld", flag, s, min, max);
    usage(buf);
  }
  return (int)v;
}

static void parse_ports(struct config *cfg, const char *arg) {
  char *copy = strdup(arg);
  if (copy == NULL) die("strdup", errno);
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (cfg->nports == MAX_PORTS) usage("--ports lists more than 64 ports");
    cfg->ports[cfg->nports++] = parse_int(tok, "--ports", 1, 65535);
  }
  free(copy);
  if (cfg->nports == 0) usage("--ports is empty");
}

static int open_socket(const struct config *cfg, int type, int port) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket", errno);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR", errno);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("SO_REUSEPORT", errno);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = cfg->bind};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    char what[64];
    snprintf(what, sizeof what, "bind port %d", port);
    die(what, errno);
  }
  if (type == SOCK_STREAM && listen(fd, 65535) < 0) die("listen", errno);
  return fd;
}

static void handle_tcp(struct worker *w, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      atomic_fetch_add_explicit(&w->accept_errors, 1, memory_order_relaxed);
      return; // EMFILE and friends: retry on the next readiness event
    }
    // A fresh socket has an empty send buffer: the byte always fits. close() then
    // sends it with our FIN (nothing unread, so no RST).
    (void)send(fd, &w->cfg->reply, 1, MSG_NOSIGNAL);
    close(fd);
    atomic_fetch_add_explicit(&w->accepted, 1, memory_order_relaxed);
  }
}

static void handle_udp(struct worker *w, int fd) {
  char buf[2048];
  for (;;) {
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; // EAGAIN, or an ICMP error queued on the socket
    }
    (void)sendto(fd, &w->cfg->reply, 1, 0, (struct sockaddr *)&from, len);
    atomic_fetch_add_explicit(&w->datagrams, 1, memory_order_relaxed);
  }
}

// epoll data: index into the port table; UDP sockets are offset by MAX_PORTS.
static void *run(void *arg) {
  struct worker *w = arg;
  struct epoll_event ev[64];
  for (;;) {
    int n = epoll_wait(w->epfd, ev, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait", errno);
    }
    for (int i = 0; i < n; i++) {
      uint32_t idx = ev[i].data.u32;
      if (idx < MAX_PORTS) {
        handle_tcp(w, w->tcp[idx]);
      } else {
        handle_udp(w, w->udp[idx - MAX_PORTS]);
      }
    }
  }
  return NULL;
}

static void print_counters(struct worker *ws, int n) {
  unsigned long long acc = 0, errs = 0, dgrams = 0;
  for (int i = 0; i < n; i++) {
    acc += atomic_load(&ws[i].accepted);
    errs += atomic_load(&ws[i].accept_errors);
    dgrams += atomic_load(&ws[i].datagrams);
  }
  printf("{\"accepted\":%llu,\"accept_errors\":%llu,\"datagrams\":%llu}\n", acc, errs, dgrams);
  fflush(stdout);
}

int main(int argc, char **argv) {
  struct config cfg = {.threads = 1, .reply = 'x'};
  cfg.bind.s_addr = htonl(INADDR_ANY);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--udp") == 0) {
      cfg.udp = 1;
      continue;
    }
    if (v == NULL) {
      char buf[96];
      snprintf(buf, sizeof buf, "%s needs a value", a);
      usage(buf);
    }
    i++;
    if (strcmp(a, "--ports") == 0) {
      parse_ports(&cfg, v);
    } else if (strcmp(a, "--threads") == 0) {
      cfg.threads = parse_int(v, "--threads", 1, MAX_THREADS);
    } else if (strcmp(a, "--bind") == 0) {
      if (inet_pton(AF_INET, v, &cfg.bind) != 1) {
        char buf[96];
        snprintf(buf, sizeof buf, "--bind \"%s\" is not an IPv4 address", v);
        usage(buf);
      }
    } else if (strcmp(a, "--reply-byte") == 0) {
      if (strlen(v) != 1) usage("--reply-byte takes exactly one character");
      cfg.reply = v[0];
    } else {
      char buf[96];
      snprintf(buf, sizeof buf, "unknown option %s", a);
      usage(buf);
    }
  }
  if (cfg.nports == 0) usage("--ports is required");

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }

  // Workers inherit this mask; the main thread takes the signals with sigwait.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  sigaddset(&sigs, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  struct worker *ws = calloc((size_t)cfg.threads, sizeof *ws);
  if (ws == NULL) die("calloc", errno);
  for (int t = 0; t < cfg.threads; t++) {
    struct worker *w = &ws[t];
    w->cfg = &cfg;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) die("epoll_create1", errno);
    for (int p = 0; p < cfg.nports; p++) {
      w->tcp[p] = open_socket(&cfg, SOCK_STREAM, cfg.ports[p]);
      struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)p};
      if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tcp[p], &ev) < 0) die("epoll_ctl", errno);
      if (cfg.udp) {
        w->udp[p] = open_socket(&cfg, SOCK_DGRAM, cfg.ports[p]);
        struct epoll_event uev = {.events = EPOLLIN, .data.u32 = (uint32_t)(MAX_PORTS + p)};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->udp[p], &uev) < 0) die("epoll_ctl", errno);
      }
    }
  }
  for (int t = 0; t < cfg.threads; t++) {
    int err = pthread_create(&ws[t].tid, NULL, run, &ws[t]);
    if (err != 0) die("pthread_create", err);
  }

  printf("{\"ready\":true,\"ports\":[");
  for (int p = 0; p < cfg.nports; p++) printf("%s%d", p ? "," : "", cfg.ports[p]);
  printf("],\"threads\":%d,\"udp\":%s}\n", cfg.threads, cfg.udp ? "true" : "false");
  fflush(stdout);

  for (;;) {
    int sig;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGPIPE) continue;
    print_counters(ws, cfg.threads);
    if (sig == SIGTERM || sig == SIGINT) _exit(0);
  }
}
