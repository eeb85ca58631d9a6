#!/usr/bin/env bash
# Prerequisites for the metalcast-control-plane tests (idempotent).
#
# After this script, run the tests with
#   METALCAST_TEST_PG_URL=postgres://metalcast:metalcast@127.0.0.1/metalcast_test \
#     cargo test -p metalcast-control-plane
# (this script also appends that line to /tmp/metalcast-ci.env, which .ci/run
# sources). Without METALCAST_TEST_PG_URL the PostgreSQL variants print
# "SKIP:" and return (or fail under METALCAST_REQUIRE_PRIVILEGED=1). The Linux-bridge test needs root (it creates its own netns); the
# IPMI test needs ipmi_sim + ipmitool (installed here); the fabric isolation test
# needs ping (iputils-ping); the QMP test needs qemu-system-x86_64.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
# prometheus: its promtool lints a scrape and checks docs/prometheus/alerts.yml (and its unit tests).
# chromium, chromium-driver: the web console's browser test (cli/tests/web_console.rs), over WebDriver;
# fonts-dejavu-core so its screenshots have readable text.
for pkg in postgresql iproute2 iputils-ping openipmi ipmitool wrk curl openssl python3-pip qemu-system-x86 prometheus \
    chromium chromium-driver fonts-dejavu-core; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update
    apt-get install -y --no-install-recommends "${need[@]}"
fi

# Start the first installed cluster (Debian: pg_ctlcluster <ver> main start).
ver=$(ls /etc/postgresql | sort -V | tail -n1)
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 && break
    sleep 0.5
done
pg_isready -h 127.0.0.1

# Role with CREATEDB: every test creates (and drops) its own database.
su postgres -c "psql -v ON_ERROR_STOP=1 -q" <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'metalcast') THEN
    CREATE ROLE metalcast LOGIN PASSWORD 'metalcast' CREATEDB;
  ELSE
    ALTER ROLE metalcast LOGIN PASSWORD 'metalcast' CREATEDB;
  END IF;
END $$;
SQL
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'metalcast_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O metalcast metalcast_test"
# Redfish emulator (sushy-tools >= 1.x has the in-memory "--fake" driver).
if ! command -v sushy-emulator >/dev/null 2>&1; then
    python3 -m pip install --quiet sushy-tools \
        || python3 -m pip install --quiet --break-system-packages sushy-tools
fi

# OpenAPI 3.1 validator for the served document's test (tests/api.rs).
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    python3 -m pip install --quiet 'openapi-spec-validator>=0.7,<1' \
        || python3 -m pip install --quiet --break-system-packages 'openapi-spec-validator>=0.7,<1'
fi

# schemathesis against the served /v1 and /v0 documents (tests/schemathesis.rs).
# 3.x keeps the CLI the test uses; its last release breaks with Hypothesis
# after 6.131.14 ("'many' object has no attribute 'more'"), hence the pin.
if ! command -v schemathesis >/dev/null 2>&1; then
    st_pkgs=('schemathesis>=3.39,<4' 'hypothesis>=6.108,<=6.131.14')
    python3 -m pip install --quiet "${st_pkgs[@]}" \
        || python3 -m pip install --quiet --break-system-packages "${st_pkgs[@]}"
fi

# .ci/run sources /tmp/metalcast-ci.env before the tests.
pg_url=postgres://metalcast:metalcast@127.0.0.1/metalcast_test
touch /tmp/metalcast-ci.env
grep -q '^METALCAST_TEST_PG_URL=' /tmp/metalcast-ci.env \
    || echo "METALCAST_TEST_PG_URL=$pg_url" >> /tmp/metalcast-ci.env
echo "ready: METALCAST_TEST_PG_URL=$pg_url"
