"""The bundle itself: one zip a support person opens, every member redacted, written so a power cut leaves
either no file or the whole one under the final name.

Layout::

    manifest.json          device, target (no login), Siteline version, when, what is inside, the redactions
                           (rule -> how many times), partial or not, every command with its cost
    README.txt             what the bundle is and how to read it
    areas/<area>.json      each probe area as JSON (the `siteline probe --json` form)
    areas/<area>.txt       the same, readable
    logs/device.txt        the device's newest log records
    slots/boot-counters.txt  the bootloader environment and slot status as printed
    config/files.txt       the usual config files (secrets blanked)
    siteline/siteline.log  the tail of Siteline's own log
    commands.txt           what ran on the device, its exit status, bytes and seconds
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline import __version__
from siteline.core.atomic import atomic_file
from siteline.core.device.unavailable import Unavailable
from siteline.core.diag.collect import AREAS, Collected
from siteline.core.diag.redact import BLANK, Redactor, mask_digits, secret_name
from siteline.core.errors import SitelineError
from siteline.core.redact import safe_url

SCHEMA = "siteline-diag/1"
OWN_LOG_BYTES = 128 * 1024  # the tail of Siteline's log put in the bundle
_ID_FIELD = re.compile(r"imei|iccid|imsi|equipment.?id|sim.?identifier|subscriber.?identity|msisdn", re.IGNORECASE)
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# Terminal escapes a device printed (colours, OSC 52 clipboard writes, window titles, cursor moves that hide a
# line) must not reach the terminal of whoever runs `less`/`cat` on the member: whole sequences go first, then
# every other control character except tab and newline (C1 controls too: some terminals obey them).
_ESCAPE_SEQ = re.compile(r"\x1b\[[0-?]{0,64}[ -/]{0,16}[@-~]?|\x1b\][^\x07\x1b\n]{0,4096}(?:\x07|\x1b\\)?"
                         r"|\x1b[P^_X][^\x1b\n]{0,4096}(?:\x1b\\)?|\x1b.?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
_TEXT_MEMBERS = {"logs": "logs/device.txt", "slots-raw": "slots/boot-counters.txt", "config": "config/files.txt"}
README = """Siteline diagnostics bundle
===========================

