#!/usr/bin/env bash
# Tools for pullpin's registry tests (test/support/registry.ts): a real registry (Debian's
# docker-registry = CNCF distribution 2.8), skopeo to push/inspect images, and htpasswd for the
# bcrypt entries distribution's htpasswd auth requires.
#
#   bash scripts/registry-tools.sh ensure   install what is missing (apt-get), stop the package's
#                                           own service, print versions. Fast when all is present.
set -euo pipefail

need_packages() {
  local need=()
  [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  echo "${need[@]+"${need[@]}"}"
}

install_packages() {
  if [ "$(id -u)" != 0 ]; then
    echo "registry-tools: missing packages ($*) and not root; install them with apt-get" >&2
    exit 1
  fi
  # Keep the package's init script / unit from starting a registry on :5000 during install:
  # invoke-rc.d consults policy-rc.d, exit 101 = "action forbidden". Only add one if none exists.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Lock timeout: another apt-get (e.g. a provisioning step) may still hold the dpkg lock.
  local rc=0
  {
    apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
  } || rc=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "registry-tools: apt-get failed ($rc)" >&2; exit "$rc"; }
}

stop_package_service() {
  # The tests start their own registries on free ports and never use the packaged service; if it
  # runs it only squats :5000, so stop it (through its own service manager, never by process name).
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet docker-registry 2>/dev/null; then
      systemctl stop docker-registry || true
      systemctl disable --quiet docker-registry 2>/dev/null || true
      echo "registry-tools: stopped the docker-registry systemd service"
    fi
  elif [ -x /etc/init.d/docker-registry ] && [ -s /var/run/docker-registry.pid ]; then
    if /etc/init.d/docker-registry status >/dev/null 2>&1; then
      /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
      echo "registry-tools: stopped the docker-registry init service"
    fi
  fi
}

versions() {
  echo "docker-registry: $(/usr/bin/docker-registry --version 2>&1 | head -n1)"
  echo "skopeo: $(skopeo --version 2>&1 | head -n1)"
  echo "htpasswd: apache2-utils $(dpkg-query -W -f='${Version}' apache2-utils 2>/dev/null || echo '?')"
  echo "openssl: $(openssl version 2>&1)"
}

case "${1:-}" in
  ensure)
    missing="$(need_packages)"
    if [ -n "$missing" ]; then
      # shellcheck disable=SC2086 # word splitting wanted: one package per word
      install_packages $missing
      missing="$(need_packages)"
      [ -z "$missing" ] || { echo "registry-tools: still missing after install: $missing" >&2; exit 1; }
    fi
    stop_package_service
    versions
    ;;
  *)
    echo "usage: bash scripts/registry-tools.sh ensure" >&2
    exit 2
    ;;
esac
