"""A provisioning job: which device, which profile, how far it got. Saved after every step; holds no secret.

The generated passwords live in the vault (``data["credentials"]["vault"]`` names the entries); the job
only says which step is done and what later steps need to know (the device's identity, the CSR's hash,
the firewall backend). A job found "running" or "interrupted" is resumed at its first step not done.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from siteline.core.outbox.ids import uuid7

FORMAT_VERSION = 1

StepName = Literal["identify", "names", "credentials", "identity", "mqtt", "firewall", "posture", "record"]
STEPS: tuple[StepName, ...] = ("identify", "names", "credentials", "identity", "mqtt", "firewall", "posture", "record")
STEP_TITLES: dict[str, str] = {
    "identify": "Identify the device",
    "names": "Hostname, site and tags",
    "credentials": "Replace factory passwords",
    "identity": "Device key and certificate request",
    "mqtt": "MQTT client and telemetry",
    "firewall": "Firewall baseline (with dead-man switch)",
    "posture": "Posture checks",
    "record": "Provisioning record",
}
StepState = Literal["pending", "running", "done", "failed", "skipped"]
# running: in progress in this process. interrupted: the link dropped or Siteline stopped; resume it.
# provisioned: every step done and the required posture checks passed. incomplete: done, but a required
# posture check did not pass (the record says which). refused: a step said no before changing anything
# unsafe (already provisioned, no vault). failed: a step could not be done (message says what to do).
JobStatus = Literal["running", "interrupted", "provisioned", "incomplete", "refused", "failed"]
FINAL: frozenset[str] = frozenset({"provisioned", "incomplete", "refused", "failed"})


@dataclass
class StepRecord:
    name: str
    state: StepState = "pending"
    started: float | None = None
    ended: float | None = None
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProvisionJob:
    id: str
    target: str  # the target URL, without any password
    site: str
    profile_name: str
    profile_sha256: str  # of the profile file: a resume with a changed profile is refused
    device: str = ""  # the device's name, known after "identify"
    tags: list[str] = field(default_factory=list)
    status: JobStatus = "running"
    message: str = ""
    steps: list[StepRecord] = field(default_factory=lambda: [StepRecord(name) for name in STEPS])
    facts: dict[str, Any] = field(default_factory=dict)  # what "identify" read: serial, macs, imei, os_release
    data: dict[str, Any] = field(default_factory=dict)  # per step, what later steps and resumes need
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @classmethod
    def new(cls, *, target: str, site: str, profile_name: str, profile_sha256: str,
            tags: list[str] | None = None) -> ProvisionJob:
        return cls(id=uuid7(), target=target, site=site, profile_name=profile_name,
                   profile_sha256=profile_sha256, tags=list(tags or []))

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)

    def next_step(self) -> str | None:
        """The first step not done (skipped counts as done), or None when all are."""
        return next((s.name for s in self.steps if s.state not in ("done", "skipped")), None)

    def vault_names(self) -> frozenset[str]:
        """The vault entries this job filled (their names only: ``data["credentials"]["vault"]``)."""
        creds = self.data.get("credentials")
        names = creds.get("vault") if isinstance(creds, dict) else None
        return frozenset(str(v) for v in names.values()) if isinstance(names, dict) else frozenset()

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT_VERSION, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProvisionJob:
        """Raises ValueError (with the reason) for anything that is not a job this version wrote."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
            raise ValueError("not a provisioning job of this Siteline version")
        doc.pop("format")
        try:
            steps = [StepRecord(**s) for s in doc.pop("steps")]
            job = cls(**doc, steps=steps)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"a provisioning job with missing or unknown fields: {exc}") from exc
        if [s.name for s in job.steps] != list(STEPS):
            raise ValueError("a provisioning job with unknown steps")
        if job.status not in ("running", "interrupted", *FINAL):
            raise ValueError(f"a provisioning job with an unknown status {job.status!r}")
        return job


def scrub(value: Any, vault_names: frozenset[str] = frozenset()) -> Any:
    """``value`` fit for the audit trail and the outbox, which refuse anything under a secret-looking key
    ("password", "token", ...): there a vault entry name becomes its "vault:NAME" reference and any other value
    None. Steps keep no secrets in evidence; this makes sure a field's name alone never loses a record."""
    from siteline.core.outbox.model import VAULT_PREFIX, find_secret

    if find_secret(value) is None:
        return value
    return _scrub(value, vault_names, VAULT_PREFIX)


def _scrub(value: Any, names: frozenset[str], prefix: str) -> Any:
    from siteline.core.outbox.model import SECRET_WORDS

    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            secretish = any(w in str(key).lower().replace("_", "").replace("-", "") for w in SECRET_WORDS)
            out[key] = _withheld(item, names, prefix) if secretish else _scrub(item, names, prefix)
        return out
    if isinstance(value, list | tuple):
        return [_scrub(item, names, prefix) for item in value]
    return value


def _withheld(value: Any, names: frozenset[str], prefix: str) -> Any:
    if value is None or isinstance(value, bool) or value == "":
        return value
    if isinstance(value, str):
        if value.startswith(prefix):
            return value
        return f"{prefix}{value}" if value in names else None
    if isinstance(value, dict):
        return {k: _withheld(v, names, prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_withheld(v, names, prefix) for v in value]
    return None
