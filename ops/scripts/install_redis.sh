#!/usr/bin/env bash
# Apply trad's Redis configuration to Debian's redis-server. Idempotent: a second run with
# the same inputs changes nothing and says so; redis-server restarts only when something changed.
#
#   REDIS_APP_PASSWORD=... install_redis.sh [PATH/TO/trad.conf]
#
# The administrator password is generated on first run and kept in /etc/redis/trad-users.conf.
set -Eeuo pipefail

REDIS_DIR=${REDIS_DIR:-/etc/redis}
MAIN_CONF="$REDIS_DIR/redis.conf"
TRAD_CONF="$REDIS_DIR/trad.conf"
USERS_CONF="$REDIS_DIR/trad-users.conf"
INCLUDE_LINE="include $TRAD_CONF"
APP_RULES='~* &* +@all -@dangerous +info +client|setname +client|info'

log() { printf 'install_redis: %s\n' "$*"; }
die() { printf 'install_redis: error: %s\n' "$*" >&2; exit 1; }

changed=0

install_file() {  # install_file SRC DEST MODE OWNER:GROUP
  local src=$1 dest=$2 mode=$3 owner=$4
  if [ -f "$dest" ] && cmp -s "$src" "$dest" \
     && [ "$(stat -c '%a %U:%G' "$dest")" = "$mode $owner" ]; then
    return 0
  fi
  install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dest"
  log "wrote $dest"
  changed=1
}

admin_password() {
  if [ -f "$USERS_CONF" ]; then
    sed -n 's/^user default on >\([^ ]*\) .*/\1/p' "$USERS_CONF" | head -n 1
  fi
}

write_users() {
  local admin tmp
  admin=$(admin_password)
  [ -n "$admin" ] || admin=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)
  tmp=$(mktemp)
  {
    echo "# Written by install_redis.sh; keep it private (0640 root:redis)."
    echo "user default on >$admin ~* &* +@all"
    echo "user trad on >$REDIS_APP_PASSWORD $APP_RULES"
  } > "$tmp"
  install_file "$tmp" "$USERS_CONF" 640 root:redis
  rm -f "$tmp"
}

include_trad_conf() {
  if grep -qxF "$INCLUDE_LINE" "$MAIN_CONF"; then
    return 0
  fi
  printf '\n# trad: project settings (ops/redis/trad.conf)\n%s\n' "$INCLUDE_LINE" >> "$MAIN_CONF"
  log "added '$INCLUDE_LINE' to $MAIN_CONF"
  changed=1
}

restart_if_changed() {
  if [ "$changed" -eq 0 ]; then
    log "unchanged: Redis already configured"
    return 0
  fi
  log "restarting redis-server"
  systemctl restart redis-server

  for _ in $(seq 1 50); do
    # The password goes to redis-cli in its environment, never in its arguments (visible in ps).
    if REDISCLI_AUTH=$REDIS_APP_PASSWORD redis-cli --user trad ping 2>/dev/null | grep -q PONG; then
      log "redis-server answers as user trad"
      return 0
    fi
    sleep 0.2
  done
  die "redis-server did not come back; see: journalctl -u redis-server"
}

main() {
  local source_conf=${1:-"$(dirname "$0")/../redis/trad.conf"}
  [ "$(id -u)" -eq 0 ] || die "run as root"
  [ -f "$MAIN_CONF" ] || die "$MAIN_CONF not found: install redis-server first"
  [ -f "$source_conf" ] || die "$source_conf not found"
  [ -n "${REDIS_APP_PASSWORD:-}" ] || die "REDIS_APP_PASSWORD is not set"
  install_file "$source_conf" "$TRAD_CONF" 640 root:redis
  write_users
  include_trad_conf
  restart_if_changed
}

main "$@"
