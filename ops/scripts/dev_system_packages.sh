#!/usr/bin/env bash
# Installs the system packages the local stack needs (and, with --test, the ones the full test
# suite uses: shellcheck, a container runtime for the deploy test, Chromium for the dashboard)
# when they are missing. As root it runs apt-get; otherwise it prints the exact command.
set -Eeuo pipefail

STACK_PACKAGES=(python3-venv redis-server postgresql)
TEST_PACKAGES=(shellcheck systemd-container debootstrap netcat-openbsd openssh-client curl chromium iproute2)

missing_packages() {
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      printf '%s\n' "$pkg"
    fi
  done
}

main() {
  local wanted=("${STACK_PACKAGES[@]}") required=1
  if [ "${1:-}" = "--test" ]; then
    wanted+=("${TEST_PACKAGES[@]}")
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "not a Debian-family system: install ${wanted[*]} yourself" >&2
    return 0
  fi
  local missing
  mapfile -t missing < <(missing_packages "${wanted[@]}")
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages; run: sudo apt-get install -y ${missing[*]}" >&2
    # Without the test-only packages the tests that need them are skipped, not failed.
    mapfile -t missing < <(missing_packages "${STACK_PACKAGES[@]}")
    [ "${#missing[@]}" -eq 0 ] && required=0
    return "$required"
  fi
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

main "$@"
