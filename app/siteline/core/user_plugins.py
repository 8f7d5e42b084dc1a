"""Plugins from folders: the user plugin folder (``data_dir()/plugins``) and ``SITELINE_PLUGIN_PATH``.

Each ``NAME.py`` or ``NAME/__init__.py`` in such a folder is plugin NAME. It is imported under a private
module name (``_siteline_user_plugin_NAME``) so a file called ``json.py`` or ``siteline_system.py`` can never
shadow a real package, and a package's relative imports (``from . import parsers``) work.

Code from a folder someone else can write would run as the technician, with the vault and the devices it
reaches: a folder (or plugin file) that every user may write, or that belongs to another user, is refused.
Root's own files are accepted: root can change Siteline itself anyway.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PATH_ENV = "SITELINE_PLUGIN_PATH"
MODULE_PREFIX = "_siteline_user_plugin_"


@dataclass(frozen=True)
class Candidate:
    """A plugin found in a folder, not imported yet. ``refused`` says why it must not be imported."""

    name: str
    path: Path  # the .py file, or the package folder
    refused: str = ""

    @property
    def is_package(self) -> bool:
        return self.path.is_dir()

    @property
    def entry_file(self) -> Path:
        return self.path / "__init__.py" if self.is_package else self.path

    @property
    def source(self) -> str:
        return f"user folder {self.path}"

    @property
    def module_name(self) -> str:
        return MODULE_PREFIX + re.sub(r"\W", "_", self.name)


def user_plugin_folder() -> Path:
    """Where a technician drops plugin files (not created here: ``siteline plugins folder`` does that)."""
    from siteline.paths import data_dir  # not at import time: data_dir() creates its folder

    return data_dir() / "plugins"


def plugin_folders() -> list[Path]:
    """The user plugin folder, then each folder named in ``SITELINE_PLUGIN_PATH`` (vendors testing a plugin)."""
    folders = [user_plugin_folder()]
    extra = os.environ.get(PATH_ENV, "")
    folders += [Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip()]
    seen: set[str] = set()
    unique = []
    for folder in folders:
        key = os.path.normcase(os.path.abspath(folder))
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def discover(folders: list[Path]) -> tuple[list[Candidate], list[str]]:
    """The plugins in ``folders`` (missing folders are skipped) and notes on folders that were refused."""
    found: list[Candidate] = []
    notes: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        folder_problem = unsafe_reason(folder)
        if folder_problem:
            notes.append(f"Plugin folder refused: {folder_problem}")
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            notes.append(f"Cannot read the plugin folder {folder}: {exc}")
            continue
        for entry in entries:
            name = _plugin_name(entry)
            if name:
                problem = folder_problem or unsafe_reason(entry)
                if not problem and entry.is_dir():
                    problem = unsafe_reason(entry / "__init__.py")
                found.append(Candidate(name, entry, problem))
    return found, notes


def _plugin_name(entry: Path) -> str:
    """NAME for ``NAME.py`` or a ``NAME/__init__.py`` package; "" for anything else (and for _private or .hidden)."""
    if entry.name.startswith(("_", ".")):
        return ""
    if entry.suffix == ".py" and entry.is_file():
        return entry.stem
    if entry.is_dir() and (entry / "__init__.py").is_file():
        return entry.name
    return ""


def unsafe_reason(path: Path) -> str:
    """Why code at ``path`` must not run as this user ("" when it may). POSIX only: Windows has no such bits."""
    if os.name != "posix":
        return ""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot check {path}: {exc}"
    if st.st_mode & stat.S_IWOTH:
        return (
            f"{path} can be changed by every user on this computer (mode {stat.S_IMODE(st.st_mode):o}), so its code "
            f"would run as you; make it yours only: chmod o-w '{path}'"
        )
    if st.st_uid not in (os.geteuid(), 0):
        return (
            f"{path} belongs to another user (uid {st.st_uid}), whose code would run as you; "
            "copy the plugin into a folder of your own"
        )
    return ""


def import_candidate(candidate: Candidate) -> ModuleType:
    """Import the plugin under its private module name; the exception propagates (the host reports it)."""
    name = candidate.module_name
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(candidate.entry_file):
        return loaded  # asked again in the same process: the same module, like an entry point's
    locations = [str(candidate.path)] if candidate.is_package else None
    spec = importlib.util.spec_from_file_location(name, candidate.entry_file, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {candidate.entry_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: relative imports look the package up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        raise
    return module


def module_version(module: ModuleType) -> str:
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) and version else "?"


def read_version(candidate: Candidate) -> str:
    """``__version__`` read from the source without running it (for plugins that are disabled or refused)."""
    try:
        tree = ast.parse(candidate.entry_file.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return "?"
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value or "?"
    return "?"
