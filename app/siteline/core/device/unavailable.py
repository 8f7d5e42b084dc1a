"""What a probe gives for an area the device could not report (kept in core: the session reads it too)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unavailable:
    """An area the device could not report: ``reason`` says why in words, ``raw`` keeps what it printed."""

    kind: str
    reason: str
    raw: str = ""
