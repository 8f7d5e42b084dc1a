"""Reconnect on a device connected over a serial console (a real bash on a pty through socat).

A serial port is exclusive: Reconnect must close the link it holds before opening the port again,
or the new attempt only ever sees "port busy: another program holds it".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.peers import require_tool
from tests.peers.socat_shell import SocatShell

from siteline.core.backoff import Backoff
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.serial import SerialTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("socat")]


def _factory(target: Target, creds: Credentials) -> Transport:
    return SerialTransport(target, creds, wake_timeout=1.0)


async def _until(pred: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def session(socat_shell: SocatShell) -> AsyncIterator[DeviceSession]:
    made = DeviceSession(DeviceEntry("gw", socat_shell.url), _factory, Credentials(), PluginHost(),
                         backoff=Backoff(initial=0.05, maximum=0.2, jitter=0.1))
    try:
        yield made
    finally:
        await made.stop()


async def test_reconnect_reopens_the_serial_port_it_holds(session: DeviceSession) -> None:
    seen: list[ConnectionState] = []
    session.add_state_listener(seen.append)
    session.start()
    await _until(lambda: session.state.state is ConnState.UP)
    assert (await session.run("echo before")).stdout == "before\n"
    for _ in range(2):  # twice, the second before the first has finished: a double click
        session.reconnect()
        await asyncio.sleep(0.05)
    await _until(lambda: session.state.state is ConnState.UP and session.active_target is not None)
    assert (await session.run("echo after-$((6 * 7))")).stdout == "after-42\n"
    assert not [s for s in seen if "busy" in s.reason], [s.reason for s in seen]
    assert [s.state for s in seen[-2:]] == [ConnState.CONNECTING, ConnState.UP]


async def test_reconnect_with_a_console_open_gives_a_fresh_link(session: DeviceSession) -> None:
    session.start()
    await _until(lambda: session.state.state is ConnState.UP)
    shell = await session.open_shell(80, 24)
    ended: list[str] = []
    shell.add_closed_listener(ended.append)
    session.reconnect()  # the person asked for it: the console on the old link ends with it
    await _until(lambda: bool(ended))
    await _until(lambda: session.state.state is ConnState.UP)
    assert "busy" not in session.paths[0].reason
    again = await session.open_shell(80, 24)
    out = bytearray()
    again.add_output_listener(out.extend)
    again.write(b"echo con-$((6 * 7))\r")
    await _until(lambda: b"con-42" in out)
    await again.close()
    assert (await session.run("echo done")).stdout == "done\n"


async def test_console_left_in_a_program_waits_for_the_person(session: DeviceSession, tmp_path: Path) -> None:
    """Closed with vi still open: no retry wakes the console (its Enter would go into vi) until Reconnect."""
    require_tool("vi")
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1 localhost\n")
    session.start()
    await _until(lambda: session.state.state is ConnState.UP)
    shell = await session.open_shell(80, 24)
    shell.write(f"vi {f}\r".encode())
    await asyncio.sleep(0.6)  # vi draws the file
    await shell.close()
    await _until(lambda: session.state.state is ConnState.DOWN)
    assert "press Reconnect" in session.state.reason
    await asyncio.sleep(0.5)  # several backoff periods: nothing is retried
    assert session.state.state is ConnState.DOWN
    assert f.read_text() == "127.0.0.1 localhost\n"
