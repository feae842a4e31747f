#!/usr/bin/env bash
# Tools for pullpin's monitoring tests (test/monitoring.test.ts): Debian's `prometheus` package,
# for `promtool` (check and unit-test the chart's PrometheusRule, parse every PromQL expression of
# the dashboard) and the `prometheus` server (scrape a real `pullpin serve` in a test).
#
#   bash scripts/prometheus-tools.sh ensure   install what is missing (apt-get), stop the package's
#                                             own service, print versions. Fast when all is present.
set -euo pipefail
TOOL=prometheus-tools
# shellcheck source=lib/apt-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt-tools.sh"

need_packages() {
  local need=()
  { [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; } || need+=(prometheus)
  echo "${need[@]+"${need[@]}"}"
}

versions() {
  echo "promtool: $(/usr/bin/promtool --version 2>&1 | head -n1)"
  echo "prometheus: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
}

case "${1:-}" in
  ensure) apt_tools_ensure prometheus /run/prometheus/prometheus.pid versions ;;
  *)
    echo "usage: bash scripts/prometheus-tools.sh ensure" >&2
    exit 2
    ;;
esac
