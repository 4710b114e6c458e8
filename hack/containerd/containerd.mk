# A container runtime for the node tests: containerd 2.x, runc and crictl,
# built from the Go module proxy, plus the pause and agnhost images as OCI
# archives made locally (no registry, no release tarballs).
#
#   make containerd-bins      build everything below (first run: minutes)
#   make containerd-versions  print versions and paths (test/e2e/lib/containerd.ts reads them)
#   make test-containerd      test/e2e/containerd.test.ts: two pods on a node, traffic between them
#
# Same pattern as hack/k8s/k8s.mk (which must be included first: this file
# uses its Go toolchain choice K8S_GO, its Go environment K8S_GOENV and its
# version helper). Each tool set has its own pinning module, so a version is
# written once and dependency graphs never mix:
#   hack/containerd/go.mod         github.com/containerd/containerd/v2
#   hack/containerd/runc/go.mod    github.com/opencontainers/runc
#   hack/containerd/crictl/go.mod  sigs.k8s.io/cri-tools
# pause and agnhost come from k8s.io/kubernetes as pinned by hack/k8s/go.mod.
# Outputs land in version-named directories under $(HYPHA_CACHE) and the
# targets are those paths with no prerequisites in the checkout: a restored
# cache is never rebuilt, a new pin builds next to the old one.

ifndef K8S_GOENV
$(error hack/containerd/containerd.mk needs hack/k8s/k8s.mk included before it)
endif

CTRD_HACK := $(CURDIR)/hack/containerd
CONTAINERD_VERSION := $(call k8s_mod_version,github.com/containerd/containerd/v2,$(CTRD_HACK)/go.mod)
RUNC_VERSION := $(call k8s_mod_version,github.com/opencontainers/runc,$(CTRD_HACK)/runc/go.mod)
CRICTL_VERSION := $(call k8s_mod_version,sigs.k8s.io/cri-tools,$(CTRD_HACK)/crictl/go.mod)
CONTAINERD_BIN_DIR := $(HYPHA_CACHE)/containerd/$(CONTAINERD_VERSION)/bin
RUNC_BIN_DIR := $(HYPHA_CACHE)/runc/$(RUNC_VERSION)/bin
CRICTL_BIN_DIR := $(HYPHA_CACHE)/cri-tools/$(CRICTL_VERSION)/bin
K8S_IMAGE_DIR := $(HYPHA_CACHE)/k8s/$(K8S_VERSION)/images

# containerd 2.4 asks for a newer Go (go.mod: 1.26.6) than Kubernetes does:
# when K8S_GO is older, GOTOOLCHAIN=auto lets `go` fetch that release itself
# from the same module proxy into the module cache (a no-op when K8S_GO is new
# enough; this machine's Go is usually 1.26.8).
CTRD_GOENV := $(K8S_GOENV) GOTOOLCHAIN=auto

# $(call ctrd_go_binary,MAKE_VAR,module dir,output path,package,ldflags,tags,extra env)
# k8s_go_binary with build tags and extra environment (cgo for runc), and its
# own list, so `make k8s-bins` stays Kubernetes only.
define ctrd_go_binary
$(1) := $(3)
export $(1)
CONTAINERD_BINS += $(3)
$(3): | $(K8S_GO)
	@mkdir -p $$(@D)
	@echo "containerd: building $$(@F) ($(4), tags '$(6)') into $$(@D) (go build -v; a cold build takes minutes)"
	@set -o pipefail; start=$$$$(date +%s); tmp=$$$$(mktemp -u $$@.XXXXXX); cd $(2) && \
	  $(CTRD_GOENV) $(7) $(K8S_GO) build -v -tags '$(6)' -ldflags '$(5)' -o $$$$tmp $(4) 2>&1 | \
	    awk '{ printf "containerd: %s [%d] %s\n", "$$(@F)", NR, $$$$0; fflush() }' && \
	  mv $$$$tmp $$@ && echo "containerd: built $$@ in $$$$(( $$$$(date +%s) - start ))s"
endef

