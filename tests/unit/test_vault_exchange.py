"""Export and import: handing a site's secrets to a colleague under a separate passphrase."""

from __future__ import annotations

from pathlib import Path

import pytest

from siteline.core.vault import KdfCost, Vault, VaultCorrupt, VaultError, WrongPassphrase

CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)
MINE = "my own vault passphrase"
THEIRS = "the colleague's passphrase"
HANDOVER = "handover passphrase 42"


@pytest.fixture
def mine(tmp_path: Path) -> Vault:
    vault = Vault.create(tmp_path / "mine.siteline", MINE, cost=CHEAP)
    vault.put("device/site-a/gw1/password", "gw1-pass-unique")
    vault.put("device/site-a/gw2/password", "gw2-pass-unique")
    vault.put("device/site-b/gw9/password", "gw9-pass-unique", note="other site")
    return vault


@pytest.fixture
def theirs(tmp_path: Path) -> Vault:
    vault = Vault.create(tmp_path / "theirs.siteline", THEIRS, cost=CHEAP)
    vault.put("device/site-a/gw1/password", "their-old-gw1")
    return vault


def test_round_trip_with_selected_names(mine: Vault, theirs: Vault, tmp_path: Path) -> None:
    out = tmp_path / "site-a.export"
    assert mine.export_to(out, HANDOVER, names=["device/site-a/gw1/password", "device/site-a/gw2/password"]) == 2
    data = out.read_bytes()
    assert b"gw1-pass-unique" not in data
    assert b"site-a" not in data
    summary = theirs.import_from(out, HANDOVER)
    assert summary.added == ["device/site-a/gw2/password"]
    assert summary.skipped == ["device/site-a/gw1/password"]
    assert summary.replaced == []
    assert theirs.get("device/site-a/gw1/password") == "their-old-gw1"
    assert theirs.get("device/site-a/gw2/password") == "gw2-pass-unique"
    assert "device/site-b/gw9/password" not in theirs.names()


def test_overwrite_replaces(mine: Vault, theirs: Vault, tmp_path: Path) -> None:
    out = tmp_path / "all.export"
    assert mine.export_to(out, HANDOVER) == 3
    summary = theirs.import_from(out, HANDOVER, overwrite=True)
    assert summary.replaced == ["device/site-a/gw1/password"]
    assert sorted(summary.added) == ["device/site-a/gw2/password", "device/site-b/gw9/password"]
    assert theirs.get("device/site-a/gw1/password") == "gw1-pass-unique"
    again = Vault.open(theirs.path)
    again.unlock(THEIRS)
    assert {e.name: e for e in again.entries()}["device/site-b/gw9/password"].note == "other site"


def test_import_is_idempotent(mine: Vault, theirs: Vault, tmp_path: Path) -> None:
    out = tmp_path / "all.export"
    mine.export_to(out, HANDOVER)
    theirs.import_from(out, HANDOVER)
    second = theirs.import_from(out, HANDOVER)
    assert second.added == []
    assert second.replaced == []
    assert len(second.skipped) == 3


def test_export_passphrase_is_not_the_vault_passphrase(mine: Vault, theirs: Vault, tmp_path: Path) -> None:
    out = tmp_path / "all.export"
    mine.export_to(out, HANDOVER)
    before = theirs.path.read_bytes()
    with pytest.raises(WrongPassphrase, match="export passphrase is not right; nothing was imported"):
        theirs.import_from(out, MINE)
    assert theirs.path.read_bytes() == before


def test_damaged_export_imports_nothing(mine: Vault, theirs: Vault, tmp_path: Path) -> None:
    out = tmp_path / "all.export"
    mine.export_to(out, HANDOVER)
    data = bytearray(out.read_bytes())
    data[-5] ^= 0x10
    out.write_bytes(bytes(data))
    before = theirs.path.read_bytes()
    with pytest.raises(VaultCorrupt, match="nothing was imported"):
        theirs.import_from(out, HANDOVER)
    assert theirs.path.read_bytes() == before


def test_export_refuses_to_overwrite_and_unknown_names(mine: Vault, tmp_path: Path) -> None:
    out = tmp_path / "exists.export"
    out.write_bytes(b"keep me")
    with pytest.raises(VaultError, match="already exists"):
        mine.export_to(out, HANDOVER)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(VaultError, match="no such vault entries: nope/x"):
        mine.export_to(tmp_path / "new.export", HANDOVER, names=["nope/x"])
    assert not (tmp_path / "new.export").exists()


def test_export_needs_unlocked_vault(mine: Vault, tmp_path: Path) -> None:
    mine.lock()
    with pytest.raises(VaultError):
        mine.export_to(tmp_path / "x.export", HANDOVER)


def test_missing_export_file(theirs: Vault, tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="no export file"):
        theirs.import_from(tmp_path / "absent.export", HANDOVER)
