"""A site rollout: one image onto every device of a site, never all at once.

The plan: the canary device(s) first; then a soak period (long by default, shortened only by an explicit
choice that the audit trail records); then the canary's health is checked again; then the rest in waves.
The first device that does not end "succeeded" stops everything: devices already running in its wave
finish, nothing new starts. The rollout is saved (atomically) after every change, beside the flash jobs,
so a rollout that was killed resumes where it stopped: finished devices are not flashed again, a device
whose job was cut is resumed by the job runner, a soak continues until its planned end.

The device work is not done here: ``run_one`` runs (or resumes) one device's FlashJob and ``recheck`` asks
whether a device is still healthy, so the plan, soak, wave and stop rules are testable on their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from siteline.core.atomic import write_atomic
from siteline.core.errors import SitelineError
from siteline.core.flash.job import FlashJob, FlashOptions, HealthCheck
from siteline.core.outbox.ids import uuid7

if TYPE_CHECKING:
    from siteline.core.flash.machine import FlashLink

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
DEFAULT_SOAK = 30 * 60.0  # seconds: long on purpose; a shorter soak is an explicit, recorded choice
SOAK_STEP = 30.0  # seconds: the soak looks at the wall clock this often
DEFAULT_WAVE_SHARE = 0.25  # of the devices after the canary, rounded up
OK = frozenset({"succeeded"})  # a rollout reboots every device: only a healthy, marked-good new slot counts
AUDIT_ACTION = "rollout"
RolloutStatus = Literal["running", "succeeded", "stopped"]
Phase = Literal["canary", "soak", "waves", "done"]
Record = Callable[[str, Mapping[str, Any], str], None]
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


class RolloutError(SitelineError):
    """A rollout that cannot start (unknown or empty site, a bad option); the message says what to do."""


def parse_duration(text: str) -> float:
    """``90s``, ``10m``, ``1h``, ``1h30m``, ``0s`` (or a bare number of seconds) to seconds; ValueError otherwise."""
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        return float(cleaned)
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"'{text}' is not a duration: write it like 90s, 10m, 1h or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def duration_text(seconds: float) -> str:
    s = int(seconds)
    if s % 3600 == 0 and s:
        return f"{s // 3600}h"
    if s % 60 == 0 and s:
        return f"{s // 60}m"
    return f"{seconds:g}s"


@dataclass
class DeviceRun:
    """One device in the rollout. status: pending, running, or its job's final status."""

    name: str
    target: str
    wave: int  # 0 = the canary wave
    status: str = "pending"
    job_id: str | None = None
    message: str = ""


