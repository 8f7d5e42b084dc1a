"""core/keep.py: what the window and the CLI share — a real outbox, vault and settings files under a tmp home."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.errors import SitelineError
from siteline.core.keep import MAX_NOTE_CHARS, Keep, device_secret_name, save_note
from siteline.core.outbox.model import NewItem
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.sync import SyncState
from siteline.core.vault import KdfCost, Vault

CHEAP = KdfCost(iterations=1, memory_kib=1024, lanes=1)


@pytest.fixture
def keep(tmp_path: Path) -> Iterator[Keep]:
    k = Keep.open(tmp_path / "outbox.sqlite3", tmp_path / "vault.siteline", tmp_path / "control-plane.json")
    yield k
    asyncio.run(k.close())  # the audit writer's thread ends, the outbox closes


def test_vault_names_fold_what_a_vault_name_cannot_hold() -> None:
    assert device_secret_name("Tower 7", "gw-01") == "device/Tower_7/gw-01/password"
    assert device_secret_name("site:a/b", "..x", "key-passphrase") == "device/site_a_b/x/key-passphrase"


def test_without_settings_the_status_says_not_configured_and_records_stay_local(keep: Keep) -> None:
    assert keep.status.state is SyncState.NOT_CONFIGURED
    keep.record("connect", device="gw-01", site="Tower 7", detail={"target": "ssh://root@10.0.0.5"})
    assert keep.flush_records()
    note = keep.note("Tower 7", "gw-01", "  cabinet door hinge broken  ")
    assert json.loads(note.payload)["text"] == "cabinet door hinge broken"
    assert [r.action for r in keep.audit.records()] == ["note", "connect"]
    assert keep.status.waiting == 3  # the connect record, the note and the note's record
    assert keep.audit.verify().ok


def test_a_note_and_its_record_are_kept_together_or_not_at_all(keep: Keep) -> None:
    with pytest.raises(SitelineError, match="empty"):
        save_note(keep.outbox, keep.audit, "Tower 7", "gw-01", "   ")
    with pytest.raises(SitelineError, match="at most"):
        save_note(keep.outbox, keep.audit, "Tower 7", "gw-01", "x" * (MAX_NOTE_CHARS + 1))
    # An action name the trail refuses: the note written in the same transaction is not kept either.
    def note_with_a_bad_record() -> None:
        with keep.outbox.transaction() as tx:
            tx.put(NewItem("note", "Tower 7", "gw-01", {"text": "orphan"}))
            keep.audit.record_in(tx, "NOT AN ACTION", device="gw-01", site="Tower 7")

    with pytest.raises(SitelineError):
        note_with_a_bad_record()
    assert keep.outbox.status().pending == 0


def test_a_full_disk_is_reported_and_the_action_goes_on(keep: Keep) -> None:
    problems = []
    keep.add_problem_listener(problems.append)
    conn = keep.outbox._live()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow: SQLite's own "database or disk is full"
    keep.record("connect", device="gw-01", site="Tower 7", detail={"why": "x" * 100_000})
    assert keep.flush_records()
    assert problems
    assert "full" in problems[0].message


def test_secrets_come_from_what_was_given_then_the_unlocked_vault_never_a_prompt(keep: Keep, tmp_path: Path) -> None:
    name = device_secret_name("Tower 7", "gw-01")
    keep.vault = Vault.create(tmp_path / "vault.siteline", "correct horse battery staple", cost=CHEAP)
    keep.vault.put(name, "pw-in-vault")
    keep.vault.lock()
    assert keep.secret(name) is None
    keep.vault.unlock("correct horse battery staple")
    assert keep.secret(name) == "pw-in-vault"
    keep.give_secret(name, "given-for-this-run")
    assert keep.secret(name) == "given-for-this-run"


@pytest.mark.asyncio
async def test_sync_waits_for_the_vault_when_the_password_is_kept_there(keep: Keep) -> None:
    settings = ControlPlaneSettings(url="mqtts://127.0.0.1:1", technician="jane", username="jane",
                                    password_ref="control-plane/password")
    await keep.apply_settings(settings)
    assert keep.syncer is None
    assert keep.status.state is SyncState.OFFLINE
    assert "Unlock the vault" in keep.status.message
    await keep.stop_sync()


@pytest.mark.asyncio
async def test_new_settings_move_the_trail_and_the_inbox_to_the_new_technician(keep: Keep) -> None:
    trail = keep.audit
    await keep.apply_settings(ControlPlaneSettings(url="mqtts://127.0.0.1:1", technician="jane"))
    try:
        assert keep.audit is trail
        assert trail.technician == "jane"
        order = {"v": 1, "orders": [{"id": "WO-1", "site": "Tower 7", "device": "gw-01", "title": "swap antenna"}]}
        result = keep.inbound.accept("siteline/v1/jane/in/work-orders", json.dumps(order).encode())
        assert result.accepted, result.reason
    finally:
        await keep.stop_sync()


def test_a_snapshot_is_kept_as_plain_json(keep: Keep) -> None:
    import dataclasses
    import enum

    class Tech(enum.Enum):
        LTE = "lte"

    @dataclasses.dataclass(frozen=True)
    class Modem:
        tech: Tech
        rsrp: float | None
        bands: tuple[int, ...]

    with pytest.raises(SitelineError, match="nothing to save"):
        keep.save_snapshot("Tower 7", "gw-01", {})
    item = keep.save_snapshot("Tower 7", "gw-01", {"modem": Modem(Tech.LTE, None, (3, 20))})
    assert item.payload_obj() == {"modem": {"tech": "lte", "rsrp": None, "bands": [3, 20]}}


def test_records_wait_for_nobody_while_another_process_holds_the_outbox(keep: Keep, tmp_path: Path) -> None:
    """The window's thread queues a record and goes on; it is written once the other writer lets go."""
    import sqlite3
    import time

    other = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as a CLI import holding the write lock would
    try:
        started = time.monotonic()
        keep.record("connect", device="gw-01", site="Tower 7")
        assert time.monotonic() - started < 0.1
        assert not keep.flush_records(timeout=0.3)  # still waiting for the lock
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert keep.flush_records()
    assert [r.action for r in keep.audit.records()] == ["connect"]


