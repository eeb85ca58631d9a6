#!/usr/bin/env bash
# Installs what metalcast-fabric / metalcast-ebpf tests and ebpf/build.sh need on
# a fresh Debian/Ubuntu machine. Idempotent: installs only missing packages.
#
#   clang, llvm, libbpf-dev, linux-libc-dev  ebpf/build.sh (--check): compile BPF C
#   iproute2                                 ip / tc / bridge: fabric setup
#   iputils-ping                             the fabric's ping test
#   ethtool                                  NIC-like UDP segmentation on host veths
#
# The Rust workspace itself builds without any of these (BPF objects are
# committed). The fabric/loss tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN,
# CAP_BPF); as non-root they print "SKIP <test>: <reason>".
set -euo pipefail

packages=(clang llvm libbpf-dev linux-libc-dev iproute2 iputils-ping ethtool)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "ci-setup: all of ${packages[*]} already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "ci-setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "ci-setup: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
