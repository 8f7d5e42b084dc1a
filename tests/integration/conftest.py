"""Fixtures for integration tests that need a simulated device (functions live in tests/peers/sim.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.peers.pki import pki_fixture, tls_broker_fixture
from tests.peers.sim import make_state

from siteline.simulator.state import DeviceState


@pytest.fixture
def sim_state(tmp_path: Path) -> DeviceState:
    """A fresh device with millisecond timings, password ``tests.peers.sim.PASSWORD``."""
    return make_state(tmp_path / "device")


# The PKI is made once per module (openssl key generation is the slow part); a broker per test.
pki = pytest.fixture(scope="module", name="pki")(pki_fixture)
tls_broker = pytest.fixture(name="tls_broker")(tls_broker_fixture)