@pytest.mark.asyncio
async def test_working_offline_stops_the_sync_and_stays_offline_at_the_next_start(tmp_path: Path) -> None:
    from siteline.core.keep import offline_settings_path
    from siteline.core.outbox.settings import save_settings

    paths = (tmp_path / "outbox.sqlite3", tmp_path / "vault.siteline", tmp_path / "control-plane.json")
    save_settings(ControlPlaneSettings(url="mqtts://127.0.0.1:1", technician="jane"), paths[2])
    keep = Keep.open(*paths)
    assert keep.start_sync()
    await keep.work_offline(paths[2])
    assert keep.syncer is None
    assert keep.status.state is SyncState.NOT_CONFIGURED
    assert not paths[2].exists()
    assert offline_settings_path(paths[2]).exists()  # kept, to start from when going online again
    await keep.close()
    again = Keep.open(*paths)
    assert again.settings is None
    await again.close()


@pytest.mark.asyncio
async def test_two_quick_settings_changes_leave_the_later_one_syncing(keep: Keep) -> None:
    first = ControlPlaneSettings(url="mqtts://127.0.0.1:1", technician="jane")
    second = ControlPlaneSettings(url="mqtts://127.0.0.1:2", technician="ana")
    assert keep.start_sync() is False  # no settings yet
    await keep.apply_settings(ControlPlaneSettings(url="mqtts://127.0.0.1:3", technician="old"))
    await asyncio.gather(keep.apply_settings(first), keep.apply_settings(second))
    try:
        assert keep.settings is second
        assert keep.syncer is not None
        assert keep.syncer.settings is second
        assert keep.audit.technician == "ana"
    finally:
        await keep.stop_sync()
