"""Outbox items: UUIDv7 ids, kinds, names, payload size, and the refusal of secrets."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from siteline.core.outbox import ids
from siteline.core.outbox.ids import is_uuid7, uuid7, uuid7_time
from siteline.core.outbox.model import (
    KIND_PRIORITY,
    MAX_PAYLOAD_BYTES,
    InvalidItemError,
    NewItem,
    Priority,
    canonical_payload,
    find_secret,
)
from siteline.core.outbox.store import Outbox


@pytest.fixture(autouse=True)
def _restore_id_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests below feed uuid7 times in the future; the module's last-millisecond must not stay there.
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_counter", ids._counter)


def test_uuid7_is_versioned_time_ordered_and_monotonic() -> None:
    ids = [uuid7() for _ in range(10_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert is_uuid7(ids[0])
    assert abs(uuid7_time(uuid7(1_800_000_000.123)) - 1_800_000_000.123) < 0.002


def test_uuid7_stays_monotonic_when_the_clock_steps_back() -> None:
    first = uuid7(2_000_000_000.0)
    assert uuid7(1_900_000_000.0) > first


UUID4 = "2f1c5b7e-3d4a-4b6c-9e8f-0a1b2c3d4e5f"  # fixed: test ids must be the same in every pytest worker


@pytest.mark.parametrize("text", ["", "nope", UUID4, "01A21C62-F88C-7001-9211-A9E85AA00823"])
def test_is_uuid7_refuses_other_text(text: str) -> None:
    assert not is_uuid7(text)


def test_kind_priorities() -> None:
    assert KIND_PRIORITY["audit"] is Priority.HIGH
    assert KIND_PRIORITY["telemetry"] is Priority.LOW
    assert KIND_PRIORITY["note"] is Priority.NORMAL


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox.open(tmp_path / "o.sqlite3") as ob:
        yield ob


@pytest.mark.parametrize(
    ("new", "words"),
    [
        (NewItem("a/b", "s", "d", {}), "kind"),
        (NewItem("#", "s", "d", {}), "kind"),
        (NewItem("Note", "s", "d", {}), "kind"),
        (NewItem("x" * 33, "s", "d", {}), "kind"),
        (NewItem("note", "", "d", {}), "site"),
        (NewItem("note", "s", " ", {}), "device"),
        (NewItem("note", "s", "d" * 129, {}), "device"),
        (NewItem("note", "s\n", "d", {}), "control"),
        (NewItem("note", "s", "d", ["not", "a", "dict"]), "JSON object"),  # type: ignore[arg-type]
        (NewItem("note", "s", "d", {"x": float("nan")}), "JSON"),
        (NewItem("note", "s", "d", {1: "x", "a": 2}), "JSON"),
        (NewItem("note", "s", "d", {"x": object()}), "JSON"),
        (NewItem("note", "s", "d", {}, priority=7), "Priority"),  # type: ignore[arg-type]
        (NewItem("note", "s", "d", {}, vault_refs="abc"), "vault_refs"),  # type: ignore[arg-type]
    ],
)
def test_bad_items_are_refused_with_a_reason(outbox: Outbox, new: NewItem, words: str) -> None:
    with pytest.raises(InvalidItemError, match=words):
        outbox.put(new)
    assert outbox.status().pending == 0


def test_payload_size_limit(outbox: Outbox) -> None:
    with pytest.raises(InvalidItemError, match="over the outbox limit") as caught:
        outbox.put(NewItem("snapshot", "s", "d", {"blob": "x" * MAX_PAYLOAD_BYTES}))
    assert "file" in caught.value.hint
    assert outbox.put(NewItem("snapshot", "s", "d", {"blob": "x" * (MAX_PAYLOAD_BYTES - 100)}))


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"password": "hunter2"}, "password"),
        ({"Device": {"SSH_Passphrase": "x"}}, "Device.SSH_Passphrase"),
        ({"list": [{"api-token": "abc"}]}, "list[0].api-token"),
        ({"clientSecret": 1234}, "clientSecret"),
        ({"private_key": "-----BEGIN"}, "private_key"),
        ({"privateKey": {"pem": "-----BEGIN"}}, "privateKey"),
        ({"password": "vault:"}, "password"),
        ({"password": ["vault:a", "plain"]}, "password"),
    ],
)
def test_secrets_are_refused(outbox: Outbox, payload: dict[str, object], where: str) -> None:
    assert find_secret(payload) == where
    with pytest.raises(InvalidItemError, match="looks like a secret") as caught:
        outbox.put(NewItem("provisioning", "s", "d", payload))
    assert "vault:" in caught.value.hint


@pytest.mark.parametrize(
    "payload",
    [
        {"password": "vault:device/site-a/gw1/password"},
        {"password_ref": "vault:control-plane/password", "has_password": True, "token": None, "secret": ""},
        {"keys": {"private_key": "vault:device/a/b/key"}},
        {"passwords": ["vault:a", "vault:b"]},
        {"note": "the password was changed today"},  # the word in a value is fine
    ],
)
def test_vault_references_and_harmless_fields_pass(outbox: Outbox, payload: dict[str, object]) -> None:
    put = outbox.put(NewItem("provisioning", "s", "d", payload, vault_refs=("device/site-a/gw1/password",)))
    assert put.vault_refs == ("device/site-a/gw1/password",)
    assert outbox.get(put.id) == put


def test_canonical_payload_is_stable() -> None:
    assert canonical_payload({"b": 1, "a": ["é", {"z": None, "y": 2.5}]}) == '{"a":["é",{"y":2.5,"z":null}],"b":1}'
