"""Control-plane settings: what is refused (and how it is said), what round-trips, and that saving is atomic."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.core.outbox import settings as cps
from siteline.core.outbox.settings import ControlPlaneSettings, SettingsError, load_settings, save_settings


def good(**changes: Any) -> ControlPlaneSettings:
    base = ControlPlaneSettings(url="mqtts://broker.example.net:8883", technician="alice")
    return replace(base, **changes)


def test_defaults_and_derived_fields() -> None:
    s = good()
    assert (s.tls, s.host, s.port, s.protocol, s.metered, s.allow_plain) == (
        True,
        "broker.example.net",
        8883,
        "5",
        False,
        False,
    )
    assert good(url="mqtts://[::1]").port == 8883
    assert good(url="mqtts://[::1]").host == "::1"
    plain = good(url="mqtt://127.0.0.1", allow_plain=True)
    assert (plain.tls, plain.port) == (False, 1883)


def test_plain_mqtt_needs_the_users_choice() -> None:
    with pytest.raises(SettingsError, match=r"readable by anyone on the path.*allow unencrypted"):
        good(url="mqtt://broker:1883")
    assert good(url="mqtt://broker:1883", allow_plain=True).url == "mqtt://broker:1883"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"url": "mqtts://alice:hunter2@broker"}, "holds a password"),
        ({"url": "mqtts://alice@broker"}, "user name"),
        ({"url": "https://broker"}, "not an MQTT URL"),
        ({"url": "mqtts://"}, "no valid host"),
        ({"url": "mqtts://bad_host!"}, "no valid host"),
        ({"url": "mqtts://broker:99999"}, "cannot be read"),
        ({"url": "mqtts://broker:0"}, "cannot be 0"),
        ({"url": " mqtts://broker"}, "spaces"),
        ({"url": "mqtts://bro ker"}, "spaces"),
        ({"url": "mqtts://broker/edge"}, "path or options"),
        ({"url": "mqtts://broker?ca=x"}, "path or options"),
        ({"technician": "Alice/B"}, "Technician id"),
        ({"technician": "fleet"}, "reserved"),
        ({"protocol": "4"}, "not supported"),
        ({"monthly_budget_bytes": 0}, "not sensible"),
        ({"monthly_budget_bytes": -5}, "not sensible"),
        ({"monthly_budget_bytes": 1.5e9}, "whole number"),
        ({"monthly_budget_bytes": True}, "whole number"),
        ({"hold_low_priority_at": 0.0}, "fraction"),
        ({"hold_low_priority_at": 1.5}, "fraction"),
        ({"key": "/k.pem"}, "without a client certificate"),
        ({"key_passphrase_ref": "control-plane/key"}, "without a client key"),
        ({"password_ref": "control-plane/password"}, "without a user name"),
        ({"username": "alice", "password_ref": "vault:control-plane/password"}, "without 'vault:'"),
        ({"metered": "yes"}, "true or false"),
        ({"username": ""}, "non-empty"),
        ({"ca": "a\nb"}, "control characters"),
    ],
)
def test_refusals_say_what_to_do(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(SettingsError, match=match) as info:
        good(**changes)
    assert info.value.hint or "use mqtts" in info.value.message


def test_tls_files_on_plain_mqtt_are_refused() -> None:
    with pytest.raises(SettingsError, match="TLS files"):
        good(url="mqtt://b", allow_plain=True, ca="/ca.pem")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    s = good(
        ca="/etc/ssl/ca.pem", cert="/home/a/c.pem", key="/home/a/k.pem", username="alice",
        password_ref="control-plane/password", key_passphrase_ref="control-plane/key-passphrase",
        metered=True, monthly_budget_bytes=500_000_000, hold_low_priority_at=0.8, protocol="3.1.1",
    )  # fmt: skip
    path = tmp_path / "cp.json"
    save_settings(s, path)
    assert load_settings(path) == s
    doc = json.loads(path.read_text())
    assert doc["format"] == "siteline-control-plane"
    assert doc["version"] == 1
    assert "password" not in doc
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]  # no temp file left beside it


def test_default_path_is_in_the_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    assert load_settings() is None
    save_settings(good())
    assert (tmp_path / "config" / "control-plane.json").is_file()
    assert load_settings() == good()


def test_absent_fields_take_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    path.write_text('{"format":"siteline-control-plane","version":1,"url":"mqtts://b","technician":"bob"}')
    assert load_settings(path) == ControlPlaneSettings(url="mqtts://b", technician="bob")


def _write(path: Path, **doc: Any) -> None:
    base = {"format": "siteline-control-plane", "version": 1, "url": "mqtts://b", "technician": "bob"}
    path.write_text(json.dumps({**base, **doc}))


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"password": "hunter2"}, "never keeps a secret"),
        ({"key_passphrase": "x"}, "never keeps a secret"),
        ({"api_token": "x"}, "never keeps a secret"),
        ({"version": 2, "new_thing": 1}, "newer Siteline"),
        ({"version": "1"}, "no valid version"),
        ({"format": "other"}, "not a Siteline control-plane"),
        ({"colour": "blue"}, "does not know: colour"),
        ({"url": "mqtt://b"}, "readable by anyone"),
        ({"metered": 1}, "true or false"),
    ],
)
def test_bad_files_are_refused_and_left_as_they_are(tmp_path: Path, doc: dict[str, Any], match: str) -> None:
    path = tmp_path / "cp.json"
    _write(path, **doc)
    before = path.read_bytes()
    with pytest.raises(SettingsError, match=match) as info:
        load_settings(path)
    assert str(path) in info.value.message
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "data", [b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"format":"siteline-control-plane"}', b"[" * 50_000]
)
def test_garbage_files_are_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "cp.json"
    path.write_bytes(data)
    with pytest.raises(SettingsError):
        load_settings(path)


def test_missing_required_field_and_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    path.write_text('{"format":"siteline-control-plane","version":1,"url":"mqtts://b"}')
    with pytest.raises(SettingsError, match="lacks the 'technician'"):
        load_settings(path)
    path.write_bytes(b" " * (cps.MAX_FILE_BYTES + 1))
    with pytest.raises(SettingsError, match="larger than"):
        load_settings(path)


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cp.json"
    save_settings(good(), path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(SettingsError, match="No space left"):
        save_settings(good(technician="carol"), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "mqtt://b"}, "url"),
        ({"technician": "A B"}, "technician"),
        ({"protocol": "4"}, "protocol"),
        ({"monthly_budget_bytes": 1}, "monthly_budget_bytes"),
        ({"key": "/k.pem"}, "key"),
        ({"ca": ""}, "ca"),
        ({"password_ref": "x"}, "username"),
    ],
)
def test_errors_name_the_field_at_fault(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as info:
        good(**changes)
    assert info.value.field == field


def test_file_errors_keep_the_field(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    _write(path, protocol="9")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.field == "protocol"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=6,
)
_FIELDS = [f.name for f in fields(ControlPlaneSettings)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from([*_FIELDS, "format", "version"]), _JSON, max_size=8))
def test_any_json_settings_file_loads_or_is_refused_clearly(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({"format": "siteline-control-plane", "version": 1, **doc}))
    loaded: ControlPlaneSettings | None = None
    with contextlib.suppress(SettingsError):  # anything else (TypeError, KeyError ...) fails the test
        loaded = load_settings(path)
    if loaded is not None:
        save_settings(loaded, tmp_path / "again.json")
        assert load_settings(tmp_path / "again.json") == loaded
