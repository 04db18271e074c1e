#!/usr/bin/env bash
# Runs on the server as root (deploy_to_server.sh calls it): installs or upgrades trad from an
# unpacked release, a wheelhouse and the release's own wheels (trad itself, the strategy packages
# and their dependencies). Every step checks before it acts and says what it did;
# a second run with the same release changes and restarts nothing. A failed health check
# switches back to the previous release.
#
#   --role primary (default): API, PostgreSQL, Redis, nginx and workers; with --listen-address
#     (kept in /etc/trad/listen_address once given) worker hosts may join over TLS
#     (remote_access.sh).
#   --role worker [--access FILE]: only the release, its virtualenv and trad-worker@N; FILE
#     (database_url=…, redis_url=…, then the primary's CA certificate) is this host's access to
#     the primary, issued there by remote_access.sh add.
set -Eeuo pipefail

APP_USER=trad
BASE=/srv/trad
RELEASES=$BASE/releases
CURRENT=$BASE/current
ENV_DIR=/etc/trad
ENV_FILE=$ENV_DIR/trad.env
CRED_DIR=$ENV_DIR/credentials
SECRETS=(database_url redis_url api_token)
TLS_DIR=$ENV_DIR/tls
NGINX_SITE=/etc/nginx/sites-available/trad
TRAD_BIN=/usr/local/bin/trad
UNIT_DIR=/etc/systemd/system
KEEP_RELEASES=5
# A start may take this long while its units are alive (the units' TimeoutStartSec); a unit
# that fails ends the wait at once.
START_BUDGET_S=180
PACKAGES=(python3 python3-venv postgresql redis-server curl nginx openssl jq)
WORKER_PACKAGES=(python3 python3-venv)
LISTEN_FILE=$ENV_DIR/listen_address
REDIS_SOCKET=/run/redis/redis-server.sock
WORKER_CA=$ENV_DIR/ca.crt

VERSION="" WORKERS="" SOURCE="" WHEELHOUSE_TAR="" RELEASE_WHEELS_TAR="" ROLE=primary LISTEN="" ACCESS=""
WORKER_UNITS=()
RESTARTED=() BEFORE=()  # the units restarted last, and their invocation ids before it
FAILED_UNIT=""
UNITS_CHANGED=0  # a unit file changed: the units restart even on an unchanged release
SOCKET_CHANGED=0  # trad-api.socket's unit or port changed: it must listen anew
SOCKET_DROPIN=$UNIT_DIR/trad-api.socket.d/port.conf

