"""Window geometry, splitter, selected device and theme, kept in a small JSON file per user."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray

from siteline.core.atomic import write_atomic

log = logging.getLogger(__name__)
MAX_BYTES = 256 * 1024


@dataclass
class WindowSettings:
    geometry: str = ""  # base64 of QWidget.saveGeometry()
    splitter: str = ""  # base64 of QSplitter.saveState()
    selected: str = ""
    theme: str = "system"

    @staticmethod
    def load(path: Path) -> WindowSettings:
        """Defaults when the file is missing or damaged: window placement is not worth an error."""
        try:
            raw = path.read_bytes()
            if len(raw) > MAX_BYTES:
                raise ValueError("file too large")
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            known = WindowSettings.__dataclass_fields__
            return WindowSettings(**{k: str(v) for k, v in doc.items() if k in known})
        except FileNotFoundError:
            return WindowSettings()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("window settings in %s ignored (%s)", path, exc)
            return WindowSettings()

    def save(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(asdict(self), indent=2).encode(), mode=0o600)
        except OSError as exc:
            log.warning("could not save window settings to %s: %s", path, exc)


def to_b64(data: QByteArray) -> str:
    return base64.b64encode(bytes(data.data())).decode("ascii")


def from_b64(text: str) -> QByteArray:
    try:
        return QByteArray(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, UnicodeEncodeError):
        return QByteArray()
