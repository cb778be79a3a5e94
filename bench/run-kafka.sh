#!/usr/bin/env bash
# Chicago against Apache Kafka on this machine, in one run (bench/kafka-compare.ts): starts a fresh
# 1-broker Kafka with scripts/kafka.sh on its own ports (19692, controller 19792), runs the side-by-side
# (Chicago client, kafkajs, kafka-producer-perf-test) and end-to-end (Chicago → bridge → Kafka)
# measurements, writes bench/results/kafka-compare.{json,md}, and stops the broker.
# --cluster: the replicated comparison instead: 3 brokers on ports 19892-19894 (controllers
# 19992-19994), topics with replication factor 3 and min.insync.replicas=2, against a 3-node
# Chicago cluster with N=3 that kafka-compare starts (a private etcd, bench/cluster.ts); side by
# side only; writes bench/results/kafka-compare-cluster.{json,md}.
# Other flags go to kafka-compare (e.g. --quick, --rates 1000,10000, --duration 20, --skip perf,e2e).
# KAFKA_BENCH_PORT overrides the port base (keep bases 200 apart: tests use 19092 and 19292).
# A quiet machine matters: it prints `uptime` first; rerun when the load average is high.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=0; ARGS=()
for a in "$@"; do
  if [ "$a" = --cluster ]; then CLUSTER=1; else ARGS+=("$a"); fi
done
if [ "$CLUSTER" = 1 ]; then
  PORT="${KAFKA_BENCH_PORT:-19892}"; NBROKERS=3; OUT=bench/results/kafka-compare-cluster; ARGS+=(--cluster)
else
  PORT="${KAFKA_BENCH_PORT:-19692}"; NBROKERS=1; OUT=bench/results/kafka-compare
fi

echo "[bench] $(uptime)" >&2
[ -d node_modules ] || npm ci
npx tsc -p tsconfig.json >/dev/null || echo "[bench] tsc reported type errors; using the emitted JavaScript anyway" >&2
trap 'scripts/kafka.sh down --port "$PORT" >&2 || true' EXIT
BROKERS="$(scripts/kafka.sh up --brokers "$NBROKERS" --port "$PORT" --fresh | tail -n 1)"
mkdir -p bench/results
node dist/bench/kafka-compare.js --brokers "$BROKERS" --json "$OUT.json" --md "$OUT.md" "${ARGS[@]}"
echo "[bench] $(uptime)" >&2
