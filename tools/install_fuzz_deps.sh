#!/bin/sh
# Installs what `make fuzz` needs (clang with libFuzzer and the sanitizer
# runtimes: Debian's clang and libclang-rt-14-dev), if missing.
#   tools/install_fuzz_deps.sh   install (apt-get) what is missing; exits 0
#                                when everything is present
set -e
PKGS="clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "pregate: installing Debian packages for fuzzing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
