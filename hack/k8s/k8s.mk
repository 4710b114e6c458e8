# Kubernetes and etcd binaries for the control-plane and cluster tests, built
# from the Go module proxy (no release tarballs, no container images).
#
#   make k8s-bins   build what is listed below (first run: many minutes)
#   make test-k8s   the real-API-server smoke test (test/e2e/apiserver.test.ts)
#
# Versions come from the go.mod files, so each is written down once:
# hack/k8s/go.mod pins k8s.io/kubernetes, hack/k8s/etcd/go.mod pins etcd.
# Binaries land in version-named directories and the targets are those paths
# with no prerequisites: a restored CI cache is never rebuilt because a fresh
# checkout made go.mod look newer, and changing a pinned version changes the
# path, so the new release gets built next to the old one.
#
# Go state (module cache, build cache, a fetched toolchain) and the binaries
# live in a machine-wide cache outside the clone, $(HYPHA_CACHE) (default
# /var/cache/hypha), keyed by version: a fresh clone, CI and reruns reuse what
# an earlier build made, and a new machine builds everything from these files.
# -modcacherw keeps the module cache writable: `rm -rf $(HYPHA_CACHE)` works
# without `go clean -modcache`.

K8S_HACK := $(CURDIR)/hack/k8s
comma := ,
# Go: the machine's own when it is new enough for the go.mod files, otherwise
# the official toolchain fetched once from the Go module proxy (the
# golang.org/toolchain module is how `go` itself upgrades; it is the same
# release archive) into $(HYPHA_CACHE)/go/toolchain.
K8S_GO_MIN := $(shell sed -nE 's/^go ([0-9.]+).*/\1/p' $(K8S_HACK)/go.mod)
K8S_GO_TOOLCHAIN := go$(K8S_GO_MIN)
# The proxy is whatever Go is configured with (GOPROXY in the environment or
# `go env`), never a host written down here.
K8S_GO_PROXY = $(firstword $(filter http%,$(subst $(comma), ,$(subst |, ,$(or $(GOPROXY),$(shell $(or $(K8S_SYSTEM_GO),false) env GOPROXY 2>/dev/null))))))
K8S_GO_ARCH := $(subst x86_64,amd64,$(subst aarch64,arm64,$(shell uname -m)))
K8S_SYSTEM_GO := $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))
K8S_SYSTEM_GO_OK := $(if $(K8S_SYSTEM_GO),$(shell v=$$($(K8S_SYSTEM_GO) env GOVERSION 2>/dev/null | sed 's/^go//'); \
	[ -n "$$v" ] && printf '%s\n%s\n' "$$v" "$(K8S_GO_MIN)" | sort -V -C -r && echo yes))
K8S_GO_FETCHED := $(HYPHA_CACHE)/go/toolchain/$(K8S_GO_TOOLCHAIN)/bin/go
K8S_GO ?= $(if $(K8S_SYSTEM_GO_OK),$(K8S_SYSTEM_GO),$(K8S_GO_FETCHED))
# $(call k8s_mod_version,module path,go.mod): the version a go.mod requires.
k8s_mod_version = $(shell sed -nE 's|^(require)?[[:space:]]*$(1)[[:space:]]+(v[^[:space:]]+).*|\2|p' $(2) | head -n1)
K8S_VERSION := $(call k8s_mod_version,k8s.io/kubernetes,$(K8S_HACK)/go.mod)
ETCD_VERSION := $(call k8s_mod_version,go.etcd.io/etcd/server/v3,$(K8S_HACK)/etcd/go.mod)
K8S_BIN_DIR := $(HYPHA_CACHE)/k8s/$(K8S_VERSION)/bin
ETCD_BIN_DIR := $(HYPHA_CACHE)/k8s/etcd-$(ETCD_VERSION)/bin

K8S_GOENV := CGO_ENABLED=0 GOMODCACHE=$(HYPHA_CACHE)/go/mod GOCACHE=$(HYPHA_CACHE)/go/build \
	GOFLAGS='-trimpath -modcacherw -mod=readonly -buildvcs=false'
