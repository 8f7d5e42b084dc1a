"""Provisioning jobs on disk: one JSON file per job, replaced atomically (fsync'd), so a pulled cable, a killed
Siteline or a power cut keeps the last saved step, and a later run resumes there.

One process drives a job at a time: ``lock`` makes a ``.ID.lock`` file with O_EXCL holding the pid (a lock whose
process is gone is stale and taken over), as the flash job store does.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from siteline.core.atomic import write_atomic
from siteline.core.job_lock import JobBusyError, JobLock, JobStoreError, claim
from siteline.core.provisioning.job import ProvisionJob

log = logging.getLogger(__name__)
SUFFIX = ".json"
RESUMABLE = ("running", "interrupted")

__all__ = ["JobBusyError", "JobLock", "JobStoreError", "ProvisionStore", "default_root"]


def default_root() -> Path:
    from siteline import paths

    return paths.data_dir() / "provision-jobs"


class ProvisionStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}{SUFFIX}"

    def save(self, job: ProvisionJob) -> None:
        """Write the job (atomically, fsync'd) before anyone is told of the change. JobStoreError when it cannot."""
        job.updated = time.time()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path(job.id), job.to_json().encode(), mode=0o600)
        except OSError as exc:
            raise JobStoreError(f"the provisioning job {job.id} cannot be saved in {self.root} ({exc})",
                                "Free space on this computer (or fix the folder's permissions), then run the "
                                "same command again: it resumes at the last saved step.") from exc

    def load(self, job_id: str) -> ProvisionJob:
        """Raises FileNotFoundError or ValueError (unreadable: the message names the file)."""
        path = self.path(job_id)
        try:
            return ProvisionJob.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def jobs(self) -> list[ProvisionJob]:
        """Every readable job, oldest first; an unreadable file is logged and left where it is."""
        found: list[ProvisionJob] = []
        if not self.root.is_dir():
            return found
        for entry in os.scandir(self.root):
            if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
                continue
            try:
                found.append(ProvisionJob.from_json(Path(entry.path).read_text(encoding="utf-8")))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                log.warning("provisioning job %s cannot be read, left as it is: %s", entry.path, exc)
        return sorted(found, key=lambda j: (j.created, j.id))

    def unfinished(self, site: str | None = None, device: str | None = None,
                   target: str | None = None) -> list[ProvisionJob]:
        """Jobs cut in the middle (running when Siteline stopped, or interrupted): resume them. Oldest first."""
        return [j for j in self.jobs() if j.status in RESUMABLE and (site is None or j.site == site)
                and (device is None or j.device == device) and (target is None or j.target == target)]

    def latest_for(self, site: str, device: str) -> ProvisionJob | None:
        """The newest job for this device (any status), or None."""
        found = [j for j in self.jobs() if j.site == site and j.device == device]
        return found[-1] if found else None

    def latest_for_target(self, target: str) -> ProvisionJob | None:
        """The newest job run over this target URL (any status): before "identify" the device has no name yet."""
        found = [j for j in self.jobs() if j.target == target]
        return found[-1] if found else None

    def lock(self, job_id: str) -> JobLock:
        """Claim the job for this process (core/job_lock.py). JobBusyError when a live process holds it."""
        return claim(self.root, job_id, f"the provisioning job {job_id}", "Wait for it, or close that Siteline.")
