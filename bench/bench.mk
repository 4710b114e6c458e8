# Benchmark load tools and the kube-proxy peer generators (bench/tools, bench/peers).
BENCH_BUILD := bench/build
BENCH_CFLAGS := -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread
BENCH_TOOLS := $(BENCH_BUILD)/connrate $(BENCH_BUILD)/acceptd

BUILD_TARGETS += $(BENCH_TOOLS)

$(BENCH_BUILD)/%: bench/tools/%.c
	@mkdir -p $(dir $@)
	gcc $(BENCH_CFLAGS) -o $@ $< -lm

.PHONY: bench-tools test-bench-peers
bench-tools: $(BENCH_TOOLS)

# Unit tests of the generators and the namespace tests (root: they load the rulesets
# into scratch network namespaces and push traffic through them with the tools; one
# file at a time so the measured connection rates do not share the CPU with other
# tests). HYPHA_PEERS_SECONDS / HYPHA_PEERS_CONCURRENCY tune the rate runs. The
# namespaces are test/e2e/lib/topology.ts's, whose nodes need the fabric's XDP object.
test-bench-peers: $(BENCH_TOOLS) bpf/build/test/xdp_pass.o
	$(NODE) --test --test-concurrency=1 bench/peers/*.test.ts

# The floor program of bench-lb: a tc program that only returns.
$(BENCH_BUILD)/floor.o: bench/bpf/floor.c | $(APT_STAMP)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@
BUILD_TARGETS += $(BENCH_BUILD)/floor.o

# `make bench-lb`: Service translation cost and new-connection rate for 1 to
# 100 000 Services, Hypha next to kube-proxy's iptables (nft and legacy) and
# nftables rulesets in the same run; bench/results/lb-scaling.{json,png}.
# Takes about half an hour. BENCH_ARGS passes options (--services, --runs ...).
.PHONY: bench-lb
bench-lb: build bpffs
	$(NODE) bench/lb-scaling.ts $(BENCH_ARGS)

# `make bench-control`: the agent against a real kube-apiserver: EndpointSlice
# change to datapath latency, cold sync time and peak RSS for 1 000 to 25 000
# Services, and kube-proxy's ruleset load and one-change times side by side;
# bench/results/control-plane.{json,png}. Creating 25 000 Services through the
# API takes several minutes.
.PHONY: bench-control
bench-control: build bpffs
	$(NODE) bench/control-plane.ts $(BENCH_ARGS)

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
