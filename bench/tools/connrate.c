// connrate: new-TCP-connections-per-second load generator for the benchmark.
//
//   connrate (--targets FILE | --target IP:PORT ...) --duration S --concurrency C
//            [--warmup S] [--seed N] [--threads T] [--timeout-ms MS] [--source IP]
//            [--count N]
//
// Keeps C connections in flight (split over T threads, each with its own epoll and
// seeded RNG). Every connection picks a target uniformly at random, connects without
// blocking, waits for the server's first byte (acceptd sends one and closes) and closes
// with SO_LINGER 0, i.e. with a RST, so the client keeps no TIME_WAIT and its ephemeral
// ports are free again at once. The latency is from connect() to the byte.
//
// Results count connections that finish after the warmup and before the end; the
// output is one JSON line:
//   {"conns":n,"failed":f,"errors":{"ECONNREFUSED":3},"seconds":s,"conns_per_s":r,
//    "p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,...}
// A connection without its byte after --timeout-ms (default 3000) counts as ETIMEDOUT;
// one closed without a byte as EOF. With --source the socket binds that address with
// IP_BIND_ADDRESS_NO_PORT, so the port is still chosen per destination at connect().
// With --count the run ends after N connections (split over the threads; successes
// and failures both count) or at --duration, whichever comes first; --warmup is then
// not allowed. The targets file holds one IP:PORT per line (blank lines and #
// comments ignored).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_ERRNO 4096
#define ERR_EOF MAX_ERRNO // pseudo errno: closed without sending the byte
#define NERR (MAX_ERRNO + 1)

// Latency histogram (microseconds): exact below 2048 us, then 1024 sub-buckets per
// power of two (0.1 % resolution) up to 2^42 us.
#define HIST_EXACT 2048
#define HIST_SUB 1024
#define HIST_MAX_EXP 42
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_EXP - 11 + 1) * HIST_SUB)

struct options {
  struct sockaddr_in *targets;
  size_t ntargets;
  size_t cap;
  double duration;
  double warmup;
  int concurrency;
  int threads;
  uint64_t seed;
  int timeout_ms;
  int have_source;
  struct in_addr source;
  uint64_t count;
};

struct slot {
  int fd;
  uint64_t start;
};

struct worker {
  const struct options *opt;
  int conc;
  uint64_t rng;
  uint64_t t_measure;
  uint64_t t_end;
  uint64_t timeout_ns;
  uint64_t quota;   // 0: no --count
  uint64_t started;
  int epfd;
  struct slot *slots;
  uint64_t conns;
  uint64_t failed;
  uint64_t *errors; // [NERR]
  uint64_t *hist;   // [HIST_BUCKETS]
  uint64_t max_us;
  pthread_t tid;
};

static void die(const char *what, int err) {
  fprintf(stderr, "connrate: %s: %s\n", what, strerror(err));
  exit(1);
}

