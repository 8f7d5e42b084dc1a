"""The device's journal: an append-only JSON-lines file holding journald's own field names.

A power cut can leave a half-written last line; readers skip lines that do not parse, so the
journal stays readable. The file is bounded: past MAX_BYTES the newest half is kept (an atomic
rewrite), as journald rotates and vacuums old files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic
from siteline.simulator.store import locked

JOURNAL_FILE = "journal.jsonl"
MAX_BYTES = 1 << 20
SEQNUM_ID = "5f1c0de0a1b2c3d4e5f60718293a4b5c"  # journald's per-journal-file id (fixed per sim)

PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
Entry = dict[str, Any]


def path_of(root: Path) -> Path:
    return root / "journal" / JOURNAL_FILE


def last_seq(path: Path) -> int:
    """The newest entry's __SEQNUM (0 for an empty or missing journal)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            tail = fh.read()
    except OSError:
        return 0
    for line in reversed(tail.splitlines()):
        entry = _parse(line)
        if entry is not None:
            return int(entry.get("__SEQNUM", "0"))
    return 0


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _parse(line: bytes) -> Entry | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None  # a line torn by a power cut, or garbage
    return entry if isinstance(entry, dict) and "MESSAGE" in entry else None


def append(root: Path, *, message: str, unit: str, priority: int, hostname: str, boot_id: str,
           booted_at: float, pid: int | None = None, now: float | None = None) -> Entry:
    """Add one entry. ``unit`` "kernel" gives a kernel-transport entry, else a service's entry."""
    path = path_of(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    with locked(root, "journal"):
        seq = last_seq(path) + 1
        entry = _make_entry(seq, message, unit, priority, hostname, boot_id, booted_at, pid, now)
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if _ends_torn(fd):
                line = b"\n" + line  # end a line torn by a power cut, so this entry stays whole
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.stat().st_size > MAX_BYTES:
            _vacuum(path)
    return entry


def _make_entry(seq: int, message: str, unit: str, priority: int, hostname: str, boot_id: str,
                booted_at: float, pid: int | None, now: float) -> Entry:
    realtime = int(now * 1_000_000)
    monotonic = max(0, int((now - booted_at) * 1_000_000))
    priority = min(7, max(0, priority))
    entry: Entry = {
        "__CURSOR": f"s={SEQNUM_ID};i={seq:x};b={boot_id};m={monotonic:x};t={realtime:x};"
                    f"x={seq * 2654435761 % 2**64:x}",
        "__REALTIME_TIMESTAMP": str(realtime),
        "__MONOTONIC_TIMESTAMP": str(monotonic),
        "__SEQNUM": str(seq),
        "_BOOT_ID": boot_id,
        "PRIORITY": str(priority),
        "_HOSTNAME": hostname,
        "MESSAGE": message,
    }
    if unit == "kernel":
        entry.update({"_TRANSPORT": "kernel", "SYSLOG_IDENTIFIER": "kernel", "SYSLOG_FACILITY": "0"})
    else:
        service = unit if "." in unit else f"{unit}.service"
        ident = service.rsplit(".", 1)[0]
        entry.update({
            "_TRANSPORT": "journal",
            "SYSLOG_IDENTIFIER": ident,
            "SYSLOG_FACILITY": "3",
            "_PID": str(pid if pid is not None else 1 if ident == "systemd" else 300 + (sum(map(ord, ident)) % 700)),
            "_SYSTEMD_UNIT": "init.scope" if ident == "systemd" else service,
        })
    return entry


def _vacuum(path: Path) -> None:
    data = path.read_bytes()
    keep = data[len(data) // 2 :]
    keep = keep[keep.find(b"\n") + 1 :]  # start at a whole line
    write_atomic(path, keep, mode=0o600)


def read_from(path: Path, offset: int = 0) -> tuple[list[Entry], int]:
    """Entries from byte ``offset`` on, and the offset after the last whole line read."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    if len(data) == 0:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    entries = [e for e in (_parse(line) for line in data[:end].splitlines()) if e is not None]
    return entries, offset + end


def entries(root: Path) -> Iterator[Entry]:
    found, _ = read_from(path_of(root))
    yield from found


def parse_priority(text: str) -> tuple[int, int] | None:
    """journalctl -p: a number or name, or a range "err..warning"; returns (min, max) priorities."""
    low_text, sep, high_text = text.partition("..")
    values = []
    for part in (low_text, high_text) if sep else (high_text or low_text,):
        part = part.strip().lower()
        if part.isdigit() and int(part) < 8:
            values.append(int(part))
        elif part in PRIORITY_NAMES:
            values.append(PRIORITY_NAMES.index(part))
        else:
            return None
    return (values[0], values[1]) if sep else (0, values[0])


FOLLOW_POLL = 0.1  # seconds between looks at the journal file while following


def snapshot(root: Path) -> tuple[list[Entry], int, int]:
    """Every entry now, the byte offset after them and the newest __SEQNUM: where a follower starts."""
    found, offset = read_from(path_of(root))
    return found, offset, seq_of(found[-1]) if found else 0


def follow(root: Path, offset: int, last_seq: int, poll: float = FOLLOW_POLL) -> Iterator[list[Entry]]:
    """The entries appended after ``last_seq``, a list per look, forever: the follower (journalctl -f,
    logread -f, dmesg -w) ends when its process group is stopped, as the real tools do when the shell goes.

    Entries are followed by their __SEQNUM, not by the file's size: when the journal is vacuumed
    (rewritten as a new, smaller file) it is read again from its start and only newer entries are given.
    """
    path = path_of(root)
    inode = _inode(path)
    while True:
        time.sleep(poll)
        now_inode = _inode(path)
        if now_inode != inode:
            inode, offset = now_inode, 0
        new, offset = read_from(path, offset)
        fresh = [e for e in new if seq_of(e) > last_seq]
        if fresh:
            last_seq = seq_of(fresh[-1])
            yield fresh


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1


def seq_of(entry: Entry) -> int:
    try:
        return int(entry.get("__SEQNUM", "0"))
    except (TypeError, ValueError):
        return 0
