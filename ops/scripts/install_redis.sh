#!/usr/bin/env bash
# Apply trad's Redis configuration to Debian's redis-server. Idempotent: a second run with
# the same inputs changes nothing and says so; redis-server restarts only when something changed.
#
#   REDIS_APP_PASSWORD=... [LISTEN_ADDRESS=a.b.c.d TLS_SOURCE=/etc/trad/ca] install_redis.sh [PATH/TO/trad.conf]
#   printf %s PASSWORD | install_redis.sh add-user NAME    a worker host's user (password on stdin)
#   install_redis.sh del-user NAME | has-user NAME
#
# The administrator password is generated on first run and kept in /etc/redis/trad-users.conf.
#
# With LISTEN_ADDRESS (remote worker hosts), Redis listens on the network with TLS only:
# Redis 7.0 applies `bind` to every listener, so a plain-text port bound to that address would
# take plain text from the network too. The plain-text port is therefore closed (`port 0`):
# local clients use the Unix socket, which no network reaches, and `tls-port` serves loopback
# and LISTEN_ADDRESS. Each worker host has its own ACL user (hashed password, WORKER_HOST_RULES)
# in /etc/redis/trad-workers.conf, applied live and revocable alone.
set -Eeuo pipefail

REDIS_DIR=${REDIS_DIR:-/etc/redis}
MAIN_CONF="$REDIS_DIR/redis.conf"
TRAD_CONF="$REDIS_DIR/trad.conf"
USERS_CONF="$REDIS_DIR/trad-users.conf"
INCLUDE_LINE="include $TRAD_CONF"
LISTEN_CONF="$REDIS_DIR/trad-listen.conf"
WORKERS_CONF="$REDIS_DIR/trad-workers.conf"
TLS_DIR="$REDIS_DIR/tls"
SOCKET=/run/redis/redis-server.sock
TLS_PORT=6380
# The ACL rules of trad's Redis users: set here only (the tests read them from this file).
# RQ is all trad keeps in Redis, so its users reach only RQ's keys (rq:*), with the commands RQ
# uses: reads, writes, blocking pops, transactions, the Lua scripts RQ runs on its own keys,
# INFO (RQ asks the server's version) and CLIENT SETNAME/INFO. No pub/sub channel (workers take
# no commands over Redis), no FUNCTION (no code kept in Redis), nothing @dangerous (FLUSHALL,
# CONFIG, KEYS, ACL, DEBUG, ...).
RQ_RULES='resetchannels ~rq:* -@all +@read +@write +@blocking +@transaction +@connection +@scripting -@dangerous -@pubsub -function +info +client|setname +client|info'
# User `trad`: the API and the primary's own workers.
APP_RULES=$RQ_RULES
# Each worker host's user: its workers need every one of these (their maintenance pass re-sends
# dispatches as the API does), and get nothing else. Holding them lets a host read, alter or
# drop queue entries, never make a worker run code: workers refuse any entry that is not trad's.
WORKER_HOST_RULES=$RQ_RULES

LOG_TAG=install_redis
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

include_conf() {  # include_conf LINE — appended to redis.conf once (later directives win)
  if grep -qxF "$1" "$MAIN_CONF"; then
    return 0
  fi
  printf '\n# trad: project settings (ops/scripts/install_redis.sh)\n%s\n' "$1" >> "$MAIN_CONF"
  log "added '$1' to $MAIN_CONF"
  changed=1
}

write_listen_conf() {  # TLS on the network, plain text only on the Unix socket
  [[ "$LISTEN_ADDRESS" =~ ^[0-9.]+$ ]] || die "LISTEN_ADDRESS must be an IPv4 address"
  install -d -m 0750 -o root -g redis "$TLS_DIR"
  local name tmp
  for name in server.crt server.key ca.crt; do
    [ -s "$TLS_SOURCE/$name" ] || die "TLS_SOURCE=$TLS_SOURCE lacks $name"
    install_file "$TLS_SOURCE/$name" "$TLS_DIR/$name" 640 root:redis
  done
  if [ ! -f "$WORKERS_CONF" ]; then
    tmp=$(mktemp)
    echo "# Worker hosts' users, one line each (remote_access.sh add|remove; passwords hashed)." > "$tmp"
    install_file "$tmp" "$WORKERS_CONF" 640 root:redis
    rm -f "$tmp"
  fi
  tmp=$(mktemp)
  cat > "$tmp" <<CONF
# Written by install_redis.sh: worker hosts reach Redis over TLS only. No plain-text TCP port
# (bind applies to every listener); local clients use the Unix socket.
bind 127.0.0.1 -::1 -$LISTEN_ADDRESS
port 0
unixsocket $SOCKET
unixsocketperm 666
tls-port $TLS_PORT
tls-cert-file $TLS_DIR/server.crt
tls-key-file $TLS_DIR/server.key
tls-ca-cert-file $TLS_DIR/ca.crt
# Clients authenticate with their ACL user's password; no client certificates.
tls-auth-clients no
tls-protocols "TLSv1.2 TLSv1.3"
include $WORKERS_CONF
CONF
  install_file "$tmp" "$LISTEN_CONF" 640 root:redis
  rm -f "$tmp"
  include_conf "include $LISTEN_CONF"
}