LOG_TAG=server
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --version) VERSION=$2; shift 2 ;;
      --workers) WORKERS=$2; shift 2 ;;
      --source) SOURCE=$2; shift 2 ;;
      --wheelhouse) WHEELHOUSE_TAR=$2; shift 2 ;;
      --release-wheels) RELEASE_WHEELS_TAR=$2; shift 2 ;;
      --role) ROLE=$2; shift 2 ;;
      --listen-address) LISTEN=$2; shift 2 ;;
      --access) ACCESS=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ "$ROLE" =~ ^(primary|worker)$ ]] || die "--role must be primary or worker"
  if [ -n "$ACCESS" ] && [ ! -f "$ACCESS" ]; then die "--access $ACCESS not found"; fi
  if [ -n "$LISTEN" ] && ! [[ "$LISTEN" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
    die "--listen-address must be an IPv4 address"
  fi
  [[ "$VERSION" =~ ^[A-Za-z0-9._-]+$ ]] || die "--version must be letters, digits, . _ or -"
  [ -d "$SOURCE" ] || die "--source $SOURCE is not a directory"
  [ -f "$WHEELHOUSE_TAR" ] || die "--wheelhouse $WHEELHOUSE_TAR not found"
  [ -f "$RELEASE_WHEELS_TAR" ] || die "--release-wheels $RELEASE_WHEELS_TAR not found"
  if [ -n "$WORKERS" ] && ! [[ "$WORKERS" =~ ^[0-9]+$ ]]; then die "--workers must be a number"; fi
}

enabled_workers() {  # the trad-worker@N instances enabled on this server, one per line
  [ -d "$UNIT_DIR/trad.target.wants" ] || return 0  # none yet: a first install
  find "$UNIT_DIR/trad.target.wants" -maxdepth 1 -name 'trad-worker@*.service' -printf '%f\n' 2>/dev/null | sort -V
}

choose_workers() {
  # --workers N: exactly trad-worker@1..N. Without it the enabled set is server state and is
  # kept as it is (systemctl enable/disable --now trad-worker@N scales), 2 on a first install.
  local n
  if [ -n "$WORKERS" ]; then
    for n in $(seq 1 "$WORKERS"); do WORKER_UNITS+=("trad-worker@$n.service"); done
    return 0
  fi
  mapfile -t WORKER_UNITS < <(enabled_workers)
  if [ "${#WORKER_UNITS[@]}" -eq 0 ]; then
    WORKER_UNITS=(trad-worker@1.service trad-worker@2.service)
  fi
}

ensure_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "packages: unchanged (${PACKAGES[*]} present)"
    return 0
  fi
  log "packages: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "apt-get update failed; the server needs Debian package mirrors for ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_user() {
  if id -u "$APP_USER" >/dev/null 2>&1; then
    log "user $APP_USER: unchanged"
  else
    useradd --system --home-dir "$BASE" --no-create-home --shell /usr/sbin/nologin "$APP_USER"
    log "user $APP_USER: created"
  fi
  install -d -m 0755 -o root -g root "$BASE" "$RELEASES"
}

postgres_port() {
  local port
  port=$(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $3; exit}')
  [ -n "$port" ] || port=$(pg_lsclusters --no-header 2>/dev/null | awk '{print $3; exit}')
  echo "${port:-5432}"
}

ensure_env_file() {
  install -d -m 0750 -o root -g "$APP_USER" "$ENV_DIR"
  if [ -f "$ENV_FILE" ]; then
    log "env file $ENV_FILE: unchanged (never overwritten)"
  else
    local tmp
    tmp=$(mktemp)
    cat > "$tmp" <<ENV
# trad settings without secrets (generated on first install; edit and restart trad.target to
# change). Secrets are systemd credentials, one file each in $CRED_DIR.
API_HOST=127.0.0.1
API_PORT=8000
LOG_LEVEL=INFO
ENV
    install -m 0640 -o root -g "$APP_USER" "$tmp" "$ENV_FILE"
    rm -f "$tmp"
    log "env file $ENV_FILE: created (0640 root:$APP_USER)"
  fi
  chmod 0640 "$ENV_FILE"
  chown root:"$APP_USER" "$ENV_FILE"
  if [ "$(env_value API_HOST)" != 127.0.0.1 ]; then
    sed -i '/^API_HOST=/d' "$ENV_FILE"
    echo "API_HOST=127.0.0.1" >> "$ENV_FILE"
    log "env file: API_HOST=127.0.0.1 (the API listens on loopback behind nginx)"
  fi
}

write_secret() {  # write_secret NAME VALUE — a root-only credential file (systemd LoadCredential=)
  local tmp
  tmp=$(mktemp)
  printf '%s' "$2" > "$tmp"
  install -m 0600 -o root -g root "$tmp" "$CRED_DIR/$1"
  rm -f "$tmp"
}

ensure_credentials() {
  install -d -m 0700 -o root -g root "$CRED_DIR"
  local name upper value moved=0 created=0
  # Secrets of an older install live in the env file: move them out, once.
  for name in "${SECRETS[@]}"; do
    upper=${name^^}
    value=$(env_value "$upper")
    if [ -n "$value" ]; then
      [ -s "$CRED_DIR/$name" ] || write_secret "$name" "$value"
      sed -i "/^$upper=/d" "$ENV_FILE"
      moved=1
    fi
  done
  if grep -q '^REDIS_APP_PASSWORD=' "$ENV_FILE"; then
    sed -i '/^REDIS_APP_PASSWORD=/d' "$ENV_FILE"
    moved=1
  fi
  [ "$moved" -eq 0 ] || log "credentials: moved secrets from $ENV_FILE to $CRED_DIR"
  if [ ! -s "$CRED_DIR/database_url" ]; then
    write_secret database_url "postgresql+psycopg://trad:$(random_secret)@127.0.0.1:$(postgres_port)/trad"
    created=1
  fi
  if [ ! -s "$CRED_DIR/redis_url" ]; then
    write_secret redis_url "redis://trad:$(random_secret)@127.0.0.1:6379/0"
    created=1
  fi
  if [ -n "$LISTEN" ] && ! grep -q '^unix://' "$CRED_DIR/redis_url"; then
    # Listening for worker hosts closes Redis's plain-text TCP port: local units use the socket.
    write_secret redis_url "unix://trad:$(redis_password)@$REDIS_SOCKET?db=0"
    log "credentials: redis_url now uses the Unix socket $REDIS_SOCKET (no plain-text TCP port)"
  fi
  if [ ! -s "$CRED_DIR/api_token" ]; then
    write_secret api_token "$(random_secret)"
    created=1
  fi
  if [ "$created" -eq 1 ]; then
    log "credentials $CRED_DIR: created with new secrets (0600 root)"
  else
    log "credentials $CRED_DIR: unchanged"
  fi
}

secret() { cat "$CRED_DIR/$1"; }

redis_password() { sed -n 's|^[a-z]*://trad:\([^@]*\)@.*|\1|p' "$CRED_DIR/redis_url"; }

env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }
api_port() { local port; port=$(env_value API_PORT); echo "${port:-8000}"; }

