#!/usr/bin/env bash
# Install or upgrade trad on a Debian/Ubuntu server over SSH.
#
#   SERVER=host [SSH_USER=root] [SSH_PORT=22] [SSH_OPTS="-i key"] [WORKERS=N] ./ops/scripts/deploy_to_server.sh
#   ROLE=worker PRIMARY=host SERVER=workerhost ./ops/scripts/deploy_to_server.sh [--remove]
#
# Builds a release (the code, named by a hash of its content) and a wheelhouse of the pinned
# Python dependencies here, ships both, and runs ops/scripts/server_install.sh on the server,
# which needs no package-index access for Python. Running it again with nothing changed
# changes and restarts nothing.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE_DIR=${TRAD_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trad-deploy}

SERVER=${SERVER:-}
SSH_USER=${SSH_USER:-root}
SSH_PORT=${SSH_PORT:-22}
SSH_OPTS=${SSH_OPTS:-}
WORKERS=${WORKERS:-}
ROLE=${ROLE:-primary}
PRIMARY=${PRIMARY:-}
LISTEN_ADDRESS=${LISTEN_ADDRESS:-}
WORKER_HOST=${WORKER_HOST:-}
REMOTE_ACCESS=/srv/trad/current/ops/scripts/remote_access.sh
# Uploads go to a fresh directory under this root-only parent and are removed afterwards.
REMOTE_PARENT=/var/lib/trad-deploy
REMOTE_TMP=""

LOG_TAG=deploy
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
Usage: SERVER=host [SSH_USER=root] [SSH_PORT=22] [SSH_OPTS=...] [WORKERS=N] [LISTEN_ADDRESS=a.b.c.d] deploy_to_server.sh
       ROLE=worker PRIMARY=host SERVER=workerhost [WORKERS=N] deploy_to_server.sh [--remove]

Installs or upgrades trad on a Debian or Ubuntu server over SSH and restarts it.
  SERVER     host name or address to deploy to (required)
  ROLE       primary (default): API, PostgreSQL, Redis, nginx and workers;
             worker: only the release, its virtualenv and trad-worker@N, using PRIMARY's
             PostgreSQL and Redis over TLS with credentials of its own (issued on PRIMARY)
  PRIMARY    ROLE=worker: the primary, as this machine reaches it over SSH (same SSH_* options)
  LISTEN_ADDRESS
             primary: the private address worker hosts connect to; its PostgreSQL and Redis then
             listen there over TLS only (kept by later deploys). Unset: loopback only
  WORKER_HOST
             ROLE=worker: the name the primary knows SERVER by (default: its hostname):
             lowercase letters, digits and - only. --remove of a host that no longer answers:
             that name, or its role as remote_access.sh list prints it
  --remove   ROLE=worker: stop SERVER's workers (running jobs checkpoint and go back to the
             queue) and revoke its PostgreSQL role and Redis user on PRIMARY
  SSH_USER   login user: root, or a user with passwordless sudo (default root)
  SSH_PORT   SSH port (default 22)
  SSH_OPTS   extra ssh options, split on spaces, e.g. "-i ~/.ssh/trad -o ProxyJump=bastion";
             put options that contain spaces (ProxyCommand) in a file and pass "-F FILE"
  WORKERS    run trad-worker@1..N and disable the others; unset keeps the workers enabled on
             the server as they are (2 on a first install)
Releases live in /srv/trad/releases/<version>; /srv/trad/current points at the live one.
A failed health check switches back to the previous release by itself.
USAGE
}

ssh_to() {  # ssh_to HOST ARGS...
  local host=$1
  shift
  # shellcheck disable=SC2086 # SSH_OPTS is a list of options on purpose
  ssh -p "$SSH_PORT" -o BatchMode=yes -o ConnectTimeout=15 $SSH_OPTS "$SSH_USER@$host" "$@"
}

ssh_cmd() { ssh_to "$SERVER" "$@"; }

as_root_on() {  # as_root_on HOST 'shell command line' — runs it on HOST as root
  if [ "$SSH_USER" = root ]; then
    ssh_to "$1" "$2"
  else
    ssh_to "$1" "sudo -n sh -c $(printf '%q' "$2")"
  fi
}

as_root() { as_root_on "$SERVER" "$1"; }  # on the server being deployed

