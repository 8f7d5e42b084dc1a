#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./run.sh demo    set up, then launch Siteline on a simulated site
#   ./run.sh test    set up, then run lint, type checks and the whole test suite
#   ./run.sh setup   only set up (Debian packages when root, the .venv)
# Set-up is idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

VENV="${SITELINE_VENV:-.venv}"
PY="${PYTHON:-python3}"

# Debian packages, by what needs them.
QT_RUNTIME="libglib2.0-0 libgl1 libegl1 libdbus-1-3 libfontconfig1 libxkbcommon0 fonts-dejavu-core"
QT_XCB="libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0"
PEERS="mosquitto mosquitto-clients openssh-server openssh-client socat busybox libubootenv-tool u-boot-tools openssl rauc squashfs-tools util-linux gzip xz-utils zstd cpio bmap-tools dbus-daemon"
TOOLS="python3-venv xvfb xauth imagemagick procps iptables appstream binutils"
PACKAGES="$QT_RUNTIME $QT_XCB $PEERS $TOOLS"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

install_debian_packages() {
  command -v dpkg-query >/dev/null 2>&1 || { say "not a Debian/Ubuntu system: install the equivalents of: $PACKAGES"; return 0; }
  local missing=()
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}"
    say "install them with: sudo apt-get install -y ${missing[*]}"
    return 0
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts services on install; the tests start their own peers on loopback.
  for svc in mosquitto ssh; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
}

check_python() {
  if ! "$PY" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "Siteline needs Python 3.11 or newer; '$PY' is $("$PY" --version 2>&1 || echo missing)."
    say "Set PYTHON=/path/to/python3.11 and run again."
    exit 1
  fi
}

setup_venv() {
  check_python
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.siteline-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] \
     || [ plugins/siteline-openwrt/pyproject.toml -nt "$stamp" ]; then
    say "installing Siteline and its test tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[test,broker]'
    # The OpenWrt plugin is its own distribution, installed the way a vendor's plugin would be.
    "$VENV/bin/python" -m pip install -q -c constraints.txt --no-deps -e plugins/siteline-openwrt
    touch "$stamp"
  fi
}

setup() {
  install_debian_packages
  setup_venv
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup
    ;;
  demo)
    setup
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ "$(uname -s)" = Linux ]; then
      say "no display here: running the demo site headless (its devices and their URLs below)."
      say "on a desktop session the same command opens the window; scripts/screenshot.sh shows it under Xvfb."
      exec "$VENV/bin/siteline" demo --headless "$@"
    fi
    exec "$VENV/bin/siteline" demo "$@"
    ;;
  bundle)
    setup
    exec installers/linux/build.sh "$@"
    ;;
  test)
    setup
    say "ruff"
    "$VENV/bin/ruff" check .
    say "mypy (core, simulator, plugins)"
    "$VENV/bin/mypy"
    if [ $# -gt 0 ]; then
      exec "$VENV/bin/python" -m pytest "$@"
    fi
    # Two processes: Qt's event dispatch must never run inside the non-GUI tests. Once a test has
    # created the QApplication, pytest-qt processes Qt events after every later test, and a socket
    # notifier left by a closed qasync loop can fire on a reused fd there (a segfault, seen once).
    say "pytest: unit and integration tests (real peers, no Qt), two workers"
    rc=0
    # Two workers, each file on one of them (module fixtures stay whole): the tests mostly wait on real
    # peers, reboots and links, so two at once on CI's two cores take about half the time.
    "$VENV/bin/python" -m pytest -n 2 --dist loadfile tests/unit tests/integration || rc=$?
    # One process per GUI test file: after many windows, qasync loops and real links in one process,
    # the terminal flood test segfaulted inside Qt's event dispatch about one run in five on a loaded
    # 2-core box (never on its own, nor in 8 runs under gdb); the cause is not yet found. Files stay
    # isolated so such state cannot leak from one file into the next; each file still fails the run.
    # Two files run at once; each one's output is printed whole when it ends.
    say "pytest: GUI tests (pytest-qt, offscreen), one process per file, two at a time"
    logs="$(mktemp -d)"
    for file in tests/gui/test_*.py; do
      name="$(basename "$file" .py)"
      # A file whose process dies of a signal (the rare segfault inside Qt's event dispatch, see above) is run
      # once more, and says so loudly; a second crash, or any failed test, still fails the run.
      ( "$VENV/bin/python" -m pytest -q "$file" >"$logs/$name.log" 2>&1; code=$?
        if [ "$code" -ge 128 ]; then
          echo "!!! $file: the test process died (exit $code); running the file once more" >>"$logs/$name.log"
          "$VENV/bin/python" -m pytest -q "$file" >>"$logs/$name.log" 2>&1; code=$?
        fi
        echo "$code" >"$logs/$name.rc" ) &
      while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
    done
    wait
    for file in tests/gui/test_*.py; do
      name="$(basename "$file" .py)"
      echo "--- $file"
      cat "$logs/$name.log"
      code="$(cat "$logs/$name.rc" 2>/dev/null || echo 1)"
      [ "$code" = 0 ] || rc=$((rc ? rc : code))
    done
    say "Linux bundle: build it, then smoke-test it (every process from dist/siteline)"
    if SITELINE_DEB_XZ_LEVEL=1 installers/linux/build.sh; then
      SITELINE_BUNDLE=dist/siteline "$VENV/bin/python" -m pytest -q tests/bundle || rc=$((rc ? rc : 1))
    else
      rc=$((rc ? rc : 1))
    fi
    rm -rf "$logs"
    exit "$rc"
    ;;
  *)
    echo "usage: ./run.sh demo|test|setup" >&2
    exit 2
    ;;
esac
