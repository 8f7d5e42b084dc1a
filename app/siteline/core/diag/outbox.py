"""A small bundle also goes to the control plane, as one outbox item of kind "diagnostics".

It goes only when it fits: at most :data:`MAX_QUEUED_BYTES` of zip AND what the month's data budget still
lets a NORMAL item send (a bundle someone asked for now goes with notes and snapshots, after audit records and
job results; it is not telemetry, so it is not held at 90 % of the budget, only when the budget is used up).
"Used" is what was sent this month AND what already waits at NORMAL or HIGH priority: bundles made while
offline all go out once the link is back, before or with this one.
Otherwise the answer says so in words: "too big for the data budget: hand the file over".

The payload (docs/control-plane.md, "Diagnostics bundles"): the zip as base64 with its name, size, SHA-256 and
the manifest's summary; the manifest's redaction counts are left out (their rule names are not secrets, but the
outbox refuses any field named like one, and the zip holds them anyway).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from siteline.core.diag.archive import Bundle
from siteline.core.errors import SitelineError
from siteline.core.outbox.model import NewItem, Priority
from siteline.core.outbox.store import Outbox, month_of

KIND = "diagnostics"
PAYLOAD_SCHEMA = "siteline-diag-item/1"
MAX_QUEUED_BYTES = 256 * 1024
PRIORITY = Priority.NORMAL
_ENVELOPE_SLACK = 2048  # the envelope and the other payload fields around the base64 text


@dataclass(frozen=True)
class QueueDecision:
    queued: bool
    message: str
    item_id: str | None = None


def wire_bytes(bundle: Bundle) -> int:
    """About what the item costs on the link: base64 grows the zip by a third."""
    return (bundle.size + 2) // 3 * 4 + _ENVELOPE_SLACK


def fits(bundle: Bundle, used: int, budget: int | None) -> str:
    """Empty when the bundle may be queued, else why not (in words)."""
    if bundle.size > MAX_QUEUED_BYTES:
        return (f"too big for the data budget ({bundle.size // 1024} KiB, over the {MAX_QUEUED_BYTES // 1024} KiB "
                "sent to the control plane): hand the file over")
    if budget is not None and budget > 0 and used + wire_bytes(bundle) > budget:
        left = max(0, budget - used)
        return (f"too big for the data budget ({wire_bytes(bundle) // 1024} KiB to send, {left // 1024} KiB left "
                "this month after what is already waiting to be sent): hand the file over")
    return ""


def payload(bundle: Bundle, file_name: str) -> dict[str, Any]:
    manifest = bundle.manifest
    return {
        "schema": PAYLOAD_SCHEMA, "file": file_name, "bytes": bundle.size, "sha256": bundle.sha256,
        "created": manifest.get("created"), "siteline_version": manifest.get("siteline_version"),
        "target": manifest.get("target"), "partial": manifest.get("partial", False),
        "areas": manifest.get("areas", {}), "encoding": "base64", "zip": base64.b64encode(bundle.data).decode(),
    }


def queue_bundle(outbox: Outbox, bundle: Bundle, *, site: str, device: str, file_name: str,
                 budget: int | None) -> QueueDecision:
    """Put the bundle in the outbox when it fits; never raises for a bundle that does not (it says why)."""
    try:  # what is already waiting (earlier bundles made offline) goes out before or with this one
        used = outbox.usage(month_of()) + outbox.pending_bytes(max_priority=PRIORITY)
    except SitelineError as exc:
        return QueueDecision(False, f"not queued: the outbox cannot be read ({exc})")
    why = fits(bundle, used, budget)
    if why:
        return QueueDecision(False, why)
    try:
        item = outbox.put(NewItem(kind=KIND, site=site[:128] or "-", device=device[:128] or "-",
                                  payload=payload(bundle, file_name), priority=PRIORITY))
    except SitelineError as exc:
        return QueueDecision(False, f"not queued: {exc}")
    return QueueDecision(True, "queued for the control plane", item.id)


def queue_with_settings(bundle: Bundle, *, site: str, device: str, file_name: str,
                        outbox: Outbox | None = None) -> QueueDecision:
    """As :func:`queue_bundle`, with the saved control-plane settings' budget and the default outbox."""
    from siteline.core.outbox.settings import load_settings

    try:
        settings = load_settings()
    except SitelineError:
        settings = None  # damaged settings: no budget known; the size limit still holds
    budget = settings.monthly_budget_bytes if settings is not None else None
    if outbox is not None:
        return queue_bundle(outbox, bundle, site=site, device=device, file_name=file_name, budget=budget)
    try:
        with Outbox.open() as own:
            return queue_bundle(own, bundle, site=site, device=device, file_name=file_name, budget=budget)
    except SitelineError as exc:
        return QueueDecision(False, f"not queued: the outbox cannot be opened ({exc})")
