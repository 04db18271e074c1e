#!/usr/bin/env bash
# Install or upgrade trad on a Debian/Ubuntu server over SSH.
#
#   SERVER=host [SSH_USER=root] [SSH_PORT=22] [SSH_OPTS="-i key"] [WORKERS=N] ./ops/scripts/deploy_to_server.sh
#   ROLE=worker PRIMARY=host SERVER=workerhost ./ops/scripts/deploy_to_server.sh [--remove]
#   [STRATEGY_PACKAGES="dir-or-wheel …"] [STRATEGY_REQUIREMENTS=file] … deploy_to_server.sh [--build-only]
#
# Builds a release (the code and the strategy packages, named by a hash of their content), a
# wheelhouse of the pinned Python dependencies and the release's own wheels (trad itself, the
# strategy packages and their dependencies) here, ships them, and runs
# ops/scripts/server_install.sh on the server, which needs no package-index access for Python.
# Running it again with nothing changed changes and restarts nothing.
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
STRATEGY_PACKAGES=${STRATEGY_PACKAGES:-}
STRATEGY_REQUIREMENTS=${STRATEGY_REQUIREMENTS:-}
# Built release wheels kept in CACHE_DIR (one set per release), as many as releases on a server.
KEEP_RELEASE_WHEELS=5
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
       [STRATEGY_PACKAGES="dir-or-wheel …"] [STRATEGY_REQUIREMENTS=file] deploy_to_server.sh --build-only

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
  STRATEGY_PACKAGES
             strategy packages to install into the release's virtualenv, split on spaces: a
             package directory (with pyproject.toml or setup.py; built here with pip wheel) or a
             wheel file. Their dependencies are taken with trad's pinned ones. Give the same
             packages to the primary and to every worker host: they are part of the release
  STRATEGY_REQUIREMENTS
             a requirements file of strategy packages (pinned, from your package index) to
             install the same way
  --build-only
             build the release and its wheels here, print its version and stop (no SERVER)
  TRAD_DEPLOY_CACHE
             where what is built here is kept (default ~/.cache/trad-deploy)
Releases live in /srv/trad/releases/<version>; /srv/trad/current points at the live one.
Changing a strategy package makes a new release; the same packages make the same release.
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

strategy_inputs() {  # check STRATEGY_PACKAGES and STRATEGY_REQUIREMENTS before anything is built or shipped
  local item path
  STRATEGY_INPUTS=()
  for item in $STRATEGY_PACKAGES; do
    [ -e "$item" ] || die "STRATEGY_PACKAGES: '$item' does not exist (paths are taken from $PWD)"
    path=$(realpath "$item")
    if [ -d "$path" ]; then
      [ -f "$path/pyproject.toml" ] || [ -f "$path/setup.py" ] \
        || die "STRATEGY_PACKAGES: '$item' is a directory without pyproject.toml or setup.py, not a package"
    elif [[ "$path" != *.whl ]]; then
      die "STRATEGY_PACKAGES: '$item' is neither a package directory nor a wheel (.whl)"
    fi
    STRATEGY_INPUTS+=("$path")
  done
  if [ -n "$STRATEGY_REQUIREMENTS" ]; then
    [ -f "$STRATEGY_REQUIREMENTS" ] || die "STRATEGY_REQUIREMENTS: '$STRATEGY_REQUIREMENTS' is not a file"
    STRATEGY_REQUIREMENTS=$(realpath "$STRATEGY_REQUIREMENTS")
  fi
}

package_files() {  # package_files DIR — the files of a package directory, sorted, without build output
  local dir=$1
  if git -C "$dir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$dir" ls-files -co --exclude-standard
  else
    (cd "$dir" && find . -type f -printf '%P\n')
  fi | grep -v -E '(^|/)(\.git|\.venv|build|dist|__pycache__|[^/]*\.egg-info)/|\.py[co]$' | LC_ALL=C sort -u
}

build_strategy_package() {  # build_strategy_package DIR — a wheel of it, cached by its content
  local dir=$1 list hash cached copy
  list=$(mktemp)
  package_files "$dir" > "$list"
  [ -s "$list" ] || { rm -f "$list"; die "STRATEGY_PACKAGES: $dir holds no files"; }
  hash=$(cd "$dir" && xargs -d '\n' sha256sum < "$list" | sha256sum | cut -c1-16)
  cached="$CACHE_DIR/strategy-$hash"
  if [ ! -f "$cached/.complete" ]; then
    log "strategy package $dir: building a wheel"
    rm -rf "$cached"
    copy=$(mktemp -d)
    # Built from a copy of exactly the hashed files: the package's own directory gets no build output.
    tar -C "$dir" --create --files-from "$list" | tar -C "$copy" --extract
    mkdir -p "$cached"
    if ! python3 -m pip wheel --quiet --no-deps --wheel-dir "$cached" "$copy" > "$CACHE_DIR/pip-strategy.log" 2>&1 \
      || [ "$(find "$cached" -name '*.whl' | wc -l)" -ne 1 ]; then
      rm -rf "$copy" "$cached" "$list"
      tail -n 20 "$CACHE_DIR/pip-strategy.log" >&2
      die "the strategy package $dir does not build (log: $CACHE_DIR/pip-strategy.log); nothing was shipped"
    fi
    rm -rf "$copy"
    touch "$cached/.complete"
  fi
  rm -f "$list"
  touch "$cached"
  STRATEGY_WHEELS+=("$(find "$cached" -name '*.whl')")
  STRATEGY_MANIFEST+="$hash  $(basename "${STRATEGY_WHEELS[-1]}")"$'\n'
}