ensure_postgres() {
  systemctl enable --now postgresql >/dev/null 2>&1 || die "PostgreSQL does not start; see: journalctl -u postgresql"
  local url pw port
  url=$(secret database_url)
  pw=$(sed -n 's|^[^:]*://trad:\([^@]*\)@.*|\1|p' <<<"$url")
  port=$(sed -n 's|.*@[^:/]*:\([0-9]*\)/.*|\1|p' <<<"$url")
  if [ -z "$pw" ] || [ -z "$port" ]; then
    die "$CRED_DIR/database_url must look like postgresql+psycopg://trad:PASSWORD@127.0.0.1:PORT/trad"
  fi
  if PGPASSWORD=$pw psql -h 127.0.0.1 -p "$port" -U trad -d trad -tAc 'SELECT 1' >/dev/null 2>&1; then
    log "postgresql role and database trad: unchanged"
    return 0
  fi
  local psql_admin=(runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -tA)
  # The password goes to psql on stdin, never in its arguments (visible in ps).
  if [ "$("${psql_admin[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'trad'")" = 1 ]; then
    "${psql_admin[@]}" >/dev/null <<<"ALTER ROLE trad WITH LOGIN PASSWORD '$pw'"
    log "postgresql role trad: password set from $CRED_DIR/database_url"
  else
    "${psql_admin[@]}" >/dev/null <<<"CREATE ROLE trad WITH LOGIN PASSWORD '$pw'"
    log "postgresql role trad: created"
  fi
  if [ "$("${psql_admin[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'trad'")" != 1 ]; then
    "${psql_admin[@]}" -c "CREATE DATABASE trad OWNER trad" >/dev/null
    log "postgresql database trad: created"
  fi
}

ensure_redis() {
  systemctl enable --now redis-server >/dev/null 2>&1 || die "redis-server does not start; see: journalctl -u redis-server"
  local pw
  pw=$(redis_password)
  [ -n "$pw" ] || die "$CRED_DIR/redis_url must look like redis://trad:PASSWORD@127.0.0.1:6379/0"
  REDIS_APP_PASSWORD=$pw LISTEN_ADDRESS=$LISTEN TLS_SOURCE=$ENV_DIR/ca \
    bash "$SOURCE/ops/scripts/install_redis.sh" "$SOURCE/ops/redis/trad.conf"
}

ensure_remote_access() {  # worker hosts may join: CA, server certificate, PostgreSQL over TLS
  [ -n "$LISTEN" ] || return 0
  bash "$SOURCE/ops/scripts/remote_access.sh" setup "$LISTEN"
}

ensure_worker_access() {  # a worker host's credentials and the primary's CA, from --access
  install -d -m 0700 -o root -g root "$CRED_DIR"
  if [ -z "$ACCESS" ]; then
    if [ ! -s "$CRED_DIR/database_url" ] || [ ! -s "$CRED_DIR/redis_url" ] || [ ! -s "$WORKER_CA" ]; then
      die "no credentials for this worker host; deploy with ROLE=worker PRIMARY=… to issue them"
    fi
    log "credentials $CRED_DIR: unchanged"
    return 0
  fi
  local db redis tmp
  db=$(sed -n 's/^database_url=//p' "$ACCESS")
  redis=$(sed -n 's/^redis_url=//p' "$ACCESS")
  [[ "$db" == postgresql* && "$redis" == rediss://* ]] || die "$ACCESS holds no database_url and redis_url"
  write_secret database_url "$db"
  write_secret redis_url "$redis"
  tmp=$(mktemp)
  sed -n '/^-----BEGIN CERTIFICATE-----$/,/^-----END CERTIFICATE-----$/p' "$ACCESS" > "$tmp"
  openssl x509 -in "$tmp" -noout 2>/dev/null || die "$ACCESS holds no CA certificate"
  install -m 0644 -o root -g root "$tmp" "$WORKER_CA"
  rm -f "$tmp"
  log "credentials $CRED_DIR: this host's access to the primary (0600 root); CA $WORKER_CA"
}

install_strategies() {  # install_strategies DIR — the release's strategy packages into DIR/venv
  local dir=$1 wheels=$1.wheels wheel wanted=()
  for wheel in "$wheels"/release/strategies/*.whl; do [ ! -e "$wheel" ] || wanted+=("$wheel"); done
  [ ! -f "$wheels/release/strategy-requirements.txt" ] || wanted+=(-r "$wheels/release/strategy-requirements.txt")
  if [ "${#wanted[@]}" -eq 0 ]; then
    log "release $VERSION: no strategy packages beyond the built-in ones"
    return 0
  fi
  # trad's pinned dependencies stay as they are (-c); the packages' own come with the release.
  "$dir/venv/bin/pip" install --quiet --no-index --find-links "$wheels" --find-links "$wheels/release/deps" \
    -c "$dir/requirements.txt" "${wanted[@]}" \
    || die "installing the strategy packages into the release's virtualenv failed; the live release is unchanged"
  log "release $VERSION: strategy packages installed: $(awk '{ sub(/^[^ ]+  /, ""); printf "%s%s", (NR > 1 ? ", " : ""), $0 }' "$dir/STRATEGIES")"
}

ensure_release() {
  local dir=$RELEASES/$VERSION
  if [ -f "$dir/.complete" ]; then
    log "release $VERSION: unchanged (already installed)"
    return 0
  fi
  log "release $VERSION: installing into $dir"
  rm -rf "$dir" "$dir.wheels"
  mkdir -p "$dir" "$dir.wheels/release"
  cp -a "$SOURCE/." "$dir/"
  tar -xf "$WHEELHOUSE_TAR" -C "$dir.wheels"
  tar -xf "$RELEASE_WHEELS_TAR" -C "$dir.wheels/release"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --no-index --find-links "$dir.wheels" -r "$dir/requirements.txt" \
    || die "installing Python dependencies from the wheelhouse failed; was the wheelhouse built for this Python ($(python3 -V))?"
  # trad itself, as a distribution: its entry points (the built-in strategies) are found like any package's.
  "$dir/venv/bin/pip" install --quiet --no-index --no-deps "$dir.wheels"/release/trad/trad-*.whl \
    || die "installing trad's own wheel failed"
  install_strategies "$dir"
  rm -rf "$dir.wheels"
  chown -R root:root "$dir"
  touch "$dir/.complete"
  log "release $VERSION: installed"
}

ensure_trad_command() {
  if cmp -s "$SOURCE/ops/scripts/trad" "$TRAD_BIN"; then
    log "command $TRAD_BIN: unchanged"
  else
    install -m 0755 -o root -g root "$SOURCE/ops/scripts/trad" "$TRAD_BIN"
    log "command $TRAD_BIN: installed"
  fi
}

migrate() {
  TRAD_HOME="$RELEASES/$VERSION" "$TRAD_BIN" db upgrade \
    || die "database migration failed; the live release is unchanged. See the error above."
  log "database schema: at the latest revision"
}

socket_port_dropin() {  # trad-api.socket listens on API_PORT when it is not the unit's 8000
  local port tmp
  port=$(api_port)
  if [ "$port" = 8000 ]; then
    [ -e "$SOCKET_DROPIN" ] || return 0
    rm -f "$SOCKET_DROPIN"
  else
    tmp=$(mktemp)
    printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$port" > "$tmp"
    if cmp -s "$tmp" "$SOCKET_DROPIN"; then rm -f "$tmp"; return 0; fi
    install -d -m 0755 "${SOCKET_DROPIN%/*}"
    install -m 0644 "$tmp" "$SOCKET_DROPIN"
    rm -f "$tmp"
  fi
  log "trad-api.socket: listens on 127.0.0.1:$port"
  return 1
}

ensure_units() {
  local changed=0 unit units=("$SOURCE"/ops/systemd/*)
  local wanted=(trad.target trad-api.socket trad-api.service "${WORKER_UNITS[@]}")
  if [ "$ROLE" = worker ]; then
    units=("$SOURCE/ops/systemd/trad.target" "$SOURCE/ops/systemd/trad-worker@.service")
    wanted=(trad.target "${WORKER_UNITS[@]}")
  fi
  for unit in "${units[@]}"; do
    if ! cmp -s "$unit" "$UNIT_DIR/$(basename "$unit")"; then
      install -m 0644 "$unit" "$UNIT_DIR/$(basename "$unit")"
      log "unit $(basename "$unit"): installed"
      changed=1
      [ "$(basename "$unit")" != trad-api.socket ] || SOCKET_CHANGED=1
    fi
  done
  if [ "$ROLE" = primary ] && ! socket_port_dropin; then
    changed=1
    SOCKET_CHANGED=1
  fi
  UNITS_CHANGED=$changed
  if [ "$changed" -eq 1 ]; then
    systemctl daemon-reload
  else
    log "systemd units: unchanged"
  fi
  local n to_enable=()
  for unit in "${wanted[@]}"; do
    systemctl is-enabled --quiet "$unit" 2>/dev/null || to_enable+=("$unit")
  done
  if [ "${#to_enable[@]}" -gt 0 ]; then
    systemctl enable --quiet "${to_enable[@]}"
    log "enabled: ${to_enable[*]}"
  else
    log "enabled units: unchanged (${wanted[0]}, ${#WORKER_UNITS[@]} workers)"
  fi
  [ -n "$WORKERS" ] || return 0
  local extra
  for extra in $( (systemctl list-units --all --plain --no-legend 'trad-worker@*.service' | awk '{print $1}'; enabled_workers) | sort -u); do
    n=${extra#trad-worker@}; n=${n%.service}
    if [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt "$WORKERS" ]; then
      systemctl disable --now --quiet "$extra"
      log "scaled down: stopped and disabled $extra"
    fi
  done
}

switch_current() {  # switch_current VERSION — it goes live; `ls -t releases` is deploy order
  ln -sfn "releases/$1" "$CURRENT.new"
  mv -T "$CURRENT.new" "$CURRENT"
  touch "$RELEASES/$1"
}

mark_broken() {  # mark_broken VERSION WHY — renamed VERSION.broken, WHY in its file BROKEN
  local dir=$RELEASES/$1 deployed
  deployed=$(stat -c %Y "$dir")
  rm -rf "$dir.broken"
  mv -T "$dir" "$dir.broken"
  printf '%s\n' "$2" > "$dir.broken/BROKEN"
  touch -d "@$deployed" "$dir.broken"  # keeps its place in deploy order, below the rollback
  log "release $1: renamed $1.broken (a deploy of the same code installs it afresh)"
}

unit_states() {  # unit_states UNIT... — "InvocationID ActiveState SubState Result", a line per unit
  systemctl show -p InvocationID -p ActiveState -p SubState -p Result "$@" | awk -F= '
    /^$/ { print id, a, s, r; id = a = s = r = "-"; n++; next }
    $1 == "InvocationID" { id = ($2 == "" ? "-" : $2) } $1 == "ActiveState" { a = $2 }
    $1 == "SubState" { s = $2 } $1 == "Result" { r = $2 }
    END { print id, a, s, r }' id=- a=- s=- r=-
}

serves_socket() {  # serves_socket RELEASE — its API takes trad-api.socket from systemd
  [ -f "$RELEASES/$1/ops/systemd/trad-api.socket" ]
}

ensure_socket() {  # ensure_socket RELEASE — trad-api.socket listening iff RELEASE's API takes it
  if [ "$ROLE" != primary ]; then return 0; fi
  if ! serves_socket "$1"; then
    if systemctl is-active --quiet trad-api.socket || systemctl is-enabled --quiet trad-api.socket 2>/dev/null; then
      systemctl disable --now --quiet trad-api.socket
      log "trad-api.socket: stopped and disabled ($1 binds its port itself)"
    fi
    return 0
  fi
  if systemctl is-active --quiet trad-api.socket && [ "$SOCKET_CHANGED" -eq 0 ]; then return 0; fi
  # The port passes from the API process to systemd once (or to a new port): a short stop.
  systemctl stop trad-api.service trad-api.socket
  systemctl start trad-api.socket
  SOCKET_CHANGED=0
  log "trad-api.socket: listening; restarts of the API refuse no connection from now on"
}

restart() {  # restart RELEASE [keep] — (re)start the units on RELEASE, now live; with keep
  # (nothing changed since they started on it) the running units keep running
  local i
  RESTARTED=(trad-api.service "${WORKER_UNITS[@]}")
  [ "$ROLE" = primary ] || RESTARTED=("${WORKER_UNITS[@]}")
  ensure_socket "$1"
  mapfile -t BEFORE < <(unit_states "${RESTARTED[@]}" | cut -d' ' -f1)
  if [ "${2:-}" = keep ]; then
    for i in "${!RESTARTED[@]}"; do
      if systemctl is-active --quiet "${RESTARTED[$i]}"; then BEFORE[i]=any; fi
    done
    log "nothing to restart: ${RESTARTED[*]} keep running (any found stopped are started)"
    systemctl start --no-block "${RESTARTED[@]}"
    systemctl start --no-block trad.target
    return 0
  fi
  log "restarting ${RESTARTED[*]} (running jobs checkpoint and resume)"
  # Not waited for here: units_started watches every unit and ends at the first that fails.
  systemctl restart --no-block "${RESTARTED[@]}"
  systemctl start --no-block trad.target
}

units_started() {
  # Until every restarted unit runs a new process that told systemd it is ready. A unit whose
  # new process exits (failed, or waiting for systemd to start it again) ends the wait at
  # once; a start that is slow but alive has START_BUDGET_S. One line per change of state.
  local deadline=$((SECONDS + START_BUDGET_S)) i id active sub result up states last="" failed_id=""
  local -a lines
  FAILED_UNIT=""
  while :; do
    mapfile -t lines < <(unit_states "${RESTARTED[@]}")
    up=0 states=""
    for i in "${!RESTARTED[@]}"; do
      read -r id active sub result <<<"${lines[$i]:-- - - -}"
      if [ "$id" = - ] || [ "$id" = "${BEFORE[$i]:-}" ]; then
        states+=", ${RESTARTED[$i]%.service} stopping"  # still the process from before
        continue
      fi
      states+=", ${RESTARTED[$i]%.service} $active/$sub"
      case "$active/$sub" in
        active/*) up=$((up + 1)) ;;
        failed/* | inactive/* | */auto-restart)
          if [ -z "$FAILED_UNIT" ]; then
            FAILED_UNIT="${RESTARTED[$i]} ($active/$sub, result $result)"
            failed_id=$id
          fi
          ;;
      esac
    done
    [ "$states" = "$last" ] || log "units: ${states#, }"
    last=$states
    if [ -n "$FAILED_UNIT" ]; then
      log "unit FAILED: $FAILED_UNIT; its last lines:"
      journalctl "_SYSTEMD_INVOCATION_ID=$failed_id" -n 8 --no-pager -o cat 2>/dev/null | sed 's/^/    /' || true
      return 1
    fi
    [ "$up" -lt "${#RESTARTED[@]}" ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "units not ready after ${START_BUDGET_S}s: ${states#, }"
      return 1
    fi
    sleep 0.2
  done
}

ensure_tls() {
  install -d -m 0750 -o root -g root "$TLS_DIR"
  if [ -f "$TLS_DIR/trad.crt" ] && [ -f "$TLS_DIR/trad.key" ]; then
    log "TLS certificate $TLS_DIR/trad.crt: unchanged (never overwritten)"
    return 0
  fi
  local host
  host=$(hostname -f 2>/dev/null || hostname)
  openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -subj "/CN=$host" \
    -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
    -keyout "$TLS_DIR/trad.key" -out "$TLS_DIR/trad.crt" 2>/dev/null
  chmod 0600 "$TLS_DIR/trad.key"
  chmod 0644 "$TLS_DIR/trad.crt"
  log "TLS certificate $TLS_DIR/trad.crt: self-signed for $host (replace with your own and reload nginx)"
}

nginx_max_files() {  # the hard limit of open files nginx runs under (its workers cannot exceed it)
  local pid
  pid=$(cat /run/nginx.pid 2>/dev/null || true)
  if [ -n "$pid" ] && [ -r "/proc/$pid/limits" ]; then
    awk '/^Max open files/ {print $5}' "/proc/$pid/limits"
  else
    ulimit -Hn
  fi
}

ensure_proxy() {
  local tmp sized line changed=0
  tmp=$(mktemp)
  sed -e "s|@API_PORT@|$(api_port)|g" -e "s|@TLS_DIR@|$TLS_DIR|g" "$SOURCE/ops/nginx/trad.conf" > "$tmp"
  if ! cmp -s "$tmp" "$NGINX_SITE"; then
    install -m 0644 "$tmp" "$NGINX_SITE"
    changed=1
  fi
  rm -f "$tmp"
  if [ "$(readlink /etc/nginx/sites-enabled/trad 2>/dev/null)" != "$NGINX_SITE" ]; then
    ln -sfn "$NGINX_SITE" /etc/nginx/sites-enabled/trad
    changed=1
  fi
  if [ -L /etc/nginx/sites-enabled/default ]; then
    rm -f /etc/nginx/sites-enabled/default
    changed=1
  fi
  # Connections and open files for the API's progress streams; one line per change.
  sized=$(bash "$SOURCE/ops/scripts/size_nginx.sh" /etc/nginx/nginx.conf "$(nginx_max_files)")
  if [ -n "$sized" ]; then
    while read -r line; do log "nginx.conf: $line"; done <<<"$sized"
    changed=1
  fi
  nginx -t -q || die "nginx rejects its configuration; see: nginx -t"
  if [ "$changed" -eq 1 ] || ! systemctl is-active --quiet nginx; then
    systemctl enable --quiet nginx
    systemctl reload-or-restart nginx
    log "nginx: TLS proxy on port 443 -> 127.0.0.1:$(api_port)"
  else
    log "nginx: unchanged"
  fi
}

healthy() {
  units_started || return 1
  [ "$ROLE" = primary ] || return 0
  local port error="" _
  port=$(api_port)
  # The API is READY once it listens and PostgreSQL and Redis answered; /readyz confirms it.
  # Polled quietly: one line at the end, not one per try.
  for _ in $(seq 1 60); do
    if error=$(curl -fsS -o /dev/null "http://127.0.0.1:${port:-8000}/readyz" 2>&1); then
      error=""
      break
    fi
    sleep 0.5
  done
  [ -z "$error" ] || { log "/readyz did not answer within 30s: $error"; return 1; }
  # The token goes to curl on stdin, never in its arguments.
  printf 'Authorization: Bearer %s\n' "$(secret api_token)" \
    | curl -fsS -o /dev/null -H @- "http://127.0.0.1:${port:-8000}/api/v2/training/queue" || return 1
  curl -fsS -o /dev/null --cacert "$TLS_DIR/trad.crt" --resolve "localhost:443:127.0.0.1" \
    https://localhost/readyz || return 1
  "$TRAD_BIN" smoke --timeout 90 || return 1
}

prune() {
  local keep current previous old
  current=$(readlink "$CURRENT" | xargs -r basename)
  previous=${1:-}
  keep=$(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' | sort -rn | head -n "$KEEP_RELEASES" | cut -d' ' -f2)
  for old in "$RELEASES"/*; do
    old=$(basename "$old")
    if [ "$old" = "$current" ] || [ "$old" = "$previous" ] || grep -qxF "$old" <<<"$keep"; then
      continue
    fi
    rm -rf "${RELEASES:?}/$old"
    log "pruned old release $old"
  done
}

install_primary() {
  ensure_packages
  ensure_user
  ensure_env_file
  # --listen-address, else the one given to an earlier deploy, else none (loopback only)
  if [ -z "$LISTEN" ] && [ -s "$LISTEN_FILE" ]; then LISTEN=$(cat "$LISTEN_FILE"); fi
  ensure_credentials
  ensure_postgres
  ensure_remote_access
  ensure_redis
  ensure_release
  choose_workers
  ensure_trad_command
  migrate
  [ -z "$LISTEN" ] || bash "$SOURCE/ops/scripts/remote_access.sh" grant
  ensure_units
  ensure_tls
  ensure_proxy
}

install_worker() {
  PACKAGES=("${WORKER_PACKAGES[@]}")
  ensure_packages
  ensure_user
  ensure_env_file
  ensure_worker_access
  ensure_release
  choose_workers
  ensure_units
}

main() {
  parse_args "$@"
  [ "$(id -u)" -eq 0 ] || die "run as root"
  cd /  # commands run as other users (postgres, trad) must not start in root's home
  if [ "$ROLE" = primary ]; then install_primary; else install_worker; fi
  local previous=""
  [ -L "$CURRENT" ] && previous=$(basename "$(readlink "$CURRENT")")
  if [ "$previous" = "$VERSION" ]; then
    touch "$RELEASES/$VERSION"
    log "current release: unchanged ($VERSION)"
  else
    switch_current "$VERSION"
    log "current release: $VERSION (was ${previous:-none})"
  fi
  if [ "$previous" = "$VERSION" ] && [ "$UNITS_CHANGED" -eq 0 ]; then
    restart "$VERSION" keep
  else
    restart "$VERSION"
  fi
  if healthy; then
    if [ "$ROLE" = primary ]; then
      log "health check passed: /readyz, API token, smoke job"
    else
      log "health check passed: ${WORKER_UNITS[*]} ready (the primary's PostgreSQL and Redis answer over TLS)"
    fi
    prune "$previous"
    return 0
  fi
  if [ -n "$previous" ] && [ "$previous" != "$VERSION" ]; then
    log "health check FAILED for $VERSION: rolling back to $previous"
    local why
    why="failed its health check on $(date '+%F %T %Z')${FAILED_UNIT:+: $FAILED_UNIT}; rolled back to $previous"
    switch_current "$previous"
    restart "$previous"
    if ! healthy; then
      mark_broken "$VERSION" "$why"
      die "the previous release $previous is not healthy either; see: journalctl -u trad-api -u 'trad-worker@*'"
    fi
    log "rolled back: $previous is live and healthy again"
    mark_broken "$VERSION" "$why"
    die "deploy of $VERSION failed its health check and was rolled back to $previous; see: journalctl -u trad-api -u 'trad-worker@*' --since -10min"
  fi
  die "release $VERSION failed its health check and there is no previous release; see: journalctl -u trad-api -u 'trad-worker@*' --since -10min"
}

main "$@"
