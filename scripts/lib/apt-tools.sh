# Shared by the test-tool scripts that install Debian packages (registry-tools.sh,
# prometheus-tools.sh). Source it, set TOOL (the script's name for messages), define
# need_packages (prints the missing packages), then call apt_tools_ensure SERVICE PIDFILE VERSIONS_FN.

# Installs packages without starting their services, without recommends.
apt_install_quiet() {
  if [ "$(id -u)" != 0 ]; then
    echo "$TOOL: missing packages ($*) and not root; install them with apt-get" >&2
    exit 1
  fi
  # Keep the packages' init scripts / units from starting services during install:
  # invoke-rc.d consults policy-rc.d, exit 101 = "action forbidden". Only add one if none exists.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Lock timeout: another apt-get (the other tool script, a provisioning step) may hold the dpkg lock.
  local rc=0
  {
    apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
  } || rc=$?
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "$TOOL: apt-get failed ($rc)" >&2; exit "$rc"; }
}

# The tests start their own servers on free ports; a packaged service would only squat its port,
# so stop it (through its own service manager, never by process name).
apt_stop_service() {
  local service="$1" pidfile="$2"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet "$service" 2>/dev/null; then
      systemctl stop "$service" || true
      systemctl disable --quiet "$service" 2>/dev/null || true
      echo "$TOOL: stopped the $service systemd service"
    fi
  elif [ -x "/etc/init.d/$service" ] && [ -s "$pidfile" ]; then
    if "/etc/init.d/$service" status >/dev/null 2>&1; then
      "/etc/init.d/$service" stop >/dev/null 2>&1 || true
      echo "$TOOL: stopped the $service init service"
    fi
  fi
}

# `ensure`: install what need_packages reports missing, stop the service, print versions.
apt_tools_ensure() {
  local service="$1" pidfile="$2" versions_fn="$3" missing
  missing="$(need_packages)"
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # word splitting wanted: one package per word
    apt_install_quiet $missing
    missing="$(need_packages)"
    [ -z "$missing" ] || { echo "$TOOL: still missing after install: $missing" >&2; exit 1; }
  fi
  apt_stop_service "$service" "$pidfile"
  "$versions_fn"
}
