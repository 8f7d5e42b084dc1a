"""Words for a device's paths (SSH via the bastion, the serial cable, MQTT): which one is in use and why.

The core session reports ``PathStatus`` items (target, role, state, reason, last_change); these
functions read them by attribute only, so they need no Qt and survive a field the core adds later.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from siteline.core.errors import TargetError
from siteline.core.paths import HELD, STANDBY, path_name
from siteline.core.targets import Target, parse_target

UP_STATES = {"up", "active", "in_use", "in use"}
LINE_REASON = 140  # the page's Path line stays two lines at most; the tooltip has the whole reason


def _parse(target: Any) -> Target | None:
    if isinstance(target, Target):
        return target
    try:
        return parse_target(str(target))
    except TargetError:
        return None


def transport_word(target: Any) -> str:
    """``ssh`` / ``serial`` / ``mqtt``: the short word the device tree shows ("up via serial")."""
    parsed = _parse(target)
    if parsed is None:
        return "?"
    return "mqtt" if parsed.is_mqtt else parsed.scheme


def describe_target(target: Any) -> str:
    """A path as a technician says it (the core's words): "SSH via bastion.example", "serial /dev/ttyUSB0"."""
    parsed = _parse(target)
    return path_name(parsed) if parsed is not None else str(target)


def state_word(path: Any) -> str:
    """The path's state as lower-case text, whether the core gives an enum or a string."""
    state = getattr(path, "state", "")
    return str(getattr(state, "value", state)).lower()


def is_up(path: Any) -> bool:
    return state_word(path) in UP_STATES


def clock(when: Any, now: float | None = None) -> str:
    """``14:02`` for a datetime, a wall-clock time or a monotonic time; "" when unknown."""
    if isinstance(when, dt.datetime):
        return when.astimezone().strftime("%H:%M")
    if not isinstance(when, int | float) or when <= 0:
        return ""
    wall = float(when)
    if wall < 1e9:  # time.monotonic(): turn it into a wall-clock time
        wall = time.time() - ((time.monotonic() if now is None else now) - wall)
    return time.strftime("%H:%M", time.localtime(wall))


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a) == str(b)


def active_path(paths: Sequence[Any], active_target: Any = None) -> tuple[int, Any] | None:
    """The index and status of the path in use: the session's active target, else the first one up."""
    for i, path in enumerate(paths):
        if _same(getattr(path, "target", None), active_target):
            return i, path
    return next(((i, p) for i, p in enumerate(paths) if is_up(p)), None)


def _why(path: Any, limit: int = 0) -> str:
    """ "down since 14:02: connection refused", "standby", "connecting"."""
    reason = str(getattr(path, "reason", "") or "")
    word = state_word(path)
    if reason == STANDBY or word == "standby":
        return "standby"
    if word == "connecting":
        return word
    if reason.startswith(HELD):  # it answers; we stay because a console holds the current link
        return reason
    since = clock(getattr(path, "last_change", None))
    text = f"down since {since}" if since else "down"
    if limit and len(reason) > limit:
        reason = reason[: limit - 1] + "…"
    return f"{text}: {reason}" if reason else text


def path_line(paths: Sequence[Any], active_target: Any = None) -> str:
    """The "Path" line of the device page.

    "SSH 10.0.0.5 via bastion ✓ (preferred)", or
    "serial /dev/ttyUSB0 — fallback; preferred SSH 10.0.0.5 down since 14:02: connection refused".
    """
    if not paths:
        return ""
    found = active_path(paths, active_target)
    if found is None:
        first = paths[0]
        return f"no path answers — preferred {describe_target(first.target)} {_why(first, LINE_REASON)}"
    index, path = found
    if index == 0:
        return f"{describe_target(path.target)} ✓ (preferred)"
    preferred = paths[0]
    words = f"{describe_target(path.target)} — fallback; preferred {describe_target(preferred.target)}"
    return f"{words} {_why(preferred, LINE_REASON)}"


def paths_tooltip(paths: Sequence[Any], active_target: Any = None) -> str:
    """Every path in order of preference, the one in use marked."""
    found = active_path(paths, active_target)
    in_use = found[0] if found else -1
    lines = []
    for i, path in enumerate(paths):
        role = "preferred" if i == 0 else "fallback"
        if i == in_use:
            status = "in use ✓"
        elif is_up(path):
            status = "up"
        else:
            status = _why(path)
        lines.append(f"{i + 1}. {describe_target(path.target)} ({role}) — {status}")
    return "\n".join(lines)
