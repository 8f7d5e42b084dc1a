"""The vault's behaviour: create, unlock, entries, errors, idle lock, passphrase change."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from siteline.core.vault import (
    KdfCost,
    Vault,
    VaultCorrupt,
    VaultError,
    VaultLocked,
    WrongPassphrase,
    default_path,
    parse_ref,
    ref,
)

CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)  # the real cost is ~0.5 s per unlock; tests need speed
PASS = "correct horse battery staple"
SECRETS = {
    "device/site-a/gw1/password": "Tr0ub4dor&3-unique-gw1",
    "control-plane/password": "mqtt-Pa55word-ÄÖ-unique",
    "device/site-a/gw1/key-passphrase": "hunter2hunter2-unique",
}


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault.siteline"


@pytest.fixture
def filled(vault_path: Path) -> Vault:
    vault = Vault.create(vault_path, PASS, cost=CHEAP)
    for name, value in SECRETS.items():
        vault.put(name, value, kind="key-passphrase" if "key-passphrase" in name else "password", note="from test")
    return vault


def test_round_trip_through_a_fresh_open(filled: Vault, vault_path: Path) -> None:
    again = Vault.open(vault_path)
    assert again.exists
    assert again.locked
    again.unlock(PASS)
    assert not again.locked
    assert again.names() == sorted(SECRETS)
    for name, value in SECRETS.items():
        assert again.get(name) == value
    info = {e.name: e for e in again.entries()}
    assert info["device/site-a/gw1/key-passphrase"].kind == "key-passphrase"
    assert info["control-plane/password"].note == "from test"
    assert info["control-plane/password"].created <= info["control-plane/password"].updated


def test_file_holds_no_secret_in_clear(filled: Vault, vault_path: Path) -> None:
    data = vault_path.read_bytes()
    for value in SECRETS.values():
        raw = value.encode()
        for form in (raw, base64.b64encode(raw), raw.hex().encode(), value.encode("utf-16-le")):
            assert form not in data
    for name in SECRETS:  # names are private too (sites, devices): only the encrypted body holds them
        assert name.encode() not in data


def test_file_mode_is_owner_only(filled: Vault, vault_path: Path) -> None:
    if os.name == "posix":
        assert stat.S_IMODE(vault_path.stat().st_mode) == 0o600


def test_wrong_passphrase_refused_and_file_unchanged(filled: Vault, vault_path: Path) -> None:
    before = vault_path.read_bytes()
    vault = Vault.open(vault_path)
    with pytest.raises(WrongPassphrase, match="passphrase is not right; the vault is unchanged"):
        vault.unlock("correct horse battery stapler")
    assert vault.locked
    assert vault_path.read_bytes() == before


def test_locked_vault_gives_nothing(filled: Vault) -> None:
    filled.lock()
    assert filled.locked
    with pytest.raises(VaultLocked):
        filled.get("control-plane/password")
    with pytest.raises(VaultLocked):
        filled.names()
    with pytest.raises(VaultLocked):
        filled.put("x/y", "z")


def test_missing_entry_is_key_error(filled: Vault) -> None:
    with pytest.raises(KeyError):
        filled.get("device/nowhere/none/password")
    with pytest.raises(KeyError):
        filled.delete("device/nowhere/none/password")


def test_put_replaces_and_keeps_created(filled: Vault, vault_path: Path) -> None:
    name = "control-plane/password"
    created = {e.name: e for e in filled.entries()}[name].created
    filled.put(name, "new-value-unique")
    again = Vault.open(vault_path)
    again.unlock(PASS)
    assert again.get(name) == "new-value-unique"
    info = {e.name: e for e in again.entries()}[name]
    assert info.created == created
    assert info.updated >= created


def test_delete(filled: Vault, vault_path: Path) -> None:
    filled.delete("control-plane/password")
    again = Vault.open(vault_path)
    again.unlock(PASS)
    assert "control-plane/password" not in again.names()


@pytest.mark.parametrize("name", ["", "/lead", "trail/", "a//b", "has space", "vault:x", "../up", "x/..", "a/./b",
                                  "x" * 201, "tab\tname"])
def test_bad_names_refused(filled: Vault, name: str) -> None:
    with pytest.raises(VaultError, match="not a valid vault entry name"):
        filled.put(name, "v")


def test_bad_kind_and_huge_value_refused(filled: Vault) -> None:
    with pytest.raises(VaultError, match="unknown entry kind"):
        filled.put("a/b", "v", kind="banana")
    with pytest.raises(VaultError, match="larger than 1 MiB"):
        filled.put("a/b", "v" * (1024 * 1024 + 1))


def test_create_refuses_to_overwrite(filled: Vault, vault_path: Path) -> None:
    before = vault_path.read_bytes()
    with pytest.raises(VaultError, match="already exists"):
        Vault.create(vault_path, PASS, cost=CHEAP)
    assert vault_path.read_bytes() == before


def test_short_passphrase_refused(vault_path: Path) -> None:
    with pytest.raises(VaultError, match="shorter than 8"):
        Vault.create(vault_path, "short", cost=CHEAP)
    assert not vault_path.exists()


def test_open_missing_file_then_unlock_says_create(vault_path: Path) -> None:
    vault = Vault.open(vault_path)
    assert not vault.exists
    with pytest.raises(VaultError, match="siteline vault init"):
        vault.unlock(PASS)


def test_change_passphrase(filled: Vault, vault_path: Path) -> None:
    with pytest.raises(WrongPassphrase):
        filled.change_passphrase("not the passphrase", "another long passphrase")
    filled.change_passphrase(PASS, "another long passphrase")
    again = Vault.open(vault_path)
    with pytest.raises(WrongPassphrase):
        again.unlock(PASS)
    again.unlock("another long passphrase")
    assert again.get("control-plane/password") == SECRETS["control-plane/password"]
    filled.put("token/ci", "tok-unique")  # the instance that changed it keeps working
    again.lock()
    again.unlock("another long passphrase")
    assert again.get("token/ci") == "tok-unique"


def test_two_instances_do_not_lose_each_others_writes(filled: Vault, vault_path: Path) -> None:
    other = Vault.open(vault_path)
    other.unlock(PASS)
    other.put("token/one", "1-unique")
    filled.put("token/two", "2-unique")  # re-reads the file under the lock before writing
    check = Vault.open(vault_path)
    check.unlock(PASS)
    assert {"token/one", "token/two"} <= set(check.names())


def test_idle_lock(filled: Vault) -> None:
    now = [1000.0]
    filled._clock = lambda: now[0]
    filled.idle_timeout = 60.0
    filled.touch()
    now[0] += 30
    assert filled.get("control-plane/password")  # use resets the idle clock
    now[0] += 59
    assert not filled.lock_if_idle()
    now[0] += 2
    assert filled.lock_if_idle()
    assert filled.locked
    with pytest.raises(VaultLocked):
        filled.get("control-plane/password")


def test_idle_timeout_enforced_without_a_timer(filled: Vault) -> None:
    now = [0.0]
    filled._clock = lambda: now[0]
    filled.idle_timeout = 5.0
    filled.touch()
    now[0] = 6.0
    with pytest.raises(VaultLocked):  # get() checks the idle time itself: a missed timer tick leaks nothing
        filled.get("control-plane/password")


def test_repr_and_errors_hold_no_secret(filled: Vault) -> None:
    assert "Tr0ub4dor" not in repr(filled)
    from siteline.core.vault.entries import Entry

    assert "secret-x" not in repr(Entry("a", "password", "secret-x", 0.0, 0.0))


def test_refs() -> None:
    assert ref("control-plane/password") == "vault:control-plane/password"
    assert parse_ref("vault:device/s/d/password") == "device/s/d/password"
    assert parse_ref("hunter2") is None
    assert parse_ref("vault:bad name") is None


def test_default_path_under_siteline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "data" / "vault.siteline"


def test_an_old_copy_and_the_old_passphrase_open_nothing_written_after_a_change(filled: Vault,
                                                                                vault_path: Path) -> None:
    """The review's attack: keep a copy of the file, learn the old passphrase, wait for new entries."""
    from siteline.core.vault import sealed

    old_copy = vault_path.read_bytes()
    old_key = sealed.open_with_passphrase(old_copy, PASS).data_key
    filled.change_passphrase(PASS, "another long passphrase")
    filled.put("token/after", "written-after-the-change-unique")
    current = vault_path.read_bytes()
    with pytest.raises(VaultCorrupt):  # the old data key opens neither the new body ...
        sealed.open_with_data_key(current, old_key)
    new = sealed.open_with_passphrase(current, "another long passphrase")
    assert new.data_key != old_key  # ... nor is it the new key
    assert new.entries["token/after"].value == "written-after-the-change-unique"
    assert {n: e.value for n, e in new.entries.items() if n in SECRETS} == SECRETS  # re-encrypted, all kept
    with pytest.raises(WrongPassphrase):
        sealed.open_with_passphrase(current, PASS)


def test_an_instance_unlocked_before_a_change_elsewhere_locks_and_says_why(filled: Vault, vault_path: Path) -> None:
    other = Vault.open(vault_path)
    other.unlock(PASS)
    filled.change_passphrase(PASS, "another long passphrase")
    with pytest.raises(VaultLocked, match="passphrase was changed"):
        other.put("token/late", "late-unique")
    assert other.locked
    other.unlock("another long passphrase")
    assert other.get("control-plane/password") == SECRETS["control-plane/password"]
    assert "token/late" not in other.names()


def test_a_failed_change_leaves_the_file_byte_for_byte(filled: Vault, vault_path: Path) -> None:
    before = vault_path.read_bytes()
    with pytest.raises(WrongPassphrase):
        filled.change_passphrase("not the passphrase", "another long passphrase")
    with pytest.raises(VaultError, match="shorter than 8"):
        filled.change_passphrase(PASS, "short")
    assert vault_path.read_bytes() == before
