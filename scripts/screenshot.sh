#!/usr/bin/env bash
# Make the README's screenshot: the demo site under Xvfb, captured once every device is up.
#   scripts/screenshot.sh [OUT.png]      (SITELINE_SCREENSHOT_TAB=Update: that tab of the device page)
#   SITELINE_SCREENSHOT_PROVISION=1 scripts/screenshot.sh [OUT.png]   the provisioning wizard at its run page
#      (default docs/screenshot-provision.png; every page of the wizard is left in a temp folder, printed)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
provision="${SITELINE_SCREENSHOT_PROVISION:-}"
default=docs/screenshot.png
[ "$provision" = 1 ] && default=docs/screenshot-provision.png
out="$(readlink -f "${1:-$default}")"
./run.sh setup
command -v xvfb-run >/dev/null || { echo "xvfb-run not found: apt-get install xvfb xauth" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
rm -f "$out"
if [ "$provision" = 1 ]; then
  # The wizard's GUI test drives every page with a scripted step table (no device needed) and grabs each one.
  shots="$(mktemp -d /tmp/siteline-provision-shots.XXXXXX)"
  SITELINE_PROVISION_SHOTS="$shots" QT_QPA_PLATFORM=xcb timeout 180 \
    xvfb-run -a -s "-screen 0 1360x860x24 -dpi 96" \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/gui/test_provision_wizard.py
  cp "$shots/provision-3-running.png" "$out"
  ls "$shots"/provision-*.png
  echo "wrote $out"
  exit 0
fi
SITELINE_SCREENSHOT="$out" SITELINE_SCREENSHOT_WHEN=all-up SITELINE_QUIT_AFTER_SCREENSHOT=1 \
  timeout 180 xvfb-run -a -s "-screen 0 1360x860x24 -dpi 96" .venv/bin/siteline demo
[ -s "$out" ] || { echo "no screenshot was written" >&2; exit 1; }
echo "wrote $out"
