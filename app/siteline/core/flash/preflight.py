"""Preflight: every reason not to start, checked against the device as it is now; nothing is changed on it.

The image gate (signature by a trusted key, compatible, bootloader override, downgrade) runs again against the
Slots read now, then the device side: reachable, booted slot good, an inactive slot, room for the upload, a
metered link for a large image, a link that can carry the image at all, and an update backend for its format.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import replace
from pathlib import Path

from siteline.core.device.slot_actions import good_bundle
from siteline.core.device.slots import Slot, Slots
from siteline.core.flash.context import Flow, Stop
from siteline.core.flash.family_health import CONFIG_NAME, HealthConfigError, chosen, family_check, load_config
from siteline.core.flash.reading import health_specs, label, other_slot
from siteline.core.images.gate import DeviceFacts, Overrides, check_before_flash
from siteline.core.plugin_api import UpdateBackend

MIB = 1 << 20
METERED_LIMIT = 50 * MIB  # a larger image over cellular needs the technician's yes
LTE_BPS = 10_000_000  # a plausible sustained LTE upload rate for the estimate (bits/s)
SERIAL_LIMIT = 4 * MIB  # over a console line only small images: hours otherwise
SERIAL_BPS = 115_200
SPACE_MARGIN = MIB  # room left beside the image on the device
LAST_ATTEMPT = 1  # a running slot with this many boot attempts left (or fewer) is no way back


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


async def preflight(flow: Flow) -> str:
    """Returns the step's detail; raises Stop("refused", reason) for any refusal."""
    job = flow.job
    slots = await flow.reader.slots()
    booted = _booted(slots)
    if not flow.flash:
        return _rollback_preflight(flow, slots, booted)
    if booted.health == "bad":
        raise Stop("refused", f"the running slot {label(booted)} is marked bad: mark it good first (Slots tab) "
                   "so the device has a way back, then flash again")
    if booted.attempts_left is not None and booted.attempts_left <= LAST_ATTEMPT:
        # If the new image then fails its boots, the device falls back to a slot on its last attempt: one
        # power cut there and no slot is left to boot.
        raise Stop("refused", f"the running slot {label(booted)} has {booted.attempts_left} boot attempt(s) left "
                   "(it was not marked good since it booted): mark it good first (Slots tab, Mark good) so the "
                   "device keeps a full way back, then flash again")
    other = other_slot(slots, booted)
    if other is None:
        raise Stop("refused", f"no inactive slot next to {label(booted)}: this device has no A/B pair to install "
                   "into")
    await _gate(flow, slots, booted)
    notes = [_health_choice(flow, slots), _link_problem(flow)]
    notes.append(await _space(flow))
    notes.append(await _metered(flow))
    backend = await _backend(flow)
    job.backend = backend.name
    job.from_slot, job.to_slot = booted.bootname, other.bootname
    job.from_version = booted.bundle_version
    job.remote_path = posixpath.join(job.options.remote_dir, Path(job.image).name)
    said = "; ".join(n for n in notes if n)
    return (f"{label(booted)} ({job.from_version or 'version unknown'}) booted and good; {job.image_version} "
            f"goes to {label(other)} with {backend.name}" + (f"; {said}" if said else ""))


def _booted(slots: Slots) -> Slot:
    booted = slots.booted_slot
    if booted is None:
        raise Stop("refused", "the device does not say which slot it booted from (no rauc.slot= on its kernel "
                   "command line, no RAUC): Siteline will not change slots it cannot see")
    return booted


def _rollback_preflight(flow: Flow, slots: Slots, booted: Slot) -> str:
    job = flow.job
    other = other_slot(slots, booted)
    if other is None:
        raise Stop("refused", f"no other slot next to {label(booted)} to roll back to")
    if not good_bundle(slots, other):
        raise Stop("refused", f"slot {label(other)} holds nothing known to boot (marked bad or never installed): "
                   f"rolling back to it could leave the device without a working system; stay on {label(booted)}")
    job.from_slot, job.to_slot = booted.bootname, other.bootname
    job.from_version, job.image_version = booted.bundle_version, other.bundle_version or ""
    return f"{label(booted)} ({job.from_version or '?'}) booted; rolling back to {label(other)} " \
           f"({other.bundle_version or 'version unknown'})"


