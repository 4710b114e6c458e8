# Benchmark load tools and the kube-proxy peer generators (bench/tools, bench/peers).
BENCH_BUILD := bench/build
BENCH_CFLAGS := -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread
BENCH_TOOLS := $(BENCH_BUILD)/connrate $(BENCH_BUILD)/acceptd $(BENCH_BUILD)/synflows

BUILD_TARGETS += $(BENCH_TOOLS)

$(BENCH_BUILD)/%: bench/tools/%.c
	@mkdir -p $(dir $@)
	gcc $(BENCH_CFLAGS) -o $@ $< -lm

# The datapath's objects as they were before issue 11, for bench-ct's
# comparison: the conntrack map with per-CPU LRU lists (BPF_F_NO_COMMON_LRU;
# bpf/include/hypha/maps.h). Loaded only by the bench, under its own pin roots.
CT_PERCPU_DIR := $(BENCH_BUILD)/ct-percpu-lru
CT_PERCPU_OBJECTS := $(patsubst bpf/%.c,$(CT_PERCPU_DIR)/%.o,$(filter-out bpf/abi.c,$(BPF_SOURCES)))
$(CT_PERCPU_DIR)/%.o: bpf/%.c $(BPF_HEADERS) bpf/bpf.mk bench/bench.mk | $(APT_STAMP)
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -DHYPHA_CT_PERCPU_LRU -c $< -o $@

.PHONY: bench-tools test-bench-peers
bench-tools: $(BENCH_TOOLS)

