"""The AT exchange as one POSIX sh script: find the modem's AT port, talk to it, print each answer as a section.

One round trip over the device's shell (SSH, serial console, MQTT) carries every command: the script opens
the port read/write on fd 3, puts the tty in raw mode without echo (else the line discipline would echo the
modem's answers back to it), then for each command writes it with CR and reads lines until a final result
code (OK, ERROR, +CME ERROR), giving up after ``wait`` seconds. Only sh, stty and timeout are used
(coreutils or BusyBox, old BusyBox's ``timeout -t`` form included), so it runs on a Yocto or OpenWrt box.

The first command (ATE0: echo off, so the answers are shorter) doubles as the test that something on the
port speaks AT: a port that stays silent or prints garbage fails it, and the other commands are skipped
rather than each waiting out its own timeout. A port that cannot be opened (busy, permission) says so in
the shell's own words.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import serial

# The usual AT ports: Quectel/Sierra/SIMCom USB modems expose AT on interface 2 or 3 (ttyUSB2/3), cdc-acm
# modems on ttyACM0, some udev rules make /dev/modem or a cdc-wdm-at link.
CANDIDATES = ("/dev/ttyUSB2", "/dev/ttyUSB3", "/dev/cdc-wdm-at", "/dev/ttyACM0")
WAIT = 2.0  # seconds a modem gets to answer one command (27.007 queries answer in milliseconds)
FIRST_WAIT = 1.0  # the "is this an AT port" test per candidate: a silent port is given up sooner
NO_FINAL = "@@at-nofinal"  # printed when a command got no final result code within its time
NO_PORT = "@@at-noport"
OPEN_FAILED = "@@at-openfailed"
HAS_MM = "@@at-mmcli"
NO_TIMEOUT = "@@at-notimeout"
PORT = "@@at-port "  # the port settled on: "@@at-port /dev/ttyUSB2"
ANSWER = "@@at "  # each answer is preceded by a line "@@at <command>"
# r CMD WAIT: send CMD with CR on fd 3 and print the answer up to its final result code (or say it never
# came). The reader is a sh whose `read` takes one byte per read(2) from a tty, so it never eats the next
# answer. No single quotes anywhere: a serial console types the script inside single quotes, where each
# one would cost five characters of a 1000-character line.
_R = ('r(){ printf "$1\\r">&3;$T $2 sh -c "while read -r l;do echo \\"\\$l\\";case \\$l in '
      'OK*|ERROR*|+CM[ES]\\ ERROR*)exit;;esac;done;exit 1"<&3||{ echo ' + NO_FINAL + ';return 4;};}')


def chat_script(commands: Sequence[str], port: str | None = None, baud: int = 115200, wait: float = WAIT) -> str:
    """The chat as one sh script (one round trip): run it with ``ctx.run``, read it with :func:`split_answers`.

    It prints :data:`HAS_MM` and sends nothing when ``mmcli`` is on the device (ModemManager owns the modem
    then). Otherwise it prints the port it settled on, then for each command a line ``@@at <command>`` and
    the modem's answer. ``port`` forces one path; else the first of :data:`CANDIDATES` that exists and
    answers ATE0 is used. Kept short: a serial console types it as one line of at most 1000 characters.
    """
    paths = " ".join(_quoted(p) for p in ((port,) if port else CANDIDATES))
    first = seconds(wait if port else min(wait, FIRST_WAIT))
    quoted = " ".join(_quoted(c) for c in commands)
    script = (
        f"if command -v mmcli >/dev/null;then echo {HAS_MM};else "
        # BusyBox before 1.30 spells it `timeout -t SECS`; without any timeout the chat could hang: refuse.
        f"T=timeout;$T 1 true 2>/dev/null||T=\"$T -t\";if ! $T 1 true 2>/dev/null;then echo {NO_TIMEOUT};false;else "
        f"{_R};P=;for p in {paths};do [ -c \"$p\" ]||continue;"
        # `command exec`: a failed redirection must not end the whole shell (it would for a bare exec).
        f"if command exec 3<>\"$p\";then stty {int(baud)} raw -echo<&3;"
        f"if r ATE0 {first} >&2;then P=$p;break;fi;echo \"$p: no answer\">&2;exec 3<&-;"
        f"else echo \"{OPEN_FAILED} $p\">&2;fi;done;"
        # A command left without a final result code ends the chat: the modem stopped answering, and the
        # others would only wait out their time too.
        f"if [ \"$P\" ];then echo \"{PORT}$P\";for c in {quoted};do echo \"{ANSWER}$c\";"
        f"r \"$c\" {seconds(wait)}||[ $? != 4 ]||break;done;"
        f"else echo {NO_PORT};false;fi;fi;fi"
    )
    return script


def _quoted(word: str) -> str:
    """A word as sh reads it: bare when plain, else in double quotes (no quote, $, ` or backslash allowed)."""
    if any(c in word for c in "\"$`\\'\n\r"):
        raise ValueError(f"{word[:40]!r} cannot be sent: it has a quote, $, ` or backslash in it")
    return word if re.fullmatch(r"[\w/+=,.:-]+", word) else f'"{word}"'


def split_answers(text: str) -> tuple[str, dict[str, str]]:
    """The chat's output -> (the port's path, {command: its answer}); ("", {}) when no port was settled on."""
    port, answers, current = "", {}, None
    for line in text.splitlines():
        if line.startswith(PORT):
            port = line[len(PORT):].strip()
        elif line.startswith(ANSWER):
            current = line[len(ANSWER):].strip()
            answers[current] = ""
        elif current is not None:
            answers[current] += line + "\n"
    return port, answers


def seconds(value: float) -> str:
    """A timeout(1) duration: whole seconds for old BusyBox (which takes no fractions), at least 1."""
    return str(max(1, round(value)))


# -- the laptop's own serial cable on the modem's AT port -------------------------------------------------------

_FINAL_LINE = re.compile(rb"^(OK|ERROR|\+CM[ES] ERROR:.*)$", re.MULTILINE)


def _ask(port: serial.Serial, command: str, wait: float) -> tuple[str, bool]:
    """Send one command; (what came back, whether a final result code ended it within ``wait`` seconds)."""
    port.write(command.encode("ascii") + b"\r")
    seen = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(seen) < 16384:
        seen += port.read(port.in_waiting or 1)
        if _FINAL_LINE.search(seen.replace(b"\r", b"\n")):
            return seen.decode("latin-1"), True
    return seen.decode("latin-1"), False


def talk_direct(path: str, commands: Sequence[str], baud: int = 115200, wait: float = WAIT) -> tuple[str, str]:
    """The chat from this computer over its own serial port (blocking; run it in a thread).

    Returns (stdout, stderr) in the form the device-side script prints, so one reader serves both.
    """
    out, err = [], []
    try:
        port = serial.Serial(path, baud, timeout=0.05, write_timeout=wait, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        missing = isinstance(exc, FileNotFoundError) or "No such file" in str(exc)
        return NO_PORT, "" if missing else f"{OPEN_FAILED} {path}\n{exc}"
    with port:
        try:
            port.reset_input_buffer()
            heard, ok = _ask(port, "ATE0", wait)
            if not ok:
                return NO_PORT, f"{heard}\n{path}: no answer"
            out.append(PORT + path)
            for command in commands:
                heard, ok = _ask(port, command, wait)
                out += [ANSWER + command, heard + ("" if ok else "\n" + NO_FINAL)]
                if not ok:
                    break  # the modem stopped answering: the others would only wait out their time too
        except (serial.SerialException, OSError) as exc:
            err.append(f"{path}: {exc}")
    return "\n".join(out), "\n".join(err)
