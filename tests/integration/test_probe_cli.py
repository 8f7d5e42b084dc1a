"""The modem, network and slots probes against a real simulated device, over SSH and over its serial console,
and through the real `siteline probe` command in a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.peers.sim import PASSWORD, running_device, start_sim_process

import siteline_modemmanager
import siteline_networkmanager
import siteline_slots
import siteline_system
from siteline.core.plugins import PluginHost
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Transport
from siteline.core.transports.factory import open_transport
from siteline.probe_cli import add_probe_arguments, probe_command
from siteline.simulator.state import DeviceState

PLUGINS = (siteline_system, siteline_modemmanager, siteline_networkmanager, siteline_slots)


def host() -> PluginHost:
    """The built-in plugins registered by hand, as the entry points will once pyproject.toml names them."""
    plugins = PluginHost()
    for module in PLUGINS:
        plugins.register(module, module.__name__)
    return plugins


def probe_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_probe_arguments(parser)
    return parser.parse_args(list(argv))


async def connected(target: str, tmp_path: Path) -> Transport:
    transport = open_transport(parse_target(target), Credentials(username="root", password=PASSWORD),
                               tmp_path / "known_hosts", accept_new_host_key=True, connect_timeout=20)
    await transport.connect()
    return transport


async def probe_json(transport: Transport, target: str, plugins: PluginHost, capsys: pytest.CaptureFixture[str],
                     *argv: str) -> dict[str, Any]:
    assert await probe_command(probe_args("--json", *argv), target, transport.run, host=plugins) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


@pytest.mark.asyncio
async def test_probe_over_ssh_then_failover(sim_state: DeviceState, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    async with running_device(sim_state) as device:
        target = f"ssh://root@127.0.0.1:{device.ssh_port}"
        transport = await connected(target, tmp_path)
        plugins = host()
        try:
            doc = await probe_json(transport, target, plugins, capsys)
            assert all(doc[area]["available"] for area in ("system", "modem", "network", "slots"))
            assert doc["posture"]["available"] is False  # no posture plugin registered here
            lte = doc["modem"]["signal"]["lte"]
            assert isinstance(lte["rsrp"], float)
            assert -140 <= lte["rsrp"] <= -44
            assert doc["modem"]["signal"]["nr"] is None
            assert doc["modem"]["operator_name"]
            assert doc["network"]["on_backup"] is False
            assert doc["slots"]["booted"] == "A"
            assert doc["slots"]["env"]["variables"]["BOOT_ORDER"].startswith("A")

            sim_state.fail_wired(True)
            after = await probe_json(transport, target, plugins, capsys, "--only", "network")
            assert set(after) == {"schema", "target", "probed_at", "network"}
            assert after["network"]["on_backup"] is True
            assert after["network"]["since"]
            assert "running on cellular backup" in after["network"]["summary"]
        finally:
            await transport.close()


@pytest.mark.asyncio
async def test_probe_over_the_serial_console(sim_state: DeviceState, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "ttySIM0"
    async with running_device(sim_state, ssh=False, serial_link=link):
        target = f"serial://{link}?baud=115200"
        transport = await connected(target, tmp_path)
        try:
            doc = await probe_json(transport, target, host(), capsys, "--only", "modem,network,slots")
        finally:
            await transport.close()
    assert doc["modem"]["available"] is True
    assert doc["modem"]["signal"]["lte"]["rsrq"] is not None
    assert doc["network"]["available"] is True
    assert doc["slots"]["booted"] == "A"


def test_siteline_probe_command_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "SITELINE_HOME": str(tmp_path / "home"), "SITELINE_PASSWORD": PASSWORD}
    usage = subprocess.run([sys.executable, "-m", "siteline", "probe", "--help"], capture_output=True, text=True,
                           timeout=60, env=env, check=False)
    if "--json" not in usage.stdout:
        pytest.skip("`siteline probe` is not wired to siteline.probe_cli yet (commands.py / cli.py)")
    device = start_sim_process(tmp_path / "dev")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "siteline", "probe", device.ready["ssh"], "--accept-new-host-key", "--json",
             "--only", "modem,network,slots"],
            capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, check=False,
        )
    finally:
        device.stop()
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "siteline-probe/1"
    assert isinstance(doc["modem"]["signal"]["lte"]["rsrp"], float)
    assert doc["network"]["available"] is True
    assert doc["slots"]["booted"] == "A"
