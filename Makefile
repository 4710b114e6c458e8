# Hypha build entry points. `make test` and `make demo` work on a fresh machine:
# they install what is missing (make deps) and build before they run.
SHELL := /bin/bash
.DEFAULT_GOAL := build
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE := $(CURDIR)/node_modules/.bin/node
CACHE := $(CURDIR)/.cache
# Slow builds that do not depend on this checkout (Go toolchain and caches,
# Kubernetes, containerd and tool binaries) go to a machine-wide cache keyed by
# version, shared by every clone and by CI.
HYPHA_CACHE ?= /var/cache/hypha
export HYPHA_CACHE

# Each part of the tree contributes its own targets.
include mk/deps.mk
-include bpf/bpf.mk
-include native/native.mk
-include bench/bench.mk
-include hack/k8s/k8s.mk
-include src/cni/cni.mk
-include hack/containerd/containerd.mk
-include hack/helm/helm.mk
-include hack/coredns/coredns.mk
-include hack/kind/kind.mk
-include hack/cni-plugins/cni-plugins.mk
-include deploy/deploy.mk

.PHONY: build typecheck test clean abi-check test-unit test-bpf test-e2e demo
build: deps $(BUILD_TARGETS) .cache/js/.stamp

# The agent's JavaScript, types stripped (bin/hypha runs it; see scripts/build-js.ts).
.cache/js/.stamp: $(shell find src native/index.ts -name '*.ts' ! -name '*.test.ts' 2>/dev/null) scripts/build-js.ts | $(NPM_STAMP)
	$(NODE) --no-warnings scripts/build-js.ts

typecheck: deps
	tsc --noEmit -p .

# The generated ABI must match what the BPF objects' BTF says.
abi-check: bpf/build/abi.o
	$(NODE) scripts/gen-abi.ts --check

NODE_TEST := $(NODE) --test --test-concurrency=1 --test-timeout=900000

# Pure code: compilers, codecs, reconcilers with in-memory maps.
test-unit: deps
	$(NODE_TEST) 'src/**/*.test.ts'

# BPF programs through BPF_PROG_TEST_RUN (root).
test-bpf: build bpffs
	$(NODE_TEST) test/bpf/*.test.ts

# Real traffic through network namespaces (root).
test-e2e: build bpffs image e2e-network-test
	$(NODE_TEST) test/e2e/*.test.ts

# Everything, in order of cost. Runs as root on a fresh machine: deps and the
# build come first.
test: build typecheck abi-check test-unit test-native test-bpf test-bench-peers test-e2e

# A Kubernetes cluster on this machine (scripts/demo.ts): control plane,
# kubelets and containerd in namespaces, Hypha from deploy/ (its image), CoreDNS;
# a Deployment, Services, a NetworkPolicy. DEMO_ARGS=--once tears it down after.
demo: build image k8s-bins containerd-bins coredns-bins bpffs
	$(NODE) scripts/demo.ts $(DEMO_ARGS)

clean:
	rm -rf bpf/build native/build bench/build .cache/js
