#!/usr/bin/env bash
# A real Apache Kafka (KRaft mode) on loopback, for tests and benchmarks.
#
#   scripts/kafka.sh up [--brokers 1|3] [--port BASE] [--fresh]   start (idempotent); prints the bootstrap list
#   scripts/kafka.sh down [--port BASE]                            stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh down-all                                      stop every cluster under .kafka/ (e.g. end of CI)
#   scripts/kafka.sh status [--port BASE]                          which brokers run
#   scripts/kafka.sh stop-broker N [--port BASE] / start-broker N  one broker of a running cluster
#   scripts/kafka.sh reset [--port BASE]                           down + delete the cluster's data
#   scripts/kafka.sh fetch                                         only download the jars
#   scripts/kafka.sh perf-producer ARGS…                           org.apache.kafka.tools.ProducerPerformance
#   scripts/kafka.sh perf-consumer ARGS…                           org.apache.kafka.tools.ConsumerPerformance
#   scripts/kafka.sh topics ARGS…                                  org.apache.kafka.tools.TopicCommand
#   scripts/kafka.sh run MAIN_CLASS ARGS…                          any main class on the Kafka class path
#
# Needs Java 17 and Maven (Maven Central reachable). The jars go to .kafka/lib once (cached); each
# cluster lives in .kafka/cluster-BASE/ (config, data, logs, pids) so several can run side by side.
# Broker i (1-based) listens on BASE+i-1 for clients and BASE+100+i-1 for the controller quorum,
# so clusters side by side need BASEs at least 200 apart (tests use 19092 and 19292).
# 1 broker = one combined broker+controller; 3 brokers = three combined nodes, a 3-voter quorum.
# `up` keeps existing data (a down/up is a broker restart); `--fresh` or `reset` wipes it.
#
# Env: KAFKA_VERSION (default 4.1.1), KAFKA_HEAP (default -Xmx512m), KAFKA_READY_TIMEOUT_S (90),
#   KAFKA_JVM_OPTS (more JVM flags for the brokers `up` starts; none by default).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDIR="$ROOT/.kafka"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="2.24.3"
LIB="$KDIR/lib-$KAFKA_VERSION"
HEAP="${KAFKA_HEAP:--Xms128m -Xmx512m}"
JVM_OPTS="${KAFKA_JVM_OPTS:-}"
READY_TIMEOUT_S="${KAFKA_READY_TIMEOUT_S:-90}"
HOST=127.0.0.1

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$KDIR"

# ---------------------------------------------------------------- prerequisites
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null || return 1
    apt_updated=1
  fi
  log "apt-get install -y $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

ensure_java() {
  command -v java >/dev/null || die "java not found (Java 17 is required)"
  command -v mvn >/dev/null || die "mvn not found (Maven is required to fetch the Kafka jars)"
}

ensure_kcat() {
  command -v kcat >/dev/null && return 0
  # Two concurrent installs would fight over the dpkg lock.
  (
    flock 8
    command -v kcat >/dev/null || apt_install kcat || log "warning: could not install kcat; readiness falls back to the broker log"
  ) 8>/tmp/chicago-apt.lock  # shared with scripts/etcd.sh: one apt at a time
}

