#!/usr/bin/env bash
# Runs on the server as root (deploy_to_server.sh calls it): installs or upgrades trad from an
# unpacked release and a wheelhouse. Every step checks before it acts and says what it did;
# a second run with the same release changes nothing but the restart. A failed health check
# switches back to the previous release.
set -Eeuo pipefail

APP_USER=trad
BASE=/srv/trad
RELEASES=$BASE/releases
CURRENT=$BASE/current
ENV_DIR=/etc/trad
ENV_FILE=$ENV_DIR/trad.env
UNIT_DIR=/etc/systemd/system
KEEP_RELEASES=5
PACKAGES=(python3 python3-venv postgresql redis-server curl)

VERSION="" WORKERS=2 SOURCE="" WHEELHOUSE_TAR=""

log() { printf '[server %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[server] error: %s\n' "$*" >&2; exit 1; }
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --version) VERSION=$2; shift 2 ;;
      --workers) WORKERS=$2; shift 2 ;;
      --source) SOURCE=$2; shift 2 ;;
      --wheelhouse) WHEELHOUSE_TAR=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ "$VERSION" =~ ^[A-Za-z0-9._-]+$ ]] || die "--version must be letters, digits, . _ or -"
  [ -d "$SOURCE" ] || die "--source $SOURCE is not a directory"
  [ -f "$WHEELHOUSE_TAR" ] || die "--wheelhouse $WHEELHOUSE_TAR not found"
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

random_secret() { head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }

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
    local db_pw redis_pw token tmp
    db_pw=$(random_secret) redis_pw=$(random_secret) token=$(random_secret)
    tmp=$(mktemp)
    cat > "$tmp" <<ENV
# trad settings (generated on first install; edit and restart trad.target to change)
DATABASE_URL=postgresql+psycopg://trad:${db_pw}@127.0.0.1:$(postgres_port)/trad
REDIS_URL=redis://trad:${redis_pw}@127.0.0.1:6379/0
REDIS_APP_PASSWORD=${redis_pw}
API_TOKEN=${token}
API_HOST=0.0.0.0
API_PORT=8000
LOG_LEVEL=INFO
ENV
    install -m 0640 -o root -g "$APP_USER" "$tmp" "$ENV_FILE"
    rm -f "$tmp"
    log "env file $ENV_FILE: created with new secrets (0640 root:$APP_USER)"
  fi
  chmod 0640 "$ENV_FILE"
  chown root:"$APP_USER" "$ENV_FILE"
}

env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }

