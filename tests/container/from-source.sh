#!/usr/bin/env bash
# Builds the server and agent images from source, as a user without a Rust
# toolchain of their own would: the Containerfile's `build` stage compiles
# the release binary inside the image build, and the final stages copy it.
# Then the server image starts on 127.0.0.1 and answers /api, and the
# binary in the agent image names the same version.
#
# The build stage's image (RUST_IMAGE) is normally docker.io/library/rust.
# Where no registry can give it, rust-image.sh makes one from the Rust
# toolchain installed on this host on top of the base image that
# base-image.sh makes, and names it localhost/cuttle-rust:host. Set
# RUST_IMAGE to use another.
#
# A release build on two cores takes many minutes, so CI builds its images
# around the binary it has built (smoke.sh); run this by hand.
#
# Usage: tests/container/from-source.sh   (needs what smoke.sh needs)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PODMAN_STORE="${PODMAN_STORE:---root /var/tmp/cuttle-ci/storage --runroot /var/tmp/cuttle-ci/run --storage-driver overlay}"
read -r -a store <<<"$PODMAN_STORE"
now_ms() { date +%s%3N; }
work="$(mktemp -d /var/tmp/cuttle-from-source.XXXXXX)"
trap 'podman "${store[@]}" rm -f -t 0 cuttle-from-source >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

tests/container/base-image.sh

rust_image="${RUST_IMAGE:-localhost/cuttle-rust:host}"
[ -n "${RUST_IMAGE:-}" ] || tests/container/rust-image.sh

# The committed tree, as a clone would have it: one fixed build context, so
# the agent's build stage is the server's, taken from the layer cache.
revision="$(git rev-parse HEAD)"
# The commit's time stands in for the clock, as reproducible.sh builds.
epoch="$(git log -1 --format=%ct HEAD)"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$work/src"
git archive --format=tar HEAD | tar -x -C "$work/src"
for target in server agent; do
  start=$(now_ms)
  # --layers: the agent's build stage is the server's, built once. A layer
  # cached from an earlier build keeps that build's revision label, so the
  # image is labelled again.
  buildah "${store[@]}" bud --quiet --layers --isolation chroot --network host --pull=never \
    --target "$target" --build-arg RUST_IMAGE="$rust_image" --build-arg REVISION="$revision" \
    --timestamp "$epoch" --build-arg SOURCE_DATE_EPOCH="$epoch" \
    --label "org.opencontainers.image.created=$created" \
    -t "localhost/cuttle-$target:source" -f deploy/container/Containerfile "$work/src" >/dev/null
  c="$(buildah "${store[@]}" from --pull=never "localhost/cuttle-$target:source")"
  buildah "${store[@]}" config --label "org.opencontainers.image.revision=$revision" "$c"
  buildah "${store[@]}" commit --quiet --rm --timestamp "$epoch" "$c" "localhost/cuttle-$target:source" >/dev/null
  size="$(podman "${store[@]}" image inspect --format '{{.Size}}' "localhost/cuttle-$target:source")"
  echo "built localhost/cuttle-$target:source from source in $(( $(now_ms) - start )) ms ($(( size / 1024 / 1024 )) MB)"
done

# The images run: the server answers /api on a free loopback port and stops
# cleanly, and both images hold the same binary.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
polling="$(free_port)"
data="$work/data"
mkdir -p "$data" && chown 10001:10001 "$data"
podman "${store[@]}" run -d --name cuttle-from-source --runtime runc --network host --init \
  --read-only --tmpfs /tmp --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
  -v "$data:/data" -e "CUTTLE_LISTEN=127.0.0.1:$port" \
  -e "CUTTLE_POLLING_LISTEN=127.0.0.1:$polling" localhost/cuttle-server:source >/dev/null
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/api" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/api" >/dev/null
podman "${store[@]}" stop -t 20 cuttle-from-source >/dev/null
code="$(podman "${store[@]}" inspect --format '{{.State.ExitCode}}' cuttle-from-source)"
[ "$code" = 0 ] || { echo "the server stopped with exit code $code" >&2; exit 1; }
binary_version() {
  podman "${store[@]}" run --rm --runtime runc --network host \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
    --entrypoint /usr/local/bin/cuttle "$1" --version
}
server_version="$(binary_version localhost/cuttle-server:source)"
agent_version="$(binary_version localhost/cuttle-agent:source)"
[ "$server_version" = "$agent_version" ] ||
  { echo "the server image holds '$server_version', the agent image '$agent_version'" >&2; exit 1; }
echo "the server image answered /api and stopped with exit code 0; both images hold $server_version"
echo "ok: both images build from source and run"
