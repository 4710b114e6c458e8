// synflows: open N TCP flows towards one address with one SYN each, through a raw
// socket, for bench-ct's netfilter conntrack peer (bench/ct-capacity.ts).
//
//   synflows --dst IP --dport PORT --count N --src IP [--ports-per-src P] [--port-base B]
//
// Flow i comes from address src + i / P, port B + i % P (defaults P 10000,
// B 40000): the same tuples bench-ct sends through Hypha's from_pod program.
// The packets are built whole (IP_HDRINCL) with correct checksums and sent on
// one raw socket, so they take the netns's OUTPUT and POSTROUTING hooks like a
// local connect() would: nf_conntrack tracks each as a new flow (SYN_SENT) and
// the NAT table's output chain translates it. Nothing answers; the route
// decides where they go (bench-ct: a veth whose peer is down, which drops them).
// Output: one JSON line {"sent":n,"failed":f,"errors":{"ENOBUFS":3},"seconds":s}.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ERRNO 4096

static void usage(const char *why)
{
	fprintf(stderr, "synflows: %s\nusage: synflows --dst IP --dport PORT --count N --src IP [--ports-per-src P] [--port-base B]\n", why);
	exit(2);
}

static unsigned long number(const char *name, const char *v, unsigned long min, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || *end || end == v || n < min || n > max) {
		fprintf(stderr, "synflows: %s \"%s\" is not an integer in %lu..%lu\n", name, v, min, max);
		exit(2);
	}
	return n;
}

static uint32_t address(const char *name, const char *v)
{
	struct in_addr a;
	if (inet_pton(AF_INET, v, &a) != 1) {
		fprintf(stderr, "synflows: %s \"%s\" is not an IPv4 address\n", name, v);
		exit(2);
	}
	return ntohl(a.s_addr);
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 255; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xffff); }

int main(int argc, char **argv)
{
	uint32_t dst = 0, src = 0;
	unsigned long dport = 0, count = 0, per = 10000, base = 40000;
	int have_dst = 0, have_src = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage("every option takes a value");
		const char *v = argv[++i];
		if (!strcmp(a, "--dst")) { dst = address("--dst", v); have_dst = 1; }
		else if (!strcmp(a, "--src")) { src = address("--src", v); have_src = 1; }
		else if (!strcmp(a, "--dport")) dport = number("--dport", v, 1, 65535);
		else if (!strcmp(a, "--count")) count = number("--count", v, 1, 100000000);
		else if (!strcmp(a, "--ports-per-src")) per = number("--ports-per-src", v, 1, 65535);
		else if (!strcmp(a, "--port-base")) base = number("--port-base", v, 1, 65535);
		else usage("unknown option");
	}
	if (!have_dst || !have_src || !dport || !count)
		usage("--dst, --src, --dport and --count are required");
	if (base + per - 1 > 65535)
		usage("--port-base + --ports-per-src - 1 must be a port (<= 65535)");

	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); // IPPROTO_RAW implies IP_HDRINCL
	if (fd < 0) {
		fprintf(stderr, "synflows: socket(AF_INET, SOCK_RAW): %s\n", strerror(errno));
		return 1;
	}

	static unsigned long errs[MAX_ERRNO];
	unsigned long sent = 0, failed = 0;
	uint8_t pkt[40];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long i = 0; i < count; i++) {
		uint32_t saddr = src + (uint32_t)(i / per);
		uint16_t sport = (uint16_t)(base + i % per);
		memset(pkt, 0, sizeof(pkt));
		pkt[0] = 0x45;
		put16(pkt + 2, sizeof(pkt));
		put16(pkt + 4, (uint16_t)i);
		pkt[8] = 64;
		pkt[9] = IPPROTO_TCP;
		put32(pkt + 12, saddr);
		put32(pkt + 16, dst);
		put16(pkt + 10, fold(sum16(pkt, 20, 0)));
		uint8_t *tcp = pkt + 20;
		put16(tcp, sport);
		put16(tcp + 2, (uint16_t)dport);
		put32(tcp + 4, 1000 + (uint32_t)i);
		tcp[12] = 5 << 4;
		tcp[13] = 0x02; // SYN
		put16(tcp + 14, 65535);
		uint8_t ph[12];
		put32(ph, saddr);
		put32(ph + 4, dst);
		ph[8] = 0;
		ph[9] = IPPROTO_TCP;
		put16(ph + 10, 20);
		put16(tcp + 16, fold(sum16(tcp, 20, sum16(ph, sizeof(ph), 0))));

		struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(dst) };
		if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)sizeof(pkt)) {
			sent++;
		} else {
			failed++;
			errs[errno > 0 && errno < MAX_ERRNO ? errno : 0]++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);

	printf("{\"sent\":%lu,\"failed\":%lu,\"errors\":{", sent, failed);
	int first = 1;
	for (int e = 0; e < MAX_ERRNO; e++) {
		if (!errs[e])
			continue;
		const char *name = strerrorname_np(e);
		printf("%s\"%s\":%lu", first ? "" : ",", name ? name : "unknown", errs[e]);
		first = 0;
	}
	printf("},\"seconds\":%.3f}\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
