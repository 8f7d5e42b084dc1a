"""`siteline diag TARGET -o FILE.zip`: a diagnostics bundle for support staff (issue 8; being built)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], connect: argparse.ArgumentParser) -> None:
    diag = sub.add_parser("diag", parents=[connect], help="collect a device's diagnostics into one zip for support")
    diag.add_argument("target")
    diag.add_argument("-o", "--output", required=True, help="the .zip file to write")
    diag.set_defaults(handler=diag_command)


def diag_command(args: argparse.Namespace) -> int:
    raise NotImplementedError