admin_cli() {  # commands on stdin, run as the administrator (password in the environment)
  local where=()
  [ -f "$LISTEN_CONF" ] && where=(-s "$SOCKET")
  REDISCLI_AUTH=$(admin_password) redis-cli "${where[@]}" --user default
}

restart_if_changed() {
  if [ "$changed" -eq 0 ]; then
    log "unchanged: Redis already configured"
    return 0
  fi
  log "restarting redis-server"
  systemctl restart redis-server
  local where=()
  [ -f "$LISTEN_CONF" ] && where=(-s "$SOCKET")

  for _ in $(seq 1 50); do
    # The password goes to redis-cli in its environment, never in its arguments (visible in ps).
    if REDISCLI_AUTH=$REDIS_APP_PASSWORD redis-cli "${where[@]}" --user trad ping 2>/dev/null | grep -q PONG; then
      log "redis-server answers as user trad"
      return 0
    fi
    sleep 0.2
  done
  die "redis-server did not come back; see: journalctl -u redis-server"
}

refresh_worker_users() {  # users added by an earlier release get today's WORKER_HOST_RULES
  [ -f "$WORKERS_CONF" ] || return 0
  local tmp
  tmp=$(mktemp)
  awk -v rules="$WORKER_HOST_RULES" '$1 == "user" && $3 == "on" { print $1, $2, $3, $4, rules; next } { print }' \
    "$WORKERS_CONF" > "$tmp"
  install_file "$tmp" "$WORKERS_CONF" 640 root:redis
  rm -f "$tmp"
}

user_name() {
  [[ "$1" =~ ^[a-z0-9_]{1,60}$ ]] || die "user name '$1': lower-case letters, digits and _ only"
  if [ "$1" = trad ] || [ "$1" = default ]; then die "user $1 is not a worker host's"; fi
}

add_user() {  # add_user NAME, password on stdin: kept as its SHA-256 only, applied live
  user_name "$1"
  [ -f "$WORKERS_CONF" ] || die "remote listening is not configured (no $WORKERS_CONF)"
  local hash tmp
  hash=$(sha256sum | cut -d' ' -f1)
  tmp=$(mktemp)
  grep -v "^user $1 " "$WORKERS_CONF" > "$tmp" || true
  echo "user $1 on #$hash $WORKER_HOST_RULES" >> "$tmp"
  install_file "$tmp" "$WORKERS_CONF" 640 root:redis
  rm -f "$tmp"
  # The command goes to redis-cli on stdin, never in its arguments.
  printf 'ACL SETUSER %s reset on #%s %s\n' "$1" "$hash" "$WORKER_HOST_RULES" | admin_cli | grep -qx OK \
    || die "Redis refused the user $1"
  log "user $1: set"
}

del_user() {  # del_user NAME: gone from the file and from the running server (its clients closed)
  user_name "$1"
  local tmp
  if [ -f "$WORKERS_CONF" ] && grep -q "^user $1 " "$WORKERS_CONF"; then
    tmp=$(mktemp)
    grep -v "^user $1 " "$WORKERS_CONF" > "$tmp" || true
    install_file "$tmp" "$WORKERS_CONF" 640 root:redis
    rm -f "$tmp"
  fi
  printf 'ACL DELUSER %s\n' "$1" | admin_cli >/dev/null
  log "user $1: deleted"
}

has_user() {
  user_name "$1"
  [ -f "$WORKERS_CONF" ] && grep -q "^user $1 " "$WORKERS_CONF" \
    && printf 'ACL GETUSER %s\n' "$1" | admin_cli | grep -q .
}

configure() {
  local source_conf=${1:-"$(dirname "$0")/../redis/trad.conf"}
  [ -f "$MAIN_CONF" ] || die "$MAIN_CONF not found: install redis-server first"
  [ -f "$source_conf" ] || die "$source_conf not found"
  [ -n "${REDIS_APP_PASSWORD:-}" ] || die "REDIS_APP_PASSWORD is not set"
  install_file "$source_conf" "$TRAD_CONF" 640 root:redis
  write_users
  include_conf "$INCLUDE_LINE"
  [ -z "${LISTEN_ADDRESS:-}" ] || write_listen_conf
  refresh_worker_users
  restart_if_changed
}

main() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  case "${1:-}" in
    add-user) add_user "$2" ;;
    del-user) del_user "$2" ;;
    has-user) has_user "$2" ;;
    *) configure "$@" ;;
  esac
}

main "$@"
