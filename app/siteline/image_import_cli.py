"""`siteline image import FILE [--sig F]`, `siteline image list [--json]`, `siteline image remove SHA`.

import copies the image (with FILE.sig and a .bmap beside it) into the image library and says who signed it;
an image not signed by a trusted key is still imported (flashing refuses it, with the reason).

exit codes:
  0  ok (importing an image already in the library is a no-op, and ok)
  2  usage: a bad option
  3  refused: unreadable image, missing signature file, full disk, unknown or ambiguous SHA prefix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from siteline.core.errors import SitelineError
from siteline.core.images.library import ImageLibrary, LibraryEntry
from siteline.core.images.trusted_keys import TrustedKeys

EXIT_OK, EXIT_REFUSED = 0, 3
EPILOG = __doc__[__doc__.index("exit codes:"):] if __doc__ else ""


def add_import_parser(image_actions: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    imp = image_actions.add_parser("import", help="copy an image into the image library", epilog=EPILOG,
                                   formatter_class=fmt)
    imp.add_argument("file", metavar="FILE", help="a .raucb, .swu, or .img[.gz|.xz|.zst]")
    imp.add_argument("--sig", metavar="F", help="its detached signature (default: FILE.sig when it exists)")
    imp.set_defaults(handler=import_main)
    listing = image_actions.add_parser("list", help="the images in the library", epilog=EPILOG, formatter_class=fmt)
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=list_main)
    remove = image_actions.add_parser("remove", help="delete an image from the library", epilog=EPILOG,
                                      formatter_class=fmt)
    remove.add_argument("sha", metavar="SHA", help="its SHA-256 or a unique prefix (4+ hex digits)")
    remove.set_defaults(handler=remove_main)


def _refuse(reason: object) -> int:
    print(f"siteline: refused: {reason}", file=sys.stderr)
    return EXIT_REFUSED


def signed_by(entry: LibraryEntry) -> str:
    if entry.sig is None:
        return "NOT signed by a trusted key (no signature)"
    verdict = TrustedKeys().verify_trusted(entry.image, entry.sig)
    if verdict.ok:
        return f"trusted key '{verdict.key_name}' ({verdict.fingerprint})"
    return f"NOT signed by a trusted key ({verdict.reason})"


def lines(entry: LibraryEntry) -> list[str]:
    info = entry.info
    compat = ", ".join(info.get("compatibles") or []) or info.get("compatible") or "not stated"
    out = [f"{entry.sha256[:12]}  {entry.image.name}",
           f"  format      {info.get('format', '?')}",
           f"  version     {info.get('version') or 'not stated'}",
           f"  compatible  {compat}",
           f"  signed by   {signed_by(entry)}"]
    if entry.bmap is not None:
        out.append(f"  bmap        {entry.bmap.name}")
    if info.get("writes_bootloader"):
        out.append("  ! it rewrites the bootloader: flashing it needs an explicit, audited override")
    return out


def _audit(action: str, entry: LibraryEntry) -> None:
    """The library is what flashing draws from: who put which image in or took it out is kept."""
    from siteline.cli_audit import record_for

    record_for("-", "-", action, {"file": entry.image.name, "sha256": entry.sha256,
                                  "version": entry.info.get("version") or "", "signed": entry.sig is not None})


def import_main(args: argparse.Namespace) -> int:
    try:
        entry = ImageLibrary().import_image(Path(args.file), Path(args.sig) if args.sig else None)
    except SitelineError as exc:
        return _refuse(f"{args.file}: {exc}")
    if entry.imported:  # a re-import changed nothing, so there is nothing to keep
        _audit("image-import", entry)
    print(entry.message)
    print("\n".join(lines(entry)))
    return EXIT_OK


def list_main(args: argparse.Namespace) -> int:
    try:
        entries = ImageLibrary().entries()
    except SitelineError as exc:
        return _refuse(exc)
    if args.json:
        print(json.dumps([{"sha256": e.sha256, "file": e.image.name, "sig": e.sig is not None,
                           "bmap": e.bmap is not None, "info": e.info} for e in entries], indent=2))
        return EXIT_OK
    if not entries:
        print("the image library is empty (add one: siteline image import FILE)")
    for e in entries:
        print(f"{e.sha256[:12]}\t{e.info.get('format', '?')}\t{e.info.get('version') or '-'}\t{e.image.name}")
    return EXIT_OK


def remove_main(args: argparse.Namespace) -> int:
    try:
        gone = ImageLibrary().remove(args.sha)
    except (SitelineError, OSError) as exc:
        return _refuse(exc)
    _audit("image-remove", gone)
    print(f"removed {gone.image.name} ({gone.sha256[:12]}) from the library")
    return EXIT_OK