# ---------------------------------------------------------------- jars (cached)
fetch() {
  ensure_java
  [ -f "$LIB/.complete" ] && return 0
  (
    flock 9
    [ -f "$LIB/.complete" ] && exit 0
    local t0=$SECONDS work="$KDIR/fetch-$KAFKA_VERSION"
    log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into ${LIB#$ROOT/} (once)"
    rm -rf "$work" "$LIB.tmp"
    mkdir -p "$work"
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>chicago.dev</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    (cd "$work" && mvn -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIB.tmp" >"$work/mvn.log" 2>&1) \
      || { tail -n 40 "$work/mvn.log" >&2; die "maven could not fetch Kafka $KAFKA_VERSION (is Maven Central reachable?)"; }
    [ -n "$(ls "$LIB.tmp"/kafka_2.13-*.jar 2>/dev/null)" ] || die "kafka_2.13 jar missing after fetch"
    cat >"$LIB.tmp/log4j2.properties" <<'EOF'
# Quiet by default: warnings plus the lines that say a server started or stopped.
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = info
logger.controller.name = kafka.server.ControllerServer
logger.controller.level = info
EOF
    touch "$LIB.tmp/.complete"
    rm -rf "$LIB"
    mv "$LIB.tmp" "$LIB"
    rm -rf "$work"
    log "fetched $(ls "$LIB"/*.jar | wc -l) jars in $((SECONDS - t0)) s"
  ) 9>"$KDIR/.fetch.lock"
}

java_main() { # MAIN_CLASS ARGS…
  fetch
  local main="$1"; shift
  # shellcheck disable=SC2086
  exec java $HEAP -Dlog4j2.configurationFile="$LIB/log4j2.properties" -cp "$LIB/*" "$main" "$@"
}

# ---------------------------------------------------------------- cluster layout
BROKERS=""
BASE=19092
FRESH=0

parse_opts() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --brokers) BROKERS="$2"; shift 2 ;;
      --port) BASE="$2"; shift 2 ;;
      --fresh) FRESH=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ "$BASE" =~ ^[0-9]+$ ]] && [ "$BASE" -ge 1024 ] && [ "$BASE" -le 65000 ] || die "--port must be 1024..65000"
  CDIR="$KDIR/cluster-$BASE"
  if [ -z "$BROKERS" ]; then
    if [ -f "$CDIR/brokers" ]; then BROKERS="$(cat "$CDIR/brokers")"; else BROKERS=1; fi
  fi
  [ "$BROKERS" = 1 ] || [ "$BROKERS" = 3 ] || die "--brokers must be 1 or 3"
}

client_port() { echo $((BASE + $1 - 1)); }
controller_port() { echo $((BASE + 100 + $1 - 1)); }
bootstrap() {
  local i out=""
  for i in $(seq 1 "$BROKERS"); do out="$out${out:+,}$HOST:$(client_port "$i")"; done
  echo "$out"
}
pid_of() { local f="$CDIR/broker-$1/pid"; [ -f "$f" ] && cat "$f"; }
alive() { local p; p="$(pid_of "$1")" && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

write_config() {
  local i="$1" dir="$CDIR/broker-$1" voters="" j rf=$BROKERS isr=1
  [ "$BROKERS" = 3 ] && isr=2
  for j in $(seq 1 "$BROKERS"); do voters="$voters${voters:+,}$j@$HOST:$(controller_port "$j")"; done
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# generated by scripts/kafka.sh
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(client_port "$i"),CONTROLLER://$HOST:$(controller_port "$i")
advertised.listeners=PLAINTEXT://$HOST:$(client_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=1
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=4
log.segment.bytes=67108864
log.retention.hours=24
EOF
}

format_storage() {
  local i="$1" dir="$CDIR/broker-$1"
  [ -f "$dir/data/meta.properties" ] && return 0
  # shellcheck disable=SC2086
  java -Xmx256m -Dlog4j2.configurationFile="$LIB/log4j2.properties" -cp "$LIB/*" kafka.tools.StorageTool \
    format --cluster-id="$(cat "$CDIR/cluster-id")" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "formatting storage of broker $i failed"; }
}

