"""The technician id given in the first-run guide labels the CLI's records too, while no control plane is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from siteline import paths
from siteline.core.first_run import FirstRunRecord, load_record, save_record
from siteline.core.outbox.envelope import default_technician


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    return tmp_path


def test_the_guides_id_wins_over_the_os_user(home: Path) -> None:
    os_user = default_technician()
    save_record(FirstRunRecord(technician="jane-doe"))
    assert default_technician() == "jane-doe" != os_user


def test_a_damaged_record_falls_back_to_the_os_user(home: Path) -> None:
    os_user = default_technician()
    (paths.config_dir() / "first-run.json").write_bytes(b"\xff{not json")
    assert default_technician() == os_user
    assert load_record() == FirstRunRecord(done=True)  # damaged: counts as done, never nags


def test_an_unsafe_id_in_the_record_is_ignored(home: Path) -> None:
    os_user = default_technician()
    (paths.config_dir() / "first-run.json").write_text('{"format": "siteline-first-run", "technician": "a/#/b"}')
    assert default_technician() == os_user
