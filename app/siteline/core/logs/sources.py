"""Which log a device keeps, and the shell commands that read and follow it.

One round trip (:data:`DETECT_COMMAND`) says which tools the device has; :func:`choose` then picks,
in order, journald, BusyBox logread, the kernel's dmesg, or the file the person asked for. Commands are
plain POSIX sh (dash, BusyBox ash): the device may have nothing more.

Resuming a text source after a drop: the catch-up part of each command prints what the source holds
after the last line already seen (an awk pass over the buffer; the line is given in the environment, so
no quoting can break it); when that line is no longer there it prints :data:`GAP_MARK` first, then the
newest lines, and the follower says there may be a gap. journald resumes exactly with its cursor.
"""

from __future__ import annotations

import enum
import re
import shlex
from dataclasses import dataclass

from siteline.core.logs.record import Source

GAP_MARK = "\x01siteline-gap"  # printed by the catch-up awk when the last line seen has gone from the buffer
FILE_WINDOW = 5000  # lines of a file looked at when catching up (metered links: never the whole file)
_TOOLS = ("journalctl", "logread", "dmesg")


class Kind(enum.StrEnum):
    JOURNAL = "journald"
    LOGREAD = "logread"
    DMESG = "dmesg"
    FILE = "file"


SOURCE_OF = {Kind.JOURNAL: Source.JOURNAL, Kind.LOGREAD: Source.LOGREAD, Kind.DMESG: Source.DMESG,
             Kind.FILE: Source.SYSLOG}
TOOL_OF = {Kind.JOURNAL: "journalctl", Kind.LOGREAD: "logread", Kind.DMESG: "dmesg", Kind.FILE: "tail"}


@dataclass(frozen=True)
class LogQuery:
    """What to read. ``unit``/``priority``/``since`` go to journalctl as is; other sources are filtered by
    the caller (see filters.py). ``lines``: how many recent lines to show first."""

    unit: str | None = None
    priority: str | None = None
    since: str | None = None
    lines: int = 100
    file: str | None = None
    kind: Kind | None = None  # force a source instead of choosing


@dataclass(frozen=True)
class DeviceLogs:
    """What the detection round trip found."""

    tools: frozenset[str]
    file_readable: bool | None = None  # None: no file asked for
    boot_time: float | None = None  # epoch of the device's boot (its clock): dmesg's seconds become times


def detect_command(query: LogQuery) -> str:
    probe = "; ".join(f'command -v {t} >/dev/null 2>&1 && echo "have {t}"' for t in (*_TOOLS, "tail", "awk"))
    probe += '; echo "uptime $(cat /proc/uptime 2>/dev/null)"; echo "now $(date +%s 2>/dev/null)"'
    if query.file:
        # tail, not the shell's `test`: it is the tool that will read the file (and a shim can map it)
        probe += f"; tail -n 0 {shlex.quote(query.file)} >/dev/null 2>&1 && echo file-readable"
    return probe


def parse_detect(stdout: str, query: LogQuery) -> DeviceLogs:
    tools: set[str] = set()
    uptime = now = None
    readable = False
    for line in stdout.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "have" and rest:
            tools.add(rest.strip())
        elif word == "uptime":
            uptime = _number(rest.split()[0] if rest.split() else "")
        elif word == "now":
            now = _number(rest.strip())
        elif word == "file-readable":
            readable = True
    boot = now - uptime if now is not None and uptime is not None else None
    return DeviceLogs(frozenset(tools), readable if query.file else None, boot)


def _number(text: str) -> float | None:
    return float(text) if re.fullmatch(r"\d+(?:\.\d+)?", text) else None


def choose(found: DeviceLogs, query: LogQuery) -> Kind | None:
    """The source to read: the file when one is asked for, a forced kind when the device has its tool,
    else journald, logread, dmesg in that order. None: the device has none of them."""
    if query.file:
        return Kind.FILE if "tail" in found.tools else None
    order = [query.kind] if query.kind is not None else [Kind.JOURNAL, Kind.LOGREAD, Kind.DMESG]
    return next((kind for kind in order if TOOL_OF[kind] in found.tools), None)


