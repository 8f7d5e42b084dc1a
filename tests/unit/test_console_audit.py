"""The console input recorder: command lines recorded, input typed blind never.

The byte streams are what a real bash 5.2 on a pty sent back, key by key (recorded once with the
prompt of tests.peers.socat_shell); the last tests drive a live bash on a pty through socat.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.console_audit import ConsoleInputRecorder, is_secret_prompt
from tests.peers.socat_shell import SocatShell

PROMPT = b"\x1b[?2004h\x1b]0;sim-console\x07\x1b[1;32mroot@sim\x1b[0m:\x1b[1;34m~\x1b[0m# "
AFTER_ENTER = b"\r\n\x1b[?2004l\r"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rec:
    """A recorder plus what it reported, fed key by key with bash's echo of each key."""

    def __init__(self, hold: float = 2.0) -> None:
        self.lines: list[tuple[str, bool]] = []
        self.clock = Clock()
        self.r = ConsoleInputRecorder(lambda text, withheld: self.lines.append((text, withheld)), hold=hold,
                                      clock=self.clock)
        self.r.received(PROMPT)

    def key(self, keys: bytes, echo: bytes = b"") -> None:
        self.r.typed(keys)
        if echo:
            self.r.received(echo)

    def type_echoed(self, text: str) -> None:
        for ch in text.encode():
            self.key(bytes([ch]), bytes([ch]))

    def type_blind(self, text: str) -> None:
        for ch in text.encode():
            self.key(bytes([ch]))


def test_plain_command_is_recorded() -> None:
    rec = Rec()
    rec.type_echoed("echo hi")
    rec.key(b"\r", AFTER_ENTER + b"hi\r\n" + PROMPT)
    assert rec.lines == [("echo hi", False)]
    assert rec.r.waiting == 0


def test_backspace_applied() -> None:
    rec = Rec()
    rec.type_echoed("ab")
    rec.key(b"\x7f", b"\x08\x1b[K")
    rec.type_echoed("c")
    rec.key(b"\r", AFTER_ENTER + b"bash: ac: command not found\r\n" + PROMPT)
    assert rec.lines == [("ac", False)]


def test_ctrl_u_and_ctrl_w() -> None:
    rec = Rec()
    rec.type_echoed("rm -rf /tmp/x")
    rec.key(b"\x15", b"\r\x1b[K" + PROMPT[8:])  # readline redraws the prompt on an empty line
    rec.type_echoed("ls /tmp /var")
    rec.key(b"\x17", b"\x08\x08\x08\x08\x1b[K")
    rec.key(b"\r", AFTER_ENTER + b"x\r\n" + PROMPT)
    assert rec.lines == [("ls /tmp", False)]


def test_ctrl_c_abandons_the_line() -> None:
    rec = Rec()
    rec.type_echoed("reboot")
    rec.key(b"\x03", b"^C\r\n" + PROMPT)
    rec.key(b"\r", AFTER_ENTER + PROMPT)
    assert rec.lines == []


def test_cursor_editing_is_reported_as_typed_with_a_mark() -> None:
    rec = Rec()
    rec.type_echoed("ls -l")
    rec.key(b"\x1b[D", b"\x08")
    rec.key(b"\x1b[D", b"\x08")
    rec.key(b"x", b"x-l\x08\x08")
    rec.key(b"\r", AFTER_ENTER + b"ls: cannot access 'x-l'\r\n" + PROMPT)
    assert rec.lines == [("ls -l<Left><Left>x (edited)", False)]


def test_tab_completion_and_history_are_marked_edited() -> None:
    rec = Rec()
    rec.type_echoed("ech")
    rec.key(b"\t", b"o ")
    rec.type_echoed("hi")
    rec.key(b"\r", AFTER_ENTER + b"hi\r\n" + PROMPT)
    rec.key(b"\x1b[A", b"echo hi")
    rec.key(b"\r", AFTER_ENTER + b"hi\r\n" + PROMPT)
    assert rec.lines == [("ech<Tab>hi (edited)", False), ("<Up> (edited)", False)]


def test_escape_sequence_split_across_calls() -> None:
    rec = Rec()
    rec.type_echoed("ls")
    rec.key(b"\x1b")
    rec.key(b"[")
    rec.key(b"D", b"\x08")
    rec.key(b"\r", AFTER_ENTER + PROMPT)
    assert rec.lines == [("ls<Left> (edited)", False)]


