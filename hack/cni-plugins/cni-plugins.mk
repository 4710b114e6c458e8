# The reference CNI plugins Hypha chains after its own, from the Go module
# proxy (hack/cni-plugins/go.mod pins github.com/containernetworking/plugins):
# portmap, for hostPort (Debian's 1.1.1 speaks CNI up to 1.0.0; Hypha's
# conflist is 1.1.0). Shipped in Hypha's image (deploy/image/build.sh) and
# installed next to the shim as hypha-portmap, so a node's own portmap, if
# any, is never replaced.
CNI_PLUGINS_HACK := $(CURDIR)/hack/cni-plugins
CNI_PLUGINS_VERSION := $(call k8s_mod_version,github.com/containernetworking/plugins,$(CNI_PLUGINS_HACK)/go.mod)
PORTMAP := $(HYPHA_CACHE)/cni-plugins/$(CNI_PLUGINS_VERSION)/bin/portmap
export PORTMAP
BUILD_TARGETS += $(PORTMAP)
$(PORTMAP): | $(K8S_GO)
	@mkdir -p $(@D)
	@echo "cni-plugins: building portmap $(CNI_PLUGINS_VERSION) into $(@D)"
	@set -o pipefail; tmp=$$(mktemp -u $@.XXXXXX); cd $(CNI_PLUGINS_HACK) && \
	  $(K8S_GOENV) $(K8S_GO) build -v -ldflags '-s -w' -o $$tmp github.com/containernetworking/plugins/plugins/meta/portmap 2>&1 | \
	    awk '{ printf "cni-plugins: portmap [%d] %s\n", NR, $$0; fflush() }' && mv $$tmp $@

.PHONY: cni-plugins-versions
cni-plugins-versions:
	@echo "CNI_PLUGINS_VERSION=$(CNI_PLUGINS_VERSION)"
	@echo "PORTMAP=$(PORTMAP)"
