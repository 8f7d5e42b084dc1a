"""The disabled list: written atomically, unknown names kept, a damaged file set aside and never fatal."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.plugin_settings import FILE_NAME, PluginSettings
from siteline.core.plugins import load_plugins


@pytest.fixture
def path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    (tmp_path / "config").mkdir()
    return tmp_path / "config" / FILE_NAME


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.plugin_settings"):
        yield


def test_no_file_means_nothing_disabled(path: Path) -> None:
    settings = PluginSettings(path)
    assert settings.disabled == frozenset()
    assert settings.problem == ""
    assert not path.exists()  # reading never creates it


def test_changes_are_written_at_once_and_read_back(path: Path) -> None:
    settings = PluginSettings(path)
    settings.set_disabled("posture", True)
    settings.set_disabled("vendor", True)
    settings.set_disabled("posture", False)
    assert json.loads(path.read_text()) == {"version": 1, "disabled": ["vendor"]}
    assert PluginSettings(path).disabled == {"vendor"}
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]  # no temp file left behind
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600


def test_unknown_names_are_kept(path: Path) -> None:
    path.write_text(json.dumps({"version": 1, "disabled": ["not-installed-yet"], "future-key": 1}))
    settings = PluginSettings(path)
    settings.set_disabled("system", True)
    assert PluginSettings(path).disabled == {"not-installed-yet", "system"}


def test_two_writers_do_not_undo_each_other(path: Path) -> None:
    window, cli = PluginSettings(path), PluginSettings(path)
    cli.set_disabled("slots", True)
    window.set_disabled("posture", True)  # re-reads first: the CLI's change survives
    assert PluginSettings(path).disabled == {"slots", "posture"}


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff garbage \xfe",
        b'{"disabled": ["a", ',
        b"[1, 2, 3]",
        b'{"disabled": "system"}',
        b'{"disabled": [1, null]}',
        b'{"disabled": [""]}',
    ],
)
def test_damaged_file_is_set_aside_with_a_message(path: Path, quiet: None, content: bytes) -> None:
    path.write_bytes(content)
    settings = PluginSettings(path)
    assert settings.disabled == frozenset()
    assert "was damaged" in settings.problem
    assert "moved to plugins.json.damaged-" in settings.problem
    (aside,) = path.parent.glob(f"{FILE_NAME}.damaged-*")
    assert aside.read_bytes() == content  # kept for whoever wants to look
    assert not path.exists()
    settings.set_disabled("posture", True)  # and it works again from a clean file
    assert PluginSettings(path).disabled == {"posture"}


def test_load_plugins_reports_a_damaged_file_and_starts(path: Path, quiet: None) -> None:
    path.write_text("not json")
    host = load_plugins()
    assert any("was damaged" in n for n in host.notices)
    assert host.info("system") is not None
    assert host.info("system").enabled


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_message_not_a_crash(path: Path, quiet: None) -> None:
    path.write_text(json.dumps({"disabled": ["system"]}))
    path.chmod(0)
    settings = PluginSettings(path)
    assert settings.disabled == frozenset()
    assert "Cannot read" in settings.problem
