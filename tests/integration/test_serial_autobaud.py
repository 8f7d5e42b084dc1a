"""Autobaud against the simulator's console, which garbles every byte when the client's rate is not its own."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials
from siteline.core.transports.serial import SerialTransport

pytestmark = pytest.mark.asyncio
ROOT = Credentials("root", PASSWORD)


def _auto(link: Path) -> SerialTransport:
    return SerialTransport(parse_target(f"serial://{link}?baud=auto"), ROOT, wake_timeout=1.0, login_timeout=5.0)


@pytest.mark.parametrize("device_baud", [57600, 9600, 115200, 460800])
async def test_finds_the_device_rate_and_logs_in(
    tmp_path: Path, device_baud: int, caplog: pytest.LogCaptureFixture
) -> None:
    state = make_state(tmp_path / "dev", serial_baud=device_baud)
    link = tmp_path / "ttyAUTO"
    async with running_device(state, ssh=False, serial_link=link):
        t = _auto(link)
        caplog.set_level(logging.INFO, logger="siteline.core.transports.serial")
        started = time.monotonic()
        await t.connect()
        try:
            assert time.monotonic() - started < 12
            assert t.detected_baud == device_baud
            assert t.state.state is ConnState.UP
            assert t.state.reason == f"{device_baud} baud (detected)"
            assert f"answers at {device_baud} baud" in caplog.text
            assert (await t.run("echo auto-$((6*7))")).stdout == "auto-42\n"
        finally:
            await t.close()


async def test_fixed_rate_still_means_that_rate(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev", serial_baud=57600)
    link = tmp_path / "ttyFIXED"
    async with running_device(state, ssh=False, serial_link=link):
        t = SerialTransport(parse_target(f"serial://{link}?baud=115200"), ROOT, wake_timeout=0.5)
        with pytest.raises(TransportError, match="115200 baud") as info:
            await t.connect()
        assert "57600" in info.value.hint
        assert t.detected_baud is None


async def test_garbage_at_every_rate_is_a_clear_error(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev", serial_baud=1200)  # a rate autobaud does not try
    link = tmp_path / "ttyODD"
    async with running_device(state, ssh=False, serial_link=link):
        t = _auto(link)
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"(?i)no readable response on \S+ at any common baud rate") as info:
            await t.connect()
        assert time.monotonic() - started <= 9
        assert "tried 115200, 57600, 38400, 19200, 9600, 230400, 460800, 921600" in info.value.message
        assert "cable" in info.value.hint
        assert "powered" in info.value.hint
        assert t.state.state is ConnState.DOWN


async def test_autobaud_set_in_code_and_reconnect_tries_the_found_rate_first(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev", serial_baud=19200)
    link = tmp_path / "ttyAGAIN"
    async with running_device(state, ssh=False, serial_link=link):
        t = SerialTransport(parse_target(f"serial://{link}"), ROOT, wake_timeout=1.0, login_timeout=5.0)
        t.autobaud = True
        await t.connect()
        try:
            assert t.detected_baud == 19200
            await t.close()
            started = time.monotonic()
            await t.connect()  # the found rate answers at once: no walk through the other rates
            assert time.monotonic() - started < 2.5
            assert t.state.reason == "19200 baud (detected)"
            assert (await t.run("echo again")).stdout == "again\n"
        finally:
            await t.close()
