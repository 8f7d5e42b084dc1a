"""A session never sits on "connecting" forever: even a bug in a transport ends in a retry with a reason."""

from __future__ import annotations

import asyncio
import logging

import pytest

from siteline.core.backoff import Backoff
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Transport


@pytest.mark.asyncio
async def test_unexpected_error_while_connecting_is_retried_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    attempts = 0

    def buggy_factory(target: Target, creds: Credentials) -> Transport:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("bug in a transport")

    session = DeviceSession(
        DeviceEntry("dev", "ssh://h"), buggy_factory, Credentials(), PluginHost(), Backoff(0.01, maximum=0.02)
    )
    seen = []
    session.add_state_listener(seen.append)
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.session"):
        session.start()
        for _ in range(200):
            if attempts >= 3:
                break
            await asyncio.sleep(0.01)
        await session.stop()
    assert attempts >= 3
    retries = [s for s in seen if s.state is ConnState.RETRYING]
    assert retries
    assert retries[0].reason == "internal error: bug in a transport"
    assert session.state.state is ConnState.DOWN
