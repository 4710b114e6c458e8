#!/usr/bin/env bash
# kind's own loader and validation on a config file, without a cluster:
#
#   hack/kind/kind-validate.sh KIND kind-config.yaml
#
# Those are internal packages of kind's module (no other module can import
# them), so this runs `kind create cluster --config FILE` with a stand-in
# `docker` first on PATH: it answers the provider checks kind makes before it
# loads and validates the config (docker -v, docker info, docker ps: no
# clusters) and the node-image check, and fails every other command, so kind
# stops at its first real step (the docker network) and creates nothing.
# "Creating cluster" is printed only after validation: with it and the stub's
# stop, the config passed; otherwise kind's error is printed (exit 1).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 KIND CONFIG" >&2; exit 2; }
kind=$1 config=$2
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
cat > "$stub/docker" <<'EOF'
#!/bin/sh
case "$1" in
  -v) echo "Docker version 0.0.0, build hypha-kind-validate"; exit 0 ;;
  info) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true,"SecurityOptions":[]}'; exit 0 ;;
  ps) exit 0 ;;
  inspect) if [ "$2" = --type=image ]; then exit 0; fi ;;
esac
echo "hypha-kind-validate: stopped at: docker $*" >&2
exit 1
EOF
chmod +x "$stub/docker"
status=0
out=$(PATH="$stub:$PATH" KIND_EXPERIMENTAL_PROVIDER=docker "$kind" create cluster --name hypha-kind-validate \
  --config "$config" --kubeconfig "$stub/kubeconfig" 2>&1) || status=$?
if [ "$status" -ne 0 ] && grep -q '^Creating cluster' <<<"$out" && grep -q 'hypha-kind-validate: stopped at: docker' <<<"$out"; then
  echo "$config: kind $("$kind" version | awk '{print $2}') accepts it (its loader and validation; stopped before creating anything)"
  exit 0
fi
grep -v '^using docker due to KIND_EXPERIMENTAL_PROVIDER' <<<"$out" >&2
exit 1
