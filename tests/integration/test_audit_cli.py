"""`siteline audit verify|list` as a real process: exit codes, words, and no vault asked for."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.peers.sshd import SshdHandle

from siteline.core.audit import AuditTrail
from siteline.core.outbox.store import Outbox


def _prefix() -> list[str]:
    """`siteline audit` once cli.py registers it; until then the module's own entry point (same parser)."""
    from siteline.cli import build_parser

    choices = next((a.choices for a in build_parser()._actions if getattr(a, "choices", None)), {})
    if "audit" in (choices or {}):
        return [sys.executable, "-m", "siteline", "audit"]
    return [sys.executable, "-m", "siteline.audit_cli"]


def siteline_audit(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # No terminal (stdin closed) and no vault file: a command that wanted a passphrase would fail here.
    env = {**os.environ, "SITELINE_HOME": str(home)}
    env.pop("SITELINE_PASSWORD", None)
    return subprocess.run([*_prefix(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env,
                          timeout=60, check=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def write_trail(db: Path, n: int = 3) -> None:
    with Outbox.open(db) as outbox:
        trail = AuditTrail(outbox, "tech-ana")
        for i in range(n):
            trail.record("connect", site="north", device=f"gw-0{i % 2 + 1}", detail={"via": "ssh", "n": i})


def test_empty_trail_exits_0(home: Path, tmp_path: Path) -> None:
    done = siteline_audit("verify", home=home)
    assert done.returncode == 0, done.stderr
    assert "audit trail intact: 0 records" in done.stdout
    missing = tmp_path / "nowhere.sqlite3"
    assert siteline_audit("verify", "--db", str(missing), home=home).returncode == 0
    assert not missing.exists()


def test_intact_trail_in_the_default_outbox(home: Path) -> None:
    write_trail(home / "data" / "outbox.sqlite3", 3)
    done = siteline_audit("verify", home=home)
    assert done.returncode == 0, done.stderr
    assert "audit trail intact: 3 records, last at 20" in done.stdout
    assert not (home / "data" / "vault.siteline").exists()


def test_edited_record_exits_3_and_names_it(home: Path, tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite3"
    write_trail(db, 4)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE audit SET result = 'ok, honestly' WHERE seq = 2")
    conn.close()
    done = siteline_audit("verify", "--db", str(db), home=home)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "BROKEN at record 2" in done.stdout
    assert "record 2 (connect gw-02 at 20" in done.stdout
    assert "was changed after it was written" in done.stdout
    as_json = json.loads(siteline_audit("verify", "--db", str(db), "--json", home=home).stdout)
    assert (as_json["ok"], as_json["first_bad_seq"], as_json["count"]) == (False, 2, 1)


def test_deleted_record_exits_3(home: Path, tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite3"
    write_trail(db, 4)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM audit WHERE seq = 4")
    conn.close()
    done = siteline_audit("verify", "--db", str(db), home=home)
    assert done.returncode == 3
    assert "record 4 was deleted" in done.stdout


def test_unreadable_file_exits_6(home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"\x00garbage" * 1000)
    done = siteline_audit("verify", "--db", str(junk), home=home)
    assert done.returncode == 6
    assert "cannot be read" in done.stderr
    assert junk.read_bytes() == b"\x00garbage" * 1000


def test_list_text_and_json(home: Path, tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite3"
    write_trail(db, 3)
    text = siteline_audit("list", "--db", str(db), home=home)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 3
    assert "#3" in lines[0]
    assert "north/gw-01  connect  ok" in lines[0]
    one = json.loads(siteline_audit("list", "--db", str(db), "--device", "gw-02", "--json", home=home).stdout)
    assert [(r["seq"], r["device"], r["detail"]) for r in one] == [(2, "gw-02", {"via": "ssh", "n": 1})]
    assert len(one[0]["hash"]) == 64


def test_a_damaged_outbox_set_aside_exits_4_and_names_it(home: Path) -> None:
    """The trail restarted in a fresh outbox: not "intact", exit 4, the kept file named, nothing repaired."""
    db = home / "data" / "outbox.sqlite3"
    write_trail(db, 3)
    with db.open("r+b") as fh:
        fh.write(b"not a database any more" * 8)
    with Outbox.open(db) as outbox:
        kept = outbox.recovered_from
        assert kept is not None
        AuditTrail(outbox, "tech-ana").record("connect", site="north", device="gw-01")
    before = kept.read_bytes()
    done = siteline_audit("verify", home=home)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "audit trail intact" not in done.stdout
    assert "RESTARTED: 1 records intact" in done.stdout
    assert "WARNING" in done.stderr
    assert str(kept) in done.stderr
    as_json = siteline_audit("verify", "--json", home=home)
    assert as_json.returncode == 4
    doc = json.loads(as_json.stdout)
    assert (doc["ok"], doc["count"], doc["damaged"]) == (True, 1, [str(kept)])
    assert kept.read_bytes() == before  # kept as it was: not repaired, not opened for writing
    with sqlite3.connect(db) as conn:  # broken as well: 3 wins, and the kept file is still named
        conn.execute("UPDATE audit SET result = 'edited' WHERE seq = 1")
    conn.close()
    broken = siteline_audit("verify", home=home)
    assert broken.returncode == 3, broken.stdout + broken.stderr
    assert str(kept) in broken.stderr


def test_a_dropped_audit_table_exits_3_and_says_why(home: Path) -> None:
    db = home / "data" / "outbox.sqlite3"
    write_trail(db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DROP TABLE audit")
    conn.close()
    done = siteline_audit("verify", home=home)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "audit table is missing" in done.stdout + done.stderr


def test_siteline_run_records_the_command_without_the_password_typed_in_it(sshd: SshdHandle, home: Path) -> None:
    """`siteline run` over real ssh: the record keeps the command with its secrets blanked."""
    target = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    env = {**os.environ, "SITELINE_HOME": str(home)}
    env.pop("SITELINE_PASSWORD", None)
    command = "export MQTT_PASSWORD=hunter2-zq7; sshpass -p s3cr3t-zq7 true 2>/dev/null; true"
    argv = [sys.executable, "-m", "siteline", "run", target, "-i", str(sshd.client_key), "--accept-new-host-key",
            "--", command]
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    from siteline.core.audit_verify import read_records

    details = [r.detail_obj() for r in read_records(home / "data" / "outbox.sqlite3") if r.action == "console-command"]
    assert details
    assert details[0]["redacted"] is True
    assert details[0]["line"] == "export MQTT_PASSWORD=***; sshpass -p *** true 2>/dev/null; true"
    for path in (home / "data").iterdir():
        assert b"zq7" not in path.read_bytes(), path
