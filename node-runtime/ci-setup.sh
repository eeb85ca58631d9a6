#!/usr/bin/env bash
# Prerequisites of the metalcast-node tests (idempotent; run as root by .ci/run):
#   qemu-system-x86   the QEMU guest tests (TCG; -accel kvm does not work on these machines)
#                     and the VM-mode test (tests/vm.rs: QEMU only has to start)
#   dnsmasq-base      the DHCP server the agent and guest tests run inside their namespaces
#   ipxe, ovmf        built-in netboot (cli/tests/netboot_e2e.rs, the demo's guests): the iPXE
#                     binaries metalcast serve hands out by TFTP (undionly.kpxe, ipxe.efi) and
#                     the UEFI firmware of the UEFI PXE guest
#   kexec-tools       its `kexec` (and shared libraries) go into the guests' bootstrap
#                     initramfs for the legacy kexec_load hand-over; preseeded so the
#                     package never takes over this machine's own reboots
#   util-linux, e2fsprogs   the disk-write guard test (tests/disk_guard.rs): losetup,
#                     addpart/delpart, unshare, setsid, mount; mkfs.ext4
#   Debian's linux-image-amd64 (6.1: kexec, virtio/e1000 as modules), unpacked
#                     -- not installed -- by fetch-kernel.sh into /var/cache/metalcast/linux-image
# The tests build the static runtime themselves (cargo, +crt-static, explicit --target).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
echo "kexec-tools kexec-tools/load_kexec boolean false" | debconf-set-selections
for pkg in qemu-system-x86 dnsmasq-base ipxe ovmf kexec-tools util-linux e2fsprogs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq
"$(dirname "$0")/fetch-kernel.sh"
