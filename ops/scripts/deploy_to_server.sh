#!/usr/bin/env bash
# Install or upgrade trad on a Debian/Ubuntu server over SSH.
#
#   SERVER=host [SSH_USER=root] [SSH_PORT=22] [SSH_OPTS="-i key"] [WORKERS=N] ./ops/scripts/deploy_to_server.sh
#
# Builds a release (the code, named by a hash of its content) and a wheelhouse of the pinned
# Python dependencies here, ships both, and runs ops/scripts/server_install.sh on the server,
# which needs no package-index access for Python. Running it again with nothing changed
# changes nothing but the restart.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE_DIR=${TRAD_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trad-deploy}

SERVER=${SERVER:-}
SSH_USER=${SSH_USER:-root}
SSH_PORT=${SSH_PORT:-22}
SSH_OPTS=${SSH_OPTS:-}
WORKERS=${WORKERS:-}
# Uploads go to a fresh directory under this root-only parent and are removed afterwards.
REMOTE_PARENT=/var/lib/trad-deploy
REMOTE_TMP=""

log() { printf '[deploy %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<'USAGE'
Usage: SERVER=host [SSH_USER=root] [SSH_PORT=22] [SSH_OPTS=...] [WORKERS=N] deploy_to_server.sh

Installs or upgrades trad on a Debian or Ubuntu server over SSH and restarts it.
  SERVER     host name or address to deploy to (required)
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

ssh_cmd() {
  # shellcheck disable=SC2086 # SSH_OPTS is a list of options on purpose
  ssh -p "$SSH_PORT" -o BatchMode=yes -o ConnectTimeout=15 $SSH_OPTS "$SSH_USER@$SERVER" "$@"
}

as_root() {  # as_root 'shell command line' — runs it on the server as root
  if [ "$SSH_USER" = root ]; then
    ssh_cmd "$1"
  else
    ssh_cmd "sudo -n sh -c $(printf '%q' "$1")"
  fi
}

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

install_on_server() {
  log "installing $VERSION on $SERVER"
  local workers=""
  [ -z "$WORKERS" ] || workers="--workers $WORKERS"
  as_root "bash $REMOTE_TMP/src/ops/scripts/server_install.sh --version $VERSION $workers \
    --source $REMOTE_TMP/src --wheelhouse $REMOTE_TMP/wheelhouse.tar"
}

main() {
  case "${1:-}" in
    -h | --help) usage; return 0 ;;
    "") ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  [ -n "$SERVER" ] || { usage >&2; die "SERVER is not set"; }
  local started=$SECONDS
  preflight
  build_release
  build_wheelhouse
  ship
  install_on_server
  remove_remote_dir
  log "done: $VERSION is live on $SERVER ($((SECONDS - started)) s)"
}

main "$@"
