#!/usr/bin/env bash
# Sizes nginx for trad's progress streams (server_install.sh runs it on the primary). A stream
# through the proxy holds two connections in one nginx worker, the client's and the API's, for
# as long as it is followed. Debian ships `worker_connections 768` (about 380 streams per
# worker) and no `worker_rlimit_nofile` (a worker then has systemd's soft limit: 1,024 files).
# Sized so that one worker alone carries the API's FOLLOW_MAX_STREAMS (10,000), whatever the
# number of workers and however unevenly they share connections:
#   worker_rlimit_nofile 65536   open files per worker (set by nginx itself, as root)
#   worker_connections   24576   2 x 10,000 streams, and 4,576 for every other request
# A worker cannot be given more files than the hard limit nginx runs under (MAX_FILES: a
# container's, or a unit's LimitNOFILE=, may be lower): the limit is then MAX_FILES and the
# connections 1,024 fewer. It only raises: larger values an operator set are kept. It edits
# nginx.conf in place, line by line, and prints one line per change (nothing when nothing
# changed); it fails if the file has no events block.
#
# Usage: size_nginx.sh NGINX_CONF [MAX_FILES]
set -Eeuo pipefail

CONF=$1
MAX_FILES=${2:-65536}
RLIMIT_NOFILE=65536
WORKER_CONNECTIONS=24576
[[ "$MAX_FILES" =~ ^[0-9]+$ ]] || MAX_FILES=$RLIMIT_NOFILE  # "unlimited"
if [ "$MAX_FILES" -lt "$RLIMIT_NOFILE" ]; then
  RLIMIT_NOFILE=$MAX_FILES
  WORKER_CONNECTIONS=$((MAX_FILES - 1024))
fi

die() { printf '[server] error: %s\n' "$*" >&2; exit 1; }

value_of() {  # value_of DIRECTIVE — its number in CONF (not commented out), empty if absent
  sed -nE "s/^[[:space:]]*$1[[:space:]]+([0-9]+)[[:space:]]*;.*/\1/p" "$CONF" | head -n 1
}

[ -f "$CONF" ] || die "$CONF not found"

current=$(value_of worker_connections)
if [ -z "$current" ]; then
  grep -qE '^[[:space:]]*events[[:space:]]*\{' "$CONF" || die "$CONF has no events block to size"
  sed -i -E "0,/^[[:space:]]*events[[:space:]]*\{/s//&\n\tworker_connections $WORKER_CONNECTIONS;/" "$CONF"
  echo "worker_connections $WORKER_CONNECTIONS (was nginx's default, 512)"
elif [ "$current" -lt "$WORKER_CONNECTIONS" ]; then
  sed -i -E "s/^([[:space:]]*worker_connections[[:space:]]+)[0-9]+([[:space:]]*;)/\1$WORKER_CONNECTIONS\2/" "$CONF"
  echo "worker_connections $WORKER_CONNECTIONS (was $current)"
fi

current=$(value_of worker_rlimit_nofile)
if [ -z "$current" ]; then
  if grep -qE '^[[:space:]]*worker_processes[[:space:]]' "$CONF"; then
    sed -i -E "0,/^[[:space:]]*worker_processes[[:space:]].*/s//&\nworker_rlimit_nofile $RLIMIT_NOFILE;/" "$CONF"
  else
    sed -i "1i worker_rlimit_nofile $RLIMIT_NOFILE;" "$CONF"
  fi
  echo "worker_rlimit_nofile $RLIMIT_NOFILE (was unset)"
elif [ "$current" -lt "$RLIMIT_NOFILE" ]; then
  sed -i -E "s/^([[:space:]]*worker_rlimit_nofile[[:space:]]+)[0-9]+([[:space:]]*;)/\1$RLIMIT_NOFILE\2/" "$CONF"
  echo "worker_rlimit_nofile $RLIMIT_NOFILE (was $current)"
fi
