#!/bin/bash
# Make a one-binary OCI image archive with umoci, importable with
# `ctr -n k8s.io images import <archive>` under its full name.
#
#   oci-image.sh OUT.tar NAME:TAG BINARY PATH_IN_IMAGE USER ENTRYPOINT [CMD...]
#
# USER may be '' (root). BINARY may be a directory (a root filesystem, with
# PATH_IN_IMAGE /). OCI_ENV, if set, is a space-separated list of KEY=VALUE
# for the image's environment. The image is linux/<this machine's arch>, one layer
# holding BINARY at PATH_IN_IMAGE. index.json names the manifest twice: the
# OCI ref name (the tag, what umoci writes) and io.containerd.image.name (the
# full reference, which containerd's importer prefers), so no --base-name is
# needed. Written to a temporary file first: an interrupted run leaves no
# half archive under OUT.
set -euo pipefail
[ $# -ge 6 ] || { echo "usage: $0 OUT.tar NAME:TAG BINARY PATH_IN_IMAGE USER ENTRYPOINT [CMD...]" >&2; exit 2; }
out=$1 name=$2 binary=$3 dest=$4 user=$5 entrypoint=$6
shift 6
tag=${name##*:}
[ "$tag" != "$name" ] && [ -n "$tag" ] || { echo "oci-image: image name \"$name\" has no :tag" >&2; exit 2; }
[ -x "$binary" ] || { echo "oci-image: binary \"$binary\" is not an executable file" >&2; exit 2; }
case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac

work=$(mktemp -d "${out}.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/layout
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci insert --image "$layout:$tag" "$binary" "$dest"
# An empty ENTRYPOINT means none (the image runs CMD, as busybox's does).
config=(--architecture "$arch" --os linux --author hypha)
[ -z "$entrypoint" ] || config+=(--config.entrypoint "$entrypoint")
for c in "$@"; do config+=(--config.cmd "$c"); done
[ -z "$user" ] || config+=(--config.user "$user")
for e in ${OCI_ENV:-}; do config+=(--config.env "$e"); done
umoci config --image "$layout:$tag" "${config[@]}"
umoci gc --layout "$layout"
python3 - "$layout/index.json" "$name" "$tag" <<'EOF'
import json, sys
path, name, tag = sys.argv[1:]
with open(path) as f:
    index = json.load(f)
found = 0
for m in index.get("manifests", []):
    a = m.setdefault("annotations", {})
    if a.get("org.opencontainers.image.ref.name") == tag:
        a["io.containerd.image.name"] = name
        found += 1
if found != 1:
    sys.exit(f"oci-image: expected one manifest tagged {tag} in {path}, found {found}")
with open(path, "w") as f:
    json.dump(index, f)
EOF
tar -C "$layout" -cf "$work/image.tar" .
mv "$work/image.tar" "$out"
echo "containerd: built $out ($name, $(du -h "$out" | cut -f1))"
