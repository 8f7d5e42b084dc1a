"""What Siteline keeps on the laptop, in one object for the window and the CLI.

The outbox (what is waiting for the control plane), the audit trail written into it, the cache of
what the control plane sent back, the vault, and the sync loop when a control plane is set up.
Recording never stands in the technician's way: an outbox that cannot be written (a full disk) is
logged and reported to the listeners, and the action itself goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline.core.atomic import fsync_dir
from siteline.core.audit import AuditTrail
from siteline.core.audit_writer import AuditWriter
from siteline.core.errors import SitelineError
from siteline.core.outbox.envelope import default_technician
from siteline.core.outbox.inbound import InboundCache
from siteline.core.outbox.model import Item, NewItem
from siteline.core.outbox.settings import ControlPlaneSettings, SettingsError, load_settings
from siteline.core.outbox.settings import default_path as settings_default_path
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import NOT_CONFIGURED, Syncer, SyncState, SyncStatus
from siteline.core.vault import Vault, VaultError

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 20_000
# Vault entry names allow no spaces or ':' (a "vault:NAME" reference stays one token); site and
# device names may have both, so they are folded to this set.
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def device_secret_name(site: str, device: str, what: str = "password") -> str:
    """The vault entry holding ``what`` (password, key-passphrase) for a device."""
    return f"device/{_segment(site)}/{_segment(device)}/{what}"


def publish_detail(topic: str, payload: bytes, qos: int, retain: bool) -> dict[str, Any]:
    """What the audit trail keeps of an MQTT publish: never the payload, which may hold a token or a password."""
    return {"topic": topic[:500], "qos": qos, "retain": retain, "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest()}


def _segment(text: str) -> str:
    folded = _UNSAFE.sub("_", text.strip()).lstrip(".") or "_"
    return folded[:60]


@dataclass(frozen=True)
class KeepProblem:
    """Something the technician should know about what is kept: shown in the status bar."""

    message: str
    hint: str = ""


class Keep:
    def __init__(self, outbox: Outbox, vault: Vault, settings: ControlPlaneSettings | None,
                 settings_problem: SettingsError | None = None) -> None:
        self.outbox = outbox
        self.vault = vault
        self.settings = settings
        self.settings_problem = settings_problem
        self.technician = settings.technician if settings else default_technician()
        self.audit = AuditTrail(outbox, self.technician)
        self._writer: AuditWriter | None = None  # made on first use, on the loop that will hear its errors
        self.inbound = InboundCache(outbox, technician=self.technician)
        self.syncer: Syncer | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._status_listeners: list[Callable[[SyncStatus], None]] = []
        self._problem_listeners: list[Callable[[KeepProblem], None]] = []
        self._unlisten: Callable[[], None] | None = None
        self.last_problem: KeepProblem | None = None
        self._given: dict[str, str] = {}  # secrets handed over for this run only (the demo's broker login)

    @classmethod
    def open(cls, outbox_path: Path | None = None, vault_path: Path | None = None,
             settings_path: Path | None = None) -> Keep:
        """Open the outbox (a damaged one is set aside: ``outbox.recovered_from``), the vault (locked) and settings."""
        outbox = Outbox.open(outbox_path)
        vault = Vault.open(vault_path)
        try:
            settings, problem = load_settings(settings_path), None
        except SettingsError as exc:
            log.error("the control-plane settings cannot be used: %s", exc)
            settings, problem = None, exc
        return cls(outbox, vault, settings, problem)

    # -- listeners ---------------------------------------------------------------------------------

    def add_status_listener(self, fn: Callable[[SyncStatus], None]) -> Callable[[], None]:
        self._status_listeners.append(fn)
        return lambda: self._status_listeners.remove(fn) if fn in self._status_listeners else None

    def add_problem_listener(self, fn: Callable[[KeepProblem], None]) -> Callable[[], None]:
        self._problem_listeners.append(fn)
        return lambda: self._problem_listeners.remove(fn) if fn in self._problem_listeners else None

    def _tell_status(self, status: SyncStatus) -> None:
        for fn in list(self._status_listeners):
            fn(status)

    def report(self, exc: SitelineError) -> None:
        """Tell the listeners (the status bar) about something that could not be kept."""
        self.last_problem = KeepProblem(exc.message, exc.hint)
        for fn in list(self._problem_listeners):
            fn(self.last_problem)

    @property
    def status(self) -> SyncStatus:
        if self.syncer is not None:
            return self.syncer.status
        st = self._outbox_status()
        if self.settings is None:
            message = str(self.settings_problem) if self.settings_problem else NOT_CONFIGURED.message
            return SyncStatus(SyncState.NOT_CONFIGURED, st[0], st[1], None, message, None)
        return SyncStatus(SyncState.OFFLINE, st[0], st[1], self.settings.monthly_budget_bytes,
                          self._why_not_syncing(), None)

    def _outbox_status(self) -> tuple[int, int]:
        try:
            st = self.outbox.status()
        except SitelineError:
            return 0, 0
        return st.pending, st.bytes_this_month

    # -- recording ---------------------------------------------------------------------------------

    @property
    def writer(self) -> AuditWriter:
        """Writes audit records off the caller's thread, in order; failures reach the problem listeners."""
        if self._writer is None:
            self._writer = AuditWriter(self.audit, self.report, self.wake)
        return self._writer

    def record(self, action: str, *, device: str, site: str, detail: Mapping[str, Any] | None = None,
               result: str = "ok") -> None:
        """Queue an audit record and return at once (see core/audit_writer.py); a failure is reported, not raised."""
        self.writer.record(action, device=device, site=site, detail=detail, result=result)

    def flush_records(self, timeout: float = 15.0) -> bool:
        """Wait until queued audit records are written (tests; before closing)."""
        return self._writer is None or self._writer.flush(timeout)

    def note(self, site: str, device: str, text: str) -> Item:
        """A technician note, kept in the outbox and audited; raises when it cannot be kept (the text stays)."""
        item = save_note(self.outbox, self.audit, site, device, text)
        self.wake()
        return item

    def save_snapshot(self, site: str, device: str, snapshots: Mapping[str, Any]) -> Item:
        """What the probes show now, kept as one "snapshot" item (sent with the rest); raises when it cannot be."""
        if not snapshots:
            raise SitelineError(f"There is nothing to save for {device} yet.", "Wait until its probes have answered.")
        payload = {kind: _plain(snap) for kind, snap in sorted(snapshots.items())}
        item = self.outbox.put(NewItem(kind="snapshot", site=site, device=device, payload=payload))
        self.wake()
        return item

    def wake(self, retry: bool = False) -> None:
        """New items are waiting; ``retry`` (the person's "retry now") also drops the back-off."""
        if self.syncer is not None:
            self.syncer.wake(retry=retry)

    # -- secrets -----------------------------------------------------------------------------------

    def give_secret(self, name: str, value: str) -> None:
        """A secret for this run only, kept in memory and never written (the demo site's broker login)."""
        self._given[name] = value

    def secret(self, name: str) -> str | None:
        """A secret given for this run, else the vault entry's value when the vault is unlocked; never prompts."""
        if name in self._given:
            return self._given[name]
        if self.vault.locked:
            return None
        try:
            value = self.vault.get(name)
        except (KeyError, VaultError):
            return None
        self.vault.touch()
        return value

    # -- sync --------------------------------------------------------------------------------------

    def _why_not_syncing(self) -> str:
        s = self.settings
        if s is not None and s.password_ref and self.secret(s.password_ref) is None:
            return "Unlock the vault to sync: the control plane's password is kept there."
        return "Not started."

    def start_sync(self) -> bool:
        """Start the sync loop when a control plane is set up and its secrets are at hand; True when running."""
        if self._sync_task is not None and not self._sync_task.done():
            return True
        s = self.settings
        if s is None:
            self._tell_status(self.status)
            return False
        password = self.secret(s.password_ref) if s.password_ref else None
        passphrase = self.secret(s.key_passphrase_ref) if s.key_passphrase_ref else None
        if (s.password_ref and password is None) or (s.key_passphrase_ref and passphrase is None):
            self._tell_status(self.status)
            return False
        self.syncer = Syncer(self.outbox, s, password=password, key_passphrase=passphrase, inbound=self.inbound)
        self._unlisten = self.syncer.add_listener(self._tell_status)
        self._sync_task = asyncio.get_running_loop().create_task(self._run_sync(self.syncer), name="outbox sync")
        return True

    async def _run_sync(self, syncer: Syncer) -> None:
        try:
            await syncer.run()
        except Exception:  # the loop must never die silently: the status bar says so
            log.exception("the outbox sync stopped")
            self._tell_status(SyncStatus(SyncState.ERROR, *self._outbox_status(), None,
                                         "The sync stopped after an unexpected error (see the log).", None))

    async def stop_sync(self) -> None:
        task, syncer = self._sync_task, self.syncer
        self._sync_task, self.syncer = None, None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if syncer is not None:
            await syncer.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def apply_settings(self, settings: ControlPlaneSettings | None) -> None:
        """New control-plane settings (saved by the caller): restart the sync with them. Taken at once, so
        when two changes overlap the later one wins and only it starts a sync."""
        self.settings, self.settings_problem = settings, None
        if settings is not None:
            # The same trail object (open consoles' recorders hold it), under the new technician id; the
            # inbound cache must accept what is now addressed to that id.
            self.technician = self.audit.technician = settings.technician
            self.inbound = InboundCache(self.outbox, technician=self.technician)
        await self.stop_sync()
        if self.settings is settings:
            self.start_sync()
            self._tell_status(self.status)

    async def work_offline(self, settings_path: Path | None = None) -> None:
        """The person chose to send nothing: the sync stops, and stays stopped at the next start. The settings
        file is set aside (``control-plane.json.offline``), not deleted: pointing at the control plane again
        starts from it."""
        await self.apply_settings(None)
        path = settings_path or settings_default_path()
        if path.exists():
            os.replace(path, offline_settings_path(path))
            fsync_dir(path.parent)

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.close)  # what was queued is written before the outbox closes
        await self.stop_sync()
        self.vault.lock()
        self.outbox.close()