static void usage(const char *msg) {
  fprintf(stderr,
          "connrate: %s\n"
          "usage: connrate (--targets FILE | --target IP:PORT ...) --duration S --concurrency C\n"
          "                [--warmup S] [--seed N] [--threads T] [--timeout-ms MS] [--source IP]\n"
          "                [--count N]\n",
          msg);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// splitmix64: small, seedable, good enough to pick targets uniformly.
static uint64_t next_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static size_t hist_bucket(uint64_t us) {
  if (us < HIST_EXACT) return (size_t)us;
  int e = 63 - __builtin_clzll(us);
  if (e > HIST_MAX_EXP) return HIST_BUCKETS - 1;
  uint64_t sub = (us >> (e - 10)) & (HIST_SUB - 1);
  return HIST_EXACT + (size_t)(e - 11) * HIST_SUB + (size_t)sub;
}

static uint64_t hist_value(size_t b) {
  if (b < HIST_EXACT) return b;
  size_t e = 11 + (b - HIST_EXACT) / HIST_SUB;
  uint64_t sub = (b - HIST_EXACT) % HIST_SUB;
  return (HIST_SUB + sub) << (e - 10);
}

static void add_target(struct options *o, const char *text, const char *where) {
  char buf[64];
  size_t len = strlen(text);
  const char *colon = strrchr(text, ':');
  struct sockaddr_in sa = {.sin_family = AF_INET};
  int ok = colon != NULL && len < sizeof buf;
  if (ok) {
    memcpy(buf, text, (size_t)(colon - text));
    buf[colon - text] = '\0';
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    ok = inet_pton(AF_INET, buf, &sa.sin_addr) == 1 && errno == 0 && end != colon + 1 && *end == '\0' && port >= 1 &&
         port <= 65535;
    sa.sin_port = htons((uint16_t)port);
  }
  if (!ok) {
    char msg[192];
    snprintf(msg, sizeof msg, "%s: \"%.64s\" is not IPv4:PORT", where, text);
    usage(msg);
  }
  if (o->ntargets == o->cap) {
    o->cap = o->cap ? o->cap * 2 : 1024;
    o->targets = realloc(o->targets, o->cap * sizeof *o->targets);
    if (o->targets == NULL) die("realloc", errno);
  }
  o->targets[o->ntargets++] = sa;
}

static void read_targets(struct options *o, const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "connrate: --targets %s: %s\n", path, strerror(errno));
    exit(2);
  }
  char line[256];
  unsigned long n = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    n++;
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = '\0';
    if (len == 0 || s[0] == '#') continue;
    char where[300];
    snprintf(where, sizeof where, "--targets %.200s line %lu", path, n);
    add_target(o, s, where);
  }
  fclose(f);
}

static double parse_seconds(const char *v, const char *flag, int allow_zero) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno != 0 || end == v || *end != '\0' || !isfinite(d) || d < 0 || (!allow_zero && d == 0)) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s \"%s\" is not a %s number of seconds", flag, v, allow_zero ? "non-negative" : "positive");
    usage(msg);
  }
  return d;
}

static long parse_long(const char *v, const char *flag, long min, long max) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s \"%s\" is not an integer in %ld-%ld", flag, v, min, max);
    usage(msg);
  }
  return n;
}

static void record_failure(struct worker *w, int err, uint64_t t) {
  if (t < w->t_measure || t >= w->t_end) return;
  w->failed++;
  w->errors[err > 0 && err < MAX_ERRNO ? err : ERR_EOF]++;
}

static void record_success(struct worker *w, uint64_t start, uint64_t t) {
  if (t < w->t_measure || t >= w->t_end) return;
  uint64_t us = (t - start) / 1000;
  w->conns++;
  w->hist[hist_bucket(us)]++;
  if (us > w->max_us) w->max_us = us;
}

static void finish(struct worker *w, int i) {
  struct slot *s = &w->slots[i];
  // SO_LINGER {1, 0} is set: close() sends a RST and frees the port at once.
  close(s->fd);
  s->fd = -1;
}

static void start(struct worker *w, int i) {
  struct slot *s = &w->slots[i];
  const struct options *o = w->opt;
  if (w->quota != 0 && w->started >= w->quota) return;
  w->started++;
  uint64_t t = now_ns();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    record_failure(w, errno, t);
    return;
  }
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  if (o->have_source) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr = o->source};
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
      record_failure(w, errno, t);
      close(fd);
      return;
    }
  }
  uint64_t r = next_rand(&w->rng);
  size_t idx = (size_t)(((__uint128_t)r * o->ntargets) >> 64);
  s->fd = fd;
  s->start = t;
  if (connect(fd, (struct sockaddr *)&o->targets[idx], sizeof o->targets[idx]) < 0 && errno != EINPROGRESS) {
    record_failure(w, errno, t);
    finish(w, i);
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
  if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl", errno);
}

static void on_event(struct worker *w, int i, uint32_t events) {
  struct slot *s = &w->slots[i];
  if (s->fd < 0) return;
  char b;
  ssize_t n = recv(s->fd, &b, 1, 0);
  uint64_t t = now_ns();
  if (n == 1) {
    record_success(w, s->start, t);
  } else if (n == 0) {
    record_failure(w, ERR_EOF, t);
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    if (!(events & (EPOLLERR | EPOLLHUP))) return; // spurious wakeup: keep waiting
    int err = 0;
    socklen_t len = sizeof err;
    (void)getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    record_failure(w, err ? err : ERR_EOF, t);
  } else {
    record_failure(w, errno, t);
  }
  finish(w, i);
  if (t < w->t_end) start(w, i);
}

