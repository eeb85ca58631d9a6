#!/usr/bin/env bash
# The README's main job. Today: build a signed bundle from a sparse disk image
# and a kernel, verify it, and restore it byte-identical. As the fabric lands
# this grows into a real multicast deploy to a fabric of nodes on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p metalcast-image
bin=$PWD/target/release/metalcast-image
work=$(mktemp -d /var/tmp/metalcast-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "== a 1 GiB sparse disk with 128 MiB of data, a kernel and an initrd"
truncate -s 1G disk.raw
for off in 0 256 512 768; do head -c 32M /dev/urandom | dd of=disk.raw bs=1M seek=$off conv=notrunc status=none; done
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | head -1 || true)
if [ -n "$kernel" ] && [ -r "$kernel" ]; then cp "$kernel" vmlinuz; else head -c 8M /dev/urandom > vmlinuz; fi
head -c 4M /dev/zero | tr '\0' 'i' > initrd.img
"$bin" keygen demo
"$bin" build --kernel vmlinuz --initrd initrd.img --cmdline "console=ttyS0" --disk disk.raw --sign-key demo.key -o demo.mcb
"$bin" inspect demo.mcb
"$bin" verify demo.mcb --key demo.pub
"$bin" extract demo.mcb --key demo.pub -o restored >/dev/null
cmp disk.raw restored/disk && cmp vmlinuz restored/kernel
echo "== restored parts are byte-identical; restored disk uses $(du -h restored/disk | cut -f1) on disk"
echo "== flipping one byte in one chunk:"
printf '\xff' | dd of=demo.mcb bs=1 seek=$((4096 + 5000000)) conv=notrunc status=none
if "$bin" verify demo.mcb --key demo.pub; then echo "corruption NOT detected"; exit 1; fi
echo "== corruption detected and named, as it must be"
