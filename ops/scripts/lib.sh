# shellcheck shell=bash
# What the ops scripts share; sourced (never run) from beside them:
#   LOG_TAG=deploy [LOG_TO_STDERR=1]; source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# LOG_TO_STDERR=1 for a script whose standard output is data another command reads.

: "${LOG_TAG:?set LOG_TAG before sourcing lib.sh}"

log() {  # log MESSAGE… — one timestamped line under the script's tag
  if [ "${LOG_TO_STDERR:-0}" = 1 ]; then
    printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2
  else
    printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*"
  fi
}

die() {  # die MESSAGE… — on stderr, then exit 1
  printf '[%s] error: %s\n' "$LOG_TAG" "$*" >&2
  exit 1
}

random_secret() {  # 32 characters of [A-Za-z0-9] from /dev/urandom
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32
}
