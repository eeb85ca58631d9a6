#!/usr/bin/env bash
# The README's main job: a real multicast deploy through the control plane on
# this machine (as root). Builds metalcast, then `metalcast demo` stands up a
# namespace fabric (a bridge with IGMP snooping, the control plane and 8
# nodes with 1% injected loss), runs `metalcast serve` (SQLite) and the real
# node runtime on every node, uploads a signed sample image, deploys it to
# every node by multicast with live progress, prints the summary and removes
# everything it made. `--qemu 2 --reclaim` adds QEMU guests that kexec.
# Extra arguments go to `metalcast demo` (see `metalcast demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root: the demo builds network namespaces" >&2; exit 1; fi
if ! command -v ethtool >/dev/null || ! command -v ip >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 ethtool >/dev/null
fi
cargo build --release --quiet -p metalcast-cli -p metalcast-node
exec ./target/release/metalcast demo "$@"