K8S_MAJOR := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
# The version stamp hack/lib/version.sh gives a release build (what
# `kubectl version` and /version report); the commit is not in the module zip.
K8S_LDFLAGS := -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=$(K8S_MAJOR) \
	-X $(p).gitMinor=$(K8S_MINOR) -X $(p).gitTreeState=clean)

# $(call k8s_go_binary,MAKE_VAR,module dir,output path,package,ldflags)
# Defines MAKE_VAR (exported to the tests) and a rule building the package.
# `go build -v` names every package it compiles: the progress of a long build.
$(K8S_GO_FETCHED):
	@mkdir -p $(HYPHA_CACHE)/go/toolchain
	@[ -n "$(K8S_GO_PROXY)" ] || { echo "k8s: no Go $(K8S_GO_MIN)+ here and no GOPROXY to fetch it from: set GOPROXY (a Go module proxy URL) or K8S_GO=/path/to/go" >&2; exit 1; }
	@echo "k8s: no Go $(K8S_GO_MIN)+ on this machine; fetching $(K8S_GO_TOOLCHAIN) from $(K8S_GO_PROXY)"
	@set -e; zip=$(HYPHA_CACHE)/go/toolchain/$(K8S_GO_TOOLCHAIN).zip; dir=$(HYPHA_CACHE)/go/toolchain/$(K8S_GO_TOOLCHAIN); \
	  curl -fL --progress-bar -o $$zip.part $(K8S_GO_PROXY)/golang.org/toolchain/@v/v0.0.1-$(K8S_GO_TOOLCHAIN).linux-$(K8S_GO_ARCH).zip; \
	  rm -rf $$dir.part && mkdir -p $$dir.part && unzip -q $$zip.part -d $$dir.part; \
	  rm -rf $$dir && mv $$dir.part/golang.org/toolchain@v0.0.1-$(K8S_GO_TOOLCHAIN).linux-$(K8S_GO_ARCH) $$dir; \
	  rm -rf $$dir.part $$zip.part; $$dir/bin/go version

define k8s_go_binary
$(1) := $(3)
export $(1)
K8S_BINS += $(3)
$(3): | $(K8S_GO)
	@mkdir -p $$(@D)
	@echo "k8s: building $$(@F) ($(4)) into $$(@D) (go build -v; a cold build takes minutes)"
	@set -o pipefail; start=$$$$(date +%s); tmp=$$$$(mktemp -u $$@.XXXXXX); cd $(2) && \
	  $(K8S_GOENV) $(K8S_GO) build -v -ldflags '$(5)' -o $$$$tmp $(4) 2>&1 | \
	    awk '{ printf "k8s: %s [%d] %s\n", "$$(@F)", NR, $$$$0; fflush() }' && \
	  mv $$$$tmp $$@ && echo "k8s: built $$@ in $$$$(( $$$$(date +%s) - start ))s"
endef

