#!/bin/sh
# The Debian packages a group of biounet's commands needs, installed where missing and where this
# user may (root with apt-get); otherwise one line saying what to install, and exit 1.
#
#   scripts/system-packages.sh venv     python3-venv, when `python3 -m venv` cannot make a venv with pip
#   scripts/system-packages.sh napari   Xvfb and the X / GL libraries Qt and napari's OpenGL canvas load
#                                       (tests/napari open real napari windows on a virtual screen)
#
# On a machine without dpkg (not Debian or Ubuntu) it checks nothing: the tests then say what is missing.
set -eu
case ${1:-} in
venv) packages="python3-venv" ;;
napari) packages="xvfb xauth libglib2.0-0 libgl1 libegl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3 libxkbcommon-x11-0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0
  libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0" ;;
*) echo "usage: scripts/system-packages.sh venv|napari" >&2; exit 2 ;;
esac
command -v dpkg-query > /dev/null 2>&1 || exit 0
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
    echo "installing Debian packages for $1:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # the package names are words
    apt-get install -y -qq --no-install-recommends $missing > /dev/null
    exit 0
fi
echo "biounet ($1) needs Debian packages that are missing:$missing; install them (sudo apt-get install$missing) or run this as root" >&2
exit 1
