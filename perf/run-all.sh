#!/usr/bin/env bash
# Reproduces the whole imaging comparison of issue 9 on a fresh Debian 12
# machine with the Rust toolchain, as root:
#
#   bash perf/run-all.sh            # the full sweep (hours on a small VM)
#   bash perf/run-all.sh --quick    # a few minutes: N=2,4, 32 MiB, 0% and 1% loss, one repetition
#
# Installs the contenders (perf/ci-setup.sh: udpcast, nginx, curl, aria2,
# opentracker, mktorrent), builds metalcast-bench in release mode, then
# writes into $OUT (default perf/out/<UTC time>/):
#   suite/report.md, suite/report.json, suite/time-vs-*.svg|png  every contender, every scenario
#   simulate.md, simulate.json      10..10,000 receivers: metalcast repair vs NACK vs unicast
#   validate.md, validate.json      the simulation's N=8 prediction vs a real fabric run
# Extra arguments go to `metalcast-bench suite` (see its --help), e.g.
#   bash perf/run-all.sh --link-mbit 0,300 --reps 5
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run-all: needs root (network namespaces, tc, BPF)" >&2; exit 1; }

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
OUT=${OUT:-$ROOT/perf/out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

bash perf/ci-setup.sh
cargo build --release --locked -p metalcast-bench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/metalcast-bench

{
  echo "metalcast-bench, $(date -u), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB"
  echo "udpcast $(dpkg-query -W -f='${Version}' udpcast), nginx $(dpkg-query -W -f='${Version}' nginx-light)," \
    "aria2 $(dpkg-query -W -f='${Version}' aria2), opentracker $(dpkg-query -W -f='${Version}' opentracker)"
} | tee "$OUT/machine.txt"

if [ "$quick" = 1 ]; then
  suite=(--receivers 2,4 --loss 0,1 --size-mib 32 --link-mbit 0,200 --reps 1)
  sim=(--receivers 10,100,1000 --loss 0,1,bursty --size-mib 64)
  val=(--receivers 8 --loss 0,1 --size-mib 32 --link-mbit 200 --reps 1)
else
  suite=()
  sim=()
  val=(--receivers 8 --loss 0,1,5,bursty --size-mib 256 --link-mbit 200 --reps 3)
fi

echo "== suite: every contender, every scenario (progress on stderr)"
"$BIN" suite --out "$OUT/suite" "${suite[@]}" "$@" | tee "$OUT/suite.md"
echo "== simulate: 10 to 10,000 receivers"
"$BIN" simulate --json "$OUT/simulate.json" "${sim[@]}" | tee "$OUT/simulate.md"
echo "== simulate --validate: N=8 prediction vs a real fabric run"
"$BIN" simulate --validate --json "$OUT/validate.json" "${val[@]}" | tee "$OUT/validate.md"
echo "== results in $OUT"
