"""Which health check an update gets when the technician chose none: the device family's.

Ops teams write theirs in ``health-checks.json`` in Siteline's config folder; device-family plugins offer
theirs through ``siteline_health_checks``. The file wins over plugins (it is the site's own word). A file
that cannot be read refuses the flash: going on with a weaker check than the one ops wrote is not safe.

    {"families": [{"family": "Northwind edge gateway", "compatibles": ["nwedge-gw-*"],
                   "units": ["edge-agent.service"], "command": "", "control_plane_command": "",
                   "settle": 30, "timeout": 120}]}
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from siteline.core.errors import SitelineError
from siteline.core.flash.job import HealthCheck
from siteline.core.plugin_api import HealthSpec

CONFIG_NAME = "health-checks.json"
MAX_BYTES = 1024 * 1024
_FIELDS = {f.name for f in fields(HealthCheck)}


class HealthConfigError(SitelineError):
    pass


def chosen(check: HealthCheck) -> bool:
    """Whether anything beyond "it came back" was asked for."""
    return bool(check.units or check.command or check.control_plane or check.control_plane_command)


def load_config(path: Path) -> list[HealthSpec]:
    """The families in ``path``; none when it does not exist; HealthConfigError (what and where) when unreadable."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise HealthConfigError(f"{path} is larger than {MAX_BYTES} bytes: not a health-check file",
                                    "Fix or remove it, then flash again.")
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise HealthConfigError(f"the health checks in {path} cannot be read ({exc})",
                                "Fix or remove the file, then flash again.") from exc
    families = data.get("families") if isinstance(data, dict) else None
    if not isinstance(families, list):
        raise HealthConfigError(f"{path} has no \"families\" list", "See the format in the README.")
    return [_spec(path, i, item) for i, item in enumerate(families)]


def _spec(path: Path, index: int, item: Any) -> HealthSpec:
    where = f"{path}, family {index + 1}"
    if not isinstance(item, dict):
        raise HealthConfigError(f"{where} is not an object", "See the format in the README.")
    compatibles = item.get("compatibles")
    if not isinstance(compatibles, list) or not compatibles or not all(isinstance(c, str) and c for c in compatibles):
        raise HealthConfigError(f"{where}: \"compatibles\" must be a list of compatible strings or patterns",
                                "See the format in the README.")
    check = {k: v for k, v in item.items() if k in _FIELDS}
    unknown = sorted(set(item) - _FIELDS - {"family", "compatibles"})
    if unknown:
        raise HealthConfigError(f"{where}: unknown field(s) {', '.join(unknown)}", "See the format in the README.")
    try:
        units = check.pop("units", [])
        if not isinstance(units, list) or not all(isinstance(u, str) and u for u in units):
            raise TypeError("units must be a list of unit names")
        health = HealthCheck(units=tuple(units), **check)
        for name in ("settle", "timeout"):
            value = getattr(health, name)
            if not isinstance(value, int | float) or value < 0:
                raise TypeError(f"{name} must be a number of seconds")
        for name in ("command", "control_plane_command"):
            if not isinstance(getattr(health, name), str):
                raise TypeError(f"{name} must be a shell command (text)")
    except TypeError as exc:
        raise HealthConfigError(f"{where}: {exc}", "See the format in the README.") from exc
    return HealthSpec(str(item.get("family") or compatibles[0]), tuple(compatibles), health)


def family_check(compatible: str | None, specs: Sequence[HealthSpec]) -> HealthSpec | None:
    """The first spec whose patterns match ``compatible`` (file entries come first in ``specs``)."""
    if not compatible:
        return None
    return next((s for s in specs if any(fnmatch.fnmatchcase(compatible, p) for p in s.compatibles)), None)
