"""The last two provisioning steps: prove the posture, then write the provisioning record and the device's marker.

posture runs the same Posture probe as `siteline probe` and the Posture panel (the siteline_posture plugin,
through the link's run), keeps every check in ``job.data["posture"]`` and names the profile's required
checks that did not pass: the job then ends "incomplete", not failed, because the record is still worth
writing and says which. record queues the provisioning record in the outbox once per job (the item id in
``job.data["record"]`` makes a resume skip it) and writes the marker on the device last: the marker is what
"identify" reads to know a device was provisioned, so it must not appear before everything else is done.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from typing import Any

from siteline.core.errors import SitelineError
from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome, StepRefusedError
from siteline.core.provisioning.job import scrub

log = logging.getLogger(__name__)
RECORD_KIND = "provisioning"
PROBE_TIMEOUT = 60.0


async def _posture_checks(ctx: StepContext) -> list[dict[str, str]]:
    """Every check of the installed posture probe as {key, status, reason}; StepFailedError when none can run."""
    from siteline.core.device.posture import Posture
    from siteline.core.plugin_api import make_context
    from siteline.core.plugins import load_plugins

    host = load_plugins()
    probes = host.probes("posture")
    if not probes:
        raise StepFailedError("No installed plugin checks a device's posture, so it cannot be proven.",
                              "Enable the siteline_posture plugin (`siteline plugins` lists them) and run again.")
    device = ctx.job.device or "device"
    run_ctx = make_context(device, ctx.job.target, ctx.read, log)
    reasons: list[str] = []
    for entry in probes:
        if hasattr(entry.item, "certificate_path"):  # this host's own probe object: the profile's certificate
            entry.item.certificate_path = ctx.profile.certificate.cert_path
        snapshot = await host.run_probe(entry, run_ctx)
        if isinstance(snapshot, Posture):
            return [{"key": c.key, "status": c.status, "reason": c.reason} for c in snapshot.checks]
        reasons.append(getattr(snapshot, "reason", "") or f"the probe {entry.item.name} gave nothing")
    raise StepFailedError(f"The posture of {device} could not be read: {'; '.join(reasons)}",
                          "Check the device's shell answers (`siteline run TARGET -- id`), then run again.")


def _factory_check(ctx: StepContext) -> dict[str, str] | None:
    """The credentials step proved the factory password refused (or not): the probe cannot know that itself."""
    creds = ctx.job.data.get("credentials")
    if not isinstance(creds, dict) or "proved" not in creds:
        return None
    if creds.get("proved"):
        return {"key": "factory_credentials", "status": "pass",
                "reason": "the factory password was proven refused and the new one accepted"}
    return {"key": "factory_credentials", "status": "fail", "reason": "the password replacement was not proven"}


async def posture_step(ctx: StepContext) -> StepOutcome:
    checks = await _posture_checks(ctx)
    factory = _factory_check(ctx)
    if factory is not None and not any(c["key"] == "factory_credentials" for c in checks):
        checks.append(factory)
    status = {c["key"]: c["status"] for c in checks}
    required = list(ctx.profile.posture.required)
    failed = [key for key in required if status.get(key) != "pass"]
    ctx.job.data["posture"] = {"checks": checks, "required": required, "required_failed": failed,
                               "when": time.time()}
    passing = sum(1 for c in checks if c["status"] == "pass")
    detail = f"{passing} of {len(checks)} checks pass; " + (
        "every required check passes" if not failed else "required but not passing: " + ", ".join(
            f"{key} ({status.get(key, 'not checked')})" for key in failed))
    return StepOutcome(detail, {"checks": checks, "required_failed": failed})


def provisioning_record(ctx: StepContext, technician: str) -> dict[str, Any]:
    """What was done, per step, with its evidence, the posture and the device's identity: never a secret (vault
    entry names only, in ``vault_refs``); masked once more as a last line of defence."""
    job = ctx.job
    creds = job.data.get("credentials") or {}
    vault_names = sorted(str(v) for v in (creds.get("vault") or {}).values()) if isinstance(creds, dict) else []
    identity = job.data.get("identity") or {}
    record: dict[str, Any] = {
        "job": job.id, "site": job.site, "device": job.device, "tags": list(job.tags), "target": job.target,
        "profile": {"name": job.profile_name, "sha256": job.profile_sha256},
        "facts": job.facts, "technician": technician, "when": time.time(),
        "steps": [{"name": s.name, "state": s.state, "detail": s.detail, "evidence": s.evidence,
                   "started": s.started, "ended": s.ended} for s in job.steps if s.name != "record"],
        "posture": job.data.get("posture") or {},
        "credentials": {"users": list(creds.get("users") or []) if isinstance(creds, dict) else [],
                        "proved": bool(creds.get("proved")) if isinstance(creds, dict) else False},
        "identity": {k: identity.get(k) for k in ("where", "csr_sha256", "public_key_sha256", "csr_item")
                     if isinstance(identity, dict) and k in identity},
        "firewall": job.data.get("firewall") or {},
        "vault_refs": vault_names,
    }
    return scrub(json.loads(ctx.mask(json.dumps(record, default=str))), job.vault_names())  # type: ignore[no-any-return]


def _technician(ctx: StepContext) -> str:
    given = ctx.job.data.get("technician")
    if isinstance(given, str) and given:
        return given
    from siteline.core.outbox.settings import current_technician

    return current_technician()


async def _marker_job(ctx: StepContext, path: str) -> str | None:
    """The job id in the device's marker, or None when there is none (or it is not ours to read)."""
    result = await ctx.read(f"cat {shlex.quote(path)} 2>/dev/null")
    if not result.ok:
        return None
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        return None
    job = doc.get("job") if isinstance(doc, dict) else None
    return job if isinstance(job, str) else None


async def record_step(ctx: StepContext) -> StepOutcome:
    job, marker = ctx.job, ctx.profile.identity.marker
    technician = _technician(ctx)
    kept = job.data.setdefault("record", {})
    queued = False
    if not kept.get("item") and (job.data.get("queued") or {}).get(f"record:{RECORD_KIND}"):
        kept["item"] = job.data["queued"][f"record:{RECORD_KIND}"]  # queued just before Siteline was stopped
    if not kept.get("item"):
        if ctx.outbox_put is None:
            raise StepRefusedError("There is no outbox to keep the provisioning record in.",
                                   "Run the provisioning from Siteline with its data folder writable.")
        try:
            kept["item"] = ctx.outbox_put(RECORD_KIND, provisioning_record(ctx, technician))
        except SitelineError as exc:
            raise StepFailedError(f"The provisioning record could not be kept in the outbox: {exc.message}",
                                  exc.hint or "Free space on this computer, then run the same command again.") from exc
        queued = True
    if await _marker_job(ctx, marker) == job.id:
        return StepOutcome(f"record kept (outbox item {kept['item']}); the marker {marker} was already there",
                           {"item": kept["item"], "marker": marker}, skipped=not queued)
    doc = {"job": job.id, "profile": job.profile_name, "profile_sha256": job.profile_sha256, "when": time.time(),
           "technician": technician, "site": job.site, "device": job.device}
    await ctx.write_file(marker, (json.dumps(doc, sort_keys=True) + "\n").encode(), mode=0o644,
                         what=f"mark the device provisioned ({marker})")
    return StepOutcome(f"record kept (outbox item {kept['item']}); marker written at {marker}",
                       {"item": kept["item"], "marker": marker})
