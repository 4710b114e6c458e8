# Hypha's container image (deploy/image/build.sh): an OCI archive of this
# checkout's build, imported into a node's containerd (the local cluster) or
# loaded into kind (`kind load image-archive`). Its name is what
# deploy/agent.yaml and deploy/operator.yaml run.
HYPHA_VERSION := $(shell sed -nE 's/^  "version": "([^"]+)".*/\1/p' package.json)
HYPHA_IMAGE := hypha.dev/hypha:$(HYPHA_VERSION)
HYPHA_IMAGE_TAR := $(CACHE)/image/hypha-$(HYPHA_VERSION).oci.tar
export HYPHA_IMAGE HYPHA_IMAGE_TAR

.PHONY: image
image: $(HYPHA_IMAGE_TAR)
# Rebuilt when what goes in changes (build itself is phony: order-only).
$(HYPHA_IMAGE_TAR): $(BPF_OBJECTS) $(NATIVE_ADDON) $(CNI_SHIM) .cache/js/.stamp package-lock.json deploy/image/build.sh bin/hypha $(PORTMAP) | build
	@mkdir -p $(@D)
	deploy/image/build.sh $@ $(HYPHA_IMAGE)

# The upstream sig-network e2e specs against a local cluster with Hypha
# installed from deploy/ (scripts/conformance.ts; results in
# bench/results/conformance.json, summary in docs/conformance.md). Long: its
# own target, not part of make test (which runs its smoke set).
#   make conformance CONFORMANCE_ARGS='--set netpol --procs 3'
#   make conformance CONFORMANCE_KUBECONFIG=<file>   against a cluster with Hypha (kind-e2e)
.PHONY: conformance
conformance: image e2e-network-test k8s-bins containerd-bins bpffs
	$(NODE) scripts/conformance.ts $(if $(CONFORMANCE_KUBECONFIG),--kubeconfig $(CONFORMANCE_KUBECONFIG)) $(CONFORMANCE_ARGS)