@dataclass
class Rollout:
    id: str
    site: str
    image: str
    signature: str
    canary: int
    wave_size: int
    soak: float  # seconds
    soak_chosen: bool  # False: the default soak; True: the technician chose this length (recorded)
    devices: list[DeviceRun]
    options: FlashOptions = field(default_factory=FlashOptions)  # every device's job gets these
    status: RolloutStatus = "running"
    phase: Phase = "canary"
    soak_ends: float | None = None  # wall clock; a resumed soak waits only for what is left
    announced: bool = False  # the "start" audit record was written
    message: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def waves(self) -> list[list[DeviceRun]]:
        count = max((d.wave for d in self.devices), default=-1) + 1
        return [[d for d in self.devices if d.wave == i] for i in range(count)]

    def device(self, name: str) -> DeviceRun | None:
        return next((d for d in self.devices if d.name == name), None)

    def plan_detail(self) -> dict[str, Any]:
        """The plan as the audit trail keeps it."""
        return {"rollout": self.id, "site": self.site, "image": Path(self.image).name, "canary": self.canary,
                "wave_size": self.wave_size, "soak_seconds": self.soak,
                "soak": f"{duration_text(self.soak)} ({'chosen explicitly' if self.soak_chosen else 'default'})",
                "waves": [[d.name for d in wave] for wave in self.waves()]}

    def to_json(self) -> bytes:
        data = asdict(self)
        data["format"] = FORMAT_VERSION
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Rollout:
        """Raises ValueError (with the reason) for a file that is not a rollout this Siteline can read."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a rollout record")
            if data.pop("format", None) != FORMAT_VERSION:
                raise ValueError("a rollout record from another Siteline version")
            data["devices"] = [DeviceRun(**d) for d in data["devices"]]
            options = dict(data.pop("options"))
            health = dict(options.pop("health"))
            health["units"] = tuple(health.get("units", ()))
            data["options"] = FlashOptions(**options, health=HealthCheck(**health))
            return cls(**data)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a rollout record this Siteline can read ({exc})") from exc


def default_wave_size(rest: int) -> int:
    return max(1, math.ceil(rest * DEFAULT_WAVE_SHARE))


def plan_rollout(site: str, devices: Sequence[tuple[str, str]], *, image: str, signature: str, canary: int = 1,
                 wave_size: int | None = None, soak: float | None = None,
                 options: FlashOptions | None = None) -> Rollout:
    """The rollout for (name, target) devices in the order given: the first ``canary`` are the canary wave."""
    if not devices:
        raise RolloutError(f"The site '{site}' has no devices to update.", "Add its devices to the device list.")
    if canary < 1:
        raise RolloutError("A rollout needs at least one canary device (--canary 1 or more).")
    if wave_size is not None and wave_size < 1:
        raise RolloutError("A wave needs at least one device (--wave 1 or more).")
    if soak is not None and (soak < 0 or not math.isfinite(soak)):
        raise RolloutError("The soak period cannot be negative.")
    if canary >= len(devices) > 1:  # every device in the canary wave = the whole site at once, no soak
        raise RolloutError(f"--canary {canary} covers all {len(devices)} devices of '{site}': the whole site would "
                           "be updated at once with no soak.", f"Use --canary {len(devices) - 1} or fewer "
                           "(at least one device waits for the soak).")
    canary = min(canary, len(devices))
    size = wave_size if wave_size is not None else default_wave_size(len(devices) - canary)
    runs = [DeviceRun(name, target, 0 if i < canary else 1 + (i - canary) // size)
            for i, (name, target) in enumerate(devices)]
    return Rollout(id=uuid7(), site=site, image=image, signature=signature, canary=canary, wave_size=size,
                   soak=DEFAULT_SOAK if soak is None else soak, soak_chosen=soak is not None, devices=runs,
                   options=options or FlashOptions())


class RolloutStore:
    """One JSON per rollout in ``root/rollouts`` (beside the flash jobs, which JobStore keeps in ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "rollouts"

    def path(self, rollout_id: str) -> Path:
        return self.root / f"{rollout_id}.json"

    def save(self, rollout: Rollout) -> None:
        rollout.updated = time.time()
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path(rollout.id), rollout.to_json(), mode=0o600)

    def load(self, rollout_id: str) -> Rollout:
        path = self.path(rollout_id)
        try:
            return Rollout.from_json(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def rollouts(self) -> list[Rollout]:
        """Every readable rollout, oldest first; an unreadable file is logged and left where it is."""
        found: list[Rollout] = []
        if not self.root.is_dir():
            return found
        for entry in os.scandir(self.root):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                found.append(Rollout.from_json(Path(entry.path).read_bytes()))
            except (OSError, ValueError) as exc:
                log.warning("rollout %s cannot be read, left as it is: %s", entry.path, exc)
        return sorted(found, key=lambda r: r.created)

    def unfinished(self) -> list[Rollout]:
        return [r for r in self.rollouts() if not r.finished]


@dataclass
class RolloutHooks:
    """What the rollout needs from outside: the device work, the audit trail, the clock."""

    run_one: Callable[[DeviceRun], Awaitable[FlashJob]]  # runs or resumes this device's job (.rollout set)
    recheck: Callable[[DeviceRun], Awaitable[str | None]]  # after the soak: None = healthy, else what is wrong
    record: Record
    listener: Callable[[Rollout], None] | None = None  # after each saved change
    parallel: int = 0  # devices at once within a wave; 0 = the whole wave
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.time


class _Runner:
    def __init__(self, rollout: Rollout, store: RolloutStore, hooks: RolloutHooks) -> None:
        self.rollout, self.store, self.hooks = rollout, store, hooks

    def save(self) -> None:
        self.store.save(self.rollout)
        if self.hooks.listener is not None:
            try:
                self.hooks.listener(self.rollout)
            except Exception:  # a window's bug must not cancel the wave's other devices mid-flash
                log.exception("rollout listener failed")

    def record(self, event: str, detail: Mapping[str, Any], result: str = "ok") -> None:
        self.hooks.record(AUDIT_ACTION, {"event": event, "rollout": self.rollout.id, "site": self.rollout.site,
                                         **detail}, result)

    async def run(self) -> Rollout:
        r = self.rollout
        if r.finished:
            return r
        if not r.announced:  # recorded, then saved: a kill in between repeats the record, never loses it
            self.record("start", r.plan_detail())
            r.announced = True
            self.save()
        for index, wave in enumerate(r.waves()):
            if index == 1 and not await self.soak_and_recheck(r.waves()[0]):
                return r
            if all(d.status in OK for d in wave):
                continue
            failed = await self.run_wave(index, wave)
            if failed is not None:
                self.stop(f"{failed.name} ended '{failed.status}'" + (f": {failed.message}" if failed.message else ""))
                return r
        r.status, r.phase = "succeeded", "done"
        r.message = f"all {len(r.devices)} devices of {r.site} updated"
        self.record("finish", {"devices": [d.name for d in r.devices], "message": r.message})
        self.save()
        return r

    async def soak_and_recheck(self, canaries: list[DeviceRun]) -> bool:
        """Wait out the soak (what is left of it after a resume), then check every canary again."""
        r = self.rollout
        if r.phase == "canary":
            # Recorded before it is saved: killed in between, the resume records the soak again (twice, and
            # honest), where the other order would leave a rollout in its soak with no record of one.
            self.record("soak", {"seconds": r.soak, "chosen_explicitly": r.soak_chosen,
                                 "soak": r.plan_detail()["soak"]})
            r.phase, r.soak_ends = "soak", self.hooks.clock() + r.soak
            self.save()
        if r.phase == "soak":
            # By the wall clock, in steps: a laptop that slept through part of the soak does not wait it again.
            while (left := (r.soak_ends or 0.0) - self.hooks.clock()) > 0:
                await self.hooks.sleep(min(left, SOAK_STEP))
            for device in canaries:
                problem = await self._recheck(device)
                if problem is not None:
                    self.stop(f"canary {device.name} is not healthy after the soak: {problem}")
                    return False
            r.phase = "waves"
            self.save()
        return True

    async def _recheck(self, device: DeviceRun) -> str | None:
        try:
            return await self.hooks.recheck(device)
        except (SitelineError, OSError, TimeoutError) as exc:
            return f"could not check it: {exc}"
        except Exception as exc:  # a bug: the canary is not known healthy, so the rollout stops (no escape)
            log.exception("rollout %s: checking %s failed", self.rollout.id, device.name)
            return f"could not check it (internal error: {exc})"

    async def run_wave(self, index: int, wave: list[DeviceRun]) -> DeviceRun | None:
        """Run the wave's devices (``parallel`` at a time); after the first failure nothing new starts."""
        todo = [d for d in wave if d.status not in OK]
        self.record("wave", {"wave": index, "canary": index == 0, "devices": [d.name for d in todo]})
        failures: list[DeviceRun] = []
        gate = asyncio.Semaphore(self.hooks.parallel or len(todo))

        async def one(device: DeviceRun) -> None:
            async with gate:
                if failures:
                    return  # a device before this one failed: this one is not touched
                await self.run_device(device)
                if device.status not in OK:
                    failures.append(device)

        async with asyncio.TaskGroup() as group:
            for device in todo:
                group.create_task(one(device))
        return failures[0] if failures else None

    async def run_device(self, device: DeviceRun) -> None:
        if device.status not in ("pending", "running"):
            return  # ended badly before a restart: it still counts as the failure that stops the rollout
        device.status = "running"
        self.save()
        try:
            job = await self.hooks.run_one(device)
            device.job_id, device.status, device.message = job.id, job.status, job.message
        except (SitelineError, OSError, TimeoutError) as exc:  # could not even start its job
            device.status, device.message = "failed", str(exc)
        except Exception as exc:  # a bug must not escape the TaskGroup: it would cancel the others mid-flash
            log.exception("rollout %s: device %s stopped by an internal error", self.rollout.id, device.name)
            device.status, device.message = "failed", f"Siteline hit an internal error ({type(exc).__name__}: {exc})"
        self.save()

    def stop(self, reason: str) -> None:
        r = self.rollout
        untouched = [d.name for d in r.devices if d.status == "pending"]
        r.status, r.phase = "stopped", "done"
        r.message = f"rollout stopped: {reason}" + (f"; not touched: {', '.join(untouched)}" if untouched else "")
        self.record("stop", {"reason": reason, "not_touched": untouched,
                             "devices": {d.name: d.status for d in r.devices}}, "stopped")
        self.save()


async def run_rollout(rollout: Rollout, store: RolloutStore, hooks: RolloutHooks) -> Rollout:
    """Run or resume ``rollout`` until it succeeded or stopped; returns it (also saved in ``store``).

    Ctrl-C (CancelledError) leaves it saved as it was: running devices stay "running" and are resumed."""
    return await _Runner(rollout, store, hooks).run()


async def canary_problem(link: FlashLink, job: FlashJob) -> str | None:
    """After the soak: None when the device still runs the slot its job installed and passes its health check,
    else what is wrong, in words."""
    from siteline.core.flash.reading import Reader
    from siteline.core.plugin_api import make_context

    reader = Reader(make_context(job.device, job.target, link.run, log))
    booted = (await reader.slots()).booted
    if job.to_slot and booted != job.to_slot:
        return f"it runs slot {booted}, not the new slot {job.to_slot} (it fell back during the soak)"
    healthy, words = await reader.health(job.options.health)
    return None if healthy else words


def site_devices(entries: Sequence[Any], site: str) -> list[tuple[str, str]]:
    """(name, target) of the device list's entries at ``site``, in the list's order; RolloutError when the
    site is unknown or has no device. ``entries`` are inventory DeviceEntry objects (name, site, target)."""
    if not entries:
        raise RolloutError("The device list is empty: there is no site to roll out to.",
                           "Add the site's devices first (in the Devices panel).")
    found = [(e.name, e.target) for e in entries if e.site == site]
    if not found:
        sites = sorted({e.site for e in entries})
        raise RolloutError(f"There is no site '{site}' in the device list.", f"Known sites: {', '.join(sites)}.")
    return found
