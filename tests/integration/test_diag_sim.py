"""`siteline diag` against a simulated device, over SSH (the real command in a subprocess) and over its serial
console: every area in the zip, planted secrets blanked, the outbox item when the bundle fits the data budget,
"not collected: why" for a command that times out, and a partial bundle when the link drops mid-way."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.peers.sim import PASSWORD, make_state, running_device, start_sim_process

from siteline.core.diag.archive import build_bundle
from siteline.core.diag.collect import AREAS, collect
from siteline.core.errors import CommandTimeout
from siteline.core.outbox.settings import ControlPlaneSettings, save_settings
from siteline.core.outbox.store import Outbox, month_of
from siteline.core.plugins import load_plugins
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result, Transport
from siteline.core.transports.factory import open_transport
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.timeout(90)
JOURNAL_SECRET = "journalMqttPw77"
PSK = "wifiPskPlanted99"
CONF_PASSWORD = "bridgePassPlanted5"
EXPECTED = {"manifest.json", "README.txt", "areas/system.json", "areas/modem.json", "areas/network.json",
            "areas/slots.json", "areas/posture.json", "logs/device.txt", "slots/boot-counters.txt",
            "config/files.txt", "siteline/siteline.log", "commands.txt"}


def plant(state: DeviceState) -> None:
    state.log(f"bridge connecting to mqtts://gw01:{JOURNAL_SECRET}@cp.example:8883", unit="mosquitto")
    etc = rootfs.rootfs(state.root) / "etc"
    (etc / "NetworkManager/system-connections").mkdir(parents=True, exist_ok=True)
    (etc / "NetworkManager/system-connections/site-wifi.nmconnection").write_text(
        f"[wifi]\nssid=site\n[wifi-security]\nkey-mgmt=wpa-psk\npsk={PSK}\n")
    (etc / "mosquitto").mkdir(exist_ok=True)
    (etc / "mosquitto/mosquitto.conf").write_text(
        f"connection cp\nremote_username gw01\nremote_password {CONF_PASSWORD}\n")


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def assert_clean(files: dict[str, bytes]) -> None:
    for name, data in files.items():
        for secret in (JOURNAL_SECRET, PSK, CONF_PASSWORD, PASSWORD):
            assert secret.encode() not in data, f"{secret} in {name}"


def diag(home: Path, target: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_HOME": str(home), "SITELINE_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "siteline", "diag", target, "-o", str(out), "--accept-new-host-key",
                           "--logs", "200", *extra], capture_output=True, text=True, timeout=80, env=env, check=False)


def test_siteline_diag_over_ssh_queues_when_it_fits(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev")
    plant(state)
    device = start_sim_process(tmp_path / "dev")
    home = tmp_path / "home"
    try:
        done = diag(home, device.ready["ssh"], tmp_path / "a.zip")
        assert done.returncode == 0, done.stderr
        again = diag(home, device.ready["ssh"], tmp_path / "a.zip")
        assert again.returncode == 2
        assert "already exists" in again.stderr
        save_settings(ControlPlaneSettings(url="mqtts://cp.example:8883", technician="jane",
                                           monthly_budget_bytes=64 * 1024), home / "config" / "control-plane.json")
        with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
            outbox.add_usage(60 * 1024)  # the month's budget is nearly spent
        tight = diag(home, device.ready["ssh"], tmp_path / "b.zip")
    finally:
        device.stop()
    assert "queued for the control plane" in done.stdout
    assert f"saved {tmp_path / 'a.zip'}" in done.stdout
    files = read_zip((tmp_path / "a.zip").read_bytes())
    assert set(files) >= EXPECTED
    assert_clean(files)
    manifest = json.loads(files["manifest.json"])
    assert manifest["partial"] is False
    assert all(manifest["areas"][area] == "collected" for area in AREAS), manifest["areas"]
    assert manifest["redactions"]["url-login"] >= 1
    assert manifest["redactions"]["value"] >= 2
    assert b"psk=***" in files["config/files.txt"]
    assert b"remote_password ***" in files["config/files.txt"]
    assert b"mqtts://gw01:***@cp.example" in files["logs/device.txt"]
    assert json.loads(files["areas/slots.json"])["booted"] == "A"
    assert b"BOOT_ORDER" in files["slots/boot-counters.txt"]
    assert tight.returncode == 0, tight.stderr
    assert "too big for the data budget" in tight.stdout
    with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
        kinds = [item.kind for item in outbox.pending(limit=50)]
        assert outbox.usage(month_of()) == 60 * 1024
    assert kinds.count("diagnostics") == 1  # the first bundle only; the second did not fit


async def _connected(target: str, tmp_path: Path) -> Transport:
    transport = open_transport(parse_target(target), Credentials(username="root", password=PASSWORD),
                               tmp_path / "known_hosts", accept_new_host_key=True, connect_timeout=20)
    await transport.connect()
    return transport


@pytest.mark.asyncio
async def test_over_the_serial_console_with_a_command_that_times_out(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev")
    plant(state)
    link = tmp_path / "ttySIM0"
    async with running_device(state, ssh=False, serial_link=link):
        transport = await _connected(f"serial://{link}?baud=115200", tmp_path)

        async def run(command: str, timeout: float) -> Result:
            if "head -c" in command:  # the config files' round trip: as if the device hung on it
                raise CommandTimeout("head did not answer within 30 s")
            return await transport.run(command, timeout)

        try:
            found = await collect(run, load_plugins(), target=f"serial://{link}", device="gw-01", log_lines=50)
        finally:
            await transport.close()
    assert found.partial == ""
    assert found.missing.keys() == {"config"}
    assert "timed out" in found.missing["config"]
    assert set(found.snapshots) == {"system", "modem", "network", "slots", "posture"}
    files = read_zip(build_bundle(found, site="test-site").data)
    assert_clean(files)
    assert b"mqtts://gw01:***@" in files["logs/device.txt"]
    assert json.loads(files["manifest.json"])["areas"]["config"].startswith("not collected: a command timed out")


@pytest.mark.asyncio
async def test_a_link_that_drops_midway_gives_a_partial_bundle(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev")
    seen: list[str] = []
    async with running_device(state) as device:
        transport = await _connected(f"ssh://root@127.0.0.1:{device.ssh_port}", tmp_path)

        async def run(command: str, timeout: float) -> Result:
            if len(seen) == 3:
                await transport.close()  # the link goes while the slots are read
            seen.append(command)
            return await transport.run(command, timeout)

        progress: list[tuple[str, Any]] = []
        try:
            found = await collect(run, load_plugins(), target="ssh://127.0.0.1", device="gw-01",
                                  progress=lambda area, what: progress.append((area, what)))
        finally:
            await transport.close()
    assert "the link dropped while collecting slots" in found.partial
    assert set(found.snapshots) == {"system", "modem", "network"}
    assert all("link dropped before it" in found.missing[area] for area in ("posture", "logs", "config"))
    assert len(seen) == 4  # nothing more was sent once the link was gone
    assert ("config", f"not collected: {found.missing['config']}") in progress
    manifest = json.loads(read_zip(build_bundle(found).data)["manifest.json"])
    assert manifest["partial"] is True
    assert manifest["commands"][-1]["error"].startswith("link lost")
