"""The control-plane client id is stable per installation (the broker keeps the session under it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siteline.core.outbox.link import CLIENT_ID_FILE, installation_client_id


def test_client_id_is_made_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    first = installation_client_id("jane")
    assert re.fullmatch(r"siteline-jane-[0-9a-f]{8}", first)
    assert installation_client_id("jane") == first
    assert (tmp_path / "state" / CLIENT_ID_FILE).read_text().strip() == first[-8:]


def test_a_damaged_id_file_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / CLIENT_ID_FILE).write_bytes(b"\xff\xfe not hex")
    assert re.fullmatch(r"siteline-jane-[0-9a-f]{8}", installation_client_id("jane"))