# One line per binary (each package is a `tool` in go.mod, so go.sum covers it).
$(eval $(call k8s_go_binary,KUBE_APISERVER,$(K8S_HACK),$(K8S_BIN_DIR)/kube-apiserver,k8s.io/kubernetes/cmd/kube-apiserver,$(K8S_LDFLAGS)))
$(eval $(call k8s_go_binary,KUBE_CONTROLLER_MANAGER,$(K8S_HACK),$(K8S_BIN_DIR)/kube-controller-manager,k8s.io/kubernetes/cmd/kube-controller-manager,$(K8S_LDFLAGS)))
$(eval $(call k8s_go_binary,KUBE_SCHEDULER,$(K8S_HACK),$(K8S_BIN_DIR)/kube-scheduler,k8s.io/kubernetes/cmd/kube-scheduler,$(K8S_LDFLAGS)))
$(eval $(call k8s_go_binary,KUBELET,$(K8S_HACK),$(K8S_BIN_DIR)/kubelet,k8s.io/kubernetes/cmd/kubelet,$(K8S_LDFLAGS)))
$(eval $(call k8s_go_binary,KUBECTL,$(K8S_HACK),$(K8S_BIN_DIR)/kubectl,k8s.io/kubernetes/cmd/kubectl,$(K8S_LDFLAGS)))
$(eval $(call k8s_go_binary,KUBE_PROXY,$(K8S_HACK),$(K8S_BIN_DIR)/kube-proxy,k8s.io/kubernetes/cmd/kube-proxy,$(K8S_LDFLAGS)))
# The ginkgo CLI at the version the e2e framework uses: runs e2e-network.test's specs in parallel.
$(eval $(call k8s_go_binary,GINKGO,$(K8S_HACK),$(K8S_BIN_DIR)/ginkgo,github.com/onsi/ginkgo/v2/ginkgo,-s -w))
$(eval $(call k8s_go_binary,AGNHOST,$(K8S_HACK),$(K8S_BIN_DIR)/agnhost,k8s.io/kubernetes/test/images/agnhost,-s -w))
$(eval $(call k8s_go_binary,ETCD,$(K8S_HACK)/etcd,$(ETCD_BIN_DIR)/etcd,go.etcd.io/etcd/server/v3,-s -w))
$(eval $(call k8s_go_binary,ETCDCTL,$(K8S_HACK)/etcd,$(ETCD_BIN_DIR)/etcdctl,go.etcd.io/etcd/etcdctl/v3,-s -w))

# The sig-network e2e specs (hack/k8s/e2e: upstream's framework with only the
# network suites linked in), built with `go test -c`. Not part of k8s-bins:
# only `make conformance` needs it (a cold build takes several minutes more).
E2E_NETWORK_TEST := $(K8S_BIN_DIR)/e2e-network.test
export E2E_NETWORK_TEST
$(E2E_NETWORK_TEST): | $(K8S_GO)
	@mkdir -p $(@D)
	@echo "k8s: building $(@F) (go test -c ./e2e) into $(@D) (a cold build takes minutes)"
	@set -o pipefail; start=$$(date +%s); tmp=$$(mktemp -u $@.XXXXXX); cd $(K8S_HACK) && \
	  $(K8S_GOENV) $(K8S_GO) test -c -v -ldflags '$(K8S_LDFLAGS)' -o $$tmp ./e2e 2>&1 | \
	    awk '{ printf "k8s: %s [%d] %s\n", "$(@F)", NR, $$0; fflush() }' && \
	  mv $$tmp $@ && echo "k8s: built $@ in $$(( $$(date +%s) - start ))s"

.PHONY: k8s-bins k8s-versions test-k8s e2e-network-test
e2e-network-test: $(E2E_NETWORK_TEST)
k8s-bins: $(K8S_BINS)
BUILD_TARGETS += k8s-bins

# Machine-readable paths for the test harness (test/e2e/lib/apiserver.ts).
k8s-versions:
	@echo "K8S_VERSION=$(K8S_VERSION)"
	@echo "ETCD_VERSION=$(ETCD_VERSION)"
	@echo "KUBE_APISERVER=$(KUBE_APISERVER)"
	@echo "ETCD=$(ETCD)"
	@echo "ETCDCTL=$(ETCDCTL)"
	@echo "KUBELET=$(KUBELET)"
	@echo "KUBE_CONTROLLER_MANAGER=$(KUBE_CONTROLLER_MANAGER)"
	@echo "KUBE_SCHEDULER=$(KUBE_SCHEDULER)"
	@echo "KUBECTL=$(KUBECTL)"
	@echo "KUBE_PROXY=$(KUBE_PROXY)"
	@echo "E2E_NETWORK_TEST=$(E2E_NETWORK_TEST)"
	@echo "GINKGO=$(GINKGO)"

test-k8s: deps k8s-bins
	$(NODE) --test test/e2e/apiserver.test.ts
