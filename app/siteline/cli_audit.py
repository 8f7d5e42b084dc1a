"""Audit records for what the CLI does to a device (a command run, a file sent or fetched).

The device is named as in the technician's device list when the target belongs to one, else by its URL.
Recording never fails the command: a trail that cannot be written is one warning line on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from siteline import paths
from siteline.core.errors import SitelineError
from siteline.core.targets import Target

if TYPE_CHECKING:
    from siteline.core.console_audit import ConsoleInputRecorder

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
    site, device = device_of(target)
    record_for(site, device, action, detail, result)


def record_for(site: str, device: str, action: str, detail: dict[str, Any], result: str = "ok") -> None:
    """One audit record; a trail that cannot be written is a warning on stderr, never a failed command."""
    from siteline.core.audit import AuditTrail
    from siteline.core.outbox.settings import current_technician
    from siteline.core.outbox.store import Outbox

    try:
        with Outbox.open() as outbox:
            trail = AuditTrail(outbox, current_technician())
            trail.record(action, device=device[:128], site=site, detail={**detail, "via": "cli"}, result=result)
    except SitelineError as exc:
        print(f"siteline: warning: not recorded in the audit trail: {exc}", file=sys.stderr)


@contextlib.contextmanager
def shell_recorder(target: Target, cols: int) -> Iterator[ConsoleInputRecorder | None]:
    """For `siteline shell`: the session's connect and disconnect, and each command line typed (never one
    typed with the echo off), in the audit trail. Problems are said once the terminal is back to normal."""
    from siteline.core.audit import AuditTrail
    from siteline.core.console_audit import audit_recorder
    from siteline.core.outbox.settings import current_technician
    from siteline.core.outbox.store import Outbox

    site, device = device_of(target)
    problems: list[str] = []
    try:
        outbox = Outbox.open()
    except SitelineError as exc:
        print(f"siteline: warning: this session is not recorded in the audit trail: {exc}", file=sys.stderr)
        yield None
        return
    try:
        trail = AuditTrail(outbox, current_technician())
        where = {"target": str(target), "via": "cli-shell"}

        def safely(action: str, detail: dict[str, Any]) -> None:
            try:
                trail.record(action, device=device[:128], site=site, detail=detail)
            except SitelineError as exc:
                problems.append(str(exc))

        safely("connect", where)
        recorder = audit_recorder(trail, site=site, device=device[:128], cols=cols,
                                  on_error=lambda exc: problems.append(str(exc)))
        try:
            yield recorder
        finally:
            recorder.flush()
            safely("disconnect", where)
    finally:
        outbox.close()
        if problems:  # raw mode is over: one line, not a line per command
            print(f"siteline: warning: {len(problems)} audit record(s) not written: {problems[0]}", file=sys.stderr)
