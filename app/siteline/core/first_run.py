"""What the first-run guide remembers (``first-run.json`` in the config folder), without Qt.

In core because the technician id given in the guide must label the CLI's records too when no control plane
is set up yet (``siteline.core.outbox.envelope.default_technician`` asks here first). The guide itself is
``siteline.ui.first_run``.
"""

from __future__ import annotations

import json
import logging
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
        technician = doc.get("technician")
        if not isinstance(technician, str) or technician_problem(technician):
            technician = None
        return FirstRunRecord(done=doc.get("done") is True, how=str(doc.get("how", ""))[:40],
                              technician=technician, when=float(doc.get("when", 0.0)))
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        log.warning("%s cannot be read (%s); the first-run guide is not shown", path, exc)
        return FirstRunRecord(done=True)


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
