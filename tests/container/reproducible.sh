#!/usr/bin/env bash
# Checks that the server image is reproducible: builds it twice from the
# committed tree (the Containerfile's `server` target, the release binary
# compiled inside the build), each build from the start with no layer
# cache and nothing left of the other, with the commit's time for the
# clock, then compares the two byte for byte: the cuttle binary's sha256,
# each layer's digest and the image id (the digest of its configuration,
# which names every layer, label and history entry). On a difference it
# says which layers and which files differ, and exits 1.
#
# Both builds start from the same base images (base-image.sh and
# rust-image.sh make them where no registry can be reached, see
# from-source.sh) and the same Debian archive, as a rebuilder would pin them.
#
# Two release builds: tens of minutes on two cores; run it by hand, not in CI.
# Usage: tests/container/reproducible.sh   (needs what from-source.sh needs;
#          PODMAN_STORE overrides the podman store, by default one of its own)
#        tests/container/reproducible.sh --compare DIR1 DIR2
#          compares two images saved with `podman save --format oci-dir
#          --uncompressed` (a rebuilder's, say) the same way, without building.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The sha256 of the file PATH inside image directory DIR, or "absent".
file_sha256() { # DIR PATH
  python3 - "$1" "$2" <<'PY'
import hashlib, json, sys, tarfile
d, path = sys.argv[1], sys.argv[2]
blob = lambda digest: f"{d}/blobs/{digest.replace(':', '/')}"
index = json.load(open(f"{d}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
found = None
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"])) as t:
        for m in t:
            if m.name.lstrip("./") == path and m.isfile():
                found = hashlib.sha256(t.extractfile(m).read()).hexdigest()
print(found or "absent")
PY
}
# The image id (the config's digest), then each layer's digest, one a line.
digests() { # DIR
  python3 - "$1" <<'PY'
import json, sys
d = sys.argv[1]
blob = lambda digest: f"{d}/blobs/{digest.replace(':', '/')}"
index = json.load(open(f"{d}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
print(manifest["config"]["digest"])
for layer in manifest["layers"]:
    print(layer["digest"])
PY
}
# Compares two saved images; prints what matched and what differs, and
# returns 1 on any difference.
compare() { # DIR1 DIR2
  local d1="$1" d2="$2" status=0 b1 b2 i a b id1 id2 scratch
  local -a one two
  b1="$(file_sha256 "$d1" usr/local/bin/cuttle)"
  b2="$(file_sha256 "$d2" usr/local/bin/cuttle)"
  if [ "$b1" = "$b2" ] && [ "$b1" != absent ]; then
    echo "same cuttle binary: sha256 $b1"
  else
    echo "DIFFERENT cuttle binaries: $b1 and $b2"
    status=1
  fi
  mapfile -t one <<<"$(digests "$d1")"
  mapfile -t two <<<"$(digests "$d2")"
  id1="${one[0]#sha256:}" id2="${two[0]#sha256:}"
  one=("${one[@]:1}") two=("${two[@]:1}")
  scratch="$(mktemp -d /var/tmp/cuttle-compare.XXXXXX)"
  for i in "${!one[@]}"; do
    if [ "${one[$i]}" = "${two[$i]:-}" ]; then
      echo "same layer $((i + 1)) of ${#one[@]}: ${one[$i]}"
      continue
    fi
    status=1
    echo "DIFFERENT layer $((i + 1)): ${one[$i]} and ${two[$i]:-none}"
    a="$d1/blobs/${one[$i]/://}"
    b="$d2/blobs/${two[$i]/://}"
    [ -f "$b" ] || continue
    # Metadata first (names, modes, owners, times, link targets), then contents.
    echo "  entries that differ (< first image, > second):"
    diff <(tar -tv --full-time --numeric-owner -f "$a" | sort -k6) \
         <(tar -tv --full-time --numeric-owner -f "$b" | sort -k6) | grep '^[<>]' | head -n 40 || true
    mkdir -p "$scratch/1-$i" "$scratch/2-$i"
    tar -x -C "$scratch/1-$i" -f "$a" 2>/dev/null || true
    tar -x -C "$scratch/2-$i" -f "$b" 2>/dev/null || true
    echo "  contents that differ:"
    diff -r --no-dereference -q "$scratch/1-$i" "$scratch/2-$i" |
      sed "s|$scratch/[12]-$i||g" | head -n 40 || true
  done
  rm -rf "$scratch"
  [ "${#one[@]}" = "${#two[@]}" ] || { echo "DIFFERENT layer counts: ${#one[@]} and ${#two[@]}"; status=1; }
  if [ "$id1" = "$id2" ]; then
    echo "same image id: $id1"
  else
    status=1
    echo "DIFFERENT image ids: $id1 and $id2; their configurations differ by:"
    config() { python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=1, sort_keys=True))' "$1"; }
    diff <(config "$d1/blobs/sha256/$id1") <(config "$d2/blobs/sha256/$id2") || true
  fi
  return "$status"
}

if [ "${1:-}" = --compare ]; then
  [ $# = 3 ] && [ -f "$2/index.json" ] && [ -f "$3/index.json" ] ||
    { echo "usage: $0 --compare DIR1 DIR2 (images saved as oci-dir, uncompressed)" >&2; exit 2; }
  status=0
  compare "$2" "$3" || status=$?
  [ "$status" = 0 ] && echo "ok: the two images are the same, byte for byte" ||
    echo "FAIL: the two images differ" >&2
  exit "$status"
fi

export PODMAN_STORE="${PODMAN_STORE:---root /var/tmp/cuttle-repro/storage --runroot /var/tmp/cuttle-repro/run --storage-driver overlay}"
read -r -a store <<<"$PODMAN_STORE"
now_s() { date +%s; }
work="$(mktemp -d /var/tmp/cuttle-reproducible.XXXXXX)"
cleanup() {
  for n in 1 2; do podman "${store[@]}" rmi -f "localhost/cuttle-server:repro-$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

tests/container/base-image.sh
rust_image="${RUST_IMAGE:-localhost/cuttle-rust:host}"
[ -n "${RUST_IMAGE:-}" ] || tests/container/rust-image.sh

revision="$(git rev-parse HEAD)"
epoch="$(git log -1 --format=%ct HEAD)"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$work/src"
git archive --format=tar HEAD | tar -x -C "$work/src"
echo "commit $revision, its time $created (SOURCE_DATE_EPOCH=$epoch)"
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
  echo "note: the work tree has uncommitted changes; the committed tree is what is built"

for n in 1 2; do
  start=$(now_s)
  # --layers=false and --no-cache: every instruction runs, none is taken
  # from an earlier build. --timestamp sets the image's and its history's
  # times and every file's time in the new layers to the commit's time.
  nice -n 19 buildah "${store[@]}" bud --quiet --layers=false --no-cache --isolation chroot \
    --network host --pull=never --target server --timestamp "$epoch" \
    --build-arg SOURCE_DATE_EPOCH="$epoch" --build-arg RUST_IMAGE="$rust_image" \
    --build-arg REVISION="$revision" --label "org.opencontainers.image.created=$created" \
    -t "localhost/cuttle-server:repro-$n" -f deploy/container/Containerfile "$work/src" >/dev/null
  seconds=$(( $(now_s) - start ))
  podman "${store[@]}" save --quiet --format oci-dir --uncompressed -o "$work/image-$n" \
    "localhost/cuttle-server:repro-$n"
  # Nothing of this build stays for the next: its image goes, and any
  # intermediate image of its stages.
  podman "${store[@]}" rmi -f "localhost/cuttle-server:repro-$n" >/dev/null
  buildah "${store[@]}" rmi --prune >/dev/null 2>&1 || true
  id="$(digests "$work/image-$n")"
  id="${id%%$'\n'*}"
  echo "build $n: $seconds s; image id ${id#sha256:};" \
    "cuttle binary sha256 $(file_sha256 "$work/image-$n" usr/local/bin/cuttle)"
done

status=0
compare "$work/image-1" "$work/image-2" || status=$?
if [ "$status" = 0 ]; then
  echo "ok: two builds of $revision gave the same image, byte for byte"
else
  echo "FAIL: the two builds of $revision differ" >&2
fi
exit "$status"
