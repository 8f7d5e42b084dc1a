#!/usr/bin/env bash
# Does the .deb install and start on a system that has never seen Siteline or Python's packages?
#   sudo installers/linux/fresh-system-check.sh [dist/siteline_VERSION_amd64.deb] [SUITE]
# A minimal Debian (debootstrap --variant=minbase, default bookworm) in a temporary folder, `apt-get install`
# of the .deb there (apt resolves its Depends from the mirror, as on a technician's laptop), then, inside it:
# `siteline --version`, the window drawn offscreen, then on an X server (Xvfb, standing in for the desktop's own:
# it brings nothing a desktop lacks) through Qt's xcb plugin, each to a PNG copied out as dist/fresh-*.png.
# Mounts happen in a private mount namespace; nothing on this machine changes (the folder is removed at the
# end unless KEEP=1). Needs root, debootstrap and the Debian mirror; takes a few minutes; not part of CI.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
deb="$(readlink -f "${1:-$(ls dist/siteline_*_amd64.deb | head -1)}")"
suite="${2:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap and chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "apt-get install debootstrap" >&2; exit 1; }
root="$(mktemp -d /var/tmp/siteline-fresh.XXXXXX)"
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "kept $root" || rm -rf --one-file-system "$root"; }
trap cleanup EXIT
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "debootstrap $suite (minbase) into $root"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >/dev/null
cp "$deb" "$root/tmp/siteline.deb"
say "inside it: apt-get install ./siteline.deb, then run it"
unshare --mount --fork sh -eu -c '
  root="$1"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/run"
  chroot "$root" sh -eu -c "
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends /tmp/siteline.deb >/dev/null
    echo \"installed: \$(du -sh /opt/siteline | cut -f1) in /opt/siteline\"
    export SITELINE_HOME=/tmp/home QT_QPA_PLATFORM=offscreen
    siteline --version
    start=\$(date +%s%N)
    SITELINE_SCREENSHOT=/tmp/window.png SITELINE_QUIT_AFTER_SCREENSHOT=1 SITELINE_SCREENSHOT_WHEN=shown \
      timeout 60 siteline >/tmp/gui.log 2>&1 || { cat /tmp/gui.log; exit 1; }
    test -s /tmp/window.png && echo \"window drawn offscreen in \$(( (\$(date +%s%N) - start) / 1000000 )) ms\"
    siteline plugins
    apt-get install -y -qq --no-install-recommends xvfb xauth >/dev/null
    QT_QPA_PLATFORM=xcb SITELINE_SCREENSHOT=/tmp/window-xcb.png SITELINE_QUIT_AFTER_SCREENSHOT=1 \
      SITELINE_SCREENSHOT_WHEN=shown timeout 60 xvfb-run -a -s \"-screen 0 1280x800x24\" siteline >/tmp/xcb.log 2>&1 \
      || { cat /tmp/xcb.log; exit 1; }
    test -s /tmp/window-xcb.png && echo \"window drawn on an X server (xcb)\"
  "
  cp "$root/tmp/window.png" dist/fresh-offscreen.png; cp "$root/tmp/window-xcb.png" dist/fresh-xcb.png
' sh "$root"
say "fresh $suite: the .deb installed and ran"
