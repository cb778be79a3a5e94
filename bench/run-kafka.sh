#!/usr/bin/env bash
# Chicago against Apache Kafka on this machine, in one run (bench/kafka-compare.ts): starts a fresh
# 1-broker Kafka with scripts/kafka.sh on its own ports (19692, controller 19792), runs the side-by-side
# (Chicago client, kafkajs, kafka-producer-perf-test) and end-to-end (Chicago → bridge → Kafka)
# measurements, writes bench/results/kafka-compare.{json,md}, and stops the broker.
# Flags go to kafka-compare (e.g. --quick, --rates 1000,10000, --duration 20, --skip perf,e2e).
# A quiet machine matters: it prints `uptime` first; rerun when the load average is high.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${KAFKA_BENCH_PORT:-19692}"

echo "[bench] $(uptime)" >&2
[ -d node_modules ] || npm ci
npx tsc -p tsconfig.json >/dev/null || echo "[bench] tsc reported type errors; using the emitted JavaScript anyway" >&2
BROKERS="$(scripts/kafka.sh up --port "$PORT" --fresh | tail -n 1)"
trap 'scripts/kafka.sh down --port "$PORT" >&2 || true' EXIT
mkdir -p bench/results
node dist/bench/kafka-compare.js --brokers "$BROKERS" --json bench/results/kafka-compare.json --md bench/results/kafka-compare.md "$@"
echo "[bench] $(uptime)" >&2