static void *run(void *arg) {
  struct worker *w = arg;
  w->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (w->epfd < 0) die("epoll_create1", errno);
  for (int i = 0; i < w->conc; i++) {
    w->slots[i].fd = -1;
    start(w, i);
  }
  struct epoll_event ev[256];
  uint64_t next_scan = now_ns() + 10000000ull;
  for (;;) {
    uint64_t t = now_ns();
    if (t >= w->t_end) break;
    if (w->quota != 0 && w->conns + w->failed >= w->quota) break;
    int n = epoll_wait(w->epfd, ev, 256, 5);
    if (n < 0 && errno != EINTR) die("epoll_wait", errno);
    for (int k = 0; k < n; k++) on_event(w, (int)ev[k].data.u32, ev[k].events);
    t = now_ns();
    if (t >= next_scan && t < w->t_end) {
      // Restart slots whose socket could not be created or connect()ed, time out
      // connections that never got their byte.
      for (int i = 0; i < w->conc; i++) {
        struct slot *s = &w->slots[i];
        if (s->fd >= 0 && t - s->start > w->timeout_ns) {
          record_failure(w, ETIMEDOUT, t);
          finish(w, i);
        }
        if (s->fd < 0) start(w, i);
      }
      next_scan = t + 10000000ull;
    }
  }
  for (int i = 0; i < w->conc; i++) {
    if (w->slots[i].fd >= 0) finish(w, i);
  }
  close(w->epfd);
  return NULL;
}

static const char *errno_name(int e, char *buf, size_t len) {
  if (e == ERR_EOF) return "EOF";
  const char *name = strerrorname_np(e);
  if (name != NULL) return name;
  snprintf(buf, len, "E%d", e);
  return buf;
}

