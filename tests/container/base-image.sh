#!/usr/bin/env bash
# Makes the base image the Containerfile starts from
# (docker.io/library/debian:bookworm-slim) on a machine that cannot pull it:
# a minimal Debian root file system made with debootstrap from the Debian
# mirror apt already uses, imported into the given podman store.
# Usage: tests/container/base-image.sh  (reads $PODMAN_STORE, see smoke.sh)
set -euo pipefail
store=(${PODMAN_STORE:---root /var/tmp/cuttle-ci/storage --runroot /var/tmp/cuttle-ci/run --storage-driver overlay})
name=docker.io/library/debian:bookworm-slim
if podman "${store[@]}" image exists "$name"; then
  echo "$name is already in the store"
  exit 0
fi
mirror="$(grep -rhoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]+' | grep -v security | head -1 || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d /var/tmp/cuttle-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -cf - . |
  podman "${store[@]}" import --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "imported $name from $mirror"
