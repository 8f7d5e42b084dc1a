"""`--since` times as journalctl reads them, for the sources that cannot filter by time themselves.

Understood: "2026-11-27 12:00[:00]", "2026-11-27T12:00:00Z", "2026-11-27", "12:00[:00]" (today),
"today", "yesterday", "now", "@1795778711", "-5m" / "-2h" / "-1d", "5 min ago", "2 hours ago".
Times without a zone are the local time of the machine reading them, as journalctl does.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1, "secs": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600, "hr": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_RELATIVE = re.compile(r"^([+-])?\s*(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?$")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)\s+ago$")


def parse_since(text: str, now: float | None = None) -> float | None:
    """Epoch seconds for ``text``, or None when it is not a time this module understands."""
    now = time.time() if now is None else now
    value = text.strip().lower()
    if not value or len(value) > 64:
        return None
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    words = {"now": now, "today": midnight.timestamp(), "yesterday": (midnight - timedelta(days=1)).timestamp(),
             "tomorrow": (midnight + timedelta(days=1)).timestamp()}
    if value in words:
        return words[value]
    if value.startswith("@"):
        try:
            return float(value[1:])
        except ValueError:
            return None
    return _relative(value, now) or _absolute(text.strip(), midnight)


def _relative(value: str, now: float) -> float | None:
    ago = _AGO.match(value)
    rel = _RELATIVE.match(value)
    if ago is not None:
        amount, unit = ago.groups()
        sign = "-"
    elif rel is not None and rel.group(1):
        sign, amount, unit = rel.groups()
    else:
        return None
    seconds = _UNITS.get(unit)
    if seconds is None:
        return None
    delta = float(amount) * seconds
    return now - delta if sign == "-" else now + delta


def _absolute(text: str, midnight: datetime) -> float | None:
    if re.fullmatch(r"\d{1,2}:\d\d(:\d\d)?", text):
        parts = [int(p) for p in text.split(":")]
        if parts[0] > 23 or parts[1] > 59 or (len(parts) == 3 and parts[2] > 59):
            return None
        return midnight.timestamp() + parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) == 3 else 0)
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp.timestamp()  # naive: local time, as journalctl reads it