def test_bracketed_paste_is_plain_text() -> None:
    rec = Rec()
    rec.key(b"\x1b[200~uname -a\x1b[201~", b"uname -a")
    rec.key(b"\r", AFTER_ENTER + b"Linux\r\n" + PROMPT)
    assert rec.lines == [("uname -a", False)]


def test_read_s_password_is_withheld() -> None:
    rec = Rec()
    rec.type_echoed("read -s -p 'Password: ' x")
    rec.key(b"\r", AFTER_ENTER + b"Password: ")
    rec.type_blind("hunter2")
    rec.key(b"\r", PROMPT)  # bash prints no newline for read -s: the next prompt follows at once
    assert rec.lines == [("read -s -p 'Password: ' x", False), ("", True)]
    assert rec.r.waiting == 0


def test_echo_off_without_a_secret_prompt_is_withheld() -> None:
    rec = Rec()
    rec.type_echoed("read -s x")
    rec.key(b"\r", AFTER_ENTER)
    rec.type_blind("s3cr3t")
    rec.key(b"\r", PROMPT)
    assert rec.lines == [("read -s x", False), ("", True)]


def test_sudo_prompt_prints_a_newline_after_the_password() -> None:
    rec = Rec()
    rec.type_echoed("sudo reboot")
    rec.key(b"\r", AFTER_ENTER + b"[sudo] password for tech: ")
    rec.type_blind("correct horse")
    rec.key(b"\r", b"\r\n")
    rec.r.received(b"Broadcast message: the system is going down\r\n")
    assert rec.lines == [("sudo reboot", False), ("", True)]


def test_a_secret_prompt_withholds_even_with_echo_on() -> None:
    """Some consoles echo a password (a bad getty, a modem's AT prompt): the prompt alone decides."""
    rec = Rec()
    rec.r.received(b"\r\nEnter PIN: ")
    rec.type_echoed("1234")
    rec.key(b"\r", b"\r\nOK\r\n")
    assert rec.lines == [("", True)]


def test_stars_instead_of_echo_are_withheld() -> None:
    rec = Rec()
    rec.r.received(b"\r\nToken> ")
    for _ch in "abc":
        rec.key(b"x", b"*")
    rec.key(b"\r", b"\r\n")
    assert rec.lines == [("", True)]


def test_late_echo_on_a_slow_link_is_recorded() -> None:
    rec = Rec()
    rec.type_blind("uptime")
    rec.key(b"\r")
    rec.clock.now += 1.5
    rec.r.tick()
    assert rec.lines == []
    rec.r.received(b"upt")
    rec.r.received(b"ime" + AFTER_ENTER + b" 10:02:03 up 1 day\r\n" + PROMPT)
    assert rec.lines == [("uptime", False)]


def test_no_echo_within_the_hold_time_is_withheld() -> None:
    rec = Rec()
    rec.type_blind("uptime")
    rec.key(b"\r")
    rec.clock.now += 2.5
    rec.r.tick()
    assert rec.lines == [("", True)]
    rec.r.received(b"uptime\r\n")  # too late: the decision stands
    assert rec.lines == [("", True)]


def test_typed_ahead_lines_wait_for_their_own_echo() -> None:
    rec = Rec()
    rec.type_echoed("sleep 1")
    rec.key(b"\r", AFTER_ENTER)
    rec.type_blind("date")
    rec.key(b"\r")  # bash reads it after sleep: readline echoes it after the next prompt
    rec.r.received(PROMPT + b"date" + AFTER_ENTER + b"Fri Nov 27\r\n" + PROMPT)
    assert rec.lines == [("sleep 1", False), ("date", False)]


def test_password_typed_before_its_prompt_is_withheld() -> None:
    """The tty echoes keys typed before sudo turns echo off: that echo starts a row, after no prompt."""
    rec = Rec()
    rec.type_echoed("sudo -i")
    rec.key(b"\r", AFTER_ENTER)
    rec.type_blind("hunter2")
    rec.key(b"\r")
    rec.r.received(b"hunter2\r\n[sudo] password for tech: ")
    rec.clock.now += 3
    rec.r.tick()
    assert rec.lines == [("sudo -i", False), ("", True)]


def test_flush_withholds_what_waits_and_drops_half_lines() -> None:
    rec = Rec()
    rec.type_blind("ls")
    rec.key(b"\r")
    rec.type_echoed("half")
    rec.r.flush()
    assert rec.lines == [("", True)]
    assert rec.r.waiting == 0


