#!/usr/bin/env bash
# Regenerates test/fixtures/kubectl/*.json from real kubectl output (offline: --dry-run=client).
# Test support turns these workloads' pod templates into Pods and AdmissionReviews.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(bash "$root/scripts/k8s-tools.sh" ensure)"
out="$root/test/fixtures/kubectl"
mkdir -p "$out"
# Flags go before any `--` so they are not taken as the container command.
k() { local verb=$1 kind=$2 name=$3; shift 3; "$bin/kubectl" "$verb" "$kind" "$name" --dry-run=client -o json "$@"; }
k create deployment web --image=ghcr.io/acme/web:latest --image=ghcr.io/acme/sidecar:main --image=nginx --port=8080 -n team-a > "$out/deployment-web.json"
k create deployment tools --image=us-docker.pkg.dev/acme/tools/cli:latest -n team-a > "$out/deployment-tools.json"
k create deployment public --image=docker.io/library/busybox:1.36 -n team-a > "$out/deployment-public.json"
k create job migrate --image=ghcr.io/acme/migrate -n team-a -- /bin/migrate --up > "$out/job-migrate.json"
k create cronjob report --image=ghcr.io/acme/report:main --schedule='*/5 * * * *' -n team-a -- /bin/report > "$out/cronjob-report.json"
# Containers reused as init and ephemeral containers of test pods.
k create deployment init --image=ghcr.io/acme/init:latest -n team-a > "$out/deployment-init.json"
k create deployment debug --image=busybox -n team-a > "$out/deployment-debug.json"
"$bin/kubectl" version --client -o json > "$out/kubectl-version.json"
echo "wrote $(ls "$out" | wc -l) fixtures to $out"
