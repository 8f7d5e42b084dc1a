#!/usr/bin/env bash
# Build Siteline for macOS in one command, from a checkout (on a Mac, with Python 3.11+):
#   installers/macos/build.sh
# Out, in dist/:
#   Siteline.app                          the app (PyInstaller's .app from installers/pyinstaller/siteline.spec)
#   Siteline-VERSION-macos-ARCH.dmg       the app and an /Applications link, to drag it across
# Signing (the build is "signing-ready": the same script signs for real when given an identity):
#   SIGN_IDENTITY="Developer ID Application: NAME (TEAMID)"  hardened runtime, secure timestamp, entitlements.plist;
#                                         without it the app is signed ad hoc (runs on the Mac that built it,
#                                         Gatekeeper refuses it elsewhere until it is right-click > Open'ed).
#   Notarization, only with SIGN_IDENTITY, when one of these is set:
#     NOTARY_PROFILE=name                 a keychain profile made with `xcrun notarytool store-credentials`
#     NOTARY_APPLE_ID, NOTARY_TEAM_ID, NOTARY_PASSWORD (an app-specific password)
#     NOTARY_KEY=AuthKey_X.p8, NOTARY_KEY_ID, NOTARY_ISSUER (an App Store Connect API key)
#   then the .dmg is submitted (notarytool submit --wait) and the ticket stapled to it.
# Other environment: PYTHON (default python3), SITELINE_VENV (default .venv-mac), SKIP_PYINSTALLER=1 (reuse
# dist/Siteline.app).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$REPO"
HERE=installers/macos
VENV="${SITELINE_VENV:-.venv-mac}"
PY="$VENV/bin/python"
APP=dist/Siteline.app
ENTITLEMENTS="$HERE/entitlements.plist"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || die "this builds the macOS app and needs a Mac (codesign, hdiutil); this is $(uname -s)"

# --- 1. the build venv --------------------------------------------------------------------------------------
if [ ! -x "$PY" ]; then
  say "creating $VENV with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
"$PY" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' || die "$PY is older than Python 3.11"
if [ "${SKIP_PYINSTALLER:-0}" != 1 ]; then
  say "installing Siteline and PyInstaller (pinned by constraints.txt)"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -c constraints.txt ".[bundle]"
  if [ -f plugins/siteline-openwrt/pyproject.toml ]; then
    say "installing the OpenWrt plugin"
    "$PY" -m pip install -q -c constraints.txt ./plugins/siteline-openwrt
  fi
fi
VERSION="$("$PY" -c 'import siteline; print(siteline.__version__)')"
ARCH="$(uname -m)"
DMG="dist/Siteline-$VERSION-macos-$ARCH.dmg"

# --- 2. icons and the app -----------------------------------------------------------------------------------
if [ "${SKIP_PYINSTALLER:-0}" != 1 ]; then
  say "icons: installers/icons/siteline.icns"
  "$PY" installers/icons/make_icons.py
  say "PyInstaller: $APP"
  rm -rf "$APP" dist/siteline
  "$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    installers/pyinstaller/siteline.spec
fi
[ -d "$APP" ] || die "$APP is missing: did PyInstaller fail?"
EXE="$APP/Contents/MacOS/$(/usr/libexec/PlistBuddy -c 'Print :CFBundleExecutable' "$APP/Contents/Info.plist")"

smoke() {
  local said
  said="$(QT_QPA_PLATFORM=offscreen "$EXE" --version 2>&1)" || die "$EXE --version failed: $said"
  case "$said" in *"$VERSION"*) printf '    %s\n' "$said" >&2 ;; *) die "$EXE --version said '$said', not $VERSION" ;; esac
}
say "smoke test: $EXE --version"
smoke

