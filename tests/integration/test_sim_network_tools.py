"""The simulator's nmcli and ip print what NetworkManager 1.42 and iproute2 6.1 print, through a real /bin/sh."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from siteline.api import Network, Result
from siteline.core.plugin_api import make_context
from siteline.simulator import dynamics
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.simulator.store import update_json
from siteline_networkmanager.parsers import (
    CONNECTIONS_COMMAND,
    DEVICE_SHOW_COMMAND,
    DEVICE_STATUS_COMMAND,
    ROUTE_COMMAND,
    network_from_outputs,
    parse_connections,
    parse_default_routes,
)
from siteline_networkmanager.probe import NetworkManagerProbe

DATA = Path(__file__).resolve().parents[1] / "data" / "nmcli"


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    return DeviceState.open(tmp_path / "dev", name="gw-net", password="pw")


def sh(device: DeviceState, command: str) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(device, command, timeout=20))
    return code, out.decode(), err.decode()


def ok(device: DeviceState, command: str) -> str:
    code, out, err = sh(device, command)
    assert code == 0, err
    return out


def test_inactive_profile_has_no_device(device: DeviceState) -> None:
    assert "Wired connection 1:802-3-ethernet:eth0" in ok(device, "nmcli -t -f NAME,TYPE,DEVICE connection show")
    device.fail_wired(True)
    terse = ok(device, "nmcli -t -f NAME,TYPE,DEVICE connection show").splitlines()
    assert "Wired connection 1:802-3-ethernet:" in terse
    assert terse[-1].startswith("Wired connection 1")  # nmcli lists the active profiles first
    table = ok(device, "nmcli connection show").splitlines()
    wired = next(line for line in table if line.startswith("Wired connection 1"))
    assert wired.split()[-1] == "--"  # the tabular form shows an empty value as "--"


def test_device_status_rejects_ip_iface_as_nmcli_1_42_does(device: DeviceState) -> None:
    code, out, err = sh(device, "nmcli -t -f DEVICE,IP-IFACE device status")
    assert (code, out) == (2, "")
    assert err.startswith("Error: 'device status': invalid field 'IP-IFACE'; allowed fields: DEVICE,TYPE,STATE,")
    assert "GENERAL.IP-IFACE:wwan0" in ok(device, DEVICE_SHOW_COMMAND)  # where IP-IFACE really lives
    full = ok(device, "nmcli -t -f DEVICE,IP4-CONNECTIVITY,CON-UUID device status").splitlines()
    assert full[0].startswith("eth0:full:3f1c2a4e-")


def test_connection_show_takes_active_state_timestamp(device: DeviceState) -> None:
    fields = ("NAME", "UUID", "TYPE", "DEVICE", "AUTOCONNECT", "AUTOCONNECT-PRIORITY", "ACTIVE", "STATE", "TIMESTAMP")
    text = ok(device, "nmcli -t -f " + ",".join(fields) + " connection show")
    rows = {line.split(":")[0]: line.split(":") for line in text.splitlines()}
    assert rows["cellular"][6:8] == ["yes", "activated"]
    assert int(rows["cellular"][8]) > 1_700_000_000
    device.fail_wired(True)
    text = ok(device, "nmcli -t -f " + ",".join(fields) + " connection show")
    connections, problems = parse_connections(text, fields)
    assert problems == ()
    wired = next(c for c in connections if c.name == "Wired connection 1")
    assert (wired.active, wired.device) == (False, None)
    assert "Wired connection 1:no:" in ok(device, "nmcli -t -f NAME,ACTIVE,STATE connection show")
    assert ok(device, "nmcli -t -f NAME connection show --active").split() == ["cellular", "lo"]
    code, _, err = sh(device, "nmcli -t -f NAME,BOGUS connection show")
    assert code == 2
    assert "invalid field 'BOGUS'" in err


def test_route_show_default_filters(device: DeviceState) -> None:
    defaults = ok(device, ROUTE_COMMAND).splitlines()
    assert [line.split()[:5] for line in defaults] == [
        ["default", "via", "192.168.10.1", "dev", "eth0"],
        ["default", "via", "10.64.12.202", "dev", "wwan0"],
    ]
    assert all(line.endswith(" ") for line in defaults)  # iproute2 ends each route with a space
    everything = ok(device, "ip route").splitlines()
    assert len(everything) > len(defaults)
    assert all(line.startswith("default") for line in defaults)
    assert ok(device, "ip route show default dev wwan0") == "default via 10.64.12.202 proto static metric 700 \n"
    code, _, err = sh(device, "ip route show nonsense")
    assert code == 1
    assert 'any valid prefix is expected rather than "nonsense"' in err


def test_ip_j_route_is_json_in_iproute2_shape(device: DeviceState) -> None:
    routes = json.loads(ok(device, "ip -j route"))
    assert {r["dst"] for r in routes} >= {"default", "192.168.10.0/24"}
    defaults = json.loads(ok(device, "ip -j route show default"))
    golden = json.loads((DATA / "ip-j-route-default-wired.json").read_text())
    assert [list(r) for r in defaults] == [list(r) for r in golden]  # same keys, same order
    assert [(r.dev, r.metric) for r in parse_default_routes(ok(device, "ip -j route show default"))] == [
        ("eth0", 100),
        ("wwan0", 700),
    ]
    device.fail_wired(True)
    assert [r["dev"] for r in json.loads(ok(device, "ip -json route show default"))] == ["wwan0"]
    (eth0,) = json.loads(ok(device, "ip -j link show eth0"))
    assert (eth0["ifname"], eth0["operstate"]) == ("eth0", "DOWN")


def test_probe_commands_read_the_simulator_before_and_after_failover(device: DeviceState) -> None:
    commands = (DEVICE_STATUS_COMMAND, CONNECTIONS_COMMAND, ROUTE_COMMAND, DEVICE_SHOW_COMMAND)
    net = network_from_outputs(*(ok(device, c) for c in commands))
    assert net.problems == ()
    assert net.on_backup is False
    device.fail_wired(True)
    net = network_from_outputs(*(ok(device, c) for c in commands))
    assert net.problems == ()
    assert net.on_backup is True
    assert net.primary is not None
    assert net.primary.active is False
    assert net.since is not None  # the wired profile's TIMESTAMP: when it went down
    assert net.summary == (
        f"running on cellular backup ('cellular' on cdc-wdm0) since {net.since:%H:%M}; wired eth0 is unavailable"
    )


# -- TIMESTAMP: when a profile was last activated, and when it went down ------------------------------------------

_REAL = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}\\:[0-9]{2}\\:[0-9]{2} [0-9]{4}")


def _stamps(device: DeviceState) -> dict[str, int]:
    text = ok(device, "nmcli -t -f NAME,TIMESTAMP connection show")
    return {name: int(stamp) for name, stamp in (line.split(":") for line in text.splitlines())}


def test_timestamp_fields_print_as_nmcli_1_42_does(device: DeviceState) -> None:
    lines = ok(device, "nmcli -t -f NAME,TIMESTAMP,TIMESTAMP-REAL connection show --active").splitlines()
    assert [line.split(":")[0] for line in lines] == ["Wired connection 1", "cellular", "lo"]
    for line in lines:
        _, stamp, real = line.split(":", 2)
        assert stamp.isdigit()
        assert _REAL.fullmatch(real), real  # strftime("%c"), its colons escaped in terse mode
    stamp = _stamps(device)["cellular"]
    assert ok(device, "nmcli -g connection.timestamp connection show cellular") == f"{stamp}\n"
    terse = ok(device, "nmcli -t -f connection.timestamp connection show id cellular")
    assert terse == f"connection.timestamp:{stamp}\n"
    table = ok(device, "nmcli -f connection.id,connection.timestamp connection show cellular").splitlines()
    assert table == [f"{'connection.id:':<40}cellular", f"{'connection.timestamp:':<40}{stamp}"]
    code, _, err = sh(device, "nmcli -g connection.timestamp connection show nope")
    assert (code, err.strip()) == (10, "Error: nope - no such connection profile.")


def test_wired_profile_is_stamped_when_it_goes_down_and_comes_back(device: DeviceState) -> None:
    booted = int(float(device.device()["booted_at"]))
    at_boot = _stamps(device)
    assert booted - 2 <= at_boot["cellular"] <= time.time()
    before = int(time.time())
    code, _, err = sh(device, "sim-scenario wired-fail")  # the trainer's lever, as a technician would meet it
    assert code == 0, err
    after = time.time()
    failed = _stamps(device)
    assert before <= failed["Wired connection 1"] <= after  # stamped when it stopped being activated
    assert failed["cellular"] == at_boot["cellular"]  # active all along: only the periodic refresh moves it
    time.sleep(1.1)
    back_at = int(time.time())
    device.fail_wired(False)
    assert back_at <= _stamps(device)["Wired connection 1"] <= time.time()  # activated again


def test_a_fresh_probe_says_since_when_after_the_failover(device: DeviceState) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    device.fail_wired(True)

    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(device, command, timeout=timeout)
        return Result(code, out.decode(), err.decode())

    ctx = make_context("gw-net", "sim:gw-net", run, logging.getLogger("test"))
    net = asyncio.run(NetworkManagerProbe().collect(ctx))  # the technician connects after the failover
    assert isinstance(net, Network)
    assert net.since is not None
    assert before <= net.since <= datetime.now(UTC)
    assert net.summary.startswith(f"running on cellular backup ('cellular' on cdc-wdm0) since {net.since:%H:%M}")


def test_a_recorded_change_time_wins_over_the_files_mtime(device: DeviceState) -> None:
    # dynamics.set_wired_failed may record when the link changed (wired_changed_at); the simulated nmcli uses it.
    update_json(device.root, device.root / dynamics.NETWORK_FILE,
                lambda net: net.update(wired_failed=True, wired_changed_at=1795788137.5))
    assert _stamps(device)["Wired connection 1"] == 1795788137
