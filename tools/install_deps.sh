#!/bin/sh
# Installs the Debian packages pregate's build and tests need, if missing.
#   tools/install_deps.sh                  install (apt-get) what is missing
#   tools/install_deps.sh --check-or-install  the same, silent when all present
set -e
PKGS="build-essential libjansson-dev libpcre2-dev liburing-dev libutf8proc-dev libmicrohttpd-dev librsvg2-bin"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "pregate: installing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