async def _gate(flow: Flow, slots: Slots, booted: Slot) -> None:
    job = flow.job
    facts = DeviceFacts(compatible=slots.compatible, installed_version=booted.bundle_version, name=job.device)
    overrides = Overrides(bootloader=job.options.bootloader_override, downgrade=job.options.allow_downgrade,
                          raw_compatible=job.options.raw_compatible)
    sig = Path(job.signature) if job.signature else None
    gate = await asyncio.to_thread(check_before_flash, Path(job.image), sig, facts, overrides, flow.keys)
    if gate.audit_detail.get("overrides"):
        flow.audit("override", {"job": job.id, **gate.audit_detail}, "ok" if gate.ok else "refused")
    if not gate.ok:
        raise Stop("refused", gate.reasons[0], detail="; ".join(gate.reasons))
    job.key_fingerprint = str(gate.audit_detail.get("key_fingerprint") or "")
    if gate.info is not None and gate.info.sha256 != job.image_sha256:
        raise Stop("refused", f"the image {Path(job.image).name} changed since the job was prepared (its SHA-256 "
                   "differs): prepare the flash again")
    for note in gate.notes:
        flow.note(note)


def _health_choice(flow: Flow, slots: Slots) -> str:
    """The device family's health check when the technician chose none (the config file's, then plugins')."""
    job = flow.job
    if chosen(job.options.health):
        return ""
    from siteline.paths import config_dir  # not at import time: config_dir() creates the folder

    try:
        specs = [*load_config(config_dir() / CONFIG_NAME), *health_specs()]
    except HealthConfigError as exc:
        raise Stop("refused", str(exc)) from exc
    spec = family_check(slots.compatible, specs)
    if spec is None:
        return (f"no health check chosen and none known for {slots.compatible or 'this device'}: only coming back "
                "on the new slot is checked")
    job.options = replace(job.options, health=spec.check)
    parts = [*(f"{u} active" for u in spec.check.units), *(["its control plane reached"]
             if spec.check.control_plane_command else []), *([f"`{spec.check.command}`"] if spec.check.command
             else [])]
    return f"health check of {spec.family}: {', '.join(parts) or 'it came back'}"


def _link_problem(flow: Flow) -> str:
    job, kind = flow.job, flow.link.kind
    if kind == "mqtt":
        raise Stop("refused", "this device is reached only through MQTT: Siteline does not send images through the "
                   "broker (slow, and it would fill the broker's queues); connect to it over SSH or its serial "
                   "console")
    if kind == "serial":
        bps = getattr(flow.link, "line_bps", None) or SERIAL_BPS
        seconds = job.image_size * 4 / 3 * 10 / bps  # base64, 10 bits a byte on an 8N1 line
        if job.image_size > SERIAL_LIMIT:
            raise Stop("refused", f"the image is {mib(job.image_size)}: over the serial console at {bps} bit/s it "
                       f"would take about {minutes(seconds)}; images up to {mib(SERIAL_LIMIT)} only over serial. "
                       "Connect over SSH (Ethernet or cellular) instead")
        return f"over the serial console: about {minutes(seconds)} at {bps} bit/s"
    return ""


async def _space(flow: Flow) -> str:
    job = flow.job
    free = await flow.reader.free_kib(job.options.remote_dir)
    if free is None:
        return f"free space in {job.options.remote_dir} could not be read (df); going on"
    need = job.image_size + SPACE_MARGIN
    if free * 1024 < need:
        raise Stop("refused", f"not enough space in {job.options.remote_dir} on the device: {mib(free * 1024)} "
                   f"free, the image needs {mib(need)}; free some space or choose another folder")
    return ""


async def _metered(flow: Flow) -> str:
    job = flow.job
    network = await flow.reader.network()
    device = network.active_device if network is not None else None
    if device is None:
        return "cannot tell whether the device's link is metered (cellular); going on"
    if device.kind != "cellular" or job.image_size <= METERED_LIMIT:
        return f"on cellular ({device.name})" if device.kind == "cellular" else ""
    seconds = job.image_size * 8 / LTE_BPS
    if not job.options.allow_metered:
        raise Stop("refused", f"the device is on a metered cellular link ({device.name}): the image is "
                   f"{mib(job.image_size)}, about {minutes(seconds)} at a good LTE rate (10 Mbit/s), all of it paid "
                   "data; agree to send it over cellular (allow metered) or wait for the wired link")
    return f"on cellular ({device.name}), {mib(job.image_size)} allowed by the technician"


async def _backend(flow: Flow) -> UpdateBackend:
    fmt = flow.job.image_format
    tried: list[str] = []
    for backend in flow.backends:
        if fmt not in backend.formats:
            continue
        tried.append(backend.name)
        if await backend.detect(flow.reader.ctx):
            return backend
    if not tried:
        raise Stop("refused", f"no update backend installs {fmt or 'this kind of'} images (installed: "
                   f"{', '.join(b.name for b in flow.backends) or 'none'})")
    raise Stop("refused", f"the device has no tool to install a {fmt} image (looked for: {', '.join(tried)})")