Made by Siteline {version} for device "{device}" ({target}) at {when} UTC.
{partial}
What is inside (manifest.json lists every file with its size and SHA-256):
  areas/*.json, areas/*.txt   what the probes read: system, modem, network, slots, posture
  logs/device.txt             the device's newest log records (UTC times)
  slots/boot-counters.txt     the bootloader environment (boot counters) and slot status as printed
  config/files.txt            the usual config files
  siteline/siteline.log       the end of Siteline's own log on the technician's laptop
  commands.txt                every command run on the device, its exit status, bytes and seconds

Not collected:
{missing}
Secrets were blanked as "***" before anything was written (passwords, keys, tokens, Wi-Fi keys, logins in
URLs, private key blocks); the IMEI, ICCID and IMSI show their first 8 digits only. manifest.json says how
many times each rule fired. The blanking is careful, not perfect: treat this file as confidential anyway.
"""


class BundleWriteError(SitelineError):
    """The bundle could not be written; nothing was left under its name."""


@dataclass(frozen=True)
class Bundle:
    data: bytes
    manifest: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def size_text(self) -> str:
        """The size as the CLI and the dialog say it: "840 bytes", "12 KB", "1.3 MB"."""
        n = self.size
        return f"{n} bytes" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MB"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def plain_text(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tab and newline stay)."""
    return _CONTROL.sub("", _ESCAPE_SEQ.sub("", text))


def _clean(redactor: Redactor, text: str) -> str:
    """What every text of the bundle goes through: controls out first (an escape may split a secret), then
    the redaction."""
    return redactor.text(plain_text(text))


def redact_obj(value: Any, redactor: Redactor) -> Any:
    """A JSON value with every string redacted and every secret-named field's value blanked."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            blank = secret_name(name) and name.lower() != "key" and item not in (None, "", True, False)
            if blank:
                redactor.counts["value"] += 1
                out[name] = BLANK
            elif isinstance(item, str) and item.isdigit() and _ID_FIELD.search(name):
                redactor.counts["identifier"] += 1
                out[name] = mask_digits(item)
            else:
                out[name] = redact_obj(item, redactor)
        return out
    if isinstance(value, list | tuple):
        return [redact_obj(v, redactor) for v in value]
    if isinstance(value, str):
        return _clean(redactor, value)
    return value


def _area_files(kind: str, snapshot: Any, redactor: Redactor) -> dict[str, str]:
    from siteline.probe_cli import area_json, area_lines  # the CLI's JSON and text forms, not a copy of them

    body = redact_obj(area_json(kind, snapshot), redactor)
    text = _clean(redactor, "\n".join(area_lines(kind, snapshot)) + "\n")
    return {f"areas/{kind}.json": json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
            f"areas/{kind}.txt": text}


def _commands_text(collected: Collected) -> str:
    lines = ["# area | exit | bytes | seconds | command (| error)"]
    for c in collected.commands:
        code = "-" if c.exit_code is None else str(c.exit_code)
        lines.append(f"{c.area} | {code} | {c.bytes} | {c.seconds:.2f} | {c.command}"
                     + (f" | {c.error}" if c.error else ""))
    lines.append(f"# total: {len(collected.commands)} commands, {collected.bytes_received} bytes received")
    return "\n".join(lines) + "\n"


def own_log_tail(path: Path | None, limit: int = OWN_LOG_BYTES) -> str:
    """The end of Siteline's log, from a line start; a missing or unreadable log says so."""
    if path is None:
        return "(Siteline's own log is not kept in this session.)\n"
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except OSError as exc:
        return f"(Siteline's log {path} could not be read: {exc.strerror or exc}.)\n"
    if size > limit:
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", "replace")


def _identity(collected: Collected) -> dict[str, Any]:
    system = collected.snapshots.get("system")
    posture = collected.snapshots.get("posture")
    clock = getattr(posture, "clock", None)
    os_info = getattr(system, "os", None)
    return {"hostname": getattr(system, "hostname", None), "os": getattr(os_info, "pretty_name", None),
            "kernel": getattr(system, "kernel", None), "machine": getattr(system, "machine", None),
            "clock_offset_seconds": getattr(clock, "offset_seconds", None),
            "clock_uncertainty_seconds": getattr(clock, "uncertainty_seconds", None)}


def _members(collected: Collected, own_log: str, redactor: Redactor) -> dict[str, str]:
    members: dict[str, str] = {}
    for kind, snapshot in collected.snapshots.items():
        members.update(_area_files(kind, snapshot, redactor))
    for stem, text in collected.texts.items():
        members[_TEXT_MEMBERS.get(stem, f"{stem}.txt")] = _clean(redactor, text)
    members["siteline/siteline.log"] = _clean(redactor, own_log)
    members["commands.txt"] = _clean(redactor, _commands_text(collected))
    return members


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _manifest(collected: Collected, site: str, members: Mapping[str, bytes], redactor: Redactor) -> dict[str, Any]:
    areas = {kind: _clean(redactor, f"not collected: {collected.missing[kind]}") if kind in collected.missing
             else "collected" for kind in AREAS
             if kind in collected.missing or kind in collected.snapshots or kind in collected.texts}
    return {
        "schema": SCHEMA, "siteline_version": __version__, "device": collected.device, "site": site,
        "target": safe_url(collected.target), "created": _stamp(time.time()),
        "collection": {"started": _stamp(collected.started), "finished": _stamp(collected.finished or time.time()),
                       "seconds": round(max(0.0, collected.finished - collected.started), 3),
                       "bytes_received": collected.bytes_received, "commands": len(collected.commands)},
        "partial": bool(collected.partial), "partial_reason": _clean(redactor, collected.partial),
        "identity": redact_obj(_identity(collected), redactor), "areas": areas,
        "plugin_failures": [_clean(redactor, f) for f in collected.plugin_failures],
        "commands": [{"area": c.area, "command": _clean(redactor, c.command), "exit_code": c.exit_code,
                      "bytes": c.bytes, "seconds": round(c.seconds, 3), "error": _clean(redactor, c.error)}
                     for c in collected.commands],
        "files": [{"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in members.items()],
    }


def build_bundle(collected: Collected, *, site: str = "-", own_log: str = "") -> Bundle:
    """The zip's bytes (every member redacted) and its manifest."""
    redactor = Redactor()
    texts = _members(collected, own_log, redactor)
    when = _stamp(time.time())
    missing = "".join(f"  {k}: {_clean(redactor, v)}\n" for k, v in collected.missing.items()) or "  (nothing)\n"
    partial = f"\nPARTIAL: {_clean(redactor, collected.partial)}\n" if collected.partial else ""
    texts["README.txt"] = README.format(version=__version__, device=collected.device, when=when, partial=partial,
                                        target=safe_url(collected.target), missing=missing)
    members = {name: text.encode("utf-8", "backslashreplace") for name, text in texts.items()}
    manifest = _manifest(collected, site, members, redactor)
    manifest["redactions"] = dict(sorted(redactor.counts.items()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        for name in ("README.txt", *sorted(n for n in members if n != "README.txt")):
            zf.writestr(name, members[name])
    return Bundle(buffer.getvalue(), manifest)


def write_bundle(bundle: Bundle, path: Path, *, force: bool = False) -> Path:
    """Write the zip: a temp file beside ``path``, fsync, rename. A full disk or a folder that cannot be written
    is a :class:`BundleWriteError` and leaves nothing behind (not even the temp file)."""
    path = Path(path)
    if path.exists() and not force:
        raise BundleWriteError(f"{path} already exists.", "Choose another name, or pass --force to replace it.")
    if not path.parent.is_dir():
        raise BundleWriteError(f"The folder {path.parent} does not exist.", "Create it or choose another folder.")
    try:
        with atomic_file(path, 0o600) as fh:  # 0600: a bundle is confidential even redacted
            fh.write(bundle.data)
    except OSError as exc:
        if exc.errno in _FULL:
            raise BundleWriteError(f"The disk holding {path.parent} is full (or the file size limit was reached): "
                                   f"the {bundle.size:,}-byte bundle was not saved.",
                                   "Free some space or save it on another disk (a USB stick).") from exc
        raise BundleWriteError(f"Cannot write {path}: {exc.strerror or exc}.",
                               "Choose a folder you can write to.") from exc
    return path


def summary(collected: Collected) -> list[str]:
    """One line per area for a person: collected, or not and why."""
    lines = []
    for kind in AREAS:
        if kind in collected.missing:
            lines.append(f"{kind}: not collected: {collected.missing[kind]}")
        elif kind in collected.snapshots or kind in collected.texts:
            lines.append(f"{kind}: collected" + (" (unavailable)" if isinstance(collected.snapshots.get(kind),
                                                                                  Unavailable) else ""))
    return lines
