#!/usr/bin/env bash
# `npm test`: everything the suite needs, then every test.
#  1. the real registry (Debian docker-registry) and skopeo, installed with apt-get when missing;
#  2. the real helm and kubectl binaries (scripts/k8s-tools.sh);
#  3. a type check of src/ and test/;
#  4. tap over test/**/*.test.ts, and a closing "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/registry-tools.sh ensure
bash scripts/k8s-tools.sh ensure >/dev/null
npx tsc -p tsconfig.json --noEmit
npx tsc -p test/tsconfig.json --noEmit
mkdir -p .tap
status=0
npx tap --reporter=tap "$@" 2>&1 | tee .tap/last-run.tap || status=$?
summary=$(grep -E '^# \{ total: [0-9]+' .tap/last-run.tap | tail -1 || true)
total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
echo "tests: ${pass:-0} passed, ${fail:-0} failed"
if [[ -z "$total" || "${total:-0}" -eq 0 ]]; then echo "no test ran" >&2; exit 1; fi
exit "$status"
