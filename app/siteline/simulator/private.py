"""The simulator's one writer of secret-bearing files: owner-only (0600) from the moment they exist.

``write_atomic`` creates its temp file with ``mkstemp`` (always 0600) and renames it into place, so
the file is never readable by others, not even between creation and a later ``chmod``.
"""

from __future__ import annotations

from pathlib import Path

from siteline.core.atomic import write_atomic

PRIVATE_MODE = 0o600


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, readable and writable by its owner only."""
    write_atomic(path, data.encode("utf-8") if isinstance(data, str) else data, mode=PRIVATE_MODE)
