"""Exponential backoff with jitter: a fleet of laptops must not hammer a recovering device in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.2  # +/- this fraction
    attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (self.factor**self.attempt))
        self.attempt += 1
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self.attempt = 0
