#!/usr/bin/env bash
# Make the README's screenshot: the demo site under Xvfb, captured once every device is up.
#   scripts/screenshot.sh [OUT.png]      (SITELINE_SCREENSHOT_TAB=Update: that tab of the device page)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
out="$(readlink -f "${1:-docs/screenshot.png}")"
./run.sh setup
command -v xvfb-run >/dev/null || { echo "xvfb-run not found: apt-get install xvfb xauth" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
rm -f "$out"
SITELINE_SCREENSHOT="$out" SITELINE_SCREENSHOT_WHEN=all-up SITELINE_QUIT_AFTER_SCREENSHOT=1 \
  timeout 180 xvfb-run -a -s "-screen 0 1360x860x24 -dpi 96" .venv/bin/siteline demo
[ -s "$out" ] || { echo "no screenshot was written" >&2; exit 1; }
echo "wrote $out"
