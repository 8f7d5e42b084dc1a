"""What a serial console says, in pure logic (no I/O): escape stripping, prompt classification, command framing.

A console interleaves everything on one line: the shell's echo of what we typed, terminal
escape sequences (colours, window titles, bash's bracketed-paste switches), kernel messages
from printk, and the command's output. This module turns that stream into clean text and a
:class:`Result`, and never raises on any input.
"""

from __future__ import annotations

import codecs
import enum
import re
import secrets
import shlex
from dataclasses import dataclass

from siteline.core.errors import TransportError
from siteline.core.transports.base import Result

MAX_STRING = 4096  # an OSC/DCS string longer than this is garbage, not a title: stop swallowing text
# The longest command line Siteline types on a console, framing included. BusyBox ash (Buildroot's shell)
# cuts a typed line at 1023 characters (CONFIG_FEATURE_EDITING_MAX_LEN=1024); a canonical tty at 4095.
MAX_TYPED_LINE = 1000


class _S(enum.Enum):
    GROUND = 0
    ESC = 1
    ESC_INTER = 2
    CSI = 3
    STRING = 4  # OSC, DCS, SOS, PM, APC: until BEL (OSC) or ST
    STRING_ESC = 5


_STRING_OPENERS = {"]", "P", "X", "^", "_"}
_C1_STRING = {"\x9d", "\x90", "\x98", "\x9e", "\x9f"}
_KEEP_CONTROLS = {"\n", "\r", "\t"}
# A run of characters that _ground would keep one by one: copied in one slice (a console is mostly text).
_PLAIN_RUN = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")


class AnsiStripper:
    """An ECMA-48 parser that drops control sequences and keeps the text, fed in chunks of any size.

    Sequences split across chunks are handled because the state survives between calls.
    """

    def __init__(self) -> None:
        self._state = _S.GROUND
        self._string_len = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed_bytes(self, data: bytes) -> str:
        return self.feed(self._decoder.decode(data))

    def feed(self, text: str) -> str:
        out: list[str] = []
        i, end = 0, len(text)
        while i < end:
            if self._state is _S.GROUND:
                run = _PLAIN_RUN.match(text, i)
                if run is not None:
                    out.append(run.group())
                    i = run.end()
                    continue
            self._step(text[i], out)
            i += 1
        return "".join(out)

    def _step(self, ch: str, out: list[str]) -> None:
        state = self._state
        if state is _S.GROUND:
            self._ground(ch, out)
        elif state is _S.ESC:
            self._escape(ch, out)
        elif state is _S.ESC_INTER:
            if not "\x20" <= ch <= "\x2f":
                self._state = _S.GROUND  # the final byte (or a stray control) ends the sequence
        elif state is _S.CSI:
            if "\x40" <= ch <= "\x7e":
                self._state = _S.GROUND
            elif not "\x20" <= ch <= "\x3f":
                self._state = _S.GROUND  # malformed: drop the sequence, keep the character
                self._ground(ch, out)
        else:
            self._string(ch, out)

    def _ground(self, ch: str, out: list[str]) -> None:
        if ch == "\x1b":
            self._state = _S.ESC
        elif ch == "\x9b":
            self._state = _S.CSI
        elif ch in _C1_STRING:
            self._state, self._string_len = _S.STRING, 0
        elif ch in _KEEP_CONTROLS or (ch >= " " and ch != "\x7f" and not "\x80" <= ch <= "\x9f"):
            out.append(ch)
        # every other C0/C1 control (BEL, backspace, SI/SO ...) is dropped

    def _escape(self, ch: str, out: list[str]) -> None:
        if ch == "[":
            self._state = _S.CSI
        elif ch in _STRING_OPENERS:
            self._state, self._string_len = _S.STRING, 0
        elif "\x20" <= ch <= "\x2f":
            self._state = _S.ESC_INTER
        elif ch == "\x1b":
            self._state = _S.ESC
        elif "\x30" <= ch <= "\x7e":
            self._state = _S.GROUND
        else:
            self._state = _S.GROUND
            self._ground(ch, out)

    def _string(self, ch: str, out: list[str]) -> None:
        self._string_len += 1
        if self._state is _S.STRING_ESC:
            # ESC \ is the terminator; ESC anything-else ends the string and starts a new sequence
            self._state = _S.GROUND if ch == "\\" else _S.ESC
            if ch != "\\":
                self._escape(ch, out)
        elif ch in ("\x07", "\x9c"):
            self._state = _S.GROUND
        elif ch == "\x1b":
            self._state = _S.STRING_ESC
        elif self._string_len > MAX_STRING:
            self._state = _S.GROUND


