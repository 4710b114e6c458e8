# Hypha build entry points. `make test` and `make demo` work on a fresh machine:
# they install what is missing (make deps) and build before they run.
SHELL := /bin/bash
.DEFAULT_GOAL := build
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE := $(CURDIR)/node_modules/.bin/node
CACHE := $(CURDIR)/.cache

# Each part of the tree contributes its own targets.
include mk/deps.mk
-include bpf/bpf.mk
-include native/native.mk
-include bench/bench.mk
-include hack/k8s/k8s.mk

.PHONY: build typecheck test clean
build: deps $(BUILD_TARGETS)

typecheck: deps
	tsc --noEmit -p .

clean:
	rm -rf bpf/build native/build bench/build
