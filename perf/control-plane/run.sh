#!/usr/bin/env bash
# Load benchmark of the metalcast control plane with wrk (Debian package).
#
#   perf/control-plane/run.sh [duration, default 10s]
#
# Builds `metalcast` (release; or uses $METALCAST_BIN), bootstraps a fresh SQLite database (or uses
# $METALCAST_BENCH_DATABASE_URL, e.g. a PostgreSQL URL with an empty
# database), starts the server on 127.0.0.1, registers 200 nodes and runs:
#   1. GET /v0/nodes/all               (read path, bearer token)
#   2. POST connect_node / detach_node (write path: reserve + release)
#   3. eight concurrent writers (write_mix.lua): four reserve/release their own
#      node, four create/delete their own network, one request at a time each
# Results go to stdout; copy them into RESULTS.md with the exact command.
set -euo pipefail
DUR=${1:-10s}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-cp}
if [ -z "${METALCAST_BIN:-}" ]; then
  cargo build --release -p metalcast-cli --manifest-path "$ROOT/Cargo.toml" >&2
fi
BIN=${METALCAST_BIN:-$CARGO_TARGET_DIR/release/metalcast}
WORK=$(mktemp -d)
DB=${METALCAST_BENCH_DATABASE_URL:-sqlite://$WORK/bench.db?mode=rwc}
PORT=${PORT:-17999}
URL=http://127.0.0.1:$PORT
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

TOKEN=$("$BIN" admin bootstrap --database-url "$DB" --admin-user bench | awk '/^token:/ {print $2}')
METALCAST_LOG=warn "$BIN" serve --listen 127.0.0.1:$PORT --database-url "$DB" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fs "$URL/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$URL/v1/health"; echo

export METALCAST_URL=$URL METALCAST_TOKEN=$TOKEN
"$BIN" project create bench
for i in $(seq 0 199); do
  "$BIN" node register "bench-$i" --obm '{"type":"ipmi","host":"127.0.0.1","user":"u","password":"p"}'
done
echo "nodes registered: $("$BIN" node list all | wc -l)"

echo "== GET /v0/nodes/all (200 nodes), wrk -t2 -c32 -d$DUR"
wrk -t2 -c32 -d"$DUR" --latency -H "Authorization: Bearer $TOKEN" "$URL/v0/nodes/all"

echo "== POST connect_node/detach_node alternating, wrk -t2 -c2 -d$DUR"
wrk -t2 -c2 -d"$DUR" --latency -H "Authorization: Bearer $TOKEN" \
  -s "$(dirname "$0")/write_mix.lua" "$URL" -- nodes

echo "== 8 writers: connect/detach_node x4, PUT/DELETE network x4, wrk -t8 -c8 -d$DUR"
wrk -t8 -c8 -d"$DUR" --latency -H "Authorization: Bearer $TOKEN" \
  -s "$(dirname "$0")/write_mix.lua" "$URL"
