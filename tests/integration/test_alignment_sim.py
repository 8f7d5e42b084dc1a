"""Antenna alignment against the simulated device over real SSH: 1 s polling on, samples, the old rate back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.peers.sim import PASSWORD, running_device

from siteline.core.plugin_api import DeviceContext, make_context
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport
from siteline.simulator.state import DeviceState
from siteline_modemmanager.alignment import AlignmentError, sample, start_alignment, stop_alignment

pytestmark = pytest.mark.asyncio
log = logging.getLogger(__name__)


@pytest_asyncio.fixture
async def ctx(sim_state: DeviceState, tmp_path: Path) -> AsyncIterator[DeviceContext]:
    async with running_device(sim_state) as device:
        url = f"ssh://root@127.0.0.1:{device.ssh_port}"
        transport = open_transport(parse_target(url), Credentials("root", PASSWORD), tmp_path / "known_hosts",
                                   accept_new_host_key=True)
        await asyncio.wait_for(transport.connect(), 20)
        try:
            yield make_context("gw-01", url, transport.run, log)
        finally:
            await transport.close()


async def _rate(ctx: DeviceContext) -> str:
    """What `mmcli --signal-get` (the human form, as a person types it) says about the polling rate."""
    result = await ctx.run("mmcli -m 0 --signal-get", 10)
    line = next(line for line in result.stdout.splitlines() if "refresh rate" in line)
    return line.split("refresh rate:", 1)[1].strip()


async def test_alignment_polls_every_second_and_puts_the_old_rate_back(ctx: DeviceContext) -> None:
    assert await _rate(ctx) == "0 seconds"  # a fresh modem: polling never set up
    previous = await start_alignment(ctx, 0)
    assert previous == 0
    assert await _rate(ctx) == "1 seconds"
    first = await sample(ctx, 0)
    assert first.refresh_rate == 1
    assert first.lte is not None
    assert first.lte.rsrp is not None
    assert -140 <= first.lte.rsrp <= -60
    assert first.lte.rsrq is not None
    assert first.lte.snr is not None
    await stop_alignment(ctx, 0, previous)
    assert await _rate(ctx) == "0 seconds"
    after = await sample(ctx, 0)
    assert after.lte is None  # polling off: every figure unknown, never 0


async def test_a_rate_set_before_comes_back(ctx: DeviceContext) -> None:
    assert (await ctx.run("mmcli -m 0 --signal-setup=10", 10)).exit_code == 0
    previous = await start_alignment(ctx, 0)
    assert previous == 10
    assert (await sample(ctx, 0)).refresh_rate == 1
    await stop_alignment(ctx, 0, previous)
    assert await _rate(ctx) == "10 seconds"


async def test_moving_the_antenna_away_shows_in_the_samples(ctx: DeviceContext) -> None:
    await start_alignment(ctx, 0)
    before = await sample(ctx, 0)
    # The trainer's lever: the serving cell fades as if the antenna were turned away from the mast.
    assert (await ctx.run("sim-scenario signal-degrade", 10)).exit_code == 0
    after = await sample(ctx, 0)
    assert before.lte is not None
    assert after.lte is not None
    assert before.lte.rsrp is not None
    assert after.lte.rsrp is not None
    assert after.lte.rsrp < before.lte.rsrp - 10
    await stop_alignment(ctx, 0, 0)


async def test_values_move_at_the_polling_rate(ctx: DeviceContext) -> None:
    await start_alignment(ctx, 0)
    seen = set()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        reading = (await sample(ctx, 0)).lte
        seen.add(reading.rsrp if reading else None)
        await asyncio.sleep(0.5)
    await stop_alignment(ctx, 0, 0)
    assert len(seen) > 1  # re-read every second, as real ModemManager does at rate 1


async def test_an_unknown_modem_is_an_error_in_words(ctx: DeviceContext) -> None:
    with pytest.raises(AlignmentError, match=r"mmcli -m 7 --signal-get` failed \(exit 1\): error: couldn't find"):
        await sample(ctx, 7)
    with pytest.raises(AlignmentError, match="refused to poll"):
        await start_alignment(ctx, 7)
    with pytest.raises(AlignmentError, match="not a modem index"):
        await sample(ctx, -1)


class _Printing:
    """A device whose mmcli prints ``text`` with ``code``: what older or broken modems do."""

    def __init__(self, text: str, code: int = 0) -> None:
        self.text, self.code, self.commands = text, code, []  # type: ignore[var-annotated]

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        return Result(self.code, self.text, "")


@pytest.mark.parametrize("text", ["", "garbage\x00\xff", '{"modem": {"signal": ', "error: modem not enabled"])
async def test_garbage_is_an_alignment_error_never_a_crash(text: str) -> None:
    device = _Printing(text)
    with pytest.raises(AlignmentError, match="could not read the signal"):
        await sample(make_context("gw", "ssh://gw", device.run, log), 0)


async def test_nothing_readable_before_means_off(tmp_path: Path) -> None:
    device = _Printing("")
    assert await start_alignment(make_context("gw", "ssh://gw", device.run, log), 0) == 0
    assert device.commands[-1] == "mmcli -m 0 --signal-setup=1"
    await stop_alignment(make_context("gw", "ssh://gw", device.run, log), 0, None)
    assert device.commands[-1] == "mmcli -m 0 --signal-setup=0"
