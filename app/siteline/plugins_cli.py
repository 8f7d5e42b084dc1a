"""`siteline plugins`: which plugins are loaded, their versions and status; enable or disable one."""

from __future__ import annotations

import argparse

from siteline.core.plugins import load_plugins


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugins = sub.add_parser("plugins", help="list plugins and their status")
    plugins.set_defaults(handler=list_plugins)


def list_plugins(args: argparse.Namespace) -> int:
    host = load_plugins()
    for info in host.plugins:
        status = "enabled" if info.enabled else f"disabled ({info.error})"
        print(f"{info.name:20} {info.version:10} {status:30} {info.source}")
    return 0
