#!/usr/bin/env bash
# Build Siteline for Linux in one command, from the repository's .venv:
#   installers/linux/build.sh
# Out, in dist/:
#   siteline/                              the one-folder bundle (PyInstaller; run dist/siteline/siteline)
#   siteline-VERSION-linux-x86_64.tar.gz   that folder plus its desktop entry, icons and AppStream metadata
#   siteline_VERSION_amd64.deb             /opt/siteline, /usr/bin/siteline, desktop entry, icons, metainfo
#   Siteline-VERSION-x86_64.AppImage       only when `appimagetool` is on PATH (or APPIMAGETOOL=/path);
#                                          else build/linux/Siteline.AppDir is left ready for it (see README.md)
# Environment: SITELINE_VENV (default .venv), SITELINE_BUNDLE_TRIM=0 (keep all Qt parts, to measure),
# SITELINE_BUNDLE_BROKER=0 (no embedded amqtt broker), SKIP_PYINSTALLER=1 (repack an existing dist/siteline).
set -euo pipefail
REPO="$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)"
cd "$REPO"
VENV="${SITELINE_VENV:-.venv}"
PY="$VENV/bin/python"
HERE=installers/linux
DIST=dist
WORK=build/linux
started=$(date +%s)
say() { printf '\033[1m==> [%3d s] %s\033[0m\n' "$(( $(date +%s) - started ))" "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no $PY: run ./run.sh setup first"
[ "$(uname -m)" = x86_64 ] || die "this recipe builds x86_64 packages; this machine is $(uname -m)"
VERSION="$("$PY" -c 'import siteline; print(siteline.__version__)')"

# --- 1. the one-folder bundle -------------------------------------------------------------------------------
if [ "${SKIP_PYINSTALLER:-0}" != 1 ]; then
  if [ ! -x "$VENV/bin/pyinstaller" ]; then
    say "installing PyInstaller into $VENV (the 'bundle' extra)"
    "$PY" -m pip install -q -c constraints.txt pyinstaller
  fi
  say "PyInstaller: dist/siteline"
  rm -rf "$DIST/siteline"
  "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN --distpath "$DIST" --workpath build/pyinstaller \
    installers/pyinstaller/siteline.spec
fi
BUNDLE="$DIST/siteline"
[ -x "$BUNDLE/siteline" ] || die "$BUNDLE/siteline is missing"
# Symbol tables out of the shared libraries (-46 MB: libpython, zstandard, cryptography, numpy ship them).
# Not in */NAME.libs/: auditwheel patched those with patchelf, and strip then makes numpy's OpenBLAS unloadable
# ("ELF load command address/offset not page-aligned"), which is why the spec's own strip option stays off.
# Never the program itself: PyInstaller appends the Python archive to it.
if [ "${SITELINE_BUNDLE_TRIM:-1}" != 0 ]; then
  command -v strip >/dev/null 2>&1 || die "strip is missing: install binutils (PyInstaller needs it anyway)"
  say "stripping the bundle's shared libraries"
  find "$BUNDLE/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*.libs/*' -print0 |
    xargs -0 -r strip --strip-unneeded
fi

# --- 2. every library the bundle loads resolves (in the bundle or on a stock desktop) -----------------------
# The bootloader puts _internal on the library path; ldd does the same here. Libraries only a Wayland session
# loads may be absent on a build box: they are the .deb's Recommends.
OPTIONAL_LIBS="libwayland-cursor.so.0 libwayland-client.so.0 libwayland-egl.so.1"
internal="$(readlink -f "$BUNDLE/_internal")"
ldd_all() {
  find "$BUNDLE" -type f \( -name '*.so*' -o -path "$BUNDLE/siteline" \) -print0 |
    LD_LIBRARY_PATH="$internal:$internal/PySide6/Qt/lib" xargs -0 ldd 2>/dev/null || true  # ldd fails on non-ELF files
}
missing="$(ldd_all | awk '/not found/ {print $1}' | sort -u)"
for lib in $missing; do
  case " $OPTIONAL_LIBS " in *" $lib "*) ;; *) die "the bundle needs $lib, which neither it nor this system has" ;; esac
done
# Depends: the packages owning what the bundle takes from the system (glibc, libGL/libEGL, libxcb ...).
system_libs="$(ldd_all | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | grep -v "^$internal" | sort -u || true)"
owners=""
for lib in $system_libs; do
  for candidate in "$lib" "/usr$lib" "$(readlink -f "$lib")"; do
    pkg="$(dpkg -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1)" && [ -n "$pkg" ] && { owners+=" $pkg"; break; }
  done
done
# fontconfig's configuration and one font: without them Qt draws every glyph as a box on a bare system.
# libglvnd0/libglx0 come with libgl1; libwayland-client0 is a Recommends (only Wayland sessions load it).
depends_pkgs="$(printf "%s\n" $owners fontconfig-config fonts-dejavu-core |
  grep -v -x -e libglvnd0 -e libglx0 -e libwayland-client0 | sort -u)"