def test_full_screen_program_keys_are_withheld_as_such() -> None:
    rec = Rec()
    rec.type_echoed("vi notes")
    rec.key(b"\r", AFTER_ENTER + b"\x1b[?1049h\x1b[H\x1b[2J~\r\n~\r\n")
    rec.key(b":wq\r", b"\x1b[24;1H:wq")
    assert rec.lines == [("vi notes", False), ("", True)]
    assert rec.r.withheld_reason == "input not recorded: typed into a full-screen program"
    rec.r.received(b"\x1b[?1049l" + PROMPT)
    rec.type_echoed("ls")
    rec.key(b"\r", AFTER_ENTER + PROMPT)
    assert rec.lines[2:] == [("ls", False)]


def test_empty_lines_are_not_reported() -> None:
    rec = Rec()
    rec.key(b"\r", AFTER_ENTER + PROMPT)
    rec.key(b"  \r", b"  " + AFTER_ENTER + PROMPT)
    assert rec.lines == []


@pytest.mark.parametrize("junk", [bytes(range(256)), b"\x1b[" * 500, b"\xff\xfe" * 100, b"\x1b]" + b"x" * 5000])
def test_garbage_never_crashes(junk: bytes) -> None:
    rec = Rec()
    rec.key(junk, junk)
    rec.key(b"\r", junk)
    rec.r.received(junk)
    rec.r.flush()
    assert all(withheld or isinstance(text, str) for text, withheld in rec.lines)


@pytest.mark.parametrize(("row", "secret"), [
    ("[sudo] password for tech: ", True), ("Enter passphrase for key '/root/.ssh/id_ed25519': ", True),
    ("root@10.0.0.5's password:", True), ("Enter PIN?", True), ("New password: ", True), ("Secret: ", True),
    ("root@sim:~# ", False), ("user@password-server:~$ ", False), ("pinhole login:", False), ("", False),
])
def test_secret_prompts(row: str, secret: bool) -> None:
    assert is_secret_prompt(row) is secret


