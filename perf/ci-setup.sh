#!/usr/bin/env bash
# Installs the contenders of the imaging comparison (metalcast-bench suite) on
# a fresh Debian machine. Idempotent: installs only missing packages.
#
#   udpcast            udp-sender / udp-receiver
#   nginx-light, curl  HTTP unicast
#   aria2, opentracker, mktorrent   BitTorrent the BootTorrent way
#   ethtool, iproute2  veth offloads, fabric setup
#
# nginx and opentracker ship system services: they are installed with service
# start-up blocked (policy-rc.d), so nothing listens in the host's namespace;
# the bench starts them itself, inside the fabric's namespaces only.
set -euo pipefail

packages=(udpcast nginx-light curl aria2 opentracker mktorrent ethtool iproute2)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "perf/ci-setup: all of ${packages[*]} already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "perf/ci-setup: need root to install ${missing[*]}" >&2
  exit 1
fi

# Block service start-up during the install unless a policy already exists.
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# metalcast perf/ci-setup.sh: no services started during install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  ours=1
fi
cleanup() { if [ "$ours" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "perf/ci-setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Should a service have started anyway (no policy-rc.d support), stop it: the bench runs its own.
for svc in nginx opentracker; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" || true
  fi
done
