#!/usr/bin/env bash
# A kind cluster with Hypha installed from the plain manifests (deploy/),
# then the conformance run against it. Called by `make kind-e2e`
# (hack/kind/kind.mk), which builds the image and the tools first and passes
# everything below in the environment.
#
# NOT RUN on the machine this was written on: kind needs a container runtime
# (Docker, podman or nerdctl with a running daemon) and pulls its node image
# (kindest/node) from a registry; that machine has neither.
#
#   KIND KUBECTL           tool paths
#   KIND_CLUSTER           cluster name (nodes are <name>-control-plane, <name>-worker, ...)
#   KIND_CONFIG            kind-config.yaml
#   KIND_KUBECONFIG        where kind writes the cluster's kubeconfig
#   HYPHA_IMAGE_TAR        the image archive (`make image`)
#   KIND_TIMEOUT           each wait (kubectl's --timeout syntax)
#   KIND_KEEP              non-empty: leave the cluster (`make kind-down` deletes it)
#   MAKE                   the make that runs `conformance`
set -euo pipefail
for v in KIND KUBECTL KIND_CLUSTER KIND_CONFIG KIND_KUBECONFIG HYPHA_IMAGE_TAR KIND_TIMEOUT; do
  [ -n "${!v:-}" ] || { echo "kind-e2e: $v is not set (run it as make kind-e2e)" >&2; exit 2; }
done
k() { "$KUBECTL" --kubeconfig "$KIND_KUBECONFIG" "$@"; }
step() { echo "kind-e2e: $*"; }

if [ -z "${KIND_KEEP:-}" ]; then
  trap 'step "deleting cluster $KIND_CLUSTER"; "$KIND" delete cluster --name "$KIND_CLUSTER" --kubeconfig "$KIND_KUBECONFIG"' EXIT
fi
mkdir -p "$(dirname "$KIND_KUBECONFIG")"

# No --wait: without a CNI the nodes stay NotReady until Hypha runs.
step "creating cluster $KIND_CLUSTER ($KIND_CONFIG)"
"$KIND" create cluster --name "$KIND_CLUSTER" --config "$KIND_CONFIG" --kubeconfig "$KIND_KUBECONFIG"

step "loading $HYPHA_IMAGE_TAR into every node"
"$KIND" load image-archive "$HYPHA_IMAGE_TAR" --name "$KIND_CLUSTER"

# The API server's real address for both components (deploy/config.yaml says
# why): the control-plane container's name on kind's Docker network, which
# kubeadm puts in the serving certificate's SANs (it is the node name).
step "hypha-apiserver: ${KIND_CLUSTER}-control-plane:6443"
k -n kube-system create configmap hypha-apiserver \
  --from-literal=KUBERNETES_SERVICE_HOST="${KIND_CLUSTER}-control-plane" \
  --from-literal=KUBERNETES_SERVICE_PORT=6443 \
  --dry-run=client -o yaml | k apply -f -

step "kubectl apply -k deploy/"
k apply -k deploy/

step "waiting for the agent, the operator and every node (timeout $KIND_TIMEOUT each)"
k -n kube-system rollout status daemonset/hypha-agent --timeout="$KIND_TIMEOUT"
k -n kube-system rollout status deployment/hypha-operator --timeout="$KIND_TIMEOUT"
k wait --for=condition=Ready nodes --all --timeout="$KIND_TIMEOUT"
k get nodes -o wide

step "make conformance CONFORMANCE_KUBECONFIG=$KIND_KUBECONFIG"
"${MAKE:-make}" --no-print-directory conformance CONFORMANCE_KUBECONFIG="$KIND_KUBECONFIG"