def offline_settings_path(path: Path | None = None) -> Path:
    """Where "Work offline" keeps the control-plane settings it set aside."""
    path = path or settings_default_path()
    return path.with_name(path.name + ".offline")


def _plain(value: Any) -> Any:
    """A probe's typed snapshot as JSON-able data (dataclasses, enums, tuples, datetimes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def save_note(outbox: Outbox, audit: AuditTrail, site: str, device: str, text: str) -> Item:
    """Keep a technician note (outbox item kind "note") and audit it; raises SitelineError when it cannot."""
    text = text.strip()
    if not text:
        raise SitelineError("The note is empty.", "Type what you saw or did, then save.")
    if len(text) > MAX_NOTE_CHARS:
        raise SitelineError(f"The note has {len(text):,} characters; Siteline keeps at most {MAX_NOTE_CHARS:,}.",
                            "Split it into several notes.")
    with outbox.transaction() as tx:  # the note and its audit record: both kept, or neither
        # The author travels with the note: a hand-carried outbox may be sent from a colleague's laptop.
        item = tx.put(NewItem(kind="note", site=site, device=device,
                              payload={"text": text, "technician": audit.technician}))
        audit.record_in(tx, "note", device=device, site=site, detail={"item": item.id, "chars": len(text)})
    return item
