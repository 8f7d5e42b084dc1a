"""The technician's device list: sites, devices and their target URLs. No secrets live here."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic
from siteline.core.errors import SitelineError
from siteline.core.targets import parse_target

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
MAX_FILE_BYTES = 8 * 1024 * 1024
_NAME = re.compile(r"^[\w][\w .:@()-]{0,63}$")
# More paths than this is a typo or a pasted list, not a device someone reaches eight ways.
MAX_PATHS = 8


class InventoryError(SitelineError):
    pass


@dataclass(frozen=True)
class DeviceEntry:
    name: str
    target: str
    site: str = "Unsorted"
    username: str | None = None  # for serial logins; ssh/mqtt carry it in the target
    notes: str = ""
    tags: tuple[str, ...] = field(default=())
    # Further targets in order of preference after ``target`` (the preferred one): serial cable, MQTT ...
    fallbacks: tuple[str, ...] = field(default=())

    @property
    def targets(self) -> tuple[str, ...]:
        """Every path to the device, the preferred one first."""
        return (self.target, *self.fallbacks)

    def validated(self) -> DeviceEntry:
        name = self.name.strip()
        site = self.site.strip() or "Unsorted"
        if not _NAME.match(name):
            raise InventoryError(f"'{name[:40]}' is not a usable device name.", "Use letters, digits, '-', '_' or '.'.")
        if not _NAME.match(site):
            raise InventoryError(f"'{site[:40]}' is not a usable site name.")
        targets = _validated_targets(name, self.targets)
        return DeviceEntry(name, targets[0], site, self.username, self.notes, tuple(self.tags), targets[1:])


def _validated_targets(name: str, texts: tuple[str, ...]) -> tuple[str, ...]:
    """Each target in its canonical form; one listed twice (even spelled differently) is refused."""
    if len(texts) > MAX_PATHS:
        raise InventoryError(
            f"{name} has {len(texts)} paths; Siteline keeps at most {MAX_PATHS}.", "Remove the paths you do not use."
        )
    seen: list[str] = []
    for text in texts:
        canonical = str(parse_target(str(text)))
        if canonical in seen:
            raise InventoryError(
                f"{name} lists the path {canonical} twice.", "Keep it once, in the place of preference you want."
            )
        seen.append(canonical)
    return tuple(seen)


class Inventory:
    """A JSON file written atomically; a damaged file is kept aside, never overwritten silently."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._devices: dict[str, DeviceEntry] = {}

    @property
    def devices(self) -> list[DeviceEntry]:
        return list(self._devices.values())

    def get(self, name: str) -> DeviceEntry | None:
        return self._devices.get(name)

    def load(self) -> list[str]:
        """Read the file; returns warnings for a person (entries skipped, file set aside)."""
        warnings: list[str] = []
        self._devices.clear()
        if not self.path.exists():
            return warnings
        try:
            raw = self.path.read_bytes()
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError(f"file is {len(raw)} bytes")
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
                raise ValueError("no device list in it")
            if int(doc.get("version", 0)) > FORMAT_VERSION:
                raise InventoryError(
                    f"The device list at {self.path} was written by a newer Siteline.",
                    "Update Siteline; the file was left as it is.",
                )
        except InventoryError:
            raise
        except (OSError, ValueError, TypeError) as exc:
            aside = self.path.with_suffix(".damaged.json")
            self.path.replace(aside)
            warnings.append(f"The device list could not be read ({exc}); it was kept as {aside.name}.")
            return warnings
        for item in doc["devices"]:
            try:
                entry = _entry_from_json(item).validated()
            except (SitelineError, TypeError, KeyError, ValueError) as exc:
                warnings.append(f"Skipped a device entry: {exc}")
                continue
            self._devices[entry.name] = entry
        return warnings

    def save(self) -> None:
        doc = {"version": FORMAT_VERSION, "devices": [_entry_to_json(d) for d in self._devices.values()]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(doc, indent=2).encode(), mode=0o600)

    def upsert(self, entry: DeviceEntry, replacing: str | None = None) -> DeviceEntry:
        entry = entry.validated()
        if replacing and replacing != entry.name:
            self._devices.pop(replacing, None)
        self._devices[entry.name] = entry
        self.save()
        return entry

    def remove(self, name: str) -> None:
        if self._devices.pop(name, None) is not None:
            self.save()


def _entry_to_json(entry: DeviceEntry) -> dict[str, Any]:
    d = asdict(entry)
    d["tags"] = list(entry.tags)
    d["fallbacks"] = list(entry.fallbacks)
    return d


def _entry_from_json(item: Any) -> DeviceEntry:
    if not isinstance(item, dict):
        raise TypeError("entry is not an object")
    return DeviceEntry(
        name=str(item["name"]),
        target=str(item["target"]),
        site=str(item.get("site") or "Unsorted"),
        username=str(item["username"]) if item.get("username") else None,
        notes=str(item.get("notes") or ""),
        tags=tuple(str(t) for t in item.get("tags") or ()),
        fallbacks=_string_list(item.get("fallbacks"), "fallbacks"),
    )


def _string_list(value: Any, what: str) -> tuple[str, ...]:
    # Files written before fallbacks existed have no key at all; a wrong type skips the entry, not the file.
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"'{what}' is not a list of target URLs")
    return tuple(value)