# --- 3. signing ---------------------------------------------------------------------------------------------
sign_with_identity() {
  # Inside out, as codesign wants (no --deep for signing: it would give every binary the app's entitlements):
  # every Mach-O file, then each nested .framework (deepest first), then the executables, then the app.
  local sign=(codesign --force --timestamp --options runtime --sign "$SIGN_IDENTITY")
  local path
  while IFS= read -r -d '' path; do
    if file -b "$path" | grep -q 'Mach-O'; then "${sign[@]}" "$path"; fi
  done < <(find "$APP/Contents" -type f ! -path "$APP/Contents/MacOS/*" -print0)
  while IFS= read -r path; do
    [ -n "$path" ] && "${sign[@]}" "$path"
  done < <(find "$APP/Contents" -type d -name '*.framework' | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
  for path in "$APP"/Contents/MacOS/*; do
    "${sign[@]}" --entitlements "$ENTITLEMENTS" "$path"
  done
  "${sign[@]}" --entitlements "$ENTITLEMENTS" "$APP"
}

if [ -n "${SIGN_IDENTITY:-}" ]; then
  say "signing with '$SIGN_IDENTITY' (hardened runtime, timestamp)"
  plutil -lint "$ENTITLEMENTS" >/dev/null || die "$ENTITLEMENTS is not a valid property list"
  sign_with_identity
else
  # Ad hoc: no identity, no hardened runtime (its library validation refuses ad-hoc signed libraries).
  say "signing ad hoc (set SIGN_IDENTITY for a Developer ID signature)"
  codesign --force --deep --sign - "$APP"
fi
codesign --verify --deep --strict --verbose=2 "$APP"
say "smoke test after signing"
smoke

# --- 4. the disk image --------------------------------------------------------------------------------------
say "disk image: $DMG"
STAGE=build/macos/dmg
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
ditto "$APP" "$STAGE/Siteline.app"  # ditto keeps the bundle's symlinks, extended attributes and signatures
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Siteline $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -imagekey zlib-level=9 \
  -ov "$DMG" >/dev/null
if [ -n "${SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$SIGN_IDENTITY" "$DMG"
fi
hdiutil verify "$DMG" >/dev/null

# --- 5. notarization ----------------------------------------------------------------------------------------
notary_auth=()
if [ -n "${NOTARY_PROFILE:-}" ]; then
  notary_auth=(--keychain-profile "$NOTARY_PROFILE")
elif [ -n "${NOTARY_APPLE_ID:-}" ]; then
  notary_auth=(--apple-id "$NOTARY_APPLE_ID" --team-id "${NOTARY_TEAM_ID:?NOTARY_TEAM_ID is needed with NOTARY_APPLE_ID}"
               --password "${NOTARY_PASSWORD:?NOTARY_PASSWORD (an app-specific password) is needed}")
elif [ -n "${NOTARY_KEY:-}" ]; then
  notary_auth=(--key "$NOTARY_KEY" --key-id "${NOTARY_KEY_ID:?NOTARY_KEY_ID is needed with NOTARY_KEY}"
               --issuer "${NOTARY_ISSUER:?NOTARY_ISSUER is needed with NOTARY_KEY}")
fi
if [ ${#notary_auth[@]} -gt 0 ]; then
  [ -n "${SIGN_IDENTITY:-}" ] || die "notarization needs a Developer ID signature: set SIGN_IDENTITY too"
  say "notarizing $DMG (this waits for Apple's answer, usually a few minutes)"
  result="$(xcrun notarytool submit "$DMG" "${notary_auth[@]}" --wait --output-format json)" ||
    die "notarytool submit failed: $result"
  status="$(printf '%s' "$result" | "$PY" -c 'import json, sys; print(json.load(sys.stdin).get("status", ""))')"
  if [ "$status" != Accepted ]; then
    id="$(printf '%s' "$result" | "$PY" -c 'import json, sys; print(json.load(sys.stdin).get("id", ""))')"
    die "notarization ended '$status'; see why with: xcrun notarytool log $id <same credentials>"
  fi
  xcrun stapler staple "$DMG"
  xcrun stapler validate "$DMG"
  spctl --assess --type open --context context:primary-signature --verbose=2 "$DMG" || true
fi

size_app="$(du -sh "$APP" | cut -f1)"
size_dmg="$(du -h "$DMG" | cut -f1)"
say "done: $DMG ($size_dmg; the app is $size_app)"
