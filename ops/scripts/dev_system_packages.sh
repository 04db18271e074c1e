#!/usr/bin/env bash
# Installs the system packages the local stack and the tests need, when they are missing.
# As root it runs apt-get; otherwise it prints the exact command and stops.
set -Eeuo pipefail

PACKAGES=(python3-venv redis-server postgresql)

missing_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      printf '%s\n' "$pkg"
    fi
  done
}

main() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "not a Debian-family system: install ${PACKAGES[*]} yourself" >&2
    return 0
  fi
  local missing
  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages; run: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts the packaged services; the project runs its own throwaway instances instead.
}

main "$@"