start_broker() {
  local i="$1" dir="$CDIR/broker-$1"
  alive "$i" && return 0
  local port; port="$(client_port "$i")"
  if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then die "port $port is taken by another process"; fi
  # setsid: the broker outlives the shell (and the test process) that started it.
  # shellcheck disable=SC2086
  setsid nohup java $HEAP $JVM_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LIB/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$LIB/*" kafka.Kafka "$dir/server.properties" >>"$dir/server.log" 2>&1 </dev/null 7>&- 8>&- 9>&- &
  echo $! >"$dir/pid"
  log "broker $i started (pid $!, port $port, log ${dir#$ROOT/}/server.log)"
}

# Ready = every started broker answers a metadata request listing all brokers (kcat), or, without
# kcat, says "Kafka Server started" in its log and accepts connections.
wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT_S)) i want="$BROKERS" seen
  while :; do
    for i in $(seq 1 "$BROKERS"); do
      alive "$i" || { tail -n 30 "$CDIR/broker-$i/server.log" >&2 || true; die "broker $i exited during start"; }
    done
    if command -v kcat >/dev/null; then
      seen="$(kcat -L -b "$(bootstrap)" -m 3 2>/dev/null | sed -n 's/^ \([0-9]*\) brokers:$/\1/p' | head -1 || true)"
      [ "${seen:-0}" = "$want" ] && return 0
    else
      local ok=1
      for i in $(seq 1 "$BROKERS"); do
        grep -q 'Kafka Server started' "$CDIR/broker-$i/server.log" 2>/dev/null || ok=0
        (exec 3<>"/dev/tcp/$HOST/$(client_port "$i")") 2>/dev/null || ok=0
      done
      [ "$ok" = 1 ] && return 0
    fi
    [ $SECONDS -ge $deadline ] && die "Kafka not ready after ${READY_TIMEOUT_S} s (logs in ${CDIR#$ROOT/})"
    sleep 0.3
  done
}

stop_broker() {
  local i="$1" p
  p="$(pid_of "$i" || true)"
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$p" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then log "broker $i did not stop in 30 s; SIGKILL"; kill -KILL "$p" 2>/dev/null || true; fi
      sleep 0.2
    done
    log "broker $i stopped"
  fi
  rm -f "$CDIR/broker-$i/pid"
}

cmd_up() {
  parse_opts "$@"
  local t0=$SECONDS
  fetch
  ensure_kcat
  (
    flock 7
    if [ "$FRESH" = 1 ]; then
      for i in $(seq 1 3); do stop_broker "$i"; done
      rm -rf "$CDIR"
    fi
    if [ -f "$CDIR/brokers" ] && [ "$(cat "$CDIR/brokers")" != "$BROKERS" ]; then
      die "cluster on port $BASE was made with $(cat "$CDIR/brokers") brokers; use --fresh to rebuild it with $BROKERS"
    fi
    mkdir -p "$CDIR"
    echo "$BROKERS" >"$CDIR/brokers"
    # base64url of 16 random bytes, as Kafka's own ids; never starting with '-', which its CLI
    # would take for an option (1 in 64 fresh clusters failed to format)
    if [ ! -s "$CDIR/cluster-id" ]; then
      local id="-"
      while [ "${id#-}" != "$id" ]; do id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'); done
      echo -n "$id" >"$CDIR/cluster-id"
    fi
    local i pids=()
    for i in $(seq 1 "$BROKERS"); do write_config "$i"; done
    for i in $(seq 1 "$BROKERS"); do format_storage "$i" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p"; done
    for i in $(seq 1 "$BROKERS"); do start_broker "$i"; done
    wait_ready
  ) 7>"$KDIR/.cluster-$BASE.lock"
  log "ready in $((SECONDS - t0)) s: $BROKERS broker(s) at $(bootstrap)"
  bootstrap
}

cmd_down() {
  parse_opts "$@"
  [ -d "$CDIR" ] || { log "no cluster on port $BASE"; return 0; }
  (
    flock 7
    local i pids=()
    for i in 1 2 3; do stop_broker "$i" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p"; done
  ) 7>"$KDIR/.cluster-$BASE.lock"
}

cmd_status() {
  parse_opts "$@"
  [ -d "$CDIR" ] || { echo "no cluster on port $BASE"; return 3; }
  local i up=0
  for i in $(seq 1 "$BROKERS"); do
    if alive "$i"; then echo "broker $i: up (pid $(pid_of "$i"), $HOST:$(client_port "$i"))"; up=$((up + 1))
    else echo "broker $i: down"; fi
  done
  [ "$up" = "$BROKERS" ]
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  down-all) for d in "$KDIR"/cluster-*/; do [ -d "$d" ] || continue; b="${d%/}"; (cmd_down --port "${b##*-}"); done ;;
  status) cmd_status "$@" ;;
  reset) cmd_down "$@"; rm -rf "$CDIR"; log "removed ${CDIR#$ROOT/}" ;;
  stop-broker) n="$1"; shift; parse_opts "$@"; stop_broker "$n" ;;
  start-broker) n="$1"; shift; parse_opts "$@"; fetch; start_broker "$n"; wait_ready ;;
  fetch) fetch; echo "$LIB" ;;
  perf-producer) java_main org.apache.kafka.tools.ProducerPerformance "$@" ;;
  perf-consumer) java_main org.apache.kafka.tools.ConsumerPerformance "$@" ;;
  topics) java_main org.apache.kafka.tools.TopicCommand "$@" ;;
  run) m="$1"; shift; java_main "$m" "$@" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || [ "$cmd" = help ] || exit 2 ;;
esac
