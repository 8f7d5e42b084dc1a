"""What the first-run guide remembers (``first-run.json`` in the config folder), without Qt.

In core because the technician id given in the guide must label the CLI's records too when no control plane
is set up yet (``siteline.core.outbox.envelope.default_technician`` asks here first). The guide itself is
``siteline.ui.first_run``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from siteline import paths
from siteline.core.atomic import write_atomic
from siteline.core.outbox.envelope import technician_problem
from siteline.core.outbox.settings import FILE_NAME as SETTINGS_FILE

log = logging.getLogger(__name__)
RECORD_FILE = "first-run.json"
RECORD_FORMAT = "siteline-first-run"
MAX_RECORD_BYTES = 16 * 1024


@dataclass(frozen=True)
class FirstRunRecord:
    done: bool = False
    how: str = ""  # "finished" or "dismissed" ("Don't show again")
    technician: str | None = None  # kept here while there are no control-plane settings to hold it
    when: float = 0.0


def record_path(config: Path | None = None) -> Path:
    return (config or paths.config_dir()) / RECORD_FILE


def load_record(config: Path | None = None) -> FirstRunRecord | None:
    """The saved record; None when there is none. A damaged one counts as done: it must not nag."""
    path = record_path(config)
    try:
        data = path.read_bytes()[:MAX_RECORD_BYTES + 1]
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return FirstRunRecord(done=True)
    try:
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
            raise ValueError("not a first-run record")
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        log.warning("%s cannot be read (%s); the first-run guide is not shown", path, exc)
        return FirstRunRecord(done=True)
    return _record_from(doc, path)


def _record_from(doc: dict[str, object], path: Path) -> FirstRunRecord:
    """Field by field: a bad field (hand-edited, another version) falls back alone and keeps the others, so a
    wrong `when` does not cost the technician id that labels every CLI record."""
    done, how, technician, when = doc.get("done", False), doc.get("how", ""), doc.get("technician"), doc.get("when")
    seconds = _seconds(when)
    checks = {"done": isinstance(done, bool), "how": isinstance(how, str),
              "technician": technician is None or (isinstance(technician, str) and not technician_problem(technician)),
              "when": when is None or seconds is not None}
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        log.warning("%s: ignoring its bad field(s) %s; the others are kept", path, ", ".join(bad))
    return FirstRunRecord(done=done is True, how=how[:40] if isinstance(how, str) else "",
                          technician=technician if checks["technician"] and isinstance(technician, str) else None,
                          when=seconds or 0.0)


def _seconds(value: object) -> float | None:
    """A finite, non-negative time in seconds, else None (bool is an int to Python, not a time)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int with hundreds of digits
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def save_record(record: FirstRunRecord, config: Path | None = None) -> None:
    """Atomic (temp file, fsync, rename): a power cut leaves the old record or the new."""
    path = record_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": RECORD_FORMAT, **{k: v for k, v in asdict(record).items() if v is not None}}
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))


def needs_first_run(config: Path | None = None, vault_path: Path | None = None) -> bool:
    """True on a fresh laptop only (see the module's docstring)."""
    from siteline.core.vault import default_path as vault_default

    config = config or paths.config_dir()
    record = load_record(config)
    if record is not None and record.done:
        return False
    if (vault_path or vault_default()).exists():
        return False
    settings = config / SETTINGS_FILE
    parked = settings.with_name(settings.name + ".offline")
    return not (settings.exists() or parked.exists() or (config / "devices.json").exists())


def saved_technician(config: Path | None = None) -> str | None:
    record = load_record(config)
    return record.technician if record is not None else None
