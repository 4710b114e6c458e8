# Helm, for the chart in deploy/helm/hypha and its test
# (test/e2e/deploy-render.test.ts), built from the Go module proxy like the
# other tools (no release tarball).
#
#   make helm-bin       build it (first run: a minute or two)
#   make helm-versions  print its version and path (the test reads HELM=)
#
# Same pattern as hack/k8s/k8s.mk, which must be included first: its Go
# toolchain choice K8S_GO, its Go environment K8S_GOENV (module and build
# caches in $(HYPHA_CACHE)/go) and its version helper. The version is the one
# hack/helm/go.mod pins, written down once; the binary lands in a
# version-named directory and the target is that path with no prerequisites
# in the checkout, so a restored cache is never rebuilt and a new pin builds
# next to the old one.

ifndef K8S_GOENV
$(error hack/helm/helm.mk needs hack/k8s/k8s.mk included before it)
endif

HELM_HACK := $(CURDIR)/hack/helm
HELM_VERSION := $(call k8s_mod_version,helm.sh/helm/v4,$(HELM_HACK)/go.mod)
HELM_BIN_DIR := $(HYPHA_CACHE)/helm/$(HELM_VERSION)/bin
HELM := $(HELM_BIN_DIR)/helm
export HELM

# The version stamp helm's own Makefile gives a tagged build (`helm version`).
HELM_LDFLAGS := -s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v4/internal/version.gitTreeState=clean

$(HELM): | $(K8S_GO)
	@mkdir -p $(@D)
	@echo "helm: building $(@F) (helm.sh/helm/v4/cmd/helm) into $(@D) (go build -v; a cold build takes a minute or two)"
	@set -o pipefail; start=$$(date +%s); tmp=$$(mktemp -u $@.XXXXXX); cd $(HELM_HACK) && \
	  $(K8S_GOENV) $(K8S_GO) build -v -ldflags '$(HELM_LDFLAGS)' -o $$tmp helm.sh/helm/v4/cmd/helm 2>&1 | \
	    awk '{ printf "helm: %s [%d] %s\n", "$(@F)", NR, $$0; fflush() }' && \
	  mv $$tmp $@ && echo "helm: built $@ in $$(( $$(date +%s) - start ))s"

.PHONY: helm-bin helm-versions
helm-bin: $(HELM)
BUILD_TARGETS += helm-bin

# Machine-readable paths for the tests (test/e2e/deploy-render.test.ts).
helm-versions:
	@echo "HELM_VERSION=$(HELM_VERSION)"
	@echo "HELM=$(HELM)"