manifest_names() {  # manifest_names TEXT — the names of a STRATEGIES manifest, comma-separated
  printf '%s' "$1" | awk '{ sub(/^[^ ]+  /, ""); printf "%s%s", (NR > 1 ? ", " : ""), $0 }'
}

build_strategies() {  # the strategy packages' wheels, and a manifest of their content for the release
  local path
  STRATEGY_WHEELS=()
  STRATEGY_MANIFEST=""
  mkdir -p "$CACHE_DIR"
  for path in "${STRATEGY_INPUTS[@]}"; do
    if [ -d "$path" ]; then
      build_strategy_package "$path"
    else
      STRATEGY_WHEELS+=("$path")
      STRATEGY_MANIFEST+="$(sha256sum "$path" | cut -c1-16)  $(basename "$path")"$'\n'
    fi
  done
  if [ -n "$STRATEGY_REQUIREMENTS" ]; then
    STRATEGY_MANIFEST+="$(sha256sum "$STRATEGY_REQUIREMENTS" | cut -c1-16)  requirements $(basename "$STRATEGY_REQUIREMENTS")"$'\n'
  fi
  [ -z "$STRATEGY_MANIFEST" ] || log "strategy packages: $(manifest_names "$STRATEGY_MANIFEST")"
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
  CODE_KEY=$(sha256sum "$tar_path" | cut -c1-12)  # trad's own wheel depends on this much
  if [ -n "$STRATEGY_MANIFEST" ]; then
    # STRATEGIES: a line per strategy package, a hash of its content and its wheel; so the
    # packages are part of the release's content and name.
    printf '%s' "$STRATEGY_MANIFEST" > "$CACHE_DIR/STRATEGIES"
    tar --append --file "$tar_path" -C "$CACHE_DIR" --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --mode='u+rw,go+r,go-w' STRATEGIES
  fi
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

build_trad_wheel() {  # trad itself as a wheel, built from the release's code: its entry points
  local wheels="$CACHE_DIR/trad-wheel-$CODE_KEY" src
  if [ ! -f "$wheels/.complete" ]; then
    log "trad wheel: building from the release"
    rm -rf "$wheels"
    mkdir -p "$wheels"
    src=$(mktemp -d)
    tar -xf "$RELEASE_TAR" -C "$src"
    if ! python3 -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$src" > "$CACHE_DIR/pip-trad.log" 2>&1; then
      rm -rf "$src" "$wheels"
      tail -n 20 "$CACHE_DIR/pip-trad.log" >&2
      die "could not build trad's own wheel (log: $CACHE_DIR/pip-trad.log)"
    fi
    rm -rf "$src"
    touch "$wheels/.complete"
  fi
  touch "$wheels"
  TRAD_WHEEL=$(find "$wheels" -name 'trad-*.whl')
  [ -n "$TRAD_WHEEL" ] || die "no trad wheel in $wheels"
}

strategy_dependencies() {  # strategy_dependencies DIR — their dependencies not in the wheelhouse, into DIR/deps
  local dir=$1 constraints wheel name
  constraints="$dir/constraints.txt"
  # trad's pinned dependencies hold: a package that needs other versions fails here, not on the server.
  { cat "$ROOT/requirements.txt"; basename "$TRAD_WHEEL" | sed -E 's/^trad-([^-]+)-.*/trad==\1/'; } > "$constraints"
  local wanted=()
  for wheel in "$dir"/strategies/*.whl; do [ ! -e "$wheel" ] || wanted+=("$wheel"); done
  [ ! -f "$dir/strategy-requirements.txt" ] || wanted+=(-r "$dir/strategy-requirements.txt")
  if ! python3 -m pip wheel --quiet --wheel-dir "$dir/resolved" --find-links "$WHEELHOUSE" \
    --find-links "$(dirname "$TRAD_WHEEL")" -c "$constraints" "${wanted[@]}" > "$CACHE_DIR/pip-strategy-deps.log" 2>&1; then
    tail -n 20 "$CACHE_DIR/pip-strategy-deps.log" >&2
    die "the strategy packages' dependencies cannot be met with trad's pinned ones (log: $CACHE_DIR/pip-strategy-deps.log); nothing was shipped"
  fi
  mkdir -p "$dir/deps"
  for wheel in "$dir"/resolved/*.whl; do
    name=$(basename "$wheel")
    if [ -e "$WHEELHOUSE/$name" ] || [ -e "$dir/strategies/$name" ] || [[ "$name" == trad-* ]]; then continue; fi
    mv "$wheel" "$dir/deps/"
  done
  rm -rf "$dir/resolved" "$constraints"
}

build_release_wheels() {  # trad's wheel and the strategy packages with their dependencies, per release
  RELEASE_WHEELS_TAR="$CACHE_DIR/release-wheels-$VERSION.tar"
  build_trad_wheel
  if [ -f "$RELEASE_WHEELS_TAR" ]; then
    log "release wheels: unchanged (cached)"
  else
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/trad" "$dir/strategies"
    cp "$TRAD_WHEEL" "$dir/trad/"
    [ "${#STRATEGY_WHEELS[@]}" -eq 0 ] || cp "${STRATEGY_WHEELS[@]}" "$dir/strategies/"
    [ -z "$STRATEGY_REQUIREMENTS" ] || cp "$STRATEGY_REQUIREMENTS" "$dir/strategy-requirements.txt"
    if [ -n "$STRATEGY_MANIFEST" ]; then strategy_dependencies "$dir"; fi
    tar --create --file "$RELEASE_WHEELS_TAR.partial" -C "$dir" --sort=name --mtime=@0 .
    mv "$RELEASE_WHEELS_TAR.partial" "$RELEASE_WHEELS_TAR"
    rm -rf "$dir"
    log "release wheels: built ($(tar -tf "$RELEASE_WHEELS_TAR" | grep -c '\.whl$') wheels)"
  fi
  touch "$RELEASE_WHEELS_TAR"
  prune_cache 'release-wheels-*.tar' 'trad-wheel-*' 'strategy-*'
}

prune_cache() {  # prune_cache GLOB… — keep the KEEP_RELEASE_WHEELS most recently used of each
  local glob
  for glob in "$@"; do
    find "$CACHE_DIR" -mindepth 1 -maxdepth 1 -name "$glob" -printf '%T@ %p\n' | sort -rn \
      | tail -n +$((KEEP_RELEASE_WHEELS + 1)) | cut -d' ' -f2- | xargs -r -d '\n' rm -rf
  done
}

same_release_as_primary() {  # a worker host runs what the primary runs, strategy packages included
  local live
  live=$(as_root_on "$PRIMARY" "readlink /srv/trad/current" 2>/dev/null | xargs -r basename) || live=""
  if [ -n "$live" ] && [ "$live" != "$VERSION" ]; then
    log "warning: the primary runs $live, this host gets $VERSION (other code or other STRATEGY_PACKAGES);" \
      "a job for a strategy this host lacks, or has in another version, fails here. Deploy both from one tree with the same packages."
  fi
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
$(cd "$(dirname "$WHEEL_TAR")" && sha256sum "$(basename "$WHEEL_TAR")" | cut -d' ' -f1)  wheelhouse.tar
$(sha256sum "$RELEASE_WHEELS_TAR" | cut -d' ' -f1)  release-wheels.tar"
  make_remote_dir
  log "shipping release, wheelhouse and release wheels to $SERVER:$REMOTE_TMP"
  as_root "cat > $REMOTE_TMP/release.tar" < "$RELEASE_TAR" || die "upload of the release failed"
  as_root "cat > $REMOTE_TMP/wheelhouse.tar" < "$WHEEL_TAR" || die "upload of the wheelhouse failed"
  as_root "cat > $REMOTE_TMP/release-wheels.tar" < "$RELEASE_WHEELS_TAR" || die "upload of the release wheels failed"
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
    --source $REMOTE_TMP/src --wheelhouse $REMOTE_TMP/wheelhouse.tar --release-wheels $REMOTE_TMP/release-wheels.tar"
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
    --build-only)
      strategy_inputs
      build_strategies
      build_release
      build_wheelhouse
      build_release_wheels
      echo "$VERSION"
      return 0
      ;;
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
  strategy_inputs  # what is built here is checked and built before the server is touched
  build_strategies
  preflight
  [ "$ROLE" = primary ] || primary_access
  build_release
  [ "$ROLE" = primary ] || same_release_as_primary
  build_wheelhouse
  build_release_wheels
  ship
  [ "$ROLE" = primary ] || relay_access
  install_on_server
  remove_remote_dir
  log "done: $VERSION is live on $SERVER ($ROLE, $((SECONDS - started)) s)"
}

# One line: bash has read the exit before main runs, so a file edited meanwhile is not read on.
main "$@"; exit