# containerd: CGO_ENABLED=0 (static; upstream builds the shim that way too).
# no_btrfs: the btrfs snapshotter needs cgo and btrfs headers, and is unused.
CTRD_PKG := github.com/containerd/containerd/v2
CTRD_LDFLAGS := -s -w -X $(CTRD_PKG)/version.Version=$(CONTAINERD_VERSION) -X $(CTRD_PKG)/version.Package=$(CTRD_PKG)
$(eval $(call ctrd_go_binary,CONTAINERD,$(CTRD_HACK),$(CONTAINERD_BIN_DIR)/containerd,$(CTRD_PKG)/cmd/containerd,$(CTRD_LDFLAGS),no_btrfs,))
$(eval $(call ctrd_go_binary,CONTAINERD_SHIM,$(CTRD_HACK),$(CONTAINERD_BIN_DIR)/containerd-shim-runc-v2,$(CTRD_PKG)/cmd/containerd-shim-runc-v2,$(CTRD_LDFLAGS),no_btrfs,))
$(eval $(call ctrd_go_binary,CTR,$(CTRD_HACK),$(CONTAINERD_BIN_DIR)/ctr,$(CTRD_PKG)/cmd/ctr,$(CTRD_LDFLAGS),no_btrfs,))
# runc: cgo for libseccomp (without `seccomp`, every sandbox fails with
# "seccomp not supported"), linked statically like upstream's release build
# (libseccomp.a is in libseccomp-dev), so a cache restored on another machine
# needs no shared library. libpathrs (a Rust library, upstream default in
# 1.5) is left out: runc then uses its Go implementation.
$(eval $(call ctrd_go_binary,RUNC,$(CTRD_HACK)/runc,$(RUNC_BIN_DIR)/runc,github.com/opencontainers/runc,-s -w -extldflags -static,seccomp urfave_cli_no_docs netgo osusergo,CGO_ENABLED=1))
$(eval $(call ctrd_go_binary,CRICTL,$(CTRD_HACK)/crictl,$(CRICTL_BIN_DIR)/crictl,sigs.k8s.io/cri-tools/cmd/crictl,-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRICTL_VERSION),,))