# Unit tests of the generators and the namespace tests (root: they load the rulesets
# into scratch network namespaces and push traffic through them with the tools; one
# file at a time so the measured connection rates do not share the CPU with other
# tests). HYPHA_PEERS_SECONDS / HYPHA_PEERS_CONCURRENCY tune the rate runs. The
# namespaces are test/e2e/lib/topology.ts's, whose nodes need the fabric's XDP object.
# bench/ct-capacity.test.ts: bench-ct's counting, on small maps, for both LRU layouts.
# bench/peers/calico-policy-iptables.test.ts: bench-policy's iptables peer (ipset).
test-bench-peers: $(BENCH_TOOLS) bpf/build/test/xdp_pass.o $(BPF_OBJECTS) $(CT_PERCPU_OBJECTS) bpffs
	$(NODE) --test --test-concurrency=1 bench/peers/*.test.ts bench/ct-capacity.test.ts

# The floor program of bench-lb: a tc program that only returns.
$(BENCH_BUILD)/floor.o: bench/bpf/floor.c | $(APT_STAMP)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@
BUILD_TARGETS += $(BENCH_BUILD)/floor.o

# `make bench-lb`: Service translation cost and new-connection rate for 1 to
# 100 000 Services, Hypha next to the real kube-proxy binary (v1.36.3, make
# k8s-bins) in iptables mode (through iptables-nft and iptables-legacy) and
# nftables mode, watching a kube-apiserver that holds the same Services, in the
# same run; past --binary-max (iptables-nft: 1 000) kube-proxy's generated
# ruleset stands in; bench/results/lb-scaling.{json,png}. Takes about 40
# minutes. BENCH_ARGS passes options (--services, --runs, --binary-max ...).
# Runs bench-ct first.
.PHONY: bench-lb
bench-lb: build bpffs bench-ct
	$(NODE) bench/lb-scaling.ts $(BENCH_ARGS)

# `make bench-ct`: conntrack capacity for one busy CPU. N TCP flows (SYNs
# through hypha_from_pod to a ClusterIP with 8 backends, distinct client
# tuples) on one CPU into the default 262 144-entry map: how many keep both
# entries, with the shared LRU list, with the per-CPU lists it replaced (also
# at a 64-CPU node's per-CPU share), and with netfilter conntrack in a
# namespace behind kube-proxy's nftables rules; bench/results/ct-capacity.
# {json,png}. The script pins itself to one CPU (taskset). About a minute.
# BENCH_CT_ARGS passes options (--flows, --cpu).
.PHONY: bench-ct
bench-ct: build bpffs $(CT_PERCPU_OBJECTS)
	$(NODE) bench/ct-capacity.ts $(BENCH_CT_ARGS)

# `make bench-control`: the agent against a real kube-apiserver: EndpointSlice
# change to datapath latency, cold sync time and peak RSS for 1 000 to 100 000
# Services, and the real kube-proxy binary against the same API server
# (iptables-nft, iptables-legacy, nftables: cold sync, peak RSS, change to
# rules) side by side; generated rulesets' load and one-change times only past
# --binary-max; bench/results/control-plane.{json,png}. Creating 100 000 Services
# and their EndpointSlices takes about 7 minutes here (244 a second, flat), with
# the apiserver's bitmap ClusterIP allocator (why: clusterIpAllocator in
# test/e2e/lib/apiserver.ts); --create-only does only that. BENCH_ARGS passes
# options (--services, --binary-max, --create-only ...).
.PHONY: bench-control
bench-control: build bpffs
	$(NODE) bench/control-plane.ts $(BENCH_ARGS)

# `make bench-cold-restarts`: one size (default 100 000 Services x 10
# endpoints) created once, then the agent cold-started on it --starts times
# (default 5): the spread of its ready time and peak RSS from start to start.
# Prints a line per start and a JSON summary; writes nothing under
# bench/results. BENCH_ARGS: --services N --starts K.
.PHONY: bench-cold-restarts
bench-cold-restarts: build bpffs
	$(NODE) bench/cold-restarts.ts $(BENCH_ARGS)

# `make bench-cni`: CNI ADD and DEL latency (p50, p99) for 100 pods in a row
# and 30 at once, Hypha's plugin next to the reference bridge + host-local
# plugins (Debian's containernetworking-plugins) in the same run: exec'd
# directly in a node netns, then through containerd (RunPodSandbox,
# StopPodSandbox + RemovePodSandbox); plus where Hypha's time goes (launcher,
# plugin, agent, each step of the agent's endpoint manager);
# bench/results/cni.{json,png}. Takes about 2 minutes; the containerd binaries
# come from `make containerd-bins`.
.PHONY: bench-cni
bench-cni: build bpffs containerd-bins
	$(NODE) bench/cni.ts $(BENCH_ARGS)

# `make bench-policy`: NetworkPolicy compile time and entries for 10 to 1 000
# policies over 5 000 pods; ns per packet of a policy-checked flow in
# hypha_from_pod / hypha_to_pod (BPF_PROG_TEST_RUN) for 1 to 10 000 entries in
# the pod's policy; new connections per second through 1, 100 and 1 000
# policies, Hypha next to the same policies in Calico's iptables layout
# (bench/peers/calico-policy-iptables.ts; ipset, iptables-nft and -legacy) in
# the same run; bench/results/policy.{json,png}. About 3 minutes.
# BENCH_ARGS passes options (--policies, --entries, --seconds, --runs ...).
.PHONY: bench-policy
bench-policy: build bpffs
	$(NODE) bench/policy.ts $(BENCH_ARGS)

# `make bench-l7`: what the L7 HTTP proxy (issue 12) costs: requests per
# second and p50/p99 latency of HTTP/1.1 GETs from a client pod to a server
# pod (a Node http server), keep-alive and a new connection per request
# (Debian's wrk), direct (Hypha's programs, no policy), through an L3/L4
# NetworkPolicy, and through the L7 proxy (src/l7/proxy.ts) with 1, 10 and
# 100 http rules, in the same run, interleaved; the ratios to direct and the
# issue's target (keep-alive, 10 rules: >= 50% of direct's rps, < 2 ms added
# p99) are reported, not asserted; bench/results/l7.{json,png}. About 2
# minutes. BENCH_ARGS passes options (--rules, --seconds, --runs,
# --concurrency, --early-demux ...).
.PHONY: bench-l7
bench-l7: build bpffs
	$(NODE) bench/l7.ts $(BENCH_ARGS)