def strip_ansi(text: str) -> str:
    return AnsiStripper().feed(text)


def normalize_lines(text: str) -> str:
    """CRLF to LF; a lone CR overwrites its line (as a terminal shows a progress bar's last state)."""
    lines = re.sub(r"\r+\n", "\n", text).split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ")


def strip_kernel_lines(text: str) -> str:
    """Drop printk lines (``[ 12.345678] usb 1-1: ...``) that the kernel wrote into the middle of output."""
    return "\n".join(line for line in text.split("\n") if not KERNEL_LINE.match(line))


def clean(raw: bytes | str) -> str:
    """Raw console bytes to plain text: escapes stripped, line ends normalized."""
    stripper = AnsiStripper()
    text = stripper.feed_bytes(raw) if isinstance(raw, bytes) else stripper.feed(raw)
    return normalize_lines(text)


# -- what the console shows ---------------------------------------------------------------------


class ConsoleState(enum.Enum):
    LOGIN = "login prompt"
    PASSWORD = "password prompt"
    SHELL = "shell prompt"
    LOGIN_INCORRECT = "login incorrect"
    BOOTLOADER = "boot loader prompt"
    GARBAGE = "unreadable bytes"
    SILENCE = "silence"
    UNKNOWN = "unrecognised text"


_PASSWORD = re.compile(r"(?i)\bpassword(?: for [^:]*)?:$")
_LOGIN = re.compile(r"(?i)\blogin:$")
_BOOTLOADER = re.compile(r"(?:^|\s)=>$|^(?:U-Boot|uboot)>$|^barebox@[^:]*:\S*$")
_SHELL = re.compile(r"[#$%]$")
_INCORRECT = re.compile(r"(?i)login incorrect")


def looks_like_garbage(raw: bytes) -> bool:
    """Mostly bytes that are neither text nor terminal control: the typical look of a wrong baud rate."""
    if len(raw) < 4:
        return False
    text = raw.decode("utf-8", errors="replace")
    allowed = {"\n", "\r", "\t", "\x1b", "\x07", "\x08"}
    bad = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in allowed) or "\x7f" <= ch <= "\x9f")
    return bad / max(1, len(text)) > 0.25


def last_line(text: str) -> str:
    """The line the cursor is on (a prompt has no newline after it), trailing spaces removed."""
    return text.rsplit("\n", 1)[-1].strip()


def classify(raw: bytes) -> ConsoleState:
    """What the console shows after a wake-up carriage return."""
    if not raw.strip(b"\r\n\x00 "):
        return ConsoleState.SILENCE
    if looks_like_garbage(raw):
        return ConsoleState.GARBAGE
    text = clean(raw)
    line = last_line(text)
    if _PASSWORD.search(line):
        return ConsoleState.PASSWORD
    if _LOGIN.search(line):
        return ConsoleState.LOGIN_INCORRECT if _INCORRECT.search(text) else ConsoleState.LOGIN
    if _INCORRECT.search(text) and not _SHELL.search(line):
        return ConsoleState.LOGIN_INCORRECT
    if _BOOTLOADER.search(line):
        return ConsoleState.BOOTLOADER
    if _SHELL.search(line):
        return ConsoleState.SHELL
    return ConsoleState.UNKNOWN


