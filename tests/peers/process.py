"""Ending exactly the processes a peer fixture started (never by name), children included.

Peers start with ``start_new_session=True``, so a peer and everything it forks share one process
group whose id is the peer's pid. ``stop_tree`` signals that group, and only while the peer is
not yet reaped: its pid (and so the group id) cannot belong to anyone else then. Children that
moved to a session of their own (sshd's per-connection processes, a setsid'ed shell) are held by
pidfds taken before anything is signalled, so a pid reused meanwhile is never hit either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Children, grandchildren ... of ``pid``, read from /proc (a snapshot: use pidfds to act on them)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        kids = [int(x) for x in text.split()]
        found.extend(kids)
        todo.extend(kids)
    return found


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": the ppid


def _pidfds(pid: int) -> list[int]:
    """pidfds of ``pid``'s descendants, each checked after opening to still have the parent it was seen with."""
    fds: list[int] = []
    parents = {pid}
    for child in descendants(pid):
        try:
            fd = os.pidfd_open(child)
        except OSError:
            continue
        if _parent_of(child) in parents:
            fds.append(fd)
            parents.add(child)
        else:
            os.close(fd)
    return fds


def _exited(pid: int) -> bool:
    """True when ``pid`` (our child) has exited, without reaping it: its pid stays reserved until we do."""
    with contextlib.suppress(ChildProcessError):
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_tree(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL what is left after ``timeout``, then reap ``proc``."""
    if proc.returncode is not None:
        return
    held = _pidfds(proc.pid)
    try:
        own_group = os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        own_group = False
    try:
        if own_group:
            _signal_group(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)  # a peer started without its own session: never touch our group
        deadline = time.monotonic() + timeout
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if own_group:
            _signal_group(proc.pid, signal.SIGKILL)  # the leader is at most a zombie: the group id is still ours
        elif not _exited(proc.pid):
            proc.kill()
        for fd in held:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        for fd in held:
            os.close(fd)
        proc.wait(timeout=timeout)
