"""Fixtures for integration tests that need a simulated device (functions live in tests/peers/sim.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.peers.sim import make_state

from siteline.simulator.state import DeviceState


@pytest.fixture
def sim_state(tmp_path: Path) -> DeviceState:
    """A fresh device with millisecond timings, password ``tests.peers.sim.PASSWORD``."""
    return make_state(tmp_path / "device")
