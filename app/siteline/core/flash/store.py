"""Flash jobs on disk: one JSON file per job, replaced atomically, so a power cut keeps the last saved step."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from siteline.core.atomic import write_atomic
from siteline.core.flash.job import FlashJob
from siteline.core.job_lock import JobBusyError, JobLock, JobStoreError, claim, pid_alive

__all__ = ["JobBusyError", "JobLock", "JobStore", "JobStoreError", "pid_alive"]

log = logging.getLogger(__name__)
SUFFIX = ".json"


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
        """Claim the job for this process (core/job_lock.py). JobBusyError when a live process holds it."""
        return claim(self.root, job_id, f"the flash job {job_id}",
                     "Wait for it (`siteline jobs` shows its progress) or close that Siteline.")

    def unfinished(self, device: str | None = None) -> list[FlashJob]:
        """Jobs still running (Siteline stopped in the middle): resume or safely finish them."""
        return [j for j in self.jobs() if not j.finished and (device is None or j.device == device)]
