#!/bin/sh
# Installs hylo's build dependencies from Debian's packages when they are missing:
# as root with apt-get, otherwise by printing the exact command to run.
set -eu
PACKAGES="gcc make pkg-config libopenblas-dev libcjson-dev check"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "hylo: installing build dependencies:$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
else
    echo "hylo: missing build dependencies:$missing" >&2
    echo "hylo: run:  sudo apt-get install -y$missing" >&2
    exit 1
fi
