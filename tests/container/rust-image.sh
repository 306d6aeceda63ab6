#!/usr/bin/env bash
# Makes localhost/cuttle-rust:host, the image the Containerfile's build stage
# runs in where no registry can give docker.io/library/rust: the Rust
# toolchain installed on this host (rustup's, the one `cargo` runs) on top of
# the base image that base-image.sh makes.
# Usage: tests/container/rust-image.sh  (reads $PODMAN_STORE, see smoke.sh)
set -euo pipefail
store=(${PODMAN_STORE:---root /var/tmp/cuttle-ci/storage --runroot /var/tmp/cuttle-ci/run --storage-driver overlay})
name=localhost/cuttle-rust:host
if podman "${store[@]}" image exists "$name"; then
  echo "$name is already in the store"
  exit 0
fi
work="$(mktemp -d /var/tmp/cuttle-rust-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
toolchain="$(dirname "$(dirname "$(rustup which rustc)")")"
# Hard links where the file system allows, a copy where it does not.
cp -al "$toolchain" "$work/toolchain" 2>/dev/null || cp -a "$toolchain" "$work/toolchain"
rm -rf "$work/toolchain/share/doc"
# Crates are fetched through this host's network: the image trusts the
# local certificate authorities the host trusts.
mkdir -p "$work/local-ca"
cp /usr/local/share/ca-certificates/*.crt "$work/local-ca/" 2>/dev/null || true
cat >"$work/Containerfile" <<'CONTAINERFILE'
FROM docker.io/library/debian:bookworm-slim
# A C compiler and libc's headers: rustc links through cc, and ring builds C.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY local-ca /usr/local/share/ca-certificates
RUN update-ca-certificates >/dev/null
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
CONTAINERFILE
buildah "${store[@]}" bud --quiet --isolation chroot --network host --pull=never \
  -t "$name" -f "$work/Containerfile" "$work" >/dev/null
echo "made $name from $toolchain ($(rustc --version))"