def _journal(query: LogQuery, cursor: str | None, *, follow: bool) -> str:
    words = ["journalctl", "-o", "json", "--no-pager"]
    if follow:
        words.append("-f")
    if cursor:
        words.append(f"--after-cursor={cursor}")  # exactly the entries after the last one seen
    else:
        words += ["-n", str(max(0, query.lines))]
        if query.since:
            words.append(f"--since={query.since}")
    if query.unit:
        words += ["-u", query.unit]
    if query.priority:
        words += ["-p", query.priority]
    return shlex.join(words)


def _buffer(kind: Kind, query: LogQuery) -> str:
    """The command that prints the source's whole buffer (a file: its newest FILE_WINDOW lines)."""
    if kind is Kind.LOGREAD:
        return "logread"
    if kind is Kind.DMESG:
        return "dmesg -x"  # facility and level decoded: "kern  :err   : [  5.1] ..."
    return f"tail -n {FILE_WINDOW} {shlex.quote(query.file or '')}"


# Lines after the last one seen (its last occurrence), else the gap mark and the newest n lines.
_AWK = ("awk -v n={n} '{{ a[NR] = $0 }} $0 == ENVIRON[\"SITELINE_LAST\"] {{ m = NR }} END {{ "
        "if (m) s = m + 1; else {{ s = NR > n ? NR - n + 1 : 1; if (ENVIRON[\"SITELINE_LAST\"] != \"\") "
        "print \"\\001siteline-gap\" }} for (i = s; i <= NR; i++) print a[i] }}'")


def _catch_up(kind: Kind, query: LogQuery, last_line: str | None) -> str:
    last = shlex.quote(last_line or "")
    return f"{_buffer(kind, query)} | SITELINE_LAST={last} {_AWK.format(n=max(0, query.lines))}"


def _dump_and_follow(kind: Kind, query: LogQuery) -> str:
    """The buffer, then new lines as they come, from one process (so nothing falls between two)."""
    if kind is Kind.LOGREAD:
        return "logread -F"  # BusyBox: dump the buffer, then follow
    if kind is Kind.DMESG:
        return "dmesg -x -w"
    return f"tail -n {FILE_WINDOW} -F {shlex.quote(query.file or '')}"


# The stream: the dump's first c lines (c counted just before) go through the catch-up awk, read by the shell one
# by one so that not a byte more is taken from the pipe, then `cat` passes every later line on as it comes (awk
# itself would hold lines back: mawk reads a pipe in blocks). Lines logged between the count and the dump are
# among the later ones, so nothing falls between the two.
_FIRST_C = 'i=0; while [ "$i" -lt "$c" ] && IFS= read -r l; do printf \'%s\\n\' "$l"; i=$((i+1)); done'


def stream_command(kind: Kind, query: LogQuery, *, cursor: str | None = None, last_line: str | None = None) -> str:
    """The command for a live stream: what is there now (or after the resume point), then new lines.

    journald: ``exec`` puts journalctl in the shell's place, so a signal or hang-up reaches it directly."""
    if kind is Kind.JOURNAL:
        return "exec " + _journal(query, cursor, follow=True)
    last = shlex.quote(last_line or "")
    count = f"c=$({_buffer(kind, query)} | wc -l)"
    catch_up = f"SITELINE_LAST={last} {_AWK.format(n=max(0, query.lines))}"
    pipeline = f"{_dump_and_follow(kind, query)} | {{ {_FIRST_C} | {catch_up}; exec cat; }}"
    # A signal from the client (Siteline stops the stream with TERM) reaches only this shell: pass it to the
    # whole pipeline, which sshd started as a process group of its own. The pipeline runs in the background
    # because sh runs traps only between commands, and `wait` is one it can interrupt.
    return f"{count}; trap 'trap - HUP INT TERM; kill 0' HUP INT TERM; {pipeline} & wait"


def read_command(kind: Kind, query: LogQuery, *, cursor: str | None = None, last_line: str | None = None) -> str:
    """A one-shot read: the recent lines, or (polling) those after the resume point."""
    if kind is Kind.JOURNAL:
        return _journal(query, cursor, follow=False)
    return _catch_up(kind, query, last_line)


_CURSOR = re.compile(r'"__CURSOR"\s*:\s*"((?:[^"\\]|\\.)*)"')


def last_cursor(lines: list[str]) -> str | None:
    """The newest journald cursor in a batch of `journalctl -o json` lines (looked for from the end)."""
    for line in reversed(lines):
        found = _CURSOR.search(line)
        if found is not None:
            return found.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return None
