"""The plugins a person switched off: one small JSON file in the config folder.

The file holds names only, and keeps names of plugins that are not installed (yet): a technician may switch
off a vendor plugin before installing it, and uninstalling a plugin must not forget that it was unwanted.
A damaged file is set aside (renamed beside itself) with a message; it never stops Siteline starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from siteline.core.atomic import write_atomic

FILE_NAME = "plugins.json"
FORMAT_VERSION = 1
LOCK_SUFFIX = ".lock"  # Windows: plugins.json.lock beside it, held while the file is read, changed, written
LOCK_WAIT = 10.0  # seconds
log = logging.getLogger(__name__)

# The built-in plugins and what stops working without each: a person switching one off is told first.
CORE_PLUGINS: dict[str, str] = {
    "system": "the Overview (OS release, kernel, uptime, storage) and the device identity updates rely on",
    "modemmanager": "modem signal, SIM and registration readings through ModemManager (mmcli)",
    "atmodem": "modem readings over the AT port on devices without ModemManager",
    "networkmanager": "the Network panel: links, the default route and cellular failover (nmcli)",
    "slots": "A/B slot state, RAUC/SWUpdate/raw image updates, mark-good and rollback",
    "posture": "the Posture panel: encryption, read-only root, firewall, SSH and clock checks",
}


class PluginSettings:
    """Reads and writes the disabled list. Every change re-reads the file first, so the CLI and a running
    window changing it one after the other do not undo each other."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.problem = ""  # what was wrong with the file, for the CLI and the dialog to say
        self._disabled: set[str] = set()
        self.reload()

    @property
    def disabled(self) -> frozenset[str]:
        return frozenset(self._disabled)

    def is_disabled(self, name: str) -> bool:
        return name in self._disabled

    def reload(self) -> None:
        self._disabled = self._read()

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Switch ``name`` off (``disabled``) or on again, and write the file at once (atomically). The read, the
        change and the write happen under a lock: two writers at once (the window and the CLI) keep both changes.
        OSError when the file cannot be written or the lock not had within LOCK_WAIT seconds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            self.reload()
            if disabled:
                self._disabled.add(name)
            else:
                self._disabled.discard(name)
            body = {"version": FORMAT_VERSION, "disabled": sorted(self._disabled)}
            write_atomic(self.path, (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)

    def _read(self) -> set[str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return set()
        except OSError as exc:
            self.problem = f"Cannot read {self.path} ({exc}); every plugin is treated as enabled."
            log.warning("%s", self.problem)
            return set()
        try:
            return _parse(raw)
        except ValueError as exc:
            self._set_aside(str(exc))
            return set()

    def _set_aside(self, why: str) -> None:
        stem = f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        aside = self.path.with_name(stem)
        for n in range(1, 100):  # never overwrite an earlier damaged copy someone may still want
            if not aside.exists():
                break
            aside = self.path.with_name(f"{stem}.{n}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            self.problem = f"{self.path} is damaged ({why}) and could not be moved aside ({exc}); fix or delete it."
        else:
            self.problem = (
                f"{self.path} was damaged ({why}); it was moved to {aside.name} and every plugin is enabled. "
                "Switch off again the plugins you had disabled."
            )
        log.warning("%s", self.problem)


@contextlib.contextmanager
def _locked(settings: Path) -> Iterator[None]:
    """Hold the exclusive lock for changing ``settings``. Not a lock on the file itself: it is replaced on every
    write. POSIX: flock on its folder (flock, not lockf, so threads of one process exclude each other too; nothing
    is left behind, and the lock goes with a process that dies). Windows: a lock file beside it."""
    fd = _open_lock(settings)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{settings} is being changed by another Siteline for more than {LOCK_WAIT:.0f} s; "
                                   "try again, or close the other Siteline windows")
            time.sleep(0.01)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
        _close_lock(settings)


if sys.platform == "win32":
    import msvcrt

    def _lock_file(settings: Path) -> Path:
        return settings.with_name(settings.name + LOCK_SUFFIX)

    def _open_lock(settings: Path) -> int:
        return os.open(_lock_file(settings), os.O_RDWR | os.O_CREAT, 0o600)

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the first byte is the lock (it may lie past the end)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _close_lock(settings: Path) -> None:
        # Windows refuses to delete a file another handle has open: a waiting writer keeps it, the last removes it.
        with contextlib.suppress(OSError):
            _lock_file(settings).unlink()

else:
    import fcntl

    def _open_lock(settings: Path) -> int:
        return os.open(settings.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _close_lock(settings: Path) -> None:
        pass


def _parse(raw: bytes) -> set[str]:
    """The names in a settings file; ValueError says what is wrong with it."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    names = body.get("disabled", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError('"disabled" is not a list of plugin names')
    return {n.strip() for n in names}


def settings_path() -> Path:
    from siteline.paths import config_dir

    return config_dir() / FILE_NAME
