"""`siteline plugins`: which plugins are loaded, their versions and status; enable or disable one.

    siteline plugins [--json]          list: name, version, status, source (the error when one failed)
    siteline plugins disable NAME      switch a plugin off (--force: one that is not installed yet)
    siteline plugins enable NAME       switch it on again
    siteline plugins folder            print the user plugin folder, creating it

A change is written at once; a Siteline window that is already open picks it up when it restarts (its
Help > Plugins dialog switches plugins in the running window).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from siteline.core.plugin_settings import CORE_PLUGINS, PluginSettings, settings_path
from siteline.core.plugins import PluginInfo, known_plugins, load_plugins
from siteline.core.user_plugins import PATH_ENV, discover, plugin_folders, unsafe_reason, user_plugin_folder

USAGE_ERROR = 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plugins = sub.add_parser(
        "plugins",
        help="list plugins and their status; enable or disable one",
        description="Lists the plugins (name, version, status, source; the error when one failed) with no ACTION, "
        "or switches one on or off. A Siteline window already open picks a change up when it restarts.",
        epilog=f"User plugins: each NAME.py or NAME/__init__.py in the user plugin folder ('siteline plugins "
        f"folder'), and in the folders named in {PATH_ENV}.",
    )
    plugins.add_argument("--json", action="store_true", help="print the list as JSON")
    plugins.set_defaults(handler=list_plugins)
    actions = plugins.add_subparsers(dest="plugins_action", metavar="ACTION")
    listing = actions.add_parser("list", help="list plugins (the default)")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the list as JSON")
    listing.set_defaults(handler=list_plugins)
    disable = actions.add_parser("disable", help="switch a plugin off")
    disable.add_argument("name")
    disable.add_argument("--force", action="store_true", help="also when no plugin of that name is installed (yet)")
    disable.set_defaults(handler=disable_plugin)
    enable = actions.add_parser("enable", help="switch a plugin on again")
    enable.add_argument("name")
    enable.set_defaults(handler=enable_plugin)
    folder = actions.add_parser("folder", help="print the user plugin folder (created if missing)")
    folder.set_defaults(handler=show_folder)


def list_plugins(args: argparse.Namespace) -> int:
    with _tracebacks_only_if(getattr(args, "verbose", False)):
        host = load_plugins()
        host.ask_all_hooks()  # a plugin whose hook raises shows as failed here, as it would in the window
    if getattr(args, "json", False):
        body = {
            "plugins": [_as_json(info) for info in host.plugins],
            "folder": str(user_plugin_folder()),
            "settings": str(settings_path()),
            "notices": host.notices,
        }
        print(json.dumps(body, indent=2))
        return 0
    rows = [("PLUGIN", "VERSION", "STATUS", "SOURCE")]
    rows += [(p.name, p.version or "?", p.status, p.source) for p in host.plugins]
    name_w, version_w = (max(len(r[i]) for r in rows) for i in (0, 1))
    status_w = min(max(len(r[2]) for r in rows), 40)  # a long error runs on rather than widening every row
    for name, version, status, source in rows:
        print(f"{name:{name_w}}  {version:{version_w}}  {status:{status_w}}  {source}")
    print(f"\nUser plugin folder: {user_plugin_folder()}")
    for notice in host.notices:
        print(f"Note: {notice}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _tracebacks_only_if(verbose: bool) -> Iterator[None]:
    """The list shows each failure in a line (--json: with its traceback); -v also logs the tracebacks."""
    logger = logging.getLogger("siteline.core.plugins")
    quiet = logging.Filter("-")  # lets no record through (no logger is called "-")
    if not verbose:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _as_json(info: PluginInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version or "?",
        "status": info.status,
        "enabled": info.enabled,
        "source": info.source,
        "error": "" if info.disabled_by_user else info.error,
        "details": info.details,
        "core": info.core,
    }


def disable_plugin(args: argparse.Namespace) -> int:
    settings = PluginSettings(settings_path())
    known = known_plugins()
    if args.name not in known and not args.force:
        return _unknown(args.name, known, hint="add --force to disable it before it is installed")
    if not _write(settings, args.name, disabled=True):
        return 1
    print(f"Plugin '{args.name}' is disabled. A Siteline window already open stops using it when it restarts.")
    if args.name in CORE_PLUGINS:
        print(f"What stops working: {CORE_PLUGINS[args.name]}.")
    return 0


def enable_plugin(args: argparse.Namespace) -> int:
    settings = PluginSettings(settings_path())
    known = known_plugins()
    if args.name not in known and not settings.is_disabled(args.name):
        return _unknown(args.name, known)
    was_disabled = settings.is_disabled(args.name)
    if was_disabled and not _write(settings, args.name, disabled=False):
        return 1
    refused = _refusal(args.name, known)
    if refused:  # switched on or not, it does not run: "enabled" alone would send the technician looking elsewhere
        state = "is enabled but" if was_disabled else "is not switched off, but it"
        print(f"siteline: plugin '{args.name}' {state} is not loaded: it is refused: {refused}", file=sys.stderr)
        return 1
    if not was_disabled:
        print(f"Plugin '{args.name}' is already enabled.")
        return 0
    print(f"Plugin '{args.name}' is enabled. A Siteline window already open loads it when it restarts.")
    return 0


def _refusal(name: str, known: dict[str, str]) -> str:
    """Why the user plugin ``name`` is refused at start ("" when it is tried), found without importing anything."""
    if known.get(name, "").startswith("entry point"):
        return ""  # an installed plugin of that name is the one loaded
    candidates, _notes = discover(plugin_folders())
    return next((c.refused for c in candidates if c.name == name), "")


def show_folder(args: argparse.Namespace) -> int:
    folder = user_plugin_folder()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        print(f"siteline: cannot create {folder}: {exc}", file=sys.stderr)
        return 1
    print(folder)
    problem = unsafe_reason(folder)
    if problem:
        print(f"siteline: plugins in this folder are refused: {problem}", file=sys.stderr)
    return 0


def _write(settings: PluginSettings, name: str, *, disabled: bool) -> bool:
    if settings.problem:
        print(f"siteline: {settings.problem}", file=sys.stderr)
    try:
        settings.set_disabled(name, disabled)
    except OSError as exc:
        print(f"siteline: cannot save {settings.path}: {exc}", file=sys.stderr)
        return False
    return True


def _unknown(name: str, known: dict[str, str], hint: str = "") -> int:
    print(f"siteline: no plugin is called '{name}'. Known plugins: {', '.join(known) or 'none'}.", file=sys.stderr)
    if hint:
        print(f"siteline: {hint}", file=sys.stderr)
    return USAGE_ERROR
