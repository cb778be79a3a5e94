#!/usr/bin/env bash
# Installs what `npm test` needs from Debian and Maven Central, before the tests run, so that no
# test waits on apt or Maven (an install inside a test holds its worker for minutes).
# Idempotent: only missing packages are installed. The tests' own helpers still install anything
# missing when run without this script.
#
#   scripts/test-deps.sh            Debian packages + the Kafka jars
set -euo pipefail
cd "$(dirname "$0")/.."

# package → a file it installs (checked instead of dpkg's database, which may be absent in images)
declare -A NEED=(
  [etcd-server]=/usr/bin/etcd
  [iptables]=/usr/sbin/iptables
  [kcat]=/usr/bin/kcat
  [openssl]=/usr/bin/openssl
  [chromium]=/usr/bin/chromium
  [logrotate]=/usr/sbin/logrotate
  [elfutils]=/usr/bin/eu-stack
  [openjdk-17-jdk-headless]=/usr/bin/jcmd
  [nginx]=/usr/sbin/nginx
  [modsecurity-crs]=/usr/share/modsecurity-crs/rules/REQUEST-901-INITIALIZATION.conf
  [libnginx-mod-http-modsecurity]=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
  [libmodsecurity3]=/usr/lib/x86_64-linux-gnu/libmodsecurity.so.3
  [systemd]=/lib/systemd/systemd-journald
  [openssh-server]=/usr/sbin/sshd
  [sshpass]=/usr/bin/sshpass
  [libnginx-mod-http-lua]=/usr/lib/nginx/modules/ngx_http_lua_module.so
  [nftables]=/usr/sbin/nft
  [iproute2]=/usr/sbin/ip
  [wrk]=/usr/bin/wrk
)

log() { printf '[test-deps] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

missing=()
for pkg in "${!NEED[@]}"; do [ -e "${NEED[$pkg]}" ] || missing+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ]; then
  (
    flock 8  # one apt at a time, shared with scripts/etcd.sh and scripts/kafka.sh
    log "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
  ) 8>/tmp/chicago-apt.lock
fi
log "Kafka jars: $(scripts/kafka.sh fetch)"
