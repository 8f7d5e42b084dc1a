"""A session never sits on "connecting" forever: even a bug in a transport ends in a retry with a reason."""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

import pytest

from siteline.core.backoff import Backoff
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import (
    ConnState,
    Credentials,
    Result,
    StatefulLink,
    Transport,
)


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


class _StubbornTransport(StatefulLink):
    """Swallows the first cancel inside connect(), as Python 3.11's wait_for can inside asyncssh."""

    live: ClassVar[set[_StubbornTransport]] = set()
    connecting = 0
    most_connecting = 0

    def __init__(self) -> None:
        super().__init__()

    async def connect(self) -> None:
        cls = _StubbornTransport
        cls.live.add(self)
        cls.connecting += 1
        cls.most_connecting = max(cls.most_connecting, cls.connecting)
        try:
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                await asyncio.sleep(0.2)  # the swallowed cancel: carry on as if nothing happened
            self._state.set(ConnState.UP)
        finally:
            cls.connecting -= 1

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        return Result(0, "")

    async def close(self) -> None:
        _StubbornTransport.live.discard(self)
        self._state.set(ConnState.DOWN, "closed")


@pytest.mark.asyncio
async def test_reconnects_during_a_connect_that_swallows_cancels_leave_one_loop() -> None:
    session = DeviceSession(
        DeviceEntry("dev", "ssh://h"), lambda t, c: _StubbornTransport(), Credentials(), PluginHost(),
        Backoff(0.01, maximum=0.02),
    )
    session.start()
    await asyncio.sleep(0.05)  # inside the first connect
    session.reconnect()
    session.reconnect()  # cancels the first reconnect before it could end the first loop
    for _ in range(200):
        if session.state.state is ConnState.UP:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.6)  # long enough for a surviving old loop to finish its connect
    assert session.state.state is ConnState.UP
    assert len(_StubbornTransport.live) == 1, "a second loop opened a transport nobody closes"
    assert _StubbornTransport.most_connecting == 1, "two loops connected at once"
    await session.stop()
    assert not _StubbornTransport.live
    assert session.state.state is ConnState.DOWN