int main(int argc, char **argv) {
  struct options o = {.duration = 0, .concurrency = 0, .threads = 1, .seed = 1, .timeout_ms = 3000};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      char msg[96];
      snprintf(msg, sizeof msg, "%s needs a value", a);
      usage(msg);
    }
    i++;
    if (strcmp(a, "--targets") == 0) {
      read_targets(&o, v);
    } else if (strcmp(a, "--target") == 0) {
      add_target(&o, v, "--target");
    } else if (strcmp(a, "--duration") == 0) {
      o.duration = parse_seconds(v, "--duration", 0);
    } else if (strcmp(a, "--warmup") == 0) {
      o.warmup = parse_seconds(v, "--warmup", 1);
    } else if (strcmp(a, "--concurrency") == 0) {
      o.concurrency = (int)parse_long(v, "--concurrency", 1, 1000000);
    } else if (strcmp(a, "--threads") == 0) {
      o.threads = (int)parse_long(v, "--threads", 1, 256);
    } else if (strcmp(a, "--seed") == 0) {
      o.seed = (uint64_t)parse_long(v, "--seed", 0, 0x7fffffffffffffffL);
    } else if (strcmp(a, "--timeout-ms") == 0) {
      o.timeout_ms = (int)parse_long(v, "--timeout-ms", 1, 3600000);
    } else if (strcmp(a, "--count") == 0) {
      o.count = (uint64_t)parse_long(v, "--count", 1, 0x7fffffffffffffffL);
    } else if (strcmp(a, "--source") == 0) {
      if (inet_pton(AF_INET, v, &o.source) != 1) {
        char msg[96];
        snprintf(msg, sizeof msg, "--source \"%s\" is not an IPv4 address", v);
        usage(msg);
      }
      o.have_source = 1;
    } else {
      char msg[96];
      snprintf(msg, sizeof msg, "unknown option %s", a);
      usage(msg);
    }
  }
  if (o.ntargets == 0) usage("no targets: give --targets FILE or --target IP:PORT");
  if (o.duration == 0) usage("--duration is required");
  if (o.concurrency == 0) usage("--concurrency is required");
  if (o.threads > o.concurrency) o.threads = o.concurrency;
  if (o.count != 0 && o.warmup != 0) usage("--count and --warmup exclude each other");
  if (o.count != 0 && (uint64_t)o.threads > o.count) o.threads = (int)o.count;

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);

  uint64_t t0 = now_ns();
  uint64_t t_measure = t0 + (uint64_t)(o.warmup * 1e9);
  uint64_t t_end = t_measure + (uint64_t)(o.duration * 1e9);
  struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
  if (ws == NULL) die("calloc", errno);
  uint64_t seeder = o.seed;
  for (int t = 0; t < o.threads; t++) {
    struct worker *w = &ws[t];
    w->opt = &o;
    w->conc = o.concurrency / o.threads + (t < o.concurrency % o.threads ? 1 : 0);
    w->rng = next_rand(&seeder);
    w->t_measure = t_measure;
    w->t_end = t_end;
    w->timeout_ns = (uint64_t)o.timeout_ms * 1000000ull;
    w->quota = o.count == 0 ? 0 : o.count / (uint64_t)o.threads + ((uint64_t)t < o.count % (uint64_t)o.threads ? 1 : 0);

    w->slots = calloc((size_t)w->conc, sizeof *w->slots);
    w->errors = calloc(NERR, sizeof *w->errors);
    w->hist = calloc(HIST_BUCKETS, sizeof *w->hist);
    if (w->slots == NULL || w->errors == NULL || w->hist == NULL) die("calloc", errno);
  }
  for (int t = 0; t < o.threads; t++) {
    int err = pthread_create(&ws[t].tid, NULL, run, &ws[t]);
    if (err != 0) die("pthread_create", err);
  }
  for (int t = 0; t < o.threads; t++) pthread_join(ws[t].tid, NULL);
  uint64_t t_done = now_ns();

  uint64_t conns = 0, failed = 0, max_us = 0;
  uint64_t *errors = calloc(NERR, sizeof *errors);
  uint64_t *hist = calloc(HIST_BUCKETS, sizeof *hist);
  if (errors == NULL || hist == NULL) die("calloc", errno);
  for (int t = 0; t < o.threads; t++) {
    conns += ws[t].conns;
    failed += ws[t].failed;
    if (ws[t].max_us > max_us) max_us = ws[t].max_us;
    for (size_t e = 0; e < NERR; e++) errors[e] += ws[t].errors[e];
    for (size_t b = 0; b < HIST_BUCKETS; b++) hist[b] += ws[t].hist[b];
  }
  double pct[3] = {0.50, 0.90, 0.99};
  uint64_t pv[3] = {0, 0, 0};
  for (int k = 0; k < 3; k++) {
    if (conns == 0) break;
    uint64_t rank = (uint64_t)ceil(pct[k] * (double)conns);
    uint64_t cum = 0;
    for (size_t b = 0; b < HIST_BUCKETS; b++) {
      cum += hist[b];
      if (cum >= rank) {
        pv[k] = hist_value(b);
        break;
      }
    }
  }
  double seconds = (double)((t_done < t_end ? t_done : t_end) - t_measure) / 1e9;
  printf("{\"conns\":%llu,\"failed\":%llu,\"errors\":{", (unsigned long long)conns, (unsigned long long)failed);
  int first = 1;
  char nbuf[32];
  for (size_t e = 1; e < NERR; e++) {
    if (errors[e] == 0) continue;
    printf("%s\"%s\":%llu", first ? "" : ",", errno_name((int)e, nbuf, sizeof nbuf), (unsigned long long)errors[e]);
    first = 0;
  }
  printf("},\"seconds\":%.3f,\"conns_per_s\":%.1f,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,"
         "\"concurrency\":%d,\"threads\":%d,\"targets\":%zu,\"warmup_s\":%.3f,\"seed\":%llu}\n",
         seconds, (double)conns / seconds, (unsigned long long)pv[0], (unsigned long long)pv[1], (unsigned long long)pv[2],
         (unsigned long long)max_us, o.concurrency, o.threads, o.ntargets, o.warmup, (unsigned long long)o.seed);
  return 0;
}
