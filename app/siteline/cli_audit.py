"""Audit records for what the CLI does to a device (a command run, a file sent or fetched).

The device is named as in the technician's device list when the target belongs to one, else by its URL.
Recording never fails the command: a trail that cannot be written is one warning line on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from siteline import paths
from siteline.core.errors import SitelineError
from siteline.core.targets import Target

log = logging.getLogger(__name__)
UNLISTED_SITE = "-"


def device_of(target: Target) -> tuple[str, str]:
    """(site, device) for the audit trail: the device list's names when it has this target."""
    from siteline.core.inventory import Inventory

    inventory = Inventory(paths.config_dir() / "devices.json")
    if inventory.path.exists():
        with contextlib.suppress(SitelineError):  # a damaged list: the URL names the device
            inventory.load()
        wanted = str(target)
        for entry in inventory.devices:
            if wanted in entry.targets:
                return entry.site, entry.name
    return UNLISTED_SITE, str(target)  # target URLs hold no secrets (a password in one is refused)


def record(target: Target, action: str, detail: dict[str, Any], result: str = "ok") -> None:
    from siteline.core.audit import AuditTrail
    from siteline.core.outbox.settings import current_technician
    from siteline.core.outbox.store import Outbox

    site, device = device_of(target)
    try:
        with Outbox.open() as outbox:
            trail = AuditTrail(outbox, current_technician())
            trail.record(action, device=device[:128], site=site, detail={**detail, "via": "cli"}, result=result)
    except SitelineError as exc:
        print(f"siteline: warning: not recorded in the audit trail: {exc}", file=sys.stderr)
