# BPF objects: compiled once at build time; runtime configuration lives in maps.
BPF_CFLAGS := -O2 -g -target bpf -Wall -Wextra -Wno-unused-parameter -Werror \
	-I bpf -I bpf/include -I/usr/include/$(shell uname -m)-linux-gnu
BPF_HEADERS := $(wildcard bpf/include/hypha/*.h bpf/lib/*.h)
BPF_SOURCES := bpf/tc/from_pod.c bpf/tc/to_pod.c bpf/tc/from_netdev.c bpf/tc/to_netdev.c bpf/tc/ct_gc.c bpf/xdp/nodeport.c bpf/sock/lb_sock.c bpf/abi.c
BPF_OBJECTS := $(patsubst bpf/%.c,bpf/build/%.o,$(BPF_SOURCES))
BUILD_TARGETS += $(BPF_OBJECTS)

bpf/build/%.o: bpf/%.c $(BPF_HEADERS) bpf/bpf.mk | $(APT_STAMP)
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -c $< -o $@

.PHONY: bpf
bpf: $(BPF_OBJECTS)

# TypeScript view of the ABI, generated from bpf/build/abi.o's BTF (committed;
# `make test` fails if it is stale).
.PHONY: abi
abi: bpf/build/abi.o
	$(NODE) scripts/gen-abi.ts

# Test-only object: the fabric's pass-through XDP program (test/e2e/lib/topology.ts).
BUILD_TARGETS += bpf/build/test/xdp_pass.o
bpf/build/test/xdp_pass.o: test/e2e/bpf/xdp_pass.c | $(APT_STAMP)
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -c $< -o $@
