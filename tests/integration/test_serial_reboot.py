"""A device that reboots under a logged-in serial session: the transport notices, fails what runs, logs in again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.peers.sim import PASSWORD, running_device

from siteline.core.backoff import Backoff
from siteline.core.errors import TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.serial import SerialTransport
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio
ROOT = Credentials("root", PASSWORD)


def _transport(link: Path, query: str = "?baud=115200") -> SerialTransport:
    return SerialTransport(parse_target(f"serial://{link}{query}"), ROOT, wake_timeout=1.0, login_timeout=5.0)


def _downs(t: SerialTransport) -> tuple[list[ConnectionState], asyncio.Event]:
    seen: list[ConnectionState] = []
    down = asyncio.Event()

    def listen(state: ConnectionState) -> None:
        seen.append(state)
        if state.state is ConnState.DOWN:
            down.set()

    t.add_state_listener(listen)
    return seen, down


async def _reconnect(t: SerialTransport, attempts: int = 10) -> None:
    """What the session's keep-up loop does: connect again until the rebooted device answers."""
    for _ in range(attempts):
        try:
            await t.connect()
            return
        except TransportError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"no login after the reboot: {t.state.describe()}")


async def test_reboot_during_a_command_fails_it_clearly(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyRB"
    async with running_device(sim_state, ssh=False, serial_link=link) as device:
        t = _transport(link)
        await t.connect()
        try:
            seen, down = _downs(t)
            running = asyncio.create_task(t.run("sleep 20; echo never", timeout=15))
            await asyncio.sleep(0.3)  # the command is in flight
            rebooting = asyncio.create_task(device.reboot())
            with pytest.raises(TransportError, match="the device rebooted during the command") as info:
                await asyncio.wait_for(running, 10)
            assert "logs in again" in info.value.hint
            await asyncio.wait_for(down.wait(), 5)
            assert seen[-1].reason == "device rebooted"
            await asyncio.wait_for(rebooting, 10)
            await _reconnect(t)
            assert t.state.state is ConnState.UP
            assert device.boots >= 1
            assert (await t.run("echo back-$((1+1))")).stdout == "back-2\n"
        finally:
            await t.close()


async def test_reboot_command_then_session_comes_back(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyRB2"
    async with running_device(sim_state, ssh=False, serial_link=link) as device:
        t = _transport(link, "?baud=auto")
        await t.connect()
        try:
            _seen, down = _downs(t)
            boots = device.boots
            # `reboot` may return before the shutdown starts, or be cut off by it: either is honest.
            try:
                await t.run("reboot", timeout=10)
            except TransportError as exc:
                assert "rebooted" in str(exc)  # noqa: PT017 - either outcome is allowed, this one must say why
            await asyncio.wait_for(down.wait(), 10)
            assert t.state.state is ConnState.DOWN
            assert t.state.reason == "device rebooted"
            with pytest.raises(TransportError, match="Not connected"):
                await t.run("true")
            await _reconnect(t)
            assert device.boots == boots + 1
            assert t.state.reason == "115200 baud (detected)"
            assert (await t.run("cat /etc/hostname")).stdout == "gw-01\n"
        finally:
            await t.close()


async def test_output_that_mentions_boot_is_not_a_reboot(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyRB3"
    async with running_device(sim_state, ssh=False, serial_link=link):
        t = _transport(link)
        await t.connect()
        try:
            r = await t.run("echo 'ver=U-Boot 2022.04'; printf 'gw-01 login: '; echo; echo ok")
            assert r.stdout == "ver=U-Boot 2022.04\ngw-01 login: \nok\n"
            assert t.state.state is ConnState.UP
        finally:
            await t.close()


async def test_session_logs_in_again_after_a_reboot(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyRB4"
    async with running_device(sim_state, ssh=False, serial_link=link) as device:

        def factory(target: Target, creds: Credentials) -> Transport:
            return SerialTransport(target, creds, wake_timeout=1.0, login_timeout=5.0)

        session = DeviceSession(DeviceEntry("gw", f"serial://{link}?baud=auto"), factory, ROOT, PluginHost(),
                                backoff=Backoff(initial=0.05, maximum=0.2, jitter=0.1))
        seen: list[ConnectionState] = []
        session.add_state_listener(seen.append)
        session.start()
        try:
            await _until(lambda: session.state.state is ConnState.UP)
            await device.reboot()
            await _until(lambda: any(s.reason == "device rebooted" for s in seen))
            await _until(lambda: session.state.state is ConnState.UP and seen[-1].reason != "device rebooted")
            assert (await session.run("echo again")).stdout == "again\n"
        finally:
            await session.stop()


async def _until(pred: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_our_own_logout_is_not_a_reboot(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyRB5"
    async with running_device(sim_state, ssh=False, serial_link=link):
        t = _transport(link)
        await t.connect()
        seen, _down = _downs(t)
        await t.close()  # types 'exit': the getty's fresh login prompt follows
        await asyncio.sleep(0.2)
        assert [s.reason for s in seen] == ["closed"]
