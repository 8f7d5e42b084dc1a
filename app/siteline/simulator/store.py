"""Small JSON documents in the state directory, read and changed under a lock, written atomically.

Several shim processes (one per command) and the runner touch the same state directory at once,
so every read-modify-write holds an advisory lock; every write goes through ``write_atomic`` so
that a power cut (SIGKILL at any instant) leaves either the old document or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic

try:  # POSIX advisory locks; on Windows the simulator runs single-process, so no lock is needed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

JsonDict = dict[str, Any]


# flock() does not nest within one process (a second descriptor would wait for the first), so a
# re-entrant thread lock per lock file decides who takes the file lock and counts nested holders.
_HELD: dict[str, tuple[threading.RLock, list[int]]] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def locked(root: Path, name: str = "state") -> Iterator[None]:
    """Hold an exclusive lock named ``name`` inside ``root`` for the duration of the block (re-entrant)."""
    lock_path = Path(root) / "run" / f"{name}.lock"
    key = os.path.abspath(lock_path)
    with _HELD_GUARD:
        rlock, depth = _HELD.setdefault(key, (threading.RLock(), [0]))
    with rlock:
        if depth[0]:
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        depth[0] = 1
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            depth[0] = 0
            os.close(fd)  # closing the descriptor releases the flock


def read_json(path: Path, default: JsonDict | None = None) -> JsonDict:
    """The document at ``path``; ``default`` (or {}) when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return dict(default or {})
    if not isinstance(data, dict):
        return dict(default or {})
    return data


def write_json(path: Path, data: JsonDict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)


def update_json(root: Path, path: Path, change: Callable[[JsonDict], Any]) -> JsonDict:
    """Read ``path``, let ``change`` edit the dict in place, write it back; all under the state lock."""
    with locked(root):
        data = read_json(path)
        change(data)
        write_json(path, data)
        return data
