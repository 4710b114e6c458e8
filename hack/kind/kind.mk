# kind (Kubernetes in Docker) for trying Hypha on a real multi-node cluster,
# and a checker for kind-config.yaml. Both built from the Go module proxy.
#
#   make kind-bins      build kind and kind-config-check (seconds to a minute)
#   make kind-versions  print versions and paths (test/e2e/kind-config.test.ts reads them)
#   make kind-check     check kind-config.yaml: Hypha's checks (hack/kind/kind-config-check)
#                       and kind's own validation (hack/kind/kind-validate.sh)
#   make kind-e2e       a kind cluster with Hypha from deploy/, then `make conformance`
#   make kind-down      delete that cluster
#
# Same pattern as hack/k8s/k8s.mk, which must be included first (K8S_GO,
# K8S_GOENV, the version helper). hack/kind/go.mod pins sigs.k8s.io/kind;
# kind lands in $(HYPHA_CACHE)/kind/<version>/bin. The checker is this
# checkout's code, so its path also carries a hash of its source and go.sum:
# an edit builds a new one, a restored cache is reused.

ifndef K8S_GOENV
$(error hack/kind/kind.mk needs hack/k8s/k8s.mk included before it)
endif

KIND_HACK := $(CURDIR)/hack/kind
KIND_VERSION := $(call k8s_mod_version,sigs.k8s.io/kind,$(KIND_HACK)/go.mod)
KIND_BIN_DIR := $(HYPHA_CACHE)/kind/$(KIND_VERSION)/bin
KIND := $(KIND_BIN_DIR)/kind
KIND_CHECK_HASH := $(shell cat $(KIND_HACK)/go.mod $(KIND_HACK)/go.sum $(KIND_HACK)/kind-config-check/*.go 2>/dev/null | sha256sum | cut -c1-12)
KIND_CONFIG_CHECK := $(HYPHA_CACHE)/kind/$(KIND_VERSION)/kind-config-check-$(KIND_CHECK_HASH)/kind-config-check
export KIND KIND_CONFIG_CHECK

# $(call kind_go_binary,output path,package,ldflags)
define kind_go_binary
KIND_BINS += $(1)
$(1): | $(K8S_GO)
	@mkdir -p $$(@D)
	@echo "kind: building $$(@F) ($(2)) into $$(@D)"
	@set -o pipefail; start=$$$$(date +%s); tmp=$$$$(mktemp -u $$@.XXXXXX); cd $(KIND_HACK) && \
	  $(K8S_GOENV) $(K8S_GO) build -v -ldflags '$(3)' -o $$$$tmp $(2) 2>&1 | \
	    awk '{ printf "kind: %s [%d] %s\n", "$$(@F)", NR, $$$$0; fflush() }' && \
	  mv $$$$tmp $$@ && echo "kind: built $$@ in $$$$(( $$$$(date +%s) - start ))s"
endef
$(eval $(call kind_go_binary,$(KIND),sigs.k8s.io/kind,-s -w))
$(eval $(call kind_go_binary,$(KIND_CONFIG_CHECK),./kind-config-check,-s -w))

.PHONY: kind-bins kind-versions kind-check kind-e2e kind-down
kind-bins: $(KIND_BINS)
BUILD_TARGETS += kind-bins

# Machine-readable paths for the tests (test/e2e/kind-config.test.ts).
kind-versions:
	@echo "KIND_VERSION=$(KIND_VERSION)"
	@echo "KIND=$(KIND)"
	@echo "KIND_CONFIG_CHECK=$(KIND_CONFIG_CHECK)"

KIND_CONFIG ?= kind-config.yaml
kind-check: $(KIND_CONFIG_CHECK) $(KIND)
	@$(KIND_CONFIG_CHECK) -hypha-config deploy/config.yaml -operator deploy/operator.yaml $(KIND_CONFIG)
	@$(KIND_HACK)/kind-validate.sh $(KIND) $(KIND_CONFIG)

# A kind cluster (kind-config.yaml: no kindnet, no kube-proxy, three nodes)
# with Hypha installed from the plain manifests, then `make conformance`
# against it: hack/kind/kind-e2e.sh (it says each step). NOT RUN HERE: kind
# needs a container runtime (Docker, podman or nerdctl with a daemon) and
# pulls its node image (kindest/node) from a registry; this machine has
# neither, so this target has never been run on it. The cluster is deleted
# at the end, also on failure, unless KIND_KEEP=1 (then `make kind-down`).
KIND_CLUSTER ?= hypha
KIND_KUBECONFIG ?= $(CACHE)/kind/$(KIND_CLUSTER).kubeconfig
KIND_KEEP ?=
KIND_TIMEOUT ?= 5m
kind-e2e: image kind-check $(KIND) $(KUBECTL)
	KIND=$(KIND) KUBECTL=$(KUBECTL) KIND_CLUSTER=$(KIND_CLUSTER) KIND_CONFIG=$(KIND_CONFIG) \
	  KIND_KUBECONFIG=$(KIND_KUBECONFIG) HYPHA_IMAGE_TAR=$(HYPHA_IMAGE_TAR) KIND_TIMEOUT=$(KIND_TIMEOUT) \
	  KIND_KEEP=$(KIND_KEEP) $(KIND_HACK)/kind-e2e.sh

kind-down:
	$(KIND) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)
