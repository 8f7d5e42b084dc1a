"""One process drives a job at a time: a ``.ID.lock`` file made with O_EXCL holds its pid.

A lock whose process is gone (killed, crashed, the laptop lost power) is stale and taken over. Shared by the
flash and the provisioning job stores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from siteline.core.errors import SitelineError

log = logging.getLogger(__name__)
LOCK_SUFFIX = ".lock"
FRESH_LOCK = 10.0  # seconds: a lock file without a readable pid younger than this is being written, not stale


class JobStoreError(SitelineError):
    """The job store cannot be written (the laptop's disk is full, no permission): the job is not started."""


class JobBusyError(JobStoreError):
    """Another Siteline process (or this one) is driving the job now: two drivers would each act on the device."""


class JobLock:
    """This process's claim on one job (a file holding its pid); ``release`` removes it only if it is still ours."""

    def __init__(self, path: Path, token: str) -> None:
        self.path, self.token = path, token

    def release(self) -> None:
        with contextlib.suppress(OSError):
            if self.path.read_text(encoding="ascii", errors="replace").split()[1:2] == [self.token]:
                self.path.unlink()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine). Never signals it: signal 0 on POSIX, a query on Windows."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would TERMINATE it on Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.GetLastError() == 5  # access denied: it exists (another user's)
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


def claim(root: Path, job_id: str, what: str, busy_hint: str) -> JobLock:
    """Claim ``what`` ("the flash job ID") for this process. JobBusyError when a live process holds it (``busy_hint``
    says what to do), JobStoreError when the folder cannot be written."""
    path = root / f".{job_id}{LOCK_SUFFIX}"
    token = uuid.uuid4().hex
    untouched = "nothing on the device was changed."
    for _ in range(3):
        try:
            root.mkdir(parents=True, exist_ok=True)  # a file in its place raises FileExistsError: not "busy"
        except OSError as exc:
            raise JobStoreError(f"{what} cannot be started: {root} cannot be written ({exc})",
                                f"Fix the folder (or free space) and try again; {untouched}") from exc
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pid = _holder(path)
            if pid is None or pid_alive(pid):
                raise JobBusyError(f"{what} is being run by another Siteline "
                                   f"({'process ' + str(pid) if pid else 'starting now'}); two at once would "
                                   "both act on the device",
                                   f"{busy_hint} If no other Siteline runs on this computer, delete {path}.") from None
            log.warning("%s: taking over the lock of process %s, which is gone", what, pid)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        except OSError as exc:
            raise JobStoreError(f"{what} cannot be started: {path} cannot be written ({exc})",
                                f"Free space on this computer (or fix the folder's permissions) and try again; "
                                f"{untouched}") from exc
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(f"{os.getpid()} {token}\n")
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise JobStoreError(f"{what} cannot be started: {path} cannot be written ({exc})",
                                f"Free space on this computer and try again; {untouched}") from exc
        return JobLock(path, token)
    raise JobBusyError(f"{what} is being claimed by another Siteline at the same moment", "Try again in a few seconds.")


def _holder(path: Path) -> int | None:
    """The pid in a lock file; 0 when it is unreadable and old (stale), None when it is being written now."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0  # released meanwhile: the next try takes it
    except OSError:
        return None
    first = text.split()[:1]
    if first and first[0].isdigit():
        return int(first[0])
    return None if age < FRESH_LOCK else 0
