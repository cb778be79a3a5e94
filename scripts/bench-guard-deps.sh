#!/usr/bin/env bash
# Installs the anchors of `npm run bench:guard` from Debian: fail2ban, crowdsec and
# crowdsec-firewall-bouncer (nftables). Idempotent. Services are not started (the bench runs its own
# instances with configs in a temp dir). Debian's crowdsec registers with CrowdSec's central API when
# installed unless its credentials file already has content; on a machine without internet access
# that registration fails and leaves the package half-configured, so a placeholder is written first.
set -euo pipefail

declare -A NEED=(
  [fail2ban]=/usr/bin/fail2ban-server
  [crowdsec]=/usr/bin/crowdsec
  [crowdsec-firewall-bouncer]=/usr/bin/crowdsec-firewall-bouncer
  [nftables]=/usr/sbin/nft
  [curl]=/usr/bin/curl
)
log() { printf '[bench-guard-deps] %s\n' "$*" >&2; }

missing=()
for pkg in "${!NEED[@]}"; do [ -e "${NEED[$pkg]}" ] || missing+=("$pkg"); done
[ "${#missing[@]}" -eq 0 ] && exit 0
(
  flock 8  # one apt at a time, shared with scripts/test-deps.sh
  capi=/etc/crowdsec/online_api_credentials.yaml
  if [ ! -s "$capi" ]; then
    mkdir -p /etc/crowdsec
    echo '# no CrowdSec central API: offline machine' > "$capi"
  fi
  log "apt-get install ${missing[*]}"
  env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
  env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
) 8>/tmp/chicago-apt.lock
