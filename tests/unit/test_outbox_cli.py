"""`siteline outbox ...` and `siteline note`, run in-process on a private SITELINE_HOME."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from siteline import outbox_cli
from siteline.core.outbox.model import NewItem
from siteline.core.outbox.schema import SCHEMA_VERSION
from siteline.core.outbox.store import Outbox, default_path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cli(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, str, str]:
    code = outbox_cli.main(list(words))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json_has_the_promised_fields(capsys: pytest.CaptureFixture[str]) -> None:
    with Outbox.open() as ob:
        a, _b = ob.put_many([NewItem("audit", "s", "d", {}), NewItem("telemetry", "s", "d", {})])
        ob.mark_sent([a.id], 1234)
    code, out, _ = cli(capsys, "outbox", "status", "--json")
    status = json.loads(out)
    assert code == 0
    assert (status["pending"], status["sent"], status["failed"], status["bytes_this_month"]) == (1, 1, 0, 1234)
    assert status["budget_bytes"] is None
    assert str(status["oldest_pending"]).endswith("Z")
    assert status["pending_by_priority"] == {"high": 0, "normal": 0, "low": 1}
    assert status["month"].count("-") == 1
    code, out, _ = cli(capsys, "outbox", "status")
    assert "waiting: 1 (high 0, normal 0, low 1)" in out
    assert "1.2 kB" in out


def test_note_list_export_import(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "note", "site-a", "gw1", "replaced the antenna cable")
    assert code == 0
    assert "Note saved for site-a/gw1" in out
    code, out, _ = cli(capsys, "outbox", "list", "--json")
    listed = json.loads(out)
    notes = [i for i in listed if i["kind"] == "note"]
    audits = [i for i in listed if i["kind"] == "audit"]
    assert len(audits) == 1  # the note is in the audit trail too (core/audit.py)
    assert audits[0]["device"] == "gw1"
    assert notes[0]["payload"]["text"] == "replaced the antenna cable"
    assert notes[0]["payload"]["technician"]
    code, out, _ = cli(capsys, "outbox", "list", "--state", "pending")
    assert "site-a/gw1" in out
    carry = tmp_path / "carry.jsonl.gz"
    assert cli(capsys, "outbox", "export", str(carry))[0] == 0
    code, out, _ = cli(capsys, "outbox", "import", str(carry))
    assert code == 0
    assert "Imported 0 items" in out


def test_retry_moves_failed_items(capsys: pytest.CaptureFixture[str]) -> None:
    with Outbox.open() as ob:
        item = ob.put(NewItem("note", "s", "d", {}))
        ob.record_failure([item.id], "refused", permanent=True)
    _code, out, _ = cli(capsys, "outbox", "status")
    assert "failed: 1 (send them again: siteline outbox retry)" in out
    _code, out, _ = cli(capsys, "outbox", "retry")
    assert "1 failed items" in out
    assert json.loads(cli(capsys, "outbox", "status", "--json")[1])["pending"] == 1


@pytest.mark.parametrize("words", [("note", "", "gw1", "x"), ("note", "s/ite", "g" * 200, "x")])
def test_a_bad_note_is_a_usage_error(capsys: pytest.CaptureFixture[str], words: tuple[str, ...]) -> None:
    code, _out, err = cli(capsys, *words)
    assert code == 2
    assert "name" in err


def test_import_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli(capsys, "outbox", "import", str(tmp_path / "missing.gz"))[0] == 2
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"junk")
    code, _out, err = cli(capsys, "outbox", "import", str(junk))
    assert code == 6
    assert "Nothing was imported" in err
    assert cli(capsys, "outbox", "export", str(tmp_path / "no" / "such" / "x.gz"))[0] == 2


def test_a_newer_outbox_exits_6_and_is_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    Outbox.open().close()
    raw = sqlite3.connect(default_path())
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.close()
    before = default_path().read_bytes()
    code, _out, err = cli(capsys, "outbox", "status")
    assert code == 6
    assert "newer Siteline" in err
    assert default_path().read_bytes() == before


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        outbox_cli.main(["outbox", "list", "--limit", "0"])
    assert caught.value.code == 2
    capsys.readouterr()
