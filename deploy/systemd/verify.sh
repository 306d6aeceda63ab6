#!/usr/bin/env bash
# Checks the systemd units with `systemd-analyze verify`: directives, values,
# and that ExecStart names a program that exists. BINARY is the cuttle
# binary to name in ExecStart (default: /usr/local/bin/cuttle, as installed).
# Usage: deploy/systemd/verify.sh [BINARY]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$(realpath "${1:-/usr/local/bin/cuttle}")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for unit in "$here"/*.service; do
  sed "s#/usr/local/bin/cuttle#$binary#g" "$unit" >"$scratch/$(basename "$unit")"
done
# verify prints warnings and still exits 0 for some; any output is a failure.
out="$(cd "$scratch" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no ./*.service 2>&1)" || {
  printf '%s\n' "$out" >&2
  exit 1
}
if [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  exit 1
fi
echo "systemd units verified: $(cd "$here" && echo *.service)"