def test_a_flood_of_output_is_cheap() -> None:
    """50 MiB of `cat` output in 64 KiB chunks, with a line waiting part of the time."""
    rec = Rec()
    chunk = (b"x" * 79 + b"\n") * (65536 // 80)
    started = time.perf_counter()
    for n in range(50 * 1024 * 1024 // len(chunk)):
        if n == 10:
            rec.type_blind("q")
            rec.key(b"\r")
        rec.r.received(chunk)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s for 50 MiB"
    assert rec.lines == [("", True)]


@pytest.mark.asyncio
async def test_the_loop_withholds_by_itself() -> None:
    lines: list[tuple[str, bool]] = []
    recorder = ConsoleInputRecorder(lambda t, w: lines.append((t, w)), hold=0.05)
    recorder.received(PROMPT)
    recorder.typed(b"secret\r")
    await asyncio.sleep(0.3)
    assert lines == [("", True)]
    recorder.flush()


# -- a live bash on a pty (socat) ------------------------------------------------------------------


class Pty:
    """The console side of the socat pty: keys in, output to the recorder (as a terminal widget would)."""

    def __init__(self, path: Path, recorder: ConsoleInputRecorder) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.recorder = recorder
        self.seen = bytearray()

    def pump(self, until: bytes | None = None, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and until in self.seen:
                return
            ready, _, _ = select.select([self.fd], [], [], 0.02)
            if ready:
                data = os.read(self.fd, 65536)
                self.seen += data
                self.recorder.received(data)
            elif until is None:
                return
        if until is not None:
            raise AssertionError(f"{until!r} never came: {bytes(self.seen[-300:])!r}")

    def type(self, text: str, until: bytes | None = None) -> None:
        self.seen.clear()
        for ch in text.encode():  # a person types one key at a time
            os.write(self.fd, bytes([ch]))
            self.recorder.typed(bytes([ch]))
            self.pump()
        if until is not None:
            self.pump(until)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def live(socat_shell: SocatShell) -> Iterator[tuple[Pty, list[tuple[str, bool]]]]:
    lines: list[tuple[str, bool]] = []
    pty = Pty(socat_shell.path, ConsoleInputRecorder(lambda t, w: lines.append((t, w))))
    pty.type("\r", until=b"# ")
    lines.clear()
    yield pty, lines
    pty.close()


@pytest.mark.peer("socat")
def test_live_bash_read_s(live: tuple[Pty, list[tuple[str, bool]]]) -> None:
    pty, lines = live
    pty.type("read -s -p 'Password: ' x\r", until=b"Password: ")
    pty.type("TopSecret-42\r", until=b"# ")
    pty.type("echo hi\r", until=b"# ")
    pty.type('echo "${#x}"\r', until=b"# ")
    assert b"12" in pty.seen  # the secret did reach bash: only the record left it out
    pty.type("\x1b[200~echo one\recho two\x1b[201~")
    pty.type("\r", until=b"two\r\n")
    pty.pump(b"# ")
    assert lines == [("read -s -p 'Password: ' x", False), ("", True), ("echo hi", False), ('echo "${#x}"', False),
                     ("echo one\necho two", False)]


@pytest.mark.peer("socat")
def test_live_getpass_with_an_innocent_prompt(live: tuple[Pty, list[tuple[str, bool]]]) -> None:
    """Echo off behind a prompt no word gives away: the missing echo alone withholds it."""
    pty, lines = live
    pty.type(f"{sys.executable} -c 'import getpass; getpass.getpass(\"Code> \")'\r", until=b"Code> ")
    pty.type("0000-1111\r", until=b"# ")
    assert lines[1:] == [("", True)]
    assert "getpass" in lines[0][0]
    assert not lines[0][1]


def test_a_line_longer_than_the_terminal_is_recorded() -> None:
    """readline wraps at the margin by writing the character, a space and a CR (the terminal's autowrap)."""
    rec = Rec()
    command = "echo " + "a" * 90
    for n, ch in enumerate(command.encode()):
        at_margin = (len("root@sim:~# ") + n + 1) % 80 == 0
        rec.key(bytes([ch]), bytes([ch]) + (b" \r" if at_margin else b""))
    rec.key(b"\r", AFTER_ENTER + b"a" * 90 + b"\r\n" + PROMPT)
    assert rec.lines == [(command, False)]


def test_audit_recorder_writes_lines_and_the_fact_of_withheld_ones(tmp_path: Path) -> None:
    from siteline.core.audit import AuditTrail
    from siteline.core.console_audit import audit_recorder
    from siteline.core.outbox.store import Outbox

    with Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        trail = AuditTrail(outbox, "tech-ana")
        recorder = audit_recorder(trail, site="north", device="gw-01")
        recorder.received(PROMPT)
        for ch in b"echo hi":
            recorder.typed(bytes([ch]))
            recorder.received(bytes([ch]))
        recorder.typed(b"\r")
        recorder.received(AFTER_ENTER + b"hi\r\n" + b"Password: ")
        recorder.typed(b"hunter2\r")
        recorder.received(b"\r\n" + PROMPT)
        recorder.flush()
        records = trail.records()
        assert [(r.action, r.detail_obj()) for r in reversed(records)] == [
            ("console-command", {"line": "echo hi"}),
            ("console-command", {"withheld": True, "note": "input not recorded: echo was off"}),
        ]
        assert not any(b"hunter2" in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert trail.verify().ok


def test_busybox_ash_and_its_cursor_position_request() -> None:
    """ash asks the terminal where the cursor is (ESC[6n) at every prompt; the answer is no key of the person's."""
    lines: list[tuple[str, bool]] = []
    rec = ConsoleInputRecorder(lambda t, w: lines.append((t, w)))
    ash_prompt = b"/ # \x1b[6n"
    rec.received(b"\r\n\r\nBusyBox v1.35.0 built-in shell (ash)\r\n\r\n" + ash_prompt)
    rec.typed(b"\x1b[24;5R")  # the terminal's answer
    for ch in b"ab":
        rec.typed(bytes([ch]))
        rec.received(bytes([ch]))
    rec.typed(b"\x7f")
    rec.received(b"\x08\x1b[J")
    rec.typed(b"c")
    rec.received(b"c")
    rec.typed(b"\r")
    rec.received(b"\r\nsh: ac: not found\r\n" + ash_prompt)
    rec.typed(b"\x1b[24;5R")
    for ch in b"read -s x":
        rec.typed(bytes([ch]))
        rec.received(bytes([ch]))
    rec.typed(b"\r")
    rec.received(b"\r\n")
    rec.typed(b"zz\r")
    rec.received(ash_prompt)
    assert lines == [("ac", False), ("read -s x", False), ("", True)]


def test_a_multi_line_bracketed_paste_is_one_entry() -> None:
    """bash 5.2 keeps a pasted block in the line (reverse video) and runs it on the next Enter, after
    redrawing it: the recorded line holds the rows as pasted."""
    rec = Rec()
    rec.key(b"\x1b[200~echo one\recho two\x1b[201~", b"\x1b[7mecho one\x1b[27m\r\n\r\x1b[7mecho two\x1b[27m")
    assert rec.lines == []
    rec.key(b"\r", b"\x1b[A\r" + PROMPT[8:] + b"echo one\r\n\recho two" + AFTER_ENTER + b"one\r\ntwo\r\n" + PROMPT)
    assert rec.lines == [("echo one\necho two", False)]


def test_a_pasted_block_echoed_without_a_redraw() -> None:
    rec = Rec()
    rec.key(b"\x1b[200~uptime\rdate\x1b[201~", b"uptime\r\ndate")
    rec.key(b"\r", b"\r\n up 1 day\r\nFri\r\n" + PROMPT)
    assert rec.lines == [("uptime\ndate", False)]


def test_a_pasted_block_without_its_echo_is_withheld() -> None:
    rec = Rec()
    rec.r.received(b"\r\nCode> ")
    rec.key(b"\x1b[200~abc\rdef\x1b[201~")
    rec.key(b"\r", b"\r\n")
    assert rec.lines == [("", True)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=64)), max_size=40), st.text(min_size=6, max_size=12,
       alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e)))
