#!/bin/bash
# The root filesystem of the agnhost test image, as upstream's Dockerfile
# (k8s.io/kubernetes test/images/agnhost) makes it on Alpine, from what this
# machine has instead of a registry: /agnhost (and the agnhost-2 link), the
# shell tools the e2e specs run inside it (busybox for sh and the coreutils,
# curl, dig/nslookup, nc (OpenBSD), ip, bash, iperf, glibc's getent, conntrack, wget: Debian's static busybox wget crashes
# resolving through glibc's NSS)
# with the shared libraries
# ldd names, the porter's localhost certificate, /uploads, and the user and
# group upstream's image defines (user-defined-in-image 1000,
# group-defined-in-image 50000).
#
# and /coredns, as upstream's image has it (the DNS specs start their own
# server with it).
#
#   agnhost-rootfs.sh ROOTFS_DIR AGNHOST_BINARY AGNHOST_SOURCE_DIR COREDNS_BINARY
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 ROOTFS_DIR AGNHOST_BINARY AGNHOST_SOURCE_DIR COREDNS_BINARY" >&2; exit 2; }
root=$1 agnhost=$2 src=$3 coredns=$4
tools=(/bin/dash /usr/bin/curl /usr/bin/dig /usr/bin/nslookup /usr/bin/nc.openbsd /usr/sbin/ip /usr/bin/bash /usr/bin/iperf /usr/bin/getent /usr/sbin/conntrack /usr/bin/wget)
for t in /usr/bin/busybox "${tools[@]}"; do
  [ -x "$t" ] || { echo "agnhost-rootfs: $t is missing (make deps installs busybox-static, curl, bind9-dnsutils, netcat-openbsd, iproute2, iperf, conntrack, wget)" >&2; exit 1; }
done
mkdir -p "$root"/{bin,usr/bin,usr/sbin,etc,tmp,uploads,root}
chmod 1777 "$root/tmp"
cp "$agnhost" "$root/agnhost"
cp "$coredns" "$root/coredns"
ln -s agnhost "$root/agnhost-2"
# busybox (static) provides the small tools in /bin; the real tools in
# /usr/bin and /usr/sbin come first on PATH. /bin/sh is dash, not busybox:
# Debian's busybox shell runs its own applets before PATH (its nc and ip
# would shadow the real ones, which Alpine's shell does not do).
cp /usr/bin/busybox "$root/bin/busybox"
cp /bin/dash "$root/bin/sh"
for applet in $(/usr/bin/busybox --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
for t in "${tools[@]}"; do [ "$t" = /bin/dash ] || cp "$t" "$root$t"; done
ln -s nc.openbsd "$root/usr/bin/nc"
for t in "${tools[@]}"; do
  ldd "$t" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp "$src/porter/localhost.crt" "$src/porter/localhost.key" "$root/"
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh
P
cat > "$root/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
user-defined-in-image:x:1000:
group-defined-in-image:x:50000:user-defined-in-image
G
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
