"""Plugins from folders: the user plugin folder (``data_dir()/plugins``) and ``SITELINE_PLUGIN_PATH``.

Each ``NAME.py`` or ``NAME/__init__.py`` in such a folder is plugin NAME. It is imported under a private
module name (``_siteline_user_plugin_NAME``) so a file called ``json.py`` or ``siteline_system.py`` can never
shadow a real package, and a package's relative imports (``from . import parsers``) work.

Code from a folder someone else can write would run as the technician, with the vault and the devices it
reaches: a folder (or plugin file) that every user may write, or that belongs to another user, is refused; so
is a package with any such module or folder inside, and a plugin whose real file (symlinks followed) lies under a
folder every user may write without the sticky bit. The checks run again right before a plugin is imported.
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
# What Python may run from inside a package plugin: source, bytecode, extension modules.
CODE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


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

    def recheck(self) -> str:
        """Why it must not be imported now: its files may have changed since they were found (a plugin switched
        off at start is imported only when switched on, maybe hours later)."""
        return unsafe_reason(self.path.parent) or entry_problem(self.path)


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
                found.append(Candidate(name, entry, folder_problem or entry_problem(entry)))
    return found, notes


def entry_problem(entry: Path) -> str:
    """Why the plugin at ``entry`` (a ``.py`` file or a package folder) must not be imported ("" when it may):
    its file, where that file really lies (through symlinks), and for a package every module and folder in it."""
    problem = unsafe_reason(entry) or _real_location_problem(entry)
    if not problem and entry.is_dir():
        problem = unsafe_reason(entry / "__init__.py") or _package_problem(entry)
    return problem


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


def _real_location_problem(path: Path) -> str:
    """Why the real file behind ``path`` (symlinks followed) can be swapped by someone else ("" when it cannot):
    a folder on its way that every user may write without the sticky bit (anyone may rename what is in it), or
    a folder holding it that belongs to another user."""
    if os.name != "posix":
        return ""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        return f"cannot check {path}: {exc}"
    for folder in real.parents:
        try:
            st = folder.stat()
        except OSError as exc:
            return f"cannot check {folder}: {exc}"
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            return (
                f"{path} lies in {folder}, which every user on this computer can change (mode "
                f"{stat.S_IMODE(st.st_mode):o}), so anyone could swap in code that runs as you; "
                "move the plugin into a folder of your own"
            )
        if folder == real.parent and st.st_uid not in (os.geteuid(), 0):
            return (
                f"{path} lies in {folder}, which belongs to another user (uid {st.st_uid}), who could swap in code "
                "that runs as you; copy the plugin into a folder of your own"
            )
    return ""


def _package_problem(package: Path) -> str:
    """The first module or folder inside a package plugin that must not run as this user: each one runs as the
    technician just like its ``__init__.py``. Symlinked folders are followed once (a loop ends the walk)."""
    errors: list[str] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(package, followlinks=True, onerror=lambda exc: errors.append(str(exc))):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for name in sorted(dirs) + sorted(f for f in files if f.endswith(CODE_SUFFIXES)):
            item = Path(root, name)
            problem = unsafe_reason(item) or (_real_location_problem(item) if item.is_symlink() else "")
            if problem:
                return problem
        if errors:
            return f"cannot check the plugin's files: {errors[0]}"
    return f"cannot check the plugin's files: {errors[0]}" if errors else ""


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