def test_any_interleaving_never_crashes_nor_leaks_a_blind_secret(steps: list[tuple[bool, bytes]], secret: str) -> None:
    """Whatever the device prints around it, a secret typed blind after a password prompt is never reported."""
    lines: list[tuple[str, bool]] = []
    rec = ConsoleInputRecorder(lambda t, w: lines.append((t, w)))
    rec.received(b"\r\n[sudo] password for tech: ")
    rec.typed(secret.encode() + b"\r")
    for is_typed, data in steps:
        (rec.typed if is_typed else rec.received)(data.replace(secret.encode(), b""))
    rec.flush()
    assert lines[0] == ("", True)
    assert all(secret not in text for text, _ in lines)


def test_terminal_replies_are_not_keys() -> None:
    rec = Rec()
    rec.key(b"\x1b]11;rgb:0000/0000/0000\x07\x1b[?1;2c\x1bP>|xterm\x1b\\")  # colour, attributes, version
    rec.type_echoed("uptime")
    rec.key(b"\r", AFTER_ENTER + b"up\r\n" + PROMPT)
    assert rec.lines == [("uptime", False)]


def test_alt_p_cannot_hide_a_command() -> None:
    """ESC P starts a terminal's reply string; a person's Alt-P followed by a command still records it."""
    rec = Rec()
    rec.key(b"\x1bP", b"")
    rec.type_echoed("reboot")
    rec.key(b"\r", AFTER_ENTER + PROMPT)
    assert rec.lines == [("<M-P>reboot (edited)", False)]


def test_audit_recorder_blanks_secrets_typed_into_a_command_line(tmp_path: Path) -> None:
    from siteline.core.audit import AuditTrail
    from siteline.core.console_audit import audit_recorder
    from siteline.core.outbox.store import Outbox

    lines = ["echo 'root:N3wPass-77' | chpasswd", "export MQTT_PASSWORD=hunter2-x9", "ls -p"]
    with Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        trail = AuditTrail(outbox, "tech-ana")
        recorder = audit_recorder(trail, site="north", device="gw-01")
        recorder.received(PROMPT)
        for line in lines:
            for ch in line.encode():
                recorder.typed(bytes([ch]))
                recorder.received(bytes([ch]))
            recorder.typed(b"\r")
            recorder.received(AFTER_ENTER + PROMPT)
        recorder.flush()
        details = [r.detail_obj() for r in reversed(trail.records())]
        assert details == [
            {"line": "echo 'root:***' | chpasswd", "redacted": True},
            {"line": "export MQTT_PASSWORD=***", "redacted": True},
            {"line": "ls -p"},
        ]
        assert trail.verify().ok
    for secret in (b"N3wPass-77", b"hunter2-x9"):
        assert not any(secret in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