ensure_postgres() {
  systemctl enable --now postgresql >/dev/null 2>&1 || die "PostgreSQL does not start; see: journalctl -u postgresql"
  local url pw port
  url=$(env_value DATABASE_URL)
  pw=$(sed -n 's|^[^:]*://trad:\([^@]*\)@.*|\1|p' <<<"$url")
  port=$(sed -n 's|.*@[^:/]*:\([0-9]*\)/.*|\1|p' <<<"$url")
  if [ -z "$pw" ] || [ -z "$port" ]; then
    die "DATABASE_URL in $ENV_FILE must look like postgresql+psycopg://trad:PASSWORD@127.0.0.1:PORT/trad"
  fi
  if PGPASSWORD=$pw psql -h 127.0.0.1 -p "$port" -U trad -d trad -tAc 'SELECT 1' >/dev/null 2>&1; then
    log "postgresql role and database trad: unchanged"
    return 0
  fi
  local psql_admin=(runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -tA)
  if [ "$("${psql_admin[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'trad'")" = 1 ]; then
    "${psql_admin[@]}" -c "ALTER ROLE trad WITH LOGIN PASSWORD '$pw'" >/dev/null
    log "postgresql role trad: password set from $ENV_FILE"
  else
    "${psql_admin[@]}" -c "CREATE ROLE trad WITH LOGIN PASSWORD '$pw'" >/dev/null
    log "postgresql role trad: created"
  fi
  if [ "$("${psql_admin[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'trad'")" != 1 ]; then
    "${psql_admin[@]}" -c "CREATE DATABASE trad OWNER trad" >/dev/null
    log "postgresql database trad: created"
  fi
}

ensure_redis() {
  systemctl enable --now redis-server >/dev/null 2>&1 || die "redis-server does not start; see: journalctl -u redis-server"
  REDIS_APP_PASSWORD=$(env_value REDIS_APP_PASSWORD) bash "$SOURCE/ops/scripts/install_redis.sh" "$SOURCE/ops/redis/trad.conf"
}

ensure_release() {
  local dir=$RELEASES/$VERSION
  if [ -f "$dir/.complete" ]; then
    log "release $VERSION: unchanged (already installed)"
    return 0
  fi
  log "release $VERSION: installing into $dir"
  rm -rf "$dir" "$dir.wheels"
  mkdir -p "$dir" "$dir.wheels"
  cp -a "$SOURCE/." "$dir/"
  tar -xf "$WHEELHOUSE_TAR" -C "$dir.wheels"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --no-index --find-links "$dir.wheels" -r "$dir/requirements.txt" \
    || die "installing Python dependencies from the wheelhouse failed; was the wheelhouse built for this Python ($(python3 -V))?"
  rm -rf "$dir.wheels"
  chown -R root:root "$dir"
  touch "$dir/.complete"
  log "release $VERSION: installed"
}

as_app() { runuser -u "$APP_USER" -- env TRAD_ENV_FILE="$ENV_FILE" "$@"; }

migrate() {
  (cd "$RELEASES/$VERSION" && as_app venv/bin/python -m app.cli db upgrade) \
    || die "database migration failed; the live release is unchanged. See the error above."
  log "database schema: at the latest revision"
}

ensure_units() {
  local changed=0 unit
  for unit in "$SOURCE"/ops/systemd/*; do
    if ! cmp -s "$unit" "$UNIT_DIR/$(basename "$unit")"; then
      install -m 0644 "$unit" "$UNIT_DIR/$(basename "$unit")"
      log "unit $(basename "$unit"): installed"
      changed=1
    fi
  done
  if [ "$changed" -eq 1 ]; then
    systemctl daemon-reload
  else
    log "systemd units: unchanged"
  fi
  local wanted=(trad.target trad-api.service) n
  for n in $(seq 1 "$WORKERS"); do wanted+=("trad-worker@$n.service"); done
  local to_enable=()
  for unit in "${wanted[@]}"; do
    systemctl is-enabled --quiet "$unit" 2>/dev/null || to_enable+=("$unit")
  done
  if [ "${#to_enable[@]}" -gt 0 ]; then
    systemctl enable --quiet "${to_enable[@]}"
    log "enabled: ${to_enable[*]}"
  else
    log "enabled units: unchanged (trad.target, trad-api, $WORKERS workers)"
  fi
  local extra
  for extra in $(systemctl list-units --all --plain --no-legend 'trad-worker@*.service' | awk '{print $1}'); do
    n=${extra#trad-worker@}; n=${n%.service}
    if [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt "$WORKERS" ]; then
      systemctl disable --now --quiet "$extra"
      log "scaled down: stopped and disabled $extra"
    fi
  done
}

switch_current() {  # switch_current VERSION
  ln -sfn "releases/$1" "$CURRENT.new"
  mv -T "$CURRENT.new" "$CURRENT"
}

restart() {
  local units=(trad-api.service) n
  for n in $(seq 1 "$WORKERS"); do units+=("trad-worker@$n.service"); done
  log "restarting ${units[*]} (running jobs checkpoint and resume)"
  # A release that crash-looped may have hit the start limit; clear it so the restart counts.
  systemctl reset-failed "${units[@]}" 2>/dev/null || true
  systemctl restart "${units[@]}" || log "restart reported a failure; the health check decides"
  systemctl start trad.target
}

healthy() {
  local port token _
  port=$(env_value API_PORT) token=$(env_value API_TOKEN)
  for _ in $(seq 1 60); do
    if curl -fsS -o /dev/null "http://127.0.0.1:${port:-8000}/readyz"; then
      curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:${port:-8000}/api/v2/training/queue" \
        || return 1
      (cd "$CURRENT" && as_app venv/bin/python -m app.cli smoke --timeout 90) || return 1
      return 0
    fi
    sleep 1
  done
  return 1
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

main() {
  parse_args "$@"
  [ "$(id -u)" -eq 0 ] || die "run as root"
  cd /  # commands run as other users (postgres, trad) must not start in root's home
  ensure_packages
  ensure_user
  ensure_env_file
  ensure_postgres
  ensure_redis
  ensure_release
  migrate
  ensure_units
  local previous=""
  [ -L "$CURRENT" ] && previous=$(basename "$(readlink "$CURRENT")")
  if [ "$previous" = "$VERSION" ]; then
    log "current release: unchanged ($VERSION)"
  else
    switch_current "$VERSION"
    log "current release: $VERSION (was ${previous:-none})"
  fi
  restart
  if healthy; then
    log "health check passed: /readyz, API token, smoke job"
    prune "$previous"
    return 0
  fi
  if [ -n "$previous" ] && [ "$previous" != "$VERSION" ]; then
    log "health check FAILED for $VERSION: rolling back to $previous"
    switch_current "$previous"
    restart
    healthy || die "the previous release $previous is not healthy either; see: journalctl -u trad-api -u 'trad-worker@*'"
    die "deploy of $VERSION failed its health check and was rolled back to $previous; see: journalctl -u trad-api -u 'trad-worker@*' --since -10min"
  fi
  die "release $VERSION failed its health check and there is no previous release; see: journalctl -u trad-api -u 'trad-worker@*' --since -10min"
}

main "$@"