# pause: build/pause/linux/pause.c of the pinned k8s.io/kubernetes, compiled
# the way build/pause/Makefile does (-Os -static, VERSION=v<TAG>-<rev>).
PAUSE := $(K8S_BIN_DIR)/pause
export PAUSE
K8S_SRC_DIR = $(shell cd $(K8S_HACK) && $(K8S_GOENV) $(K8S_GO) mod download -json k8s.io/kubernetes | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$$/\1/p')
$(PAUSE): | $(K8S_GO)
	@mkdir -p $(@D)
	@set -e; src='$(K8S_SRC_DIR)'; [ -f "$$src/build/pause/linux/pause.c" ] || { echo "containerd: no build/pause/linux/pause.c in k8s.io/kubernetes $(K8S_VERSION) ($$src)" >&2; exit 1; }; \
	  tag=$$(sed -nE 's/^TAG \?= *([^ ]+)$$/\1/p' $$src/build/pause/Makefile); tmp=$$(mktemp -u $@.XXXXXX); \
	  gcc -Os -Wall -Werror -static -DVERSION=v$$tag-$(K8S_VERSION) -o $$tmp $$src/build/pause/linux/pause.c && strip $$tmp && \
	  printf '%s\n' "$$tag" > $(@D)/pause.version && mv $$tmp $@ && echo "containerd: built $@ (pause $$tag)"

# OCI image archives for `ctr -n k8s.io images import`: the full name is in
# index.json (io.containerd.image.name), so an import needs no --base-name.
# pause gets the name containerd's default sandbox image uses
# (registry.k8s.io/pause:<TAG of build/pause/Makefile>); agnhost the name the
# Kubernetes e2e suite uses (test/utils/image/manifest.go; the VERSION file).
# Order-only on the binaries: a restored cache with shuffled times is not remade.
PAUSE_IMAGE_TAR := $(K8S_IMAGE_DIR)/pause.oci.tar
# agnhost with the shell tools the e2e specs use (agnhost-rootfs.sh); the
# names carry a hash of that script, so editing it builds new archives (and a
# restored cache is still never remade).
E2E_ROOTFS_ID := $(shell md5sum $(CTRD_HACK)/agnhost-rootfs.sh 2>/dev/null | cut -c1-8)
AGNHOST_IMAGE_TAR := $(K8S_IMAGE_DIR)/agnhost-tools-$(E2E_ROOTFS_ID).oci.tar
export PAUSE_IMAGE_TAR AGNHOST_IMAGE_TAR
CONTAINERD_BINS += $(PAUSE_IMAGE_TAR) $(AGNHOST_IMAGE_TAR)
$(PAUSE_IMAGE_TAR): | $(PAUSE)
	@mkdir -p $(@D)
	@$(CTRD_HACK)/oci-image.sh $@ registry.k8s.io/pause:$$(cat $(K8S_BIN_DIR)/pause.version) $(PAUSE) /pause '65535:65535' /pause
# One root filesystem, three names the e2e specs use: agnhost (ENTRYPOINT
# /agnhost), busybox (no entrypoint, CMD sh) and glibc-dns-testing (the DNS
# specs' dig image: no entrypoint, CMD bash), each under upstream's tag.
E2E_BUSYBOX_IMAGE_TAR := $(K8S_IMAGE_DIR)/busybox-tools-$(E2E_ROOTFS_ID).oci.tar
E2E_DNSUTILS_IMAGE_TAR := $(K8S_IMAGE_DIR)/glibc-dns-testing-tools-$(E2E_ROOTFS_ID).oci.tar
export E2E_BUSYBOX_IMAGE_TAR E2E_DNSUTILS_IMAGE_TAR
CONTAINERD_BINS += $(E2E_BUSYBOX_IMAGE_TAR) $(E2E_DNSUTILS_IMAGE_TAR)
$(E2E_BUSYBOX_IMAGE_TAR) $(E2E_DNSUTILS_IMAGE_TAR): $(AGNHOST_IMAGE_TAR)
$(AGNHOST_IMAGE_TAR): | $(AGNHOST) $(APT_STAMP)
	@mkdir -p $(@D)
	@set -e; src='$(K8S_SRC_DIR)'; ver=$$(cat $$src/test/images/agnhost/VERSION); \
	  root=$$(mktemp -d $@.rootfs.XXXXXX); trap 'rm -rf "$$root"' EXIT; \
	  $(CTRD_HACK)/agnhost-rootfs.sh $$root $(AGNHOST) $$src/test/images/agnhost $(COREDNS); \
	  export OCI_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'; \
	  $(CTRD_HACK)/oci-image.sh $(E2E_BUSYBOX_IMAGE_TAR) registry.k8s.io/e2e-test-images/busybox:1.37.0-1 $$root / '' '' sh; \
	  $(CTRD_HACK)/oci-image.sh $(E2E_DNSUTILS_IMAGE_TAR) registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0 $$root / '' '' bash; \
	  $(CTRD_HACK)/oci-image.sh $@ registry.k8s.io/e2e-test-images/agnhost:$$ver $$root / '' /agnhost pause

.PHONY: containerd-bins containerd-versions test-containerd
containerd-bins: $(CONTAINERD_BINS)
BUILD_TARGETS += containerd-bins

# Machine-readable paths for the test harness (test/e2e/lib/containerd.ts).
containerd-versions:
	@echo "CONTAINERD_VERSION=$(CONTAINERD_VERSION)"
	@echo "RUNC_VERSION=$(RUNC_VERSION)"
	@echo "CRICTL_VERSION=$(CRICTL_VERSION)"
	@echo "CONTAINERD=$(CONTAINERD)"
	@echo "CONTAINERD_SHIM=$(CONTAINERD_SHIM)"
	@echo "CTR=$(CTR)"
	@echo "RUNC=$(RUNC)"
	@echo "CRICTL=$(CRICTL)"
	@echo "PAUSE_IMAGE_TAR=$(PAUSE_IMAGE_TAR)"
	@echo "AGNHOST_IMAGE_TAR=$(AGNHOST_IMAGE_TAR)"
	@echo "E2E_BUSYBOX_IMAGE_TAR=$(E2E_BUSYBOX_IMAGE_TAR)"
	@echo "E2E_DNSUTILS_IMAGE_TAR=$(E2E_DNSUTILS_IMAGE_TAR)"

test-containerd: deps containerd-bins
	$(NODE) --test test/e2e/containerd.test.ts