glibc="$(dpkg-query -W -f='${Version}' libc6 | sed 's/-.*//')"
DEPENDS="$(printf '%s\n' $depends_pkgs | sed "s/^libc6\$/libc6 (>= $glibc)/" | paste -sd, - | sed 's/,/, /g')"
# Only a Wayland session loads these; X11 (xcb) libraries beyond libxcb1 come inside the bundle.
RECOMMENDS="libwayland-client0, libwayland-cursor0, libwayland-egl1"

# --- 3. the desktop files: entry, icons, AppStream metadata -------------------------------------------------
say "desktop entry, icons, AppStream metadata"
rm -rf "$WORK"
SHARE="$WORK/share"
mkdir -p "$SHARE/applications" "$SHARE/icons/hicolor/scalable/apps" "$SHARE/icons/hicolor/256x256/apps" \
  "$SHARE/metainfo"
install -m 0644 resources/siteline.desktop "$SHARE/applications/siteline.desktop"
install -m 0644 resources/icons/siteline.svg "$SHARE/icons/hicolor/scalable/apps/siteline.svg"
"$PY" "$HERE/render_icon.py" resources/icons/siteline.svg "$SHARE/icons/hicolor/256x256/apps/siteline.png" 256
METAINFO="$SHARE/metainfo/io.siteline.Siteline.metainfo.xml"
sed -e "s/@VERSION@/$VERSION/" -e "s/@DATE@/$(date -u +%F)/" "$HERE/io.siteline.Siteline.metainfo.xml.in" > "$METAINFO"
chmod 0644 "$METAINFO"
if command -v appstreamcli >/dev/null 2>&1; then
  appstreamcli validate --no-net "$METAINFO" >&2 || die "appstreamcli rejected $METAINFO"
else
  say "appstreamcli not found (Debian package appstream): metainfo not validated"
fi

# --- 4. the .tar.gz: siteline-VERSION/ = the bundle + share/ ------------------------------------------------
TARBALL="$DIST/siteline-$VERSION-linux-x86_64.tar.gz"
say "$TARBALL"
stage="$WORK/tar/siteline-$VERSION"
mkdir -p "$stage"
cp -al "$BUNDLE/." "$stage/"   # hard links: no second copy of 200 MB
cp -a "$SHARE" "$stage/share"
install -m 0644 "$HERE/TARBALL-README.txt" "$stage/README.txt"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(stat -c %Y "$BUNDLE/siteline")" \
  -C "$WORK/tar" -czf "$TARBALL" "siteline-$VERSION"

# --- 5. the .deb ----------------------------------------------------------------------------------------------
DEB="$DIST/siteline_${VERSION}_amd64.deb"
say "$DEB"
root="$WORK/deb"
mkdir -p "$root/opt" "$root/usr/bin" "$root/usr/share/doc/siteline" "$root/DEBIAN"
cp -al "$BUNDLE" "$root/opt/siteline"
ln -s /opt/siteline/siteline "$root/usr/bin/siteline"
cp -a "$SHARE/." "$root/usr/share/"
{ echo "Siteline $VERSION"; echo "Copyright: Siteline engineers. All rights reserved."
  echo "Bundled third-party components keep their own licenses (see /opt/siteline/_internal/*.dist-info)."
} > "$root/usr/share/doc/siteline/copyright"
installed_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$installed_kb/" -e "s/@DEPENDS@/$DEPENDS/" \
  -e "s/@RECOMMENDS@/$RECOMMENDS/" "$HERE/control.in" > "$root/DEBIAN/control"
chmod -R u=rwX,go=rX "$root"
# xz -6 for a release; the test run asks for -1 (SITELINE_DEB_XZ_LEVEL=1): same contents, a minute less.
dpkg-deb --root-owner-group -Zxz -z"${SITELINE_DEB_XZ_LEVEL:-6}" --build "$root" "$DEB" >/dev/null
if command -v lintian >/dev/null 2>&1; then
  lintian --no-tag-display-limit "$DEB" >&2 || say "lintian has remarks (not fatal)"
fi

# --- 6. the AppImage (or its AppDir) ------------------------------------------------------------------------
appdir="$WORK/Siteline.AppDir"
say "AppDir: $appdir"
mkdir -p "$appdir/usr"
cp -al "$BUNDLE" "$appdir/usr/siteline"
cp -a "$SHARE" "$appdir/usr/share"
install -m 0755 "$HERE/AppRun" "$appdir/AppRun"
cp "$SHARE/applications/siteline.desktop" "$appdir/siteline.desktop"
cp "$SHARE/icons/hicolor/256x256/apps/siteline.png" "$appdir/siteline.png"
ln -s siteline.png "$appdir/.DirIcon"
tool="${APPIMAGETOOL:-$(command -v appimagetool || true)}"
if [ -n "$tool" ]; then
  ARCH=x86_64 "$tool" --no-appstream "$appdir" "$DIST/Siteline-$VERSION-x86_64.AppImage" >&2
else
  say "no appimagetool (not on PyPI, Debian or npm as a usable binary): AppImage skipped, AppDir kept in $appdir"
fi

say "done:"
ls -la "$DIST" >&2
