# CoreDNS, the cluster DNS of the namespace cluster (test/e2e/manifests/coredns.yaml,
# for test/e2e/lib/kube-cluster.ts to import the image and apply; the upstream
# sig-network specs look Services and pods up by name), built from the Go
# module proxy like the other tools, and its OCI image made locally (no
# registry, no release tarball).
#
#   make coredns-bins      build the binary and the image (first run: minutes)
#   make coredns-versions  print the version and paths (COREDNS=, COREDNS_IMAGE=, COREDNS_IMAGE_TAR=)
#
# Same pattern as hack/k8s/k8s.mk, which must be included first: its Go
# toolchain choice K8S_GO, its Go environment K8S_GOENV (CGO_ENABLED=0, module
# and build caches in $(HYPHA_CACHE)/go) and its version helper. The version is
# the one hack/coredns/go.mod pins (kubeadm's CoreDNSVersion for the pinned
# Kubernetes), written down once; outputs land in a version-named directory
# and the targets are those paths with no prerequisites in the checkout, so a
# restored cache is never rebuilt and a new pin builds next to the old one.

ifndef K8S_GOENV
$(error hack/coredns/coredns.mk needs hack/k8s/k8s.mk included before it)
endif

COREDNS_HACK := $(CURDIR)/hack/coredns
COREDNS_VERSION := $(call k8s_mod_version,github.com/coredns/coredns,$(COREDNS_HACK)/go.mod)
COREDNS_DIR := $(HYPHA_CACHE)/coredns/$(COREDNS_VERSION)
COREDNS := $(COREDNS_DIR)/bin/coredns
# The name kubeadm gives the image (registry.k8s.io + coredns/coredns + the tag).
COREDNS_IMAGE := registry.k8s.io/coredns/coredns:$(COREDNS_VERSION)
COREDNS_IMAGE_TAR := $(COREDNS_DIR)/images/coredns.oci.tar
export COREDNS COREDNS_IMAGE COREDNS_IMAGE_TAR

# No commit stamp: the module zip has no git metadata (upstream's Makefile sets
# coremain.GitCommit from `git describe`); `coredns -version` names the release.
COREDNS_LDFLAGS := -s -w

$(COREDNS): | $(K8S_GO)
	@mkdir -p $(@D)
	@echo "coredns: building $(@F) (github.com/coredns/coredns) into $(@D) (go build -v; a cold build takes minutes)"
	@set -o pipefail; start=$$(date +%s); tmp=$$(mktemp -u $@.XXXXXX); cd $(COREDNS_HACK) && \
	  $(K8S_GOENV) $(K8S_GO) build -v -ldflags '$(COREDNS_LDFLAGS)' -o $$tmp github.com/coredns/coredns 2>&1 | \
	    awk '{ printf "coredns: %s [%d] %s\n", "$(@F)", NR, $$0; fflush() }' && \
	  mv $$tmp $@ && echo "coredns: built $@ in $$(( $$(date +%s) - start ))s"

# The image is laid out like upstream's (its Dockerfile): the static binary at
# /coredns, nothing else (no shell), user 65532 (distroless "nonroot"),
# entrypoint /coredns, and cap_net_bind_service=+ep as a file capability on the
# binary, so a non-root process may bind port 53 when the pod keeps
# NET_BIND_SERVICE in its bounding set (the manifest adds it, drops the rest).
# The capability is written by hand as the security.capability xattr
# (VFS_CAP_REVISION_2, effective, permitted = bit 10): what `setcap` writes,
# without needing libcap2-bin. umoci carries the xattr into the layer.
# Order-only on the binary: a restored cache with shuffled times is not remade.
$(COREDNS_IMAGE_TAR): | $(COREDNS) $(APT_STAMP)
	@mkdir -p $(@D)
	@set -e; root=$$(mktemp -d $@.rootfs.XXXXXX); trap 'rm -rf "$$root"' EXIT; \
	  chmod 0755 $$root; cp $(COREDNS) $$root/coredns && chmod 0755 $$root/coredns; \
	  python3 -c 'import os, struct, sys; os.setxattr(sys.argv[1], "security.capability", struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0))' $$root/coredns; \
	  $(CURDIR)/hack/containerd/oci-image.sh $@ $(COREDNS_IMAGE) $$root / '65532:65532' /coredns

.PHONY: coredns-bins coredns-versions
coredns-bins: $(COREDNS) $(COREDNS_IMAGE_TAR)
BUILD_TARGETS += coredns-bins

# Machine-readable paths for the test harness.
coredns-versions:
	@echo "COREDNS_VERSION=$(COREDNS_VERSION)"
	@echo "COREDNS=$(COREDNS)"
	@echo "COREDNS_IMAGE=$(COREDNS_IMAGE)"
	@echo "COREDNS_IMAGE_TAR=$(COREDNS_IMAGE_TAR)"

# The agnhost test image carries CoreDNS too (hack/containerd/agnhost-rootfs.sh).
$(AGNHOST_IMAGE_TAR): | $(COREDNS)
