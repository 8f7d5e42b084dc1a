"""Flash jobs on disk: one JSON file per job, replaced atomically, so a power cut keeps the last saved step."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from siteline.core.atomic import write_atomic
from siteline.core.errors import SitelineError
from siteline.core.flash.job import FlashJob

log = logging.getLogger(__name__)
SUFFIX = ".json"
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


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}{SUFFIX}"

    def save(self, job: FlashJob) -> None:
        """Write the job before anyone is told of the change (the caller then tells listeners)."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path(job.id), job.to_json(), mode=0o600)

    def load(self, job_id: str) -> FlashJob:
        """Raises FileNotFoundError or ValueError (unreadable: the message says which file)."""
        path = self.path(job_id)
        try:
            return FlashJob.from_json(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def jobs(self) -> list[FlashJob]:
        """Every readable job, oldest first; an unreadable file is logged and left where it is."""
        found: list[FlashJob] = []
        if not self.root.is_dir():
            return found
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
                continue
            try:
                found.append(FlashJob.from_json(Path(entry.path).read_bytes()))
            except (OSError, ValueError) as exc:
                log.warning("flash job %s cannot be read, left as it is: %s", entry.path, exc)
        return sorted(found, key=lambda j: j.created)

    def lock(self, job_id: str) -> JobLock:
        """Claim the job for this process (a ``.ID.lock`` file made with O_EXCL, holding the pid); a lock whose
        process is gone (killed, crashed, the laptop lost power) is stale and taken over. JobBusyError when a live
        process holds it."""
        path = self.root / f".{job_id}{LOCK_SUFFIX}"
        token = uuid.uuid4().hex
        for _ in range(3):
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JobStoreError(f"the flash job {job_id} cannot be started: {self.root} cannot be written "
                                    f"({exc})", "Fix the folder (or free space) and try again; nothing on the "
                                    "device was changed.") from exc
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pid = _holder(path)
                if pid is None or pid_alive(pid):
                    raise JobBusyError(f"the flash job {job_id} is being run by another Siteline "
                                       f"({'process ' + str(pid) if pid else 'starting now'}); two at once would "
                                       "both act on the device",
                                       "Wait for it (`siteline jobs` shows its progress) or close that Siteline. "
                                       f"If no other Siteline runs on this computer, delete {path}.") from None
                log.warning("flash job %s: taking over the lock of process %s, which is gone", job_id, pid)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            except OSError as exc:
                raise JobStoreError(f"the flash job {job_id} cannot be started: {path} cannot be written ({exc})",
                                    "Free space on this computer (or fix the folder's permissions) and try again; "
                                    "nothing on the device was changed.") from exc
            try:
                with os.fdopen(fd, "w", encoding="ascii") as out:
                    out.write(f"{os.getpid()} {token}\n")
            except OSError as exc:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise JobStoreError(f"the flash job {job_id} cannot be started: {path} cannot be written ({exc})",
                                    "Free space on this computer and try again; nothing on the device was "
                                    "changed.") from exc
            return JobLock(path, token)
        raise JobBusyError(f"the flash job {job_id} is being claimed by another Siteline at the same moment",
                           "Try again in a few seconds.")

    def unfinished(self, device: str | None = None) -> list[FlashJob]:
        """Jobs still running (Siteline stopped in the middle): resume or safely finish them."""
        return [j for j in self.jobs() if not j.finished and (device is None or j.device == device)]


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
