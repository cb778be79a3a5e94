#!/usr/bin/env bash
# A single etcd on loopback for the cluster tests.
#
#   scripts/etcd.sh up [--port 2379] [--fresh]   start (idempotent), wait for /health; prints the endpoint
#   scripts/etcd.sh down [--port 2379]           stop (SIGTERM, SIGKILL after 15 s)
#   scripts/etcd.sh status [--port 2379]
#
# Installs Debian's etcd-server (binary `etcd`) when missing. Data and log in .etcd/PORT/.
# The peer port is PORT+1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EDIR="$ROOT/.etcd"
HOST=127.0.0.1
PORT=2379
FRESH=0
READY_TIMEOUT_S="${ETCD_READY_TIMEOUT_S:-30}"

log() { printf '[etcd.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    *) die "unknown option $1" ;;
  esac
done
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number"
DIR="$EDIR/$PORT"
PIDF="$DIR/pid"
mkdir -p "$EDIR"

find_etcd() {
  command -v etcd 2>/dev/null && return 0
  [ -x /usr/bin/etcd ] && { echo /usr/bin/etcd; return 0; }
  return 1
}

ensure_etcd() {
  find_etcd >/dev/null && return 0
  (
    flock 8
    find_etcd >/dev/null && exit 0
    log "installing etcd-server (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
    # The package may try to start a system service; there is no init here, and we run our own.
    as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq etcd-server >/dev/null
  ) 8>/tmp/chicago-apt.lock  # shared with scripts/kafka.sh: one apt at a time
  find_etcd >/dev/null || die "etcd not found after installing etcd-server"
}

healthy() { curl -fsS -m 2 "http://$HOST:$PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
alive() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

up() {
  ensure_etcd
  local t0=$SECONDS
  if [ "$FRESH" = 1 ]; then down; rm -rf "$DIR"; fi
  if alive && healthy; then log "already up"; echo "http://$HOST:$PORT"; return 0; fi
  if healthy; then log "an etcd not started by this script already serves port $PORT; using it"; echo "http://$HOST:$PORT"; return 0; fi
  mkdir -p "$DIR"
  local peer=$((PORT + 1))
  # The Debian etcd 3.4 package needs ETCD_UNSUPPORTED_ARCH only on non-amd64; harmless otherwise.
  setsid nohup "$(find_etcd)" --name "chicago-$PORT" --data-dir "$DIR/data" \
    --listen-client-urls "http://$HOST:$PORT" --advertise-client-urls "http://$HOST:$PORT" \
    --listen-peer-urls "http://$HOST:$peer" --initial-advertise-peer-urls "http://$HOST:$peer" \
    --initial-cluster "chicago-$PORT=http://$HOST:$peer" --initial-cluster-state new \
    --logger zap --log-outputs stderr \
    >>"$DIR/etcd.log" 2>&1 </dev/null &
  echo $! >"$PIDF"
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until healthy; do
    alive || { tail -n 20 "$DIR/etcd.log" >&2; die "etcd exited during start"; }
    [ $SECONDS -ge $deadline ] && die "etcd not healthy after ${READY_TIMEOUT_S} s (log ${DIR#$ROOT/}/etcd.log)"
    sleep 0.2
  done
  log "ready in $((SECONDS - t0)) s (pid $(cat "$PIDF"), log ${DIR#$ROOT/}/etcd.log)"
  echo "http://$HOST:$PORT"
}

down() {
  alive || { rm -f "$PIDF"; return 0; }
  local p; p="$(cat "$PIDF")"
  kill -TERM "$p" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while kill -0 "$p" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && kill -KILL "$p" 2>/dev/null || true
    sleep 0.2
  done
  rm -f "$PIDF"
  log "stopped"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) if alive && healthy; then echo "etcd up (pid $(cat "$PIDF"), http://$HOST:$PORT)"; else echo "etcd down"; exit 3; fi ;;
  *) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || [ "$cmd" = help ] || exit 2 ;;
esac
