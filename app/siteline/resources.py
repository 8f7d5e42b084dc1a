"""Icons, styles and the .desktop file, found the same way wherever Siteline runs.

Three layouts exist:
  * a frozen PyInstaller bundle: ``sys._MEIPASS/siteline/resources``;
  * an installed wheel: pyproject force-includes ``resources/`` as the ``siteline/resources`` folder;
  * a source checkout (editable install): ``resources/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import sys
from functools import cache
from pathlib import Path, PurePosixPath

from siteline.core.errors import SitelineError


class ResourceError(SitelineError):
    """A resource is missing or its name is unusable."""


def _candidates() -> list[Path]:
    found: list[Path] = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        found.append(Path(frozen) / "siteline" / "resources")
    with contextlib.suppress(ModuleNotFoundError, TypeError):
        # Traversable of a regular (non-zip) install is a real path; str() keeps us on pathlib.
        found.append(Path(str(importlib.resources.files("siteline"))) / "resources")
    found.append(Path(__file__).resolve().parents[2] / "resources")
    return found


@cache
def resource_root() -> Path:
    """The first resources folder that exists; raises :class:`ResourceError` when none does."""
    candidates = _candidates()
    for root in candidates:
        if root.is_dir():
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise ResourceError(f"Siteline's resources folder is missing (looked in {tried}).", "Reinstall Siteline.")


def _check_name(name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise ResourceError(f"'{name[:80]}' is not a resource name.", "Use a relative path such as icons/app.svg.")
    return rel


def resource_path(name: str) -> Path:
    """Path of a resource file, e.g. ``resource_path("icons/siteline.svg")``."""
    path = resource_root().joinpath(*_check_name(name).parts)
    if not path.is_file():
        raise ResourceError(f"The resource '{name}' is missing from {resource_root()}.", "Reinstall Siteline.")
    return path


def read_resource(name: str) -> bytes:
    return resource_path(name).read_bytes()
