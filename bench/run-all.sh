#!/usr/bin/env bash
# The issue's benchmark suite on this machine: builds, installs Debian's redis-server when it is
# missing (root + apt), then runs kv-put/kv-get at 10k/s against Chicago and Redis, the produce
# climb, produce-tail at 10k/s and idle, each against a fresh node. Writes bench/results/*.json
# and bench/results/table.md. Flags go to bench/suite.ts (e.g. --quick, --only kv-put,
# --duration 20, --produce-rates 200000,300000,400000).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "[bench] redis-server missing: installing Debian's redis-server" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server
  # the package may start a system instance on 6379; the bench starts its own on a free port
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi

[ -d node_modules ] || npm ci
npx tsc -p tsconfig.json >/dev/null || echo "[bench] tsc reported type errors; using the emitted JavaScript anyway" >&2
exec node dist/bench/suite.js "$@"
