#!/usr/bin/env bash
# The README's two commands on a bare Debian 12 machine: a chroot made by debootstrap (minbase with
# python3 and make only: no Xvfb, no X or GL libraries, no compiler, no python3-venv), a fresh clone
# of this repository in it and the shared data beside it, then `make demo` and `make test` as root
# with an empty environment (no DISPLAY). Run as root on a Debian machine; it installs debootstrap.
#
#   scripts/bare-machine.sh [CHROOT]          default CHROOT: /work/bare/root (made if missing)
#   DEMO_ONLY=1 scripts/bare-machine.sh       only `make demo`
#
# What the chroot borrows from the host: the kernel, the network (and its certificate authorities),
# the shared data (read-only) and this workplace's pip settings with the folders of wheels they name (the CPU build of torch lies
# there; from PyPI, torch==2.13.0 is a several-GB CUDA build). Logs and times: CHROOT/../*.log.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(cd "$REPO/../shared" && pwd)
ROOT=${1:-/work/bare/root}
LOGS=$(dirname "$ROOT")

if [ ! -x "$ROOT/usr/bin/python3" ]; then
    command -v debootstrap > /dev/null || apt-get install -y -qq debootstrap > /dev/null
    debootstrap --variant=minbase --include=python3,make,ca-certificates bookworm "$ROOT" \
        http://deb.debian.org/debian > "$LOGS/debootstrap.log"
fi
mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2> /dev/null || umount -l "${mounted[i]}"; done
}
trap cleanup EXIT
bind() {  # bind SOURCE TARGET [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounted+=("$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
bind /proc "$ROOT/proc"
bind /sys "$ROOT/sys"
bind /dev "$ROOT/dev"
bind "$SHARED" "$ROOT/work/shared" ro
for folder in /opt/pypi /opt/pypi-more /opt/wheels; do
    [ -d "$folder" ] && bind "$folder" "$ROOT$folder" ro
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"  # the network's own CA, if any
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$ROOT/etc/xdg" && cp -r /etc/xdg/pip "$ROOT/etc/xdg/"

rm -rf "$ROOT/work/main"
git clone -q "$REPO" "$ROOT/work/main"
echo "bare: $(git -C "$ROOT/work/main" log --oneline -1)"
echo "bare: missing before the run: $(chroot "$ROOT" sh -c 'for p in xvfb libgl1 libegl1 libglib2.0-0 python3-venv gcc; do
    dpkg-query -W -f="\${Status}" $p 2>/dev/null | grep -q "install ok installed" || printf "%s " $p; done')"

run() {  # run NAME COMMAND: in the chroot with an empty environment, timed, logged
    local start=$SECONDS
    if chroot "$ROOT" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
            bash -c "cd /work/main && $2" > "$LOGS/$1.log" 2>&1; then
        echo "bare: $1: passed in $((SECONDS - start)) s"
    else
        echo "bare: $1: FAILED after $((SECONDS - start)) s (see $LOGS/$1.log)"
        tail -20 "$LOGS/$1.log"
        return 1
    fi
}
run demo "make demo"
tail -5 "$LOGS/demo.log"
[ "${DEMO_ONLY:-0}" = 1 ] && exit 0
run test "make test"
tail -3 "$LOGS/test.log"