preflight() {
  log "preflight: reaching $SSH_USER@$SERVER:$SSH_PORT"
  ssh_cmd true || die "cannot reach $SERVER over SSH; check SERVER, SSH_PORT, SSH_OPTS and your key"
  local os
  # shellcheck disable=SC2016 # expanded on the server
  os=$(ssh_cmd '. /etc/os-release && echo "$ID ${ID_LIKE:-}"') || die "cannot read /etc/os-release on $SERVER"
  case " $os " in
    *" debian "* | *" ubuntu "*) log "preflight: $SERVER runs $os" ;;
    *) die "$SERVER runs '$os'; only Debian and Ubuntu are supported" ;;
  esac
  if [ "$SSH_USER" != root ]; then
    ssh_cmd sudo -n true || die "$SSH_USER needs passwordless sudo on $SERVER (or use SSH_USER=root)"
  fi
  if [ -n "$WORKERS" ] && { ! [[ "$WORKERS" =~ ^[0-9]+$ ]] || [ "$WORKERS" -lt 1 ] || [ "$WORKERS" -gt 64 ]; }; then
    die "WORKERS must be a number from 1 to 64, not '$WORKERS'"
  fi
  if [ -n "$LISTEN_ADDRESS" ] && ! [[ "$LISTEN_ADDRESS" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
    die "LISTEN_ADDRESS must be an IPv4 address, not '$LISTEN_ADDRESS'"
  fi
}

check_role() {
  case "$ROLE" in
    primary) [ -z "$PRIMARY" ] || die "PRIMARY is for ROLE=worker; the primary is SERVER itself" ;;
    worker)
      [ -n "$PRIMARY" ] || die "ROLE=worker needs PRIMARY=host (the primary, reachable over SSH from here)"
      [ -z "$LISTEN_ADDRESS" ] || die "LISTEN_ADDRESS is for the primary"
      ;;
    *) die "ROLE must be primary or worker, not '$ROLE'" ;;
  esac
}

primary_access() {  # the primary is reachable and lets worker hosts join
  log "preflight: reaching the primary $SSH_USER@$PRIMARY:$SSH_PORT"
  ssh_to "$PRIMARY" true || die "cannot reach the primary $PRIMARY over SSH"
  as_root_on "$PRIMARY" "test -f $REMOTE_ACCESS && test -s /etc/trad/listen_address" \
    || die "$PRIMARY does not take worker hosts: deploy it (this release) with LISTEN_ADDRESS=its private address"
}

worker_host_name() {  # the name the primary knows SERVER by: its host name
  if [ -n "$WORKER_HOST" ]; then echo "$WORKER_HOST"; return 0; fi
  ssh_cmd hostname || die "cannot ask $SERVER its host name; set WORKER_HOST"
}

