"""Wizard steps identify, names and mqtt against a simulated device, over its serial console and over SSH."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.provisioning.api import StepContext, StepRefusedError
from siteline.core.provisioning.device_steps import identify_step, mqtt_step, names_step, site_file
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import Profile, find_profile, load_profile
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.factory import open_transport
from siteline.simulator.rootfs import SERIAL_FILES, device_file, rootfs
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio

SITE = "north-7"


def _profile() -> Profile:
    return load_profile(find_profile("nwedge-gw-imx8mm"))


@pytest_asyncio.fixture(params=["serial", "ssh"])
async def linked(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[DeviceState, StepContext]]:
    state = make_state(tmp_path / "dev", name="gw-prov")
    tty = tmp_path / "ttyGW"
    serial = request.param == "serial"
    async with running_device(state, ssh=not serial, serial_link=tty if serial else None) as device:
        url = f"serial://{tty}?baud=115200" if serial else f"ssh://root@127.0.0.1:{device.ssh_port}"
        target = parse_target(url)
        link = TransportProvisionLink(target, Credentials("root", PASSWORD), lambda c: open_transport(
            target, c, tmp_path / "known_hosts", accept_new_host_key=True), known_hosts=tmp_path / "known_hosts")
        try:
            yield state, _context(link, _profile())
        finally:
            await link.close()


def _context(link: TransportProvisionLink, profile: Profile, *, dry_run: bool = False) -> StepContext:
    job = ProvisionJob.new(target="device", site=SITE, profile_name=profile.name, profile_sha256=profile.sha256,
                           tags=["pump-house", "lte"])
    return StepContext(job=job, profile=profile, link=link, step="identify", dry_run=dry_run)


async def _cat(ctx: StepContext, path: str) -> str:
    return (await ctx.read(f"cat {path} 2>/dev/null")).stdout


async def test_identify_reads_the_device_and_names_it(linked: tuple[DeviceState, StepContext]) -> None:
    state, ctx = linked
    outcome = await identify_step(ctx)
    facts = ctx.job.facts
    burnt = (state.root / "rootfs/proc/device-tree/serial-number").read_bytes()
    assert facts["serial"] == burnt.rstrip(b"\0").decode()
    assert facts["serial"].startswith("NWG")
    assert ctx.job.device == f"nw-{facts['serial'][-6:].lower()}"
    assert facts["mac"] == facts["macs"]["eth0"]
    assert "lo" not in facts["macs"]
    assert facts["compatible"] == "nwedge-gw-imx8mm"
    assert facts["os_release"]["ID"] == "nwedge"
    assert facts["imei"].isdigit()
    assert len(facts["imei"]) == 15
    assert facts["hostname"] == "gw-prov"
    assert not outcome.skipped
    assert outcome.evidence["device"] == ctx.job.device
    again = await identify_step(ctx)
    assert again.skipped
    assert ctx.job.data["identify"] == {"reprovision": False}


async def test_names_and_mqtt_set_once_then_skip(linked: tuple[DeviceState, StepContext]) -> None:
    state, ctx = linked
    await identify_step(ctx)
    first = await names_step(ctx)
    assert not first.skipped
    assert state.hostname() == ctx.job.device
    site = json.loads(await _cat(ctx, site_file(ctx.profile)))
    assert site == {"site": SITE, "tags": ["lte", "pump-house"], "device": ctx.job.device}
    assert (await names_step(ctx)).skipped

    written = await mqtt_step(ctx)
    assert not written.skipped
    path = ctx.profile.mqtt.config_path
    config = json.loads(await _cat(ctx, path))
    assert config["port"] == 8883
    assert config["client_id"] == f"{SITE}-{ctx.job.device}"
    assert config["topics"]["telemetry"] == f"devices/{SITE}/{ctx.job.device}/telemetry"
    assert config["tls"]["key"] == ctx.profile.certificate.key_path
    assert config["telemetry"]["interval"] == 60
    assert config["telemetry"]["plan"]["data_plan_mib"] == 100
    mode = (await ctx.read(f"stat -c %a {path}")).stdout.strip()
    assert mode == "644"
    assert "BEGIN" not in json.dumps(config)
    assert (await mqtt_step(ctx)).skipped
    # the device's writes landed in its own state directory, never on the host
    assert json.loads(device_file(state.root, path).read_text()) == config
    assert json.loads(device_file(state.root, site_file(ctx.profile)).read_text()) == site


async def test_a_provisioned_device_is_refused_unless_confirmed(linked: tuple[DeviceState, StepContext]) -> None:
    _state, ctx = linked
    marker = {"job": "0190aaaa-old-job", "profile": "nwedge-gw-imx8mm", "when": 1767225600, "technician": "ana"}
    await ctx.write_file(ctx.profile.identity.marker, json.dumps(marker).encode())
    with pytest.raises(StepRefusedError) as refused:
        await identify_step(ctx)
    message = str(refused.value)
    assert "provisioned already" in message
    assert "0190aaaa-old-job" in message
    assert "2026-01-01 00:00 UTC" in message
    ctx.job.data["identify"] = {"reprovision": True}
    outcome = await identify_step(ctx)
    assert outcome.evidence["reprovision_of"]["job"] == "0190aaaa-old-job"
    # the job's own marker (a resumed run after the record step) is not a second provisioning
    ctx.job.data["identify"] = {"reprovision": False}
    await ctx.write_file(ctx.profile.identity.marker, json.dumps({**marker, "job": ctx.job.id}).encode())
    await identify_step(ctx)


async def test_a_device_of_another_family_is_refused(linked: tuple[DeviceState, StepContext]) -> None:
    _state, ctx = linked
    ctx.profile = replace(_profile(), name="acme-like", family=("acme-sensorhub*",))
    with pytest.raises(StepRefusedError) as refused:
        await identify_step(ctx)
    message = str(refused.value)
    assert "nwedge-gw-imx8mm" in message
    assert "acme-sensorhub*" in message
    assert "Use the profile nwedge-gw-imx8mm" in message


async def test_a_dry_run_writes_nothing(linked: tuple[DeviceState, StepContext]) -> None:
    state, ctx = linked
    ctx.dry_run = True
    await identify_step(ctx)  # reads run in a dry run too
    assert ctx.job.device.startswith("nw-")
    ctx.step = "names"
    await names_step(ctx)
    ctx.step = "mqtt"
    await mqtt_step(ctx)
    planned = [p.command for p in ctx.plan]
    assert any("hostnamectl set-hostname" in c for c in planned)
    assert any(ctx.profile.mqtt.config_path in c for c in planned)
    assert any(site_file(ctx.profile) in c for c in planned)
    assert state.hostname() == "gw-prov"
    assert await _cat(ctx, ctx.profile.mqtt.config_path) == ""
    assert await _cat(ctx, site_file(ctx.profile)) == ""


async def test_a_board_without_a_serial_number_is_named_by_its_mac(linked: tuple[DeviceState, StepContext]) -> None:
    state, ctx = linked
    for rel in SERIAL_FILES:
        (rootfs(state.root) / rel).unlink()
    outcome = await identify_step(ctx)
    mac = ctx.job.facts["mac"].replace(":", "")
    assert ctx.job.facts["serial"] == ""
    assert ctx.job.device == f"nw-{mac[-6:]}"
    assert outcome.evidence["serial"] == ""
    # a resumed job that finds another device connected refuses to go on
    ctx.job.facts = {**ctx.job.facts, "mac": "02:00:00:00:00:01"}
    with pytest.raises(StepRefusedError, match="A different device is connected"):
        await identify_step(ctx)
