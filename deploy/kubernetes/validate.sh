#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates the result
# offline, strictly (unknown fields and wrong types fail), against the
# schemas of each Kubernetes version still supported: 1.35, 1.36, 1.37 at
# the end of 2026. Override with KUBERNETES_VERSIONS="1.36.0 1.37.0".
# Needs kubectl (with its built-in kustomize) and kubernetes-validate
# (`pip install kubernetes-validate`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
versions=(${KUBERNETES_VERSIONS:-1.35.0 1.36.0 1.37.0})
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for overlay in "$here"/overlays/*/; do
  name="$(basename "$overlay")"
  kubectl kustomize "$overlay" >"$scratch/$name.yaml"
  for version in "${versions[@]}"; do
    kubernetes-validate --strict --quiet -k "$version" "$scratch/$name.yaml"
  done
  echo "$name: $(grep -c '^kind:' "$scratch/$name.yaml") resources valid for Kubernetes ${versions[*]}"
done
