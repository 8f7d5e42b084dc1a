"""'Log this session to a file': the Qt-free writer, then the toggle in the tab against a real shell."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from siteline.ui.console_tab import ConsoleTab
from siteline.ui.session_log import SessionLog, SessionLogError, default_log_path
from tests.gui.conftest import Loop, until
from tests.gui.test_console_tab import _open, _screen, _type, console

__all__ = ["console"]


def test_default_path_is_under_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    path = default_log_path("gw 01/north", dt.datetime(2026, 3, 4, 5, 6, 7))
    assert path == tmp_path / "state" / "logs" / "gw_01_north-20260304-050607.log"


def test_text_is_stripped_and_on_disk_after_every_chunk(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "s.log"
    log = SessionLog(path)
    log.write(b"\x1b[1;31mred\x1b[0m line\r\n\x1b]0;title\x07pro")
    assert path.read_text() == "red line\npro"  # flushed: readable while the log is still open
    log.write(b"gress 50%\rprogress 100%\r\n\xe4\xbd")  # a UTF-8 glyph split across chunks
    log.write(b"\xa0 done\r\n")
    assert path.read_text() == "red line\nprogress 50%progress 100%\n你 done\n"
    log.close()
    log.close()  # twice is harmless
    log.write(b"ignored after close")
    assert path.read_text().endswith("你 done\n")


def test_full_disk_stops_with_a_clear_message() -> None:
    log = SessionLog(Path("/dev/full"))  # every write fails with ENOSPC, as a full disk does
    with pytest.raises(SessionLogError, match=r"the disk is full\. Logging stopped; the console keeps running"):
        log.write(b"hello\n")
    assert not log.active
    log.write(b"more")  # no second error: the log is already stopped


def test_unwritable_path_says_what_to_do() -> None:
    with pytest.raises(SessionLogError, match=r"Cannot open the session log /proc/.*choose another file"):
        SessionLog(Path("/proc/siteline-no-such-dir/x.log"))


def test_logging_a_live_shell(console: ConsoleTab, aloop: Loop, qtbot, tmp_path: Path) -> None:
    _open(console, aloop)
    proposed: list[Path] = []
    target = tmp_path / "gw.log"

    def choose(path: Path) -> Path:
        proposed.append(path)
        return target

    console.choose_log_path = choose
    console.log_button.click()  # the toggle asks for a path (here: answered by the test), then logs
    assert console.log_button.isChecked()
    assert re.fullmatch(r"127\.0\.0\.1-\d{8}-\d{6}\.log", proposed[0].name)
    assert console.log_status.text() == f"Logging to {target}"
    _type(qtbot, console.terminal, r"printf '\033[32mlogged-green\033[0m\n'")
    aloop.run(until(lambda: "logged-green" in _screen(console.terminal), what="output"))
    aloop.run(until(lambda: "\nlogged-green\n" in target.read_text(), what="the log on disk"))
    assert "\x1b" not in target.read_text()
    console.log_button.click()
    assert console.session_log is None
    assert console.log_status.text() == f"Session logged to {target}"
    size = target.stat().st_size
    _type(qtbot, console.terminal, "echo not-logged")
    aloop.run(until(lambda: "not-logged" in _screen(console.terminal), what="output"))
    assert target.stat().st_size == size

    assert console.start_log(Path("/dev/full"))  # the disk fills up: logging stops, the shell goes on
    _type(qtbot, console.terminal, "echo still-running")
    aloop.run(until(lambda: "still-running" in _screen(console.terminal), what="the shell after the log failed"))
    assert console.session_log is None
    assert not console.log_button.isChecked()
    assert "the disk is full" in console.log_status.text()


def test_writer_and_screen_model_import_no_qt() -> None:
    import subprocess
    import sys

    code = "import sys, siteline.ui.session_log, siteline.ui.terminal_screen; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "False"
