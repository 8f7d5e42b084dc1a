"""The OpenWrt plugin, loaded through its entry point, against a simulated OpenWrt router over SSH and serial.

The plugin is a separate distribution (plugins/siteline-openwrt, installed with pip -e): these tests take it the
way the application does, from `load_plugins()`, and check what it reads against the simulator's own state.
A Yocto gateway (the default family) must get nothing from it, after one command per probe.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from tests.peers.sim import PASSWORD, make_state, running_device, start_sim_process

from siteline.core.device.modem import Modem
from siteline.core.device.network import Network
from siteline.core.device.system import System
from siteline.core.logs.sources import Kind, LogQuery, choose, detect_command, parse_detect
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost, load_plugins
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result, Transport
from siteline.core.transports.factory import open_transport
from siteline.probe_cli import add_probe_arguments, probe_command
from siteline.simulator import dynamics
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json

log = logging.getLogger(__name__)
pytestmark = pytest.mark.peer("sim")


def openwrt_host() -> PluginHost:
    host = load_plugins()
    info = {p.name: p for p in host.plugins}
    if "openwrt" not in info:
        pytest.fail("the siteline-openwrt plugin is not installed: "
                    "pip install -e plugins/siteline-openwrt --no-deps (run.sh setup does it)")
    assert info["openwrt"].enabled
    assert info["openwrt"].version == "0.1.0"
    assert "siteline-openwrt" in info["openwrt"].source  # came through its own distribution's entry point
    return host


def make_router(root: Path) -> DeviceState:
    make_state(root, name="rtr-07")
    state = DeviceState.open(root, family="openwrt")
    # Hold the signal walk still (its next step is an hour away) so the probe and the state agree exactly.
    update_json(state.root, state.root / dynamics.MODEM_FILE, lambda m: m.__setitem__("last_step_at",
                                                                                       time.time() + 3600))
    return state


async def connect(target: str, tmp_path: Path) -> Transport:
    transport = open_transport(parse_target(target), Credentials(username="root", password=PASSWORD),
                               tmp_path / "known_hosts", accept_new_host_key=True, connect_timeout=20)
    await transport.connect()
    return transport


async def openwrt_readings(host: PluginHost, target: str, transport: Transport) -> dict[str, Any]:
    ctx = make_context("rtr", target, transport.run, log)
    return {entry.item.kind: await host.run_probe(entry, ctx) for entry in host.probes() if entry.plugin == "openwrt"}


def check_agrees(found: dict[str, Any], state: DeviceState, wired: bool = True) -> None:
    system, report, network = found["system"], found["modem"], found["network"]
    assert isinstance(system, System), system
    assert system.hostname == state.hostname()
    assert system.os.name == "OpenWrt"
    assert system.os.extra["MODEL"] == "GL.iNet GL-X3000"
    assert system.uptime_seconds is not None
    assert abs(system.uptime_seconds - state.uptime()) < 30
    modem_doc = read_json(state.root / dynamics.MODEM_FILE)
    assert isinstance(report.modem, Modem), report
    assert report.modem.problems == ()
    assert report.device == "/dev/cdc-wdm0"
    assert (report.modem.operator_code, report.modem.registration, report.modem.imei) == \
        ("23415", "home", modem_doc["imei"])
    assert report.signal.lte.rsrp == round(float(modem_doc["rsrp"]))
    assert report.signal.lte.snr == pytest.approx(round(float(modem_doc["snr"]) * 10) / 10)
    assert isinstance(network, Network), network
    assert network.active_iface == ("eth0" if wired else "wwan0")
    assert network.on_backup is (not wired)


@pytest.mark.asyncio
async def test_router_over_ssh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = openwrt_host()
    state = make_router(tmp_path / "router")
    async with running_device(state) as device:
        target = f"ssh://root@127.0.0.1:{device.ssh_port}"
        transport = await connect(target, tmp_path)
        try:
            check_agrees(await openwrt_readings(host, target, transport), state)
            state.fail_wired(True)  # what `sim-scenario wired-fail` does: netifd's wan goes down
            failed = await openwrt_readings(host, target, transport)
            parser = argparse.ArgumentParser()
            add_probe_arguments(parser)
            args = parser.parse_args(["--json", "--only", "modem,network"])
            assert await probe_command(args, target, transport.run, host=host) == 0
        finally:
            await transport.close()
    check_agrees(failed, state, wired=False)
    assert "running on cellular backup ('wwan' on wwan0)" in failed["network"].summary
    # `siteline probe`: ModemManager and NetworkManager are absent, the OpenWrt probes answer those areas.
    doc = json.loads(capsys.readouterr().out)
    assert doc["modem"]["available"] is True
    assert doc["modem"]["operator_code"] == "23415"
    assert doc["network"]["active_iface"] == "wwan0"
    assert host.failures == []


@pytest.mark.asyncio
async def test_router_over_the_serial_console(tmp_path: Path) -> None:
    host = openwrt_host()
    state = make_router(tmp_path / "router")
    link = tmp_path / "ttySIM0"
    async with running_device(state, ssh=False, serial_link=link):
        target = f"serial://{link}?baud=115200"
        transport = await connect(target, tmp_path)
        try:
            found = await openwrt_readings(host, target, transport)
        finally:
            await transport.close()
    check_agrees(found, state)
    assert host.failures == []


@pytest.mark.asyncio
async def test_yocto_gateway_gets_nothing_after_one_command_each(tmp_path: Path) -> None:
    host = openwrt_host()
    state = make_state(tmp_path / "gateway")
    calls: list[str] = []
    async with running_device(state) as device:
        target = f"ssh://root@127.0.0.1:{device.ssh_port}"
        transport = await connect(target, tmp_path)

        async def counted(command: str, timeout: float) -> Result:
            calls.append(command)
            return await transport.run(command, timeout)

        try:
            ctx = make_context("gw", target, counted, log)
            found = [await host.run_probe(e, ctx) for e in host.probes() if e.plugin == "openwrt"]
            again = [await host.run_probe(e, ctx) for e in host.probes() if e.plugin == "openwrt"]
        finally:
            await transport.close()
    assert found == again == [None, None, None]
    assert len(calls) == 1  # the System probe's "no ubus" is remembered: the other two, and the next round, skip
    assert host.failures == []


def test_sim_command_makes_an_openwrt_router(tmp_path: Path) -> None:
    """`siteline sim --family openwrt`: the router answers ubus and uqmi, and has no mmcli, nmcli or rauc."""
    device = start_sim_process(tmp_path / "router", "--family", "openwrt", "--ssh-port", "0")
    try:
        state = DeviceState.attach(tmp_path / "router")
        assert state.config.family == "openwrt"
        bin_dir = tmp_path / "router" / "bin"
        assert (bin_dir / "ubus").exists()
        assert (bin_dir / "uqmi").exists()
        assert (bin_dir / "logread").exists()
        assert not any((bin_dir / tool).exists() for tool in ("mmcli", "nmcli", "rauc", "journalctl"))
        assert "\nID=\"openwrt\"\n" in (tmp_path / "router/rootfs/etc/os-release").read_text(encoding="utf-8")
    finally:
        assert device.stop(signal.SIGINT) == 0


async def sh(state: DeviceState, command: str) -> tuple[int, str, str]:
    code, out, err = await run_command(state, command, timeout=20)
    return code, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_router_tools_in_the_device_shell(tmp_path: Path) -> None:
    """The router's own tools, their errors, and the tools it must not have (neither shims nor the host's)."""
    state = make_router(tmp_path / "router")
    code, out, _ = await sh(state, "for t in mmcli nmcli rauc journalctl systemctl fw_printenv; do "
                                   "command -v $t; done; command -v ubus uqmi uci logread sh")
    assert out.strip() == str(state.root / "bin/ubus")  # dash's command -v prints only the first name
    code, out, err = await sh(state, "ubus call system nope; echo rc=$?; ubus call network.interface.lan status")
    assert "Command failed: Method not found" in err
    assert "rc=3" in out
    assert json.loads(out.split("rc=3", 1)[1])["l3_device"] == "br-lan"
    code, out, err = await sh(state, "uqmi -d /dev/cdc-wdm7 --get-imei")
    assert code == 2
    assert "Failed to connect to service" in err
    code, out, _ = await sh(state, "uci -q get network.nothing; echo rc=$?; uci get network.wwan.proto")
    assert out.split() == ["rc=1", "qmi"]
    update_json(state.root, state.root / dynamics.MODEM_FILE, lambda m: m.__setitem__("enabled", False))
    code, out, _ = await sh(state, "uqmi -s -d /dev/cdc-wdm0 --get-signal-info --get-serving-system")
    assert [json.loads(part) for part in out.replace("}\n{", "}\n\0{").split("\0")] == \
        [{}, {"registration": "not_registered"}]
    code, out, _ = await sh(state, "command -v rauc >/dev/null || echo no-rauc; command -v ls >/dev/null && echo ls")
    assert out.split() == ["no-rauc", "ls"]


@pytest.mark.asyncio
async def test_router_logs_come_from_logread(tmp_path: Path) -> None:
    """No journald on the router: Siteline's own log sources choose BusyBox logread (no plugin needed)."""
    state = make_router(tmp_path / "router")
    query = LogQuery()
    _code, out, _err = await sh(state, detect_command(query))
    assert choose(parse_detect(out, query), query) is Kind.LOGREAD


def test_family_switch_and_back(tmp_path: Path) -> None:
    """--family on an existing device turns it into that family, and back; a wrong name says the choices."""
    root = tmp_path / "dev"
    make_state(root)
    gateway_release = (root / "rootfs/etc/os-release").read_text(encoding="utf-8")
    DeviceState.open(root, family="openwrt")
    assert (root / "bin/uqmi").exists()
    assert not (root / "bin/mmcli").exists()
    again = DeviceState.open(root, family="gateway")
    assert again.shell_env()["PATH"].split(":")[1:] == ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                                                         "/sbin", "/bin"]
    assert (root / "bin/mmcli").exists()
    assert not (root / "bin/uqmi").exists()
    assert (root / "rootfs/etc/os-release").read_text(encoding="utf-8") == gateway_release
    with pytest.raises(ValueError, match="gateway, openwrt"):
        DeviceState.open(root, family="teltonika")
