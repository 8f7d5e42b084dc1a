"""Fresh-eyes review of the first-run guide: when it shows, a damaged record, the demo's clean-up, the id in CLI
records. The demo launcher is driven directly (a real child process group), the rest through core's record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from siteline import paths
from siteline.core.first_run import FirstRunRecord, load_record, needs_first_run, record_path, save_record
from siteline.core.outbox.envelope import default_technician
from siteline.ui.first_run import DemoLauncher


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    return paths.config_dir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is ours and a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _demo_with_a_child(tmp_path: Path, settle: str) -> tuple[DemoLauncher, Path]:
    """A stand-in `siteline demo` caught while starting: it has started one of its devices (a child process)
    and has not yet set up its SIGTERM handling (``settle`` is what it does meanwhile)."""
    pid_file = tmp_path / "child.pid"
    code = (f"import subprocess, sys, time; p = subprocess.Popen(['sleep', '300']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); {settle}")
    return DemoLauncher([sys.executable, "-c", code], log_path=tmp_path / "demo.log"), pid_file


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize("settle", ["time.sleep(60)", "pass"], ids=["still-starting", "leader-already-gone"])
def test_closing_the_window_while_the_demo_starts_leaves_none_of_its_processes(tmp_path: Path, settle: str) -> None:
    """The technician closes Siteline seconds after pressing "Try the demo site": every process the demo had
    started (simulated devices, sshd, mosquitto) must go too, not linger holding ports and CPU."""
    demo, pid_file = _demo_with_a_child(tmp_path, settle)
    assert "Starting the demo site" in demo.start()
    child = _wait_for(pid_file)
    try:
        asyncio.run(demo.stop(timeout=5))
        deadline = time.monotonic() + 3
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the demo's device process outlived the window"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_demo_that_cannot_start_says_so(tmp_path: Path) -> None:
    demo = DemoLauncher([str(tmp_path / "no-such-siteline")], log_path=tmp_path / "demo.log")
    said = demo.start()
    assert "could not start" in said
    assert str(tmp_path / "demo.log") in said
    assert not demo.running
    asyncio.run(demo.stop(timeout=1))


def test_guide_shows_on_a_fresh_home_and_not_once_done(fresh: Path) -> None:
    assert needs_first_run(fresh, vault_path=fresh / "no-vault")
    save_record(FirstRunRecord(done=True, how="finished"), fresh)
    assert not needs_first_run(fresh, vault_path=fresh / "no-vault")


def test_not_now_keeps_the_guide_and_the_technician(fresh: Path) -> None:
    save_record(FirstRunRecord(done=False, technician="jane.doe"), fresh)
    assert needs_first_run(fresh, vault_path=fresh / "no-vault")
    assert default_technician() == "jane.doe"


@pytest.mark.parametrize("content", [b"", b"\x00\xff garbage", b"[1, 2]", b"{\"format\": \"other\"}",
                                     b"{" * 100_000, b"x" * 200_000])
def test_a_damaged_record_neither_crashes_nor_nags(fresh: Path, content: bytes) -> None:
    fresh.mkdir(parents=True, exist_ok=True)
    record_path(fresh).write_bytes(content)
    assert not needs_first_run(fresh, vault_path=fresh / "no-vault")
    assert default_technician()  # the OS user's id, not a crash


def test_one_bad_field_does_not_lose_the_technician(fresh: Path) -> None:
    """A record hand-edited (or from another version) with a bad `when` still names the technician: the id on
    every CLI record must not silently fall back to the OS user because of an unrelated field."""
    fresh.mkdir(parents=True, exist_ok=True)
    record_path(fresh).write_text(json.dumps({"format": "siteline-first-run", "done": True, "how": "finished",
                                              "technician": "jane.doe", "when": "yesterday"}))
    record = load_record(fresh)
    assert record is not None
    assert record.done
    assert default_technician() == "jane.doe"


def test_the_guides_id_labels_records_made_by_the_cli(fresh: Path) -> None:
    """`siteline note` etc. run in another process: they read the id from first-run.json."""
    import subprocess

    save_record(FirstRunRecord(done=True, how="finished", technician="tower.crew-7"), fresh)
    code = "from siteline.core.outbox.envelope import default_technician as d; print(d())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ}, check=False)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip() == "tower.crew-7"
