#!/usr/bin/env bash
# Tools for pullpin's monitoring tests (test/monitoring.test.ts): Debian's `prometheus` package,
# for `promtool` (check and unit-test the chart's PrometheusRule, parse every PromQL expression of
# the dashboard) and the `prometheus` server (scrape a real `pullpin serve` in a test).
#
#   bash scripts/prometheus-tools.sh ensure   install what is missing (apt-get), stop the package's
#                                             own service, print versions. Fast when all is present.
set -euo pipefail

need_packages() {
  local need=()
  { [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; } || need+=(prometheus)
  echo "${need[@]+"${need[@]}"}"
}

install_packages() {
  if [ "$(id -u)" != 0 ]; then
    echo "prometheus-tools: missing packages ($*) and not root; install them with apt-get" >&2
    exit 1
  fi
  # Keep the package's init script / unit from starting a Prometheus on :9090 during install:
  # invoke-rc.d consults policy-rc.d, exit 101 = "action forbidden". Only add one if none exists.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Lock timeout: another apt-get (registry-tools.sh, a provisioning step) may hold the dpkg lock.
  # No recommends: prometheus-node-exporter would be one more service to stop, and no test uses it.
  local rc=0
  {
    apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
  } || rc=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "prometheus-tools: apt-get failed ($rc)" >&2; exit "$rc"; }
}

stop_package_service() {
  # The tests start their own Prometheus on a free port with a temporary storage directory; the
  # packaged service would only squat :9090 and scrape itself, so stop it (through its own service
  # manager, never by process name).
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet prometheus 2>/dev/null; then
      systemctl stop prometheus || true
      systemctl disable --quiet prometheus 2>/dev/null || true
      echo "prometheus-tools: stopped the prometheus systemd service"
    fi
  elif [ -x /etc/init.d/prometheus ] && [ -s /run/prometheus/prometheus.pid ]; then
    if /etc/init.d/prometheus status >/dev/null 2>&1; then
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
      echo "prometheus-tools: stopped the prometheus init service"
    fi
  fi
}

versions() {
  echo "promtool: $(/usr/bin/promtool --version 2>&1 | head -n1)"
  echo "prometheus: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
}

case "${1:-}" in
  ensure)
    missing="$(need_packages)"
    if [ -n "$missing" ]; then
      # shellcheck disable=SC2086 # word splitting wanted: one package per word
      install_packages $missing
      missing="$(need_packages)"
      [ -z "$missing" ] || { echo "prometheus-tools: still missing after install: $missing" >&2; exit 1; }
    fi
    stop_package_service
    versions
    ;;
  *)
    echo "usage: bash scripts/prometheus-tools.sh ensure" >&2
    exit 2
    ;;
esac
