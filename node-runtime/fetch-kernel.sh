#!/usr/bin/env bash
# Fetches Debian's amd64 kernel package (linux-image-amd64's dependency, 6.1
# on Debian 12) and unpacks it -- without installing a kernel on this host --
# into a cache directory that the QEMU tests and `metalcast-image initramfs`
# use:  <dir>/boot/vmlinuz-*  and  <dir>/lib/modules/<release>/
#
#   node-runtime/fetch-kernel.sh [DIR]     (default /var/cache/metalcast/linux-image)
#
# Idempotent: does nothing when DIR already holds a kernel.
set -euo pipefail
dir=${1:-${METALCAST_KERNEL_DIR:-/var/cache/metalcast/linux-image}}
if compgen -G "$dir/boot/vmlinuz-*" >/dev/null && [ -d "$dir/lib/modules" ]; then
  echo "fetch-kernel: $(ls "$dir"/boot/vmlinuz-*) already there"
  exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$pkg")
mkdir -p "$dir.tmp"
dpkg-deb -x "$work"/"$pkg"_*.deb "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "fetch-kernel: $pkg unpacked into $dir"
