"""The serial cable is pulled and plugged back: DOWN with a reason, then UP again on the same (or by-id) name."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.peers import require_tool
from tests.peers.socat_shell import SocatShell, start_socat_shell

from siteline.core.backoff import Backoff
from siteline.core.errors import TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.serial import SerialTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("socat")]


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[list[SocatShell]]:
    """socat consoles started by the test (plugging the cable in again starts another); all stopped after."""
    require_tool("socat")
    started: list[SocatShell] = []
    yield started
    for shell in started:
        shell.stop()


def _plug(cable: list[SocatShell], workdir: Path) -> SocatShell:
    shell = start_socat_shell(workdir)
    cable.append(shell)
    return shell


def _point(alias: Path, port: Path) -> None:
    """What udev does on plugging: the by-id name now leads to the adapter's (new) device node."""
    if alias.is_symlink():
        alias.unlink()
    alias.symlink_to(os.path.realpath(port))


def _factory(target: Target, creds: Credentials) -> Transport:
    return SerialTransport(target, creds, wake_timeout=1.0)


async def _until(pred: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_session_comes_back_when_the_cable_is_plugged_in_again(
    cable: list[SocatShell], tmp_path: Path
) -> None:
    first = _plug(cable, tmp_path / "usb")
    session = DeviceSession(DeviceEntry("gw", first.url), _factory, Credentials(), PluginHost(),
                            backoff=Backoff(initial=0.05, maximum=0.2, jitter=0.1))
    seen: list[ConnectionState] = []
    session.add_state_listener(seen.append)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.UP)
        assert (await session.run("echo first")).stdout == "first\n"
        first.stop()  # the cable is pulled: the device node (here socat's link) disappears
        pulled = f"the serial cable was pulled ({first.path} is gone)"
        await _until(lambda: session.state.state is ConnState.RETRYING)
        assert seen[-1].reason == pulled
        await asyncio.sleep(0.3)  # a few attempts while nothing is there
        assert session.state.state is ConnState.RETRYING
        assert "does not exist" in session.state.reason
        assert "cable plugged in" in session.state.reason
        second = _plug(cable, tmp_path / "usb")  # plugged back: the same path appears again
        assert second.path == first.path
        await _until(lambda: session.state.state is ConnState.UP)
        assert (await session.run("echo again-$((1+1))")).stdout == "again-2\n"
    finally:
        await session.stop()


async def test_a_command_running_when_the_cable_is_pulled_fails_clearly(
    cable: list[SocatShell], tmp_path: Path
) -> None:
    shell = _plug(cable, tmp_path / "usb")
    t = SerialTransport(parse_target(shell.url), Credentials(), wake_timeout=1.0)
    await t.connect()
    try:
        running = asyncio.create_task(t.run("sleep 20", timeout=15))
        await asyncio.sleep(0.2)
        shell.stop()
        with pytest.raises(TransportError, match="serial cable was pulled"):
            await asyncio.wait_for(running, 5)
        assert t.state.state is ConnState.DOWN
    finally:
        await t.close()


async def test_reconnect_finds_the_adapter_by_id_under_a_new_number(
    cable: list[SocatShell], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # udev's by-id link names the adapter by serial number; the ttyUSB number behind it may change.
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    alias = by_id / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"
    old = _plug(cable, tmp_path / "usb0")
    _point(alias, old.path)
    t = SerialTransport(parse_target(old.url), Credentials(), wake_timeout=1.0)
    t.by_id_dir = by_id
    await t.connect()
    try:
        old.stop()
        await _until(lambda: t.state.state is ConnState.DOWN)
        new = _plug(cable, tmp_path / "usb1")  # back as another ttyUSB: the old name stays missing
        _point(alias, new.path)
        caplog.set_level(logging.INFO, logger="siteline.core.transports.serial")
        await t.connect()
        assert f"{alias} is back as" in caplog.text
        assert (await t.run("echo by-id")).stdout == "by-id\n"
    finally:
        await t.close()
