"""What `siteline outbox sync` makes of the saved settings and its options, and URLs quoted without their login."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from siteline import sync_cli
from siteline.core.outbox.link import SyncConfigError, parse_url
from siteline.core.outbox.settings import ControlPlaneSettings, save_settings
from siteline.core.outbox.sync import DrainResult
from siteline.core.redact import safe_url

SAVED = ControlPlaneSettings(url="mqtts://cp.example:8883", technician="jane", username="jane",
                             password_ref="control-plane/password", key_passphrase_ref="control-plane/key",
                             ca="/etc/cp/ca.pem", cert="/etc/cp/jane.pem", key="/etc/cp/jane.key", metered=True)


def _args(**given: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sync_cli.add_sync_arguments(parser)
    args = parser.parse_args([])
    for name, value in given.items():
        setattr(args, name, value)
    return args


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ControlPlaneSettings:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    (tmp_path / "config").mkdir()
    save_settings(SAVED, tmp_path / "config" / "control-plane.json")
    return SAVED


def test_another_broker_drops_the_saved_login_and_tls_files(saved: ControlPlaneSettings) -> None:
    settings, dropped = sync_cli._settings_and_dropped(_args(broker="mqtts://other.example:8883"))
    assert settings.url == "mqtts://other.example:8883"
    assert (settings.username, settings.password_ref, settings.key_passphrase_ref) == (None, None, None)
    assert (settings.ca, settings.cert, settings.key) == (None, None, None)
    assert dropped == list(sync_cli.LOGIN_FIELDS)
    assert (settings.technician, settings.metered) == ("jane", True)  # not a login: kept


def test_the_same_broker_keeps_everything(saved: ControlPlaneSettings) -> None:
    for url in ("mqtts://cp.example:8883", "mqtts://CP.example", " mqtts://cp.example:8883"):
        settings, dropped = sync_cli._settings_and_dropped(_args(broker=url.strip()))
        assert (settings.username, settings.password_ref, settings.cert, dropped) == (
            "jane", "control-plane/password", "/etc/cp/jane.pem", [])


def test_what_the_command_line_gives_again_is_used(saved: ControlPlaneSettings) -> None:
    settings, dropped = sync_cli._settings_and_dropped(
        _args(broker="mqtts://cp.example:9883", username="joe", ca="/tmp/other-ca.pem"))
    assert (settings.username, settings.ca, settings.password_ref, settings.cert) == (
        "joe", "/tmp/other-ca.pem", None, None)
    assert dropped == ["password_ref", "key_passphrase_ref", "cert", "key"]


def test_the_same_host_without_tls_is_another_broker(saved: ControlPlaneSettings) -> None:
    settings, dropped = sync_cli._settings_and_dropped(_args(broker="mqtt://cp.example:8883", plain_ok=True))
    assert settings.username is None
    assert "username" in dropped


def test_the_help_says_the_saved_login_stays_with_the_saved_broker() -> None:
    parser = argparse.ArgumentParser()
    sync_cli.add_sync_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "saved login and TLS files are not sent to it" in text
    assert "8 refused" in text


@pytest.mark.parametrize(("url", "shown"), [
    ("mqtts://jane:s3cret@host:88x3", "mqtts://host:88x3"),
    ("jane:s3cret@host", "host"),
    ("mqtts://u:p://x@host:1", "mqtts://host:1"),
    ("mqtts://a@b:c@host/p", "mqtts://host/p"),
    ("mqtts://host:8883", "mqtts://host:8883"),
])
def test_safe_url_leaves_out_the_login(url: str, shown: str) -> None:
    assert safe_url(url) == shown


@pytest.mark.parametrize("url", ["mqtts://jane:s3cret@host:88x3", "mqtts://jane:s3cret@host:8883",
                                 "ftp://jane:s3cret@host", "mqtts://jane:s3cret@[::1"])
def test_parse_url_errors_never_echo_a_password(url: str) -> None:
    with pytest.raises(SyncConfigError) as err:
        parse_url(url, True)
    assert "s3cret" not in str(err.value)
    assert "host" in str(err.value) or "::1" in str(err.value)


@pytest.mark.parametrize(("failed", "code"), [(0, sync_cli.EXIT_HELD), (2, sync_cli.EXIT_REFUSED)])
def test_held_items_are_reported_once(failed: int, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    result = DrainResult(sent=1, bytes=10, seconds=0.1, held=3, failed=failed, failures=(("refused", failed),))
    assert sync_cli._report(result, "budget nearly used") == code
    err = capsys.readouterr().err
    assert err.count("3 items wait: budget nearly used") == 1
