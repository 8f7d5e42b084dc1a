"""Helpers shared by the simulated tools: output, errors in the real tools' style."""

from __future__ import annotations

import sys


def out(text: str) -> None:
    sys.stdout.write(text)


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def fail(message: str, code: int = 1) -> int:
    err(message)
    return code


def take_value(argv: list[str], i: int, option: str) -> tuple[str | None, int]:
    """``--opt=value`` or ``--opt value`` / ``-o value``: (value, index of the next argument)."""
    arg = argv[i]
    if arg.startswith(option + "="):
        return arg[len(option) + 1 :], i + 1
    if arg == option and i + 1 < len(argv):
        return argv[i + 1], i + 2
    if len(option) == 2 and arg.startswith(option) and len(arg) > 2:
        return arg[2:], i + 1  # -n5
    return None, i + 1
