"""`siteline image info FILE [--json]`: what an update image is and what it would write, before anything else.

Reads the metadata without mounting or extracting (core/images/formats.py): format, size, SHA-256,
version, compatible, each thing it writes, whether it rewrites the bootloader, and what looks wrong.
Exit 0 when the image could be read (its problems are printed), 3 when it could not (the reason on
stderr), 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from siteline.core.images.formats import ImageError, ImageInfo, describe

EXIT_OK, EXIT_REFUSED = 0, 3


def add_info_parser(image_actions: Any) -> None:
    info = image_actions.add_parser("info", help="what an image is and what it would write",
                                    description=__doc__.split("\n\n")[1] if __doc__ else None)
    info.add_argument("file", metavar="FILE", help="a .raucb, .swu, or .img[.gz|.xz|.zst] (a .bmap next to it is read)")
    info.add_argument("--json", action="store_true", help="one JSON object")
    info.set_defaults(handler=info_main)


def info_main(args: argparse.Namespace) -> int:
    try:
        info = describe(Path(args.file))
    except ImageError as exc:
        print(f"siteline: refused: {args.file}: {exc}", file=sys.stderr)  # the error says what to do too
        return EXIT_REFUSED
    print(json.dumps(as_json(info), indent=2, sort_keys=True) if args.json else "\n".join(lines(info)))
    return EXIT_OK


def as_json(info: ImageInfo) -> dict[str, Any]:
    data = asdict(info)
    data["path"] = str(info.path)
    data["details"] = {k: v for k, v in info.details.items() if k not in ("manifest", "sw_description")}
    return json.loads(json.dumps(data, default=str))


def lines(info: ImageInfo) -> list[str]:
    from siteline.transfer_cli import size_text as _size  # the CLI's one way of writing a size
    out = [f"{info.path.name}: {info.format}, {_size(info.size)}",
           f"  sha256      {info.sha256}",
           f"  version     {info.version or 'not stated'}",
           f"  compatible  {', '.join(info.compatibles) or info.compatible or 'not stated'}"]
    unpacked = info.details.get("uncompressed_size")
    if isinstance(unpacked, int) and unpacked != info.size:
        out.append(f"  unpacked    {_size(unpacked)} ({info.details.get('compression', 'compressed')})")
    if info.description:
        out.append(f"  about       {info.description}")
    for write in info.writes:
        where = f" -> {write.target}" if write.target else ""
        flag = "  (BOOTLOADER)" if write.bootloader else ""
        out.append(f"  writes      {write.kind} {write.name}{where}{flag}")
    if info.writes_bootloader:
        out.append("  ! it rewrites the bootloader: flashing it needs an explicit, audited override")
    out.extend(f"  problem: {problem}" for problem in info.problems)
    return out