# -- command framing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandFrame:
    """One command on a shared console, bracketed by markers that only the shell's output can contain.

    The markers are printed with ``printf '%s_%s' __SL_BEG <nonce>``, so the shell's echo of the
    line we type (which shows ``__SL_BEG <nonce>`` with a space) never matches the output form
    ``__SL_BEG_<nonce>``. The command runs in a subshell with stdin from /dev/null: ``exit 7`` or
    ``cd`` behave as in a fresh SSH session and nothing can read the keystrokes meant for the shell.
    """

    command: str
    nonce: str

    @classmethod
    def new(cls, command: str) -> CommandFrame:
        try:
            command.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TransportError(
                "The command contains characters that are not valid text (lone surrogates).",
                "Retype the command; it was probably pasted from a broken source.",
            ) from exc
        return cls(command, secrets.token_hex(6))

    def line(self) -> str:
        """What to type, without the final carriage return."""
        n = self.nonce
        return (
            f"printf '%s_%s\\n' __SL_BEG {n}; (eval {shlex.quote(self.command)}) </dev/null; "
            f"printf '\\n%s_%s_%d\\n' __SL_END {n} $?"
        )

    @property
    def begin(self) -> str:
        return f"__SL_BEG_{self.nonce}"

    def parse(self, text: str) -> Result | None:
        """The command's Result once ``text`` (cleaned console text) holds both markers, else None."""
        # Not anchored to a line start: a line typed before the previous prompt arrived is run after
        # it, so the marker can follow that prompt on one line. The echo cannot match (it has a space).
        start = re.search(rf"{re.escape(self.begin)}\n", text)
        if start is None:
            return None
        end = re.compile(rf"\n__SL_END_{re.escape(self.nonce)}_(\d{{1,3}})\n").search(text, start.end())
        if end is None:
            return None
        # The END printf starts with its own newline, so the output is exactly what lies in between.
        return Result(int(end.group(1)), strip_kernel_lines(text[start.end() : end.start()]))


# -- autobaud and reboot signs --------------------------------------------------------------------

AUTOBAUD_RATES = (115200, 57600, 38400, 19200, 9600, 230400, 460800, 921600)  # most likely first
_ANSWERS = {ConsoleState.LOGIN, ConsoleState.PASSWORD, ConsoleState.SHELL, ConsoleState.BOOTLOADER,
            ConsoleState.LOGIN_INCORRECT}


def printable_share(raw: bytes) -> float:
    """The share of bytes that are printable ASCII or line/tab controls (terminal escapes count as text)."""
    if not raw:
        return 0.0
    good = sum(1 for b in raw if 0x20 <= b < 0x7F or b in (0x0A, 0x0D, 0x09, 0x1B))
    return good / len(raw)


def reads_as_text(raw: bytes) -> bool:
    """Whether an answer to a wake-up convinces us the baud rate is right.

    A prompt is proof; otherwise several visible characters, nearly all printable, will do (a
    wrong rate gives high-bit noise, or a stray byte or two of echo).
    """
    if classify(raw) in _ANSWERS:
        return True
    visible = sum(1 for b in raw if 0x21 <= b < 0x7F)
    return visible >= 4 and printable_share(raw) >= 0.9


# A line that only a (re)booting device prints: bootloader banner, kernel start, the reboot itself.
_BOOT_LINE = re.compile(
    r"^(?:\[\s*\d+\.\d+\]\s*)?(?:U-Boot(?: SPL)? \d{4}\.\d{2}|Starting kernel \.\.\.|reboot: Restarting system"
    r"|Booting Linux on physical CPU|Linux version \d)"
)
_FRESH_LOGIN = re.compile(r"^[\w.-]+ login:\s*$")
MAX_PARTIAL = 1024


class RebootWatch:
    """Notices, in console text fed chunk by chunk, that the device rebooted under a logged-in session.

    Boot lines count at any time. A fresh ``<host> login:`` prompt counts only while no command
    runs (``idle``): a command's own output may print such text, a getty never prints it mid-output
    without a reboot (or a logout, which we never cause while connected).
    """

    def __init__(self) -> None:
        self._partial = ""

    def feed(self, text: str, idle: bool) -> bool:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()[-MAX_PARTIAL:]
        if any(_BOOT_LINE.match(_visible(line)) for line in lines):
            return True
        return idle and bool(_FRESH_LOGIN.match(_visible(self._partial)))


def _visible(line: str) -> str:
    """What a terminal shows of a line: the part after the last carriage return, trailing CR/space gone."""
    return line.rstrip("\r").rsplit("\r", 1)[-1].strip()