build_release() {
  mkdir -p "$CACHE_DIR"
  local files tar_path
  files=$(mktemp)
  (cd "$ROOT" && { git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './.git/*' -printf '%P\n'; } \
    | grep -v -E '^(var|\.venv|tests)/' | LC_ALL=C sort -u > "$files")
  tar_path="$CACHE_DIR/release.tar"
  (cd "$ROOT" && tar --create --file "$tar_path" --files-from "$files" --sort=name --mtime=@0 \
    --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w')
  rm -f "$files"
  # RELEASE names the commit the code came from; the service reports it as its code version.
  git -C "$ROOT" rev-parse --short=12 HEAD > "$CACHE_DIR/RELEASE" 2>/dev/null || echo unknown > "$CACHE_DIR/RELEASE"
  tar --append --file "$tar_path" -C "$CACHE_DIR" --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --mode='u+rw,go+r,go-w' RELEASE
  VERSION=${VERSION:-r-$(sha256sum "$tar_path" | cut -c1-12)}
  RELEASE_TAR=$tar_path
  log "release $VERSION built ($(du -h "$tar_path" | cut -f1))"
}

build_wheelhouse() {
  local key
  key=$(sha256sum "$ROOT/requirements.txt" | cut -c1-12)
  WHEELHOUSE="$CACHE_DIR/wheelhouse-$key"
  if [ -f "$WHEELHOUSE/.complete" ]; then
    log "wheelhouse $key: unchanged (cached)"
  else
    log "wheelhouse $key: building wheels for requirements.txt"
    rm -rf "$WHEELHOUSE"
    mkdir -p "$WHEELHOUSE"
    if ! python3 -m pip wheel --quiet --wheel-dir "$WHEELHOUSE" -r "$ROOT/requirements.txt" \
      > "$CACHE_DIR/pip-wheel.log" 2>&1; then
      tail -n 20 "$CACHE_DIR/pip-wheel.log" >&2
      die "could not build the wheelhouse (log: $CACHE_DIR/pip-wheel.log); is pip available and the package index reachable from here?"
    fi
    touch "$WHEELHOUSE/.complete"
  fi
  WHEEL_TAR="$CACHE_DIR/wheelhouse-$key.tar"
  [ -f "$WHEEL_TAR" ] || tar --create --file "$WHEEL_TAR" -C "$WHEELHOUSE" --sort=name --mtime=@0 .
}

make_remote_dir() {
  # A fresh directory only root can enter: nobody else can swap what is shipped before install.
  REMOTE_TMP=$(as_root "install -d -m 0700 -o root -g root $REMOTE_PARENT && chmod 0700 $REMOTE_PARENT \
    && chown root:root $REMOTE_PARENT && mktemp -d $REMOTE_PARENT/XXXXXXXXXX") \
    || die "cannot make an upload directory under $REMOTE_PARENT on $SERVER"
  [[ "$REMOTE_TMP" =~ ^$REMOTE_PARENT/[A-Za-z0-9]{10}$ ]] || die "unexpected upload directory '$REMOTE_TMP'"
  trap remove_remote_dir EXIT
}

remove_remote_dir() {
  [ -n "$REMOTE_TMP" ] || return 0
  as_root "rm -rf $REMOTE_TMP" || printf '[deploy] warning: could not remove %s on %s\n' "$REMOTE_TMP" "$SERVER" >&2
  REMOTE_TMP=""
}

ship() {
  local sums
  sums="$(cd "$(dirname "$RELEASE_TAR")" && sha256sum "$(basename "$RELEASE_TAR")" | cut -d' ' -f1)  release.tar
$(cd "$(dirname "$WHEEL_TAR")" && sha256sum "$(basename "$WHEEL_TAR")" | cut -d' ' -f1)  wheelhouse.tar"
  make_remote_dir
  log "shipping release and wheelhouse to $SERVER:$REMOTE_TMP"
  as_root "cat > $REMOTE_TMP/release.tar" < "$RELEASE_TAR" || die "upload of the release failed"
  as_root "cat > $REMOTE_TMP/wheelhouse.tar" < "$WHEEL_TAR" || die "upload of the wheelhouse failed"
  printf '%s\n' "$sums" | as_root "cat > $REMOTE_TMP/SHA256SUMS" || die "upload of the checksums failed"
  as_root "cd $REMOTE_TMP && sha256sum --quiet --strict -c SHA256SUMS" \
    || die "what arrived on $SERVER differs from what was built here (checksum mismatch)"
  as_root "mkdir $REMOTE_TMP/src && tar -xf $REMOTE_TMP/release.tar -C $REMOTE_TMP/src"
}

relay_access() {
  # A worker host's credentials are made on the primary and reach the worker host only through
  # this process's pipes (SSH stdout, then SSH stdin into the root-only upload directory).
  local host access
  host=$(worker_host_name)
  if as_root "test -s /etc/trad/credentials/database_url && test -s /etc/trad/ca.crt" \
    && as_root_on "$PRIMARY" "bash $REMOTE_ACCESS has $host"; then
    log "access of $host to $PRIMARY: unchanged"
    return 0
  fi
  access=$(as_root_on "$PRIMARY" "bash $REMOTE_ACCESS add $host") || die "the primary could not issue access for $host"
  printf '%s\n' "$access" | as_root "umask 077 && cat > $REMOTE_TMP/access" || die "could not hand $SERVER its access"
  ACCESS_ARG="--access $REMOTE_TMP/access"
  log "access of $host to $PRIMARY: issued (its own PostgreSQL role and Redis user)"
}

install_on_server() {
  log "installing $VERSION on $SERVER ($ROLE)"
  local args="--role $ROLE"
  [ -z "$WORKERS" ] || args+=" --workers $WORKERS"
  [ -z "$LISTEN_ADDRESS" ] || args+=" --listen-address $LISTEN_ADDRESS"
  [ -z "$ACCESS_ARG" ] || args+=" $ACCESS_ARG"
  as_root "bash $REMOTE_TMP/src/ops/scripts/server_install.sh --version $VERSION $args \
    --source $REMOTE_TMP/src --wheelhouse $REMOTE_TMP/wheelhouse.tar"
}

remove_worker_host() {
  local host
  host=$(worker_host_name)
  if ssh_cmd true 2>/dev/null; then
    # SIGTERM: each running job checkpoints and goes back to the front of its queue.
    log "stopping the workers on $SERVER (running jobs checkpoint and are re-queued)"
    as_root "systemctl disable --now --quiet trad.target \$(systemctl list-units --all --plain --no-legend \
      'trad-worker@*.service' | awk '{print \$1}') && rm -f /etc/trad/credentials/database_url \
      /etc/trad/credentials/redis_url" || die "could not stop the workers on $SERVER"
  else
    log "$SERVER does not answer: revoking its access only (its jobs are recovered by the reaper)"
  fi
  as_root_on "$PRIMARY" "bash $REMOTE_ACCESS remove $host" || die "could not revoke $host on $PRIMARY"
  log "done: $host removed; its PostgreSQL role and Redis user are revoked on $PRIMARY"
}

main() {
  local remove=0
  case "${1:-}" in
    -h | --help) usage; return 0 ;;
    --remove) remove=1 ;;
    "") ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  [ -n "$SERVER" ] || { usage >&2; die "SERVER is not set"; }
  check_role
  if [ "$remove" -eq 1 ]; then
    [ "$ROLE" = worker ] || die "--remove is for ROLE=worker"
    primary_access
    remove_worker_host
    return 0
  fi
  local started=$SECONDS
  ACCESS_ARG=""
  preflight
  [ "$ROLE" = primary ] || primary_access
  build_release
  build_wheelhouse
  ship
  [ "$ROLE" = primary ] || relay_access
  install_on_server
  remove_remote_dir
  log "done: $VERSION is live on $SERVER ($ROLE, $((SECONDS - started)) s)"
}

main "$@"
