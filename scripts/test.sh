#!/usr/bin/env bash
# `npm test`: everything the suite needs, then every test, on two Node versions.
#  1. the real registry (Debian docker-registry) and skopeo, and Debian's prometheus (promtool and
#     the server, for test/monitoring.test.ts), installed with apt-get when missing;
#  2. the real helm and kubectl binaries (scripts/k8s-tools.sh) and a Node 24 binary (scripts/node24.sh);
#  3. a type check of src/ and test/;
#  4. the linter (eslint.config.js: neostandard, typescript-eslint type-checked), zero warnings;
#  5. tap over test/**/*.test.ts on the machine's Node, then again on Node 24 (the production
#     image's Node), and one closing "tests: N passed, N failed" line summing both runs (CI reads it).
# Arguments go to both tap runs (`npm test -- test/cli.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/registry-tools.sh ensure
bash scripts/prometheus-tools.sh ensure
bash scripts/k8s-tools.sh ensure >/dev/null
node24="$(bash scripts/node24.sh ensure)"
npx tsc -p tsconfig.json --noEmit
npx tsc -p test/tsconfig.json --noEmit

# A lint failure fails `npm test`, after the tests have run: one run shows both.
lint_status=0
echo "# ---- eslint ----"
npx eslint . --max-warnings 0 || lint_status=$?

mkdir -p .tap
status=0
passed=0
failed=0
# tap starts every test process with its own process.execPath, so running tap itself on a Node
# (first on PATH: npx and tap's `#!/usr/bin/env node`) runs the tests, and whatever they spawn with
# process.execPath, on that Node. PULLPIN_TEST_NODE_MAJOR lets test/runtime.test.ts fail when the
# run is not on the Node it was meant for.
run() {
  local label="$1" node="$2"; shift 2
  local version major out summary total pass fail rc=0
  version="$("$node" --version)"
  major="${version#v}"; major="${major%%.*}"
  out=".tap/node-$major.tap"
  echo "# ---- tap on $label Node $version ($node) ----"
  PATH="$(dirname "$node"):$PATH" PULLPIN_TEST_NODE_MAJOR="$major" \
    npx tap --reporter=tap "$@" 2>&1 | tee "$out" || rc=$?
  summary=$(grep -E '^# \{ total: [0-9]+' "$out" | tail -1 || true)
  total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
  pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
  fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
  echo "# node $version: ${pass:-0} passed, ${fail:-0} failed"
  passed=$((passed + ${pass:-0}))
  failed=$((failed + ${fail:-0}))
  if [[ -z "$total" || "${total:-0}" -eq 0 ]]; then echo "no test ran on Node $version" >&2; rc=1; fi
  if [[ "$rc" -ne 0 ]]; then status=$rc; fi
}
run "the machine's" "$(command -v node)" "$@"
run "the image's" "$node24" "$@"
if [[ "$lint_status" -ne 0 ]]; then echo "eslint found problems (above): npm test fails" >&2; status=$lint_status; fi
echo "tests: $passed passed, $failed failed"
exit "$status"
