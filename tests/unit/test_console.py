"""The serial console's pure logic: escape stripping, prompt classification, command framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.errors import TransportError
from siteline.core.transports.console import (
    AUTOBAUD_RATES,
    AnsiStripper,
    CommandFrame,
    ConsoleState,
    RebootWatch,
    classify,
    clean,
    looks_like_garbage,
    normalize_lines,
    printable_share,
    reads_as_text,
    strip_ansi,
    strip_kernel_lines,
)

BASH_PROMPT = "\x1b[?2004h\x1b]0;root@gw1: ~\x07\x1b[01;32mroot@gw1\x1b[00m:\x1b[01;34m~\x1b[00m# "


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("\x1b[1;31mred\x1b[0m", "red"),
        ("\x1b[?2004hprompt\x1b[?2004l", "prompt"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]2;title\x1b\\after", "after"),  # OSC ended by ST
        ("\x1bP1$r0m\x1b\\x", "x"),  # DCS
        ("\x1b(Bplain", "plain"),  # charset designation: ESC + intermediate + final
        ("\x1b7saved\x1b8", "saved"),
        ("\x9b2Jc1", "c1"),  # 8-bit CSI
        ("a\x07b\x08c\x00d", "abcd"),  # BEL, backspace, NUL dropped
        ("tab\there\r\n", "tab\there\r\n"),
        ("\x1b[12;", ""),  # unfinished at the end
        ("\x1b[1\nX", "\nX"),  # a malformed CSI gives its text back
    ],
)
def test_strip(raw: str, text: str) -> None:
    assert strip_ansi(raw) == text


def test_sequences_split_across_chunks() -> None:
    s = AnsiStripper()
    parts = [s.feed(c) for c in ["ab\x1b", "[3", "1m", "cd\x1b]0;ti", "tle\x1b", "\\ef"]]
    assert "".join(parts) == "abcdef"
    # a UTF-8 character split between two reads
    s2 = AnsiStripper()
    assert s2.feed_bytes("é".encode()[:1]) + s2.feed_bytes("é".encode()[1:]) == "é"


def test_unterminated_osc_does_not_swallow_everything() -> None:
    assert strip_ansi("\x1b]0;" + "x" * 5000 + "visible").endswith("visible")


def test_normalize_lines() -> None:
    assert normalize_lines("a\r\nb\r\r\nc") == "a\nb\nc"
    assert normalize_lines("10%\r50%\r100%\n") == "100%\n"


def test_kernel_lines() -> None:
    text = "one\n[   12.345678] usb 1-1: new device\ntwo\n[12.3] x\n[not kernel] y\n"
    assert strip_kernel_lines(text) == "one\ntwo\n[not kernel] y\n"


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (b"", ConsoleState.SILENCE),
        (b"\r\n", ConsoleState.SILENCE),
        (b"\r\nPoky (Yocto Project Reference Distro) 4.0 gw1 ttyS0\r\n\r\ngw1 login: ", ConsoleState.LOGIN),
        (b"Password: ", ConsoleState.PASSWORD),
        (b"\r\nLogin incorrect\r\ngw1 login: ", ConsoleState.LOGIN_INCORRECT),
        (b"\r\nLogin incorrect\r\n", ConsoleState.LOGIN_INCORRECT),
        (BASH_PROMPT.encode(), ConsoleState.SHELL),
        (b"~ # ", ConsoleState.SHELL),
        (b"user@host:~$ ", ConsoleState.SHELL),
        (b"=> ", ConsoleState.BOOTLOADER),
        (b"U-Boot> ", ConsoleState.BOOTLOADER),
        (bytes(range(0x80, 0xC0)), ConsoleState.GARBAGE),
        (b"\xfe\x00\x8f\x13\xff\xf0\x01\x81\x92" * 4, ConsoleState.GARBAGE),
        (b"Starting kernel ...\r\n", ConsoleState.UNKNOWN),
    ],
)
def test_classify(raw: bytes, state: ConsoleState) -> None:
    assert classify(raw) is state


def test_utf8_prompt_is_not_garbage() -> None:
    assert not looks_like_garbage("➜ gerät ✓ # ".encode())
    assert classify("➜ gerät ✓ # ".encode()) is ConsoleState.SHELL


def _console_bytes(frame: CommandFrame, output: str, code: int, noise: str = "") -> bytes:
    """What a bash on a pty sends back for one framed command (echo, markers, output, next prompt)."""
    echo = frame.line().replace("\n", "\r\n") + "\r\n"
    body = output.replace("\n", "\r\n")
    return (
        BASH_PROMPT + echo + "\x1b[?2004l\r" + noise + frame.begin + "\r\n" + body
        + f"\r\n__SL_END_{frame.nonce}_{code}\r\n" + BASH_PROMPT
    ).encode()


@pytest.mark.parametrize(
    ("output", "code"),
    [("hello\n", 0), ("", 0), ("no newline", 1), ("a\n\nb\n\n", 255), ("__SL_END_fake_3\n", 7)],
)
def test_frame_round_trip(output: str, code: int) -> None:
    frame = CommandFrame.new("anything")
    result = frame.parse(clean(_console_bytes(frame, output, code)))
    assert result is not None
    assert (result.exit_code, result.stdout, result.stderr) == (code, output, "")


def test_frame_ignores_echo_and_other_nonces() -> None:
    frame = CommandFrame.new("echo hi")
    other = CommandFrame.new("echo hi")
    assert frame.nonce != other.nonce
    echo_only = clean((BASH_PROMPT + frame.line() + "\r\n").encode())
    assert frame.parse(echo_only) is None  # the echo never looks like the markers
    assert frame.parse(clean(_console_bytes(other, "x\n", 0))) is None
    incomplete = _console_bytes(frame, "x\n", 0)
    assert frame.parse(clean(incomplete[: incomplete.index(b"__SL_END_")])) is None


def test_frame_drops_kernel_lines_in_output() -> None:
    frame = CommandFrame.new("dmesg-ish")
    raw = _console_bytes(frame, "one\n[   12.345678] usb 1-1: new device\ntwo\n", 0, noise="[ 1.000000] early\r\n")
    result = frame.parse(clean(raw))
    assert result is not None
    assert result.stdout == "one\ntwo\n"


def test_frame_line_quotes_the_command() -> None:
    frame = CommandFrame("echo 'it''s' # x", "abc123")
    assert "(eval 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"' # x') </dev/null" in frame.line()


# -- fuzzing: garbage never raises and never hangs --------------------------------------------------

def test_frame_with_text_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(TransportError, match="not valid text"):
        CommandFrame.new("echo \ud800")


ESCAPE_PIECES = st.sampled_from(["\x1b", "[", "]", "?2004h", "\x07", "\x1b\\", "\x9b", "\x9d", "P", ";", "m", "0"])
CONSOLE_TEXT = st.lists(st.one_of(st.text(max_size=20), ESCAPE_PIECES), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_classify_and_clean_bytes(raw: bytes) -> None:
    assert isinstance(classify(raw), ConsoleState)
    text = clean(raw)
    assert "\x1b" not in text
    assert "\r" not in text


@settings(max_examples=300, deadline=None)
@given(CONSOLE_TEXT, st.integers(min_value=1, max_value=7))
def test_fuzz_stripper_chunking_does_not_matter(text: str, step: int) -> None:
    whole = strip_ansi(text)
    s = AnsiStripper()
    assert "".join(s.feed(text[i : i + step]) for i in range(0, len(text), step)) == whole
    assert "\x1b" not in whole


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
       st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=200),
       st.integers(min_value=0, max_value=255))
def test_fuzz_frame(command: str, output: str, code: int) -> None:
    frame = CommandFrame.new(command)
    assert isinstance(frame.line(), str)
    clean_output = strip_kernel_lines(clean(output))
    result = frame.parse(clean(_console_bytes(frame, clean_output, code)))
    assert result is not None
    assert (result.exit_code, result.stdout) == (code, clean_output)
    assert frame.parse(clean(output)) is None or frame.nonce in output


# -- autobaud scoring ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        (b"\r\ngw-01 login: ", True),
        (b"Password: ", True),
        (b"\x1b[01;32mroot@gw1\x1b[00m:~# ", True),
        (b"=> ", True),  # U-Boot's prompt
        (b"[   12.345678] usb 1-1: new device\r\n", True),  # kernel chatter is text too
        (b"", False),
        (b"\r\n", False),
        (b"\xe3", False),  # one garbled echo byte
        (bytes(range(0x80, 0xC0)), False),  # high-bit noise: the simulator's (and a UART's) wrong rate
        (b"\x00\xff\x00\xfe\x80", False),
        (b"ab\xff\xfe\xfd\xfc\xfb", False),
    ],
)
def test_reads_as_text(raw: bytes, readable: bool) -> None:
    assert reads_as_text(raw) is readable


def test_printable_share_and_rates() -> None:
    assert printable_share(b"") == 0.0
    assert printable_share(b"ok\r\n") == 1.0
    assert printable_share(b"a\x80") == 0.5
    assert AUTOBAUD_RATES[0] == 115200
    assert len(set(AUTOBAUD_RATES)) == 8


@given(st.binary(max_size=400))
def test_reads_as_text_never_raises(raw: bytes) -> None:
    assert reads_as_text(raw) in (True, False)


# -- reboot signs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\r\nU-Boot 2022.04-nwedge+g3f8a2c1 (Mar 05 2024 - 10:12:01 +0000)\r\n",
        "U-Boot SPL 2021.01 (Jan 01 2021)\r\n",
        "Starting kernel ...\r\n",
        "[    0.000000] Booting Linux on physical CPU 0x0\r\n",
        "[ 1234.567890] reboot: Restarting system\r\n",
        "reboot: Restarting system\n",
    ],
)
def test_boot_lines_mean_a_reboot(text: str) -> None:
    assert RebootWatch().feed(text, idle=False)


def test_boot_line_split_across_chunks() -> None:
    watch = RebootWatch()
    assert not watch.feed("output\r\nStarting ker", idle=False)
    assert watch.feed("nel ...\r\n", idle=False)


def test_fresh_login_counts_only_when_idle() -> None:
    assert RebootWatch().feed("\r\ngw-01 login: ", idle=True)
    assert not RebootWatch().feed("\r\ngw-01 login: ", idle=False)


@pytest.mark.parametrize(
    "text",
    [
        "ver=U-Boot 2022.04\n",  # fw_printenv output
        "Last login: Fri Nov 27 05:07:35 2026 on ttymxc0\r\n",
        "[   12.345678] usb 1-1: new device\r\n",
        "root@gw-01:~# ",
        "echo reboot: Restarting system\r\n",  # our own typing echoed
        "the login: is here",
    ],
)
def test_ordinary_text_is_not_a_reboot(text: str) -> None:
    assert not RebootWatch().feed(text, idle=True)


@given(st.lists(st.text(max_size=200), max_size=20), st.booleans())
def test_reboot_watch_never_raises(chunks: list[str], idle: bool) -> None:
    watch = RebootWatch()
    for chunk in chunks:
        assert watch.feed(chunk, idle) in (True, False)
