"""Fresh-eyes review: the OpenWrt probes against the simulated OpenWrt router's own shell (no SSH needed).

The probe's ONE command per area runs in the router's device shell (siteline.simulator.shell.run_command), so
what it reads comes from the simulator's ubus/uqmi/uci, with the simulator's modem and link state behind them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from siteline_openwrt.probe import OpenWrtModemProbe, OpenWrtNetworkProbe
from tests.peers.sim import make_state

from siteline.api import Result, Unavailable
from siteline.core.plugin_api import make_context
from siteline.simulator import dynamics
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.simulator.store import update_json

pytestmark = pytest.mark.peer("sim")


def make_router(root: Path) -> DeviceState:
    make_state(root, name="rtr-rev")
    state = DeviceState.open(root, family="openwrt")
    update_json(state.root, state.root / dynamics.MODEM_FILE,
                lambda m: m.__setitem__("last_step_at", time.time() + 3600))
    return state


async def collect(probe: Any, state: DeviceState) -> tuple[Any, list[str]]:
    calls: list[str] = []

    async def run(cmd: str, timeout: float) -> Result:
        calls.append(cmd)
        code, out, err = await run_command(state, cmd, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))

    ctx = make_context("rtr", "sim://rtr", run, logging.getLogger("test"))
    return await probe.collect(ctx), calls


@pytest.mark.asyncio
async def test_disabled_modem_is_neither_registered_nor_carrying_traffic(tmp_path: Path) -> None:
    """The modem is switched off (no service): uqmi says not_registered and no signal. A technician expects the
    Modem panel to say so, and the Network panel not to show the cellular link as a working backup."""
    state = make_router(tmp_path / "router")
    update_json(state.root, state.root / dynamics.MODEM_FILE, lambda m: m.__setitem__("enabled", False))
    report, calls = await collect(OpenWrtModemProbe(), state)
    assert len(calls) == 1
    assert not isinstance(report, Unavailable), report
    assert report.modem.state not in ("registered", "connected")
    assert report.modem.registration == "idle"
    assert any("no service" in p for p in report.modem.problems), report.modem.problems
    network, _ = await collect(OpenWrtNetworkProbe(), state)
    assert network.backup is not None
    assert network.backup.name == "wwan"
    assert not network.backup.active, "netifd's wwan cannot be up while its modem has no service"


@pytest.mark.asyncio
async def test_router_without_uqmi_says_how_to_install_it(tmp_path: Path) -> None:
    """ubus is there but the uqmi package is not (a router whose modem was added later): one command, and the
    answer says what to install."""
    state = make_router(tmp_path / "router")
    (state.root / "bin" / "uqmi").unlink()
    report, calls = await collect(OpenWrtModemProbe(), state)
    assert len(calls) == 1
    assert isinstance(report, Unavailable)
    assert "opkg install uqmi" in report.reason


@pytest.mark.asyncio
async def test_wired_and_cellular_both_down_is_offline(tmp_path: Path) -> None:
    state = make_router(tmp_path / "router")
    state.fail_wired(True)
    update_json(state.root, state.root / dynamics.MODEM_FILE, lambda m: m.__setitem__("enabled", False))
    network, calls = await collect(OpenWrtNetworkProbe(), state)
    assert len(calls) == 1
    assert network.active_iface is None, network.summary
    assert "offline" in network.summary.lower()
