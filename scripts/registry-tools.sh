#!/usr/bin/env bash
# Tools for pullpin's registry tests (test/support/registry.ts): a real registry (Debian's
# docker-registry = CNCF distribution 2.8), skopeo to push/inspect images, and htpasswd for the
# bcrypt entries distribution's htpasswd auth requires.
#
#   bash scripts/registry-tools.sh ensure   install what is missing (apt-get), stop the package's
#                                           own service, print versions. Fast when all is present.
set -euo pipefail
TOOL=registry-tools
# shellcheck source=lib/apt-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt-tools.sh"

need_packages() {
  local need=()
  [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  echo "${need[@]+"${need[@]}"}"
}

versions() {
  echo "docker-registry: $(/usr/bin/docker-registry --version 2>&1 | head -n1)"
  echo "skopeo: $(skopeo --version 2>&1 | head -n1)"
  echo "htpasswd: apache2-utils $(dpkg-query -W -f='${Version}' apache2-utils 2>/dev/null || echo '?')"
  echo "openssl: $(openssl version 2>&1)"
}

case "${1:-}" in
  ensure) apt_tools_ensure docker-registry /var/run/docker-registry.pid versions ;;
  *)
    echo "usage: bash scripts/registry-tools.sh ensure" >&2
    exit 2
    ;;
esac
