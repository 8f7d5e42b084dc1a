"""A flash job: what is being done to which device with which image, and how far it got.

The job is the unit that survives everything: it is saved (atomically, fsync'd) before and after each
step, so a Siteline that was closed, killed or put to sleep finds it again and resumes or safely
finishes it. It holds no secret (the device's password stays in the vault; the target URL has none).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from siteline.core.outbox.ids import uuid7

FORMAT_VERSION = 1

StepName = Literal["preflight", "transfer", "install", "reboot", "health", "mark-good", "rollback"]
STEPS: tuple[StepName, ...] = ("preflight", "transfer", "install", "reboot", "health", "mark-good")
# A manual "roll back to the other slot": switch, reboot, check the old slot is back and healthy.
ROLLBACK_STEPS: tuple[StepName, ...] = ("preflight", "rollback", "reboot", "health", "mark-good")
# Cancelling is safe only while nothing on the device has changed yet (the upload lies in a .part file).
CANCELLABLE_STEPS: frozenset[str] = frozenset({"preflight", "transfer"})
JobKind = Literal["flash", "rollback"]
StepState = Literal["pending", "running", "done", "failed", "skipped"]
# running: not finished (resume it). The others are final:
# succeeded: new slot booted, healthy, marked good. installed: installed and switched, reboot left to the
# technician (--no-reboot). rolled-back: back on the old slot, healthy (the evidence says why). refused: a
# check said no before anything on the device changed. failed: stopped, device untouched or state unknown
# (message says which). needs-attention: the device is in a state Siteline will not fix alone (both slots
# out of boot attempts, old slot not healthy either): the message says what to do. cancelled: stopped by
# the technician at a point where that was safe.
JobStatus = Literal["running", "succeeded", "installed", "rolled-back", "refused", "failed", "needs-attention",
                    "cancelled"]
FINAL: frozenset[str] = frozenset({"succeeded", "installed", "rolled-back", "refused", "failed", "needs-attention",
                                   "cancelled"})


@dataclass
class Step:
    name: StepName
    state: StepState = "pending"
    started: float | None = None  # wall-clock seconds (time.time())
    ended: float | None = None
    detail: str = ""  # one line for the technician: "412 MiB of 512 MiB, 1:20 left", "booted B (2 attempts left)"
    done: int = 0  # progress within the step (bytes for transfer; 0..100 otherwise); total 0 = no bar
    total: int = 0
    eta: float | None = None  # seconds left, None = unknown


@dataclass(frozen=True)
class HealthCheck:
    """What "healthy" means for this device family; every part must pass. Empty = only "it came back"."""

    units: tuple[str, ...] = ()  # systemd units that must be active
    control_plane: bool = False  # the device's MQTT agent/link reaches the broker (family-defined command)
    control_plane_command: str = ""  # exit 0 = reaches its control plane
    command: str = ""  # a custom command; exit 0 = healthy
    settle: float = 30.0  # seconds after boot before the check (services come up)
    timeout: float = 120.0  # give up (unhealthy) after this long of failing checks


@dataclass(frozen=True)
class FlashOptions:
    reboot: bool = True  # False: install and switch, then stop ("installed"); the technician reboots later
    allow_metered: bool = False  # the technician agreed to send a large image over a metered link
    bootloader_override: str | None = None  # the exact typed phrase (images/gate.py bootloader_phrase)
    allow_downgrade: bool = False
    raw_compatible: str | None = None  # a raw image (no compatible of its own): the device's compatible, as typed
    boot_timeout: float = 300.0  # seconds to wait for the device to come back after the reboot
    health: HealthCheck = field(default_factory=HealthCheck)
    remote_dir: str = "/var/tmp"  # where the image is uploaded on the device (preflight checks its space)


@dataclass
class FlashJob:
    id: str
    device: str  # the technician's name for it (or the target URL when it is not in the list)
    site: str
    target: str  # the URL it is reached by (no secrets)
    image: str  # local path of the image
    signature: str  # local path of its detached signature
    image_sha256: str
    image_format: str  # "raucb" | "swu" | "raw"
    image_version: str
    image_size: int
    options: FlashOptions = field(default_factory=FlashOptions)
    backend: str = ""  # the update backend chosen at preflight ("rauc", "swupdate", "raw")
    status: JobStatus = "running"
    steps: list[Step] = field(default_factory=lambda: [Step(name) for name in STEPS])
    from_slot: str | None = None  # bootname booted when the job started
    to_slot: str | None = None  # bootname the image went to
    from_version: str | None = None
    remote_path: str = ""  # where the image lies on the device
    message: str = ""  # the outcome in words, for the technician (empty while running)
    evidence: list[str] = field(default_factory=list)  # what was seen: "booted A after 3 attempts on B", console lines
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    rollout: str | None = None  # the rollout id this job belongs to, if any
    kind: JobKind = "flash"
    key_fingerprint: str = ""  # the trusted key that signed the image (preflight), for the final record
    boot_id: str | None = None  # the device's boot id just before Siteline rebooted it: a resume can tell
    # whether that reboot happened (the id changed) or not

    @classmethod
    def new(cls, **kwargs: Any) -> FlashJob:
        job = cls(id=uuid7(), **kwargs)
        if job.kind == "rollback" and "steps" not in kwargs:
            job.steps = [Step(name) for name in ROLLBACK_STEPS]
        return job

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def step(self, name: StepName) -> Step:
        found = next((s for s in self.steps if s.name == name), None)
        if found is None:  # rollback is added when it is needed
            found = Step(name)
            self.steps.append(found)
        return found

    @property
    def cancellable(self) -> bool:
        """True while stopping the job leaves the device as it was (preflight, transfer)."""
        if self.finished:
            return False
        step = self.current
        return step is None or step.name in CANCELLABLE_STEPS

    @property
    def current(self) -> Step | None:
        """The step running now, or the first one not done (where a resume starts); else the one that failed.

        A failed health check is followed by the rollback step: the resume point is then the rollback."""
        return next((s for s in self.steps if s.state in ("running", "pending")),
                    next((s for s in self.steps if s.state == "failed"), None))

    def to_json(self) -> bytes:
        data = asdict(self)
        data["format"] = FORMAT_VERSION
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> FlashJob:
        """Raises ValueError (with the reason) for a file that is not a job this Siteline can read."""
        try:
            data = json.loads(raw)
        except ValueError as exc:  # not JSON, not UTF-8: a torn or foreign file
            raise ValueError(f"not a job record ({exc})") from exc
        try:
            if not isinstance(data, dict):
                raise ValueError("not a job record")
            if data.pop("format", None) != FORMAT_VERSION:
                raise ValueError("a job record from another Siteline version")
            options = dict(data.pop("options"))
            data["options"] = FlashOptions(**{**options, "health": _health(options["health"])})
            data["steps"] = [Step(**s) for s in data["steps"]]
            job = cls(**data)
        except (TypeError, KeyError, AttributeError) as exc:  # a field missing, renamed or of the wrong type
            raise ValueError(f"not a job record this Siteline can read ({exc})") from exc
        problem = _wrong_field(job, "job")
        if problem:  # e.g. "created": null would break sorting every job; an unknown step has no handler
            raise ValueError(f"not a job record this Siteline can read: {problem}")
        return job


def _health(raw: dict[str, Any]) -> HealthCheck:
    return HealthCheck(**{**raw, "units": tuple(raw.get("units", ()))})


def _wrong_field(obj: Any, where: str) -> str:
    """The first field of a loaded dataclass whose value does not fit its annotation, in words ("" = all fit)."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _fits(value, hints[f.name]):
            return f"{where}.{f.name} is {value!r:.80}"
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if is_dataclass(item):
                suffix = f"[{index}]" if isinstance(value, list) else ""
                problem = _wrong_field(item, f"{where}.{f.name}{suffix}")
                if problem:
                    return problem
    return ""


def _fits(value: Any, hint: Any) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (Union, UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin in (list, tuple):
        return isinstance(value, origin) and all(_fits(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # Any, or a type this check does not know: the constructor already took it
