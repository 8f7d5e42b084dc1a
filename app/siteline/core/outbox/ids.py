"""UUIDv7 ids (RFC 9562): time-ordered, so the queue's id order follows creation order.

Python 3.11 has no ``uuid.uuid7``. Within one process the ids are strictly increasing: the 12 bits
after the millisecond timestamp count up inside a millisecond (RFC 9562 method 1), and a clock that
steps back reuses the last millisecond. Across processes the 62 random bits keep ids apart.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_COUNTER_MAX = 0xFFF
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _next_stamp(now_ms: int) -> tuple[int, int]:
    global _last_ms, _counter
    with _lock:
        if now_ms > _last_ms:
            _last_ms = now_ms
            # Start low in the counter range (random, so two ids of one ms in two processes rarely share
            # it) and leave room to count up inside the millisecond.
            _counter = int.from_bytes(os.urandom(2), "big") & 0x1FF
        else:
            _counter += 1
            if _counter > _COUNTER_MAX:  # more than ~3,500 ids in one ms: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        return _last_ms, _counter


def uuid7(now: float | None = None) -> str:
    """A new UUIDv7 as text (``0193...-7xxx-...``); ``now`` (UNIX seconds) is for tests."""
    ms, counter = _next_stamp(int((time.time() if now is None else now) * 1000))
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def is_uuid7(text: str) -> bool:
    """True for the canonical lower-case text of a version-7, RFC-variant UUID."""
    try:
        value = uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return str(value) == text and value.version == 7 and value.variant == uuid.RFC_4122


def uuid7_time(text: str) -> float:
    """The creation time (UNIX seconds, millisecond precision) inside a UUIDv7."""
    return (uuid.UUID(text).int >> 80) / 1000.0
