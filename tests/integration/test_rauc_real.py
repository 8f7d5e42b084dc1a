"""Siteline against the real RAUC 1.8 service (tests/peers/rauc_device.py), through the real sshd.

A real signed plain bundle is uploaded with Siteline's SFTP, installed with the RAUC update backend's
command, and read back with Siteline's slots probe; the U-Boot-style counters in the env file are
checked beside it. The slots parser is also held against what this RAUC really prints.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.peers.rauc_device import (
    COMPATIBLE,
    INSTALLED_VERSION,
    RaucDevice,
    make_bundle,
    public_key_pem,
    rauc_device_fixture,
    sign_detached,
    start_rauc_device,
)

from siteline.api import DeviceContext, Slot, Slots
from siteline.core.device.slot_actions import Verb, actions_for, perform
from siteline.core.flash.job import FlashJob, FlashOptions
from siteline.core.flash.link import TransportLink
from siteline.core.flash.machine import prepare_flash, run_job
from siteline.core.flash.store import JobStore
from siteline.core.images.gate import DeviceFacts, Overrides, check_before_flash
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.plugin_api import make_context
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.ssh import SshTransport
from siteline_slots.parsers import parse_rauc_status
from siteline_slots.probe import SlotsProbe
from siteline_slots.update import RaucBackend

pytestmark = [pytest.mark.peer("rauc"), pytest.mark.peer("sshd"), pytest.mark.timeout(60)]

NEW_VERSION = "2.0.0"
PAYLOAD = bytes(range(256)) * 300  # 75 KiB of rootfs: small, and not all one byte

rauc_device = pytest.fixture(name="rauc_device")(rauc_device_fixture)


@pytest.fixture
def keys(tmp_path: Path, rauc_device: RaucDevice) -> TrustedKeys:
    store = TrustedKeys(tmp_path / "trusted-keys")
    store.add(public_key_pem(rauc_device), "rauc-test")
    return store


@pytest.fixture
def bundle(tmp_path: Path, rauc_device: RaucDevice) -> Path:
    path = make_bundle(rauc_device, tmp_path / "images" / "rootfs-2.0.0.raucb", NEW_VERSION, PAYLOAD)
    sign_detached(rauc_device, path)
    return path


@pytest_asyncio.fixture
async def transport(tmp_path: Path, rauc_device: RaucDevice) -> AsyncIterator[SshTransport]:
    t = await _ssh_connect(rauc_device, tmp_path / "known_hosts")()
    try:
        yield t
    finally:
        await t.close()


def _context(t: SshTransport) -> DeviceContext:
    return make_context("rauc-dev", str(t.target), t.run, logging.getLogger("test.rauc"))


async def _slots(ctx: DeviceContext) -> Slots:
    snapshot = await SlotsProbe().collect(ctx)
    assert isinstance(snapshot, Slots), snapshot
    return snapshot


def _assert_new_slot_primary(slots: Slots, dev: RaucDevice) -> None:
    """RAUC, the probe and the counters all say B (rootfs.1) boots next, with the new bundle in it."""
    assert slots.primary == "rootfs.1"
    b, a = slots.slot("B"), slots.slot("A")
    assert b is not None
    assert a is not None
    assert b.primary
    assert not a.primary
    assert (b.bundle_version, b.bundle_compatible, b.install_status) == (NEW_VERSION, COMPATIBLE, "ok")
    assert b.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert slots.booted == "A"
    assert a.booted
    assert a.bundle_version == INSTALLED_VERSION
    assert dev.fw_env()["BOOT_ORDER"].split()[0] == "B"
    assert dev.slot_file("B").read_bytes()[: len(PAYLOAD)] == PAYLOAD
    status = dev.run("rauc", "status", "--output-format=json")
    assert status.returncode == 0, status.stderr
    assert '"boot_primary":"rootfs.1"' in status.stdout


@pytest.mark.asyncio
async def test_install_real_bundle_over_ssh_makes_other_slot_primary(
    rauc_device: RaucDevice, transport: SshTransport, bundle: Path, keys: TrustedKeys
) -> None:
    ctx = _context(transport)
    before = await _slots(ctx)
    assert (before.compatible, before.booted, before.primary, before.source) == (COMPATIBLE, "A", "rootfs.0",
                                                                                 "rauc+uboot")
    assert before.problems == ()
    booted = before.booted_slot
    inactive = before.slot("B")
    assert booted is not None
    assert inactive is not None
    gate = check_before_flash(bundle, None, DeviceFacts(before.compatible, booted.bundle_version, "rauc-dev"),
                              Overrides(), keys)
    assert gate.ok, gate.reasons
    assert gate.info is not None
    assert gate.info.version == NEW_VERSION

    upload = rauc_device.dir / "upload"  # the device's own dir: never the host's /var/tmp
    remote = str(upload / bundle.name)
    assert (await transport.run(f"mkdir -p {shlex.quote(str(upload))}", 10)).ok
    local_sha = gate.audit_detail["sha256"]  # what the gate hashed while checking the signature
    assert len(local_sha) == 64
    sent = await transport.put(bundle, remote)
    assert sent.sha256 == local_sha

    backend = RaucBackend()
    assert await backend.detect(ctx)
    result = await transport.run(backend.install_command(remote, inactive.device), 60)
    assert result.exit_code == 0, result.stdout + result.stderr + rauc_device.log_text()[-2000:]
    assert "succeeded" in result.stdout

    after = await _slots(ctx)
    _assert_new_slot_primary(after, rauc_device)
    assert after.problems == ()


# --- the slots parser against what this RAUC really prints ----------------------------------------------


def _rauc_json(dev: RaucDevice, *extra: str) -> str:
    out = dev.run("rauc", "status", *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("args", [("--output-format=json",), ("--detailed", "--output-format=json"),
                                  ("--detailed", "--output-format=json-pretty")])
def test_parser_reads_real_status_before_install(rauc_device: RaucDevice, args: tuple[str, ...]) -> None:
    slots = parse_rauc_status(_rauc_json(rauc_device, *args))
    assert (slots.compatible, slots.variant, slots.booted, slots.primary) == (COMPATIBLE, None, "A", "rootfs.0")
    assert slots.problems == ()
    a, b = slots.slot("rootfs.0"), slots.slot("rootfs.1")
    assert a is not None
    assert b is not None
    assert (a.bootname, a.device, a.fs_type, a.slot_class, a.rauc_state) == (
        "A", str(rauc_device.slot_file("A")), "raw", "rootfs", "booted")
    assert (b.bootname, b.device, b.rauc_state, b.booted, b.primary) == (
        "B", str(rauc_device.slot_file("B")), "inactive", False, False)
    assert a.booted
    assert a.primary
    assert (a.health, b.health) == ("good", "good")
    if "--detailed" in args:
        assert (a.bundle_version, a.bundle_compatible, a.install_status) == (INSTALLED_VERSION, COMPATIBLE, "ok")
        assert b.bundle_version is None
        assert b.bundle_compatible is None


def test_parser_reads_real_status_after_install(rauc_device: RaucDevice, bundle: Path) -> None:
    out = rauc_device.run("rauc", "install", str(bundle), timeout=60)
    assert out.returncode == 0, out.stderr + rauc_device.log_text()[-2000:]
    slots = parse_rauc_status(_rauc_json(rauc_device, "--detailed", "--output-format=json"))
    b = slots.slot("B")
    assert b is not None
    assert (slots.primary, b.primary, b.health) == ("rootfs.1", True, "good")
    assert (b.bundle_version, b.bundle_description) == (NEW_VERSION, f"Siteline test rootfs {NEW_VERSION}")
    assert (b.size, b.sha256) == (len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest())
    assert (b.installed_count, b.activated_count) == (1, 1)
    assert b.installed_at
    assert b.activated_at
    assert b.installed_at.endswith("Z")
    assert slots.problems == ()


@pytest.mark.asyncio
async def test_probe_says_plainly_when_the_env_cannot_be_read(rauc_device: RaucDevice, transport: SshTransport) -> None:
    """A bad env CRC: real RAUC calls every slot bad with no primary, and fw_printenv fails; the probe says why."""
    await asyncio.to_thread(_flip_env_byte, rauc_device)
    slots = await _slots(_context(transport))
    assert slots.primary is None
    assert all(s.health == "bad" for s in slots.slots)
    text = " ".join(slots.problems)
    assert "RAUC reports every slot bad" in text
    assert "bootloader environment" in text
    assert "`fw_printenv` failed" in text


def _flip_env_byte(dev: RaucDevice) -> None:
    data = bytearray(dev.env_file.read_bytes())
    data[10] ^= 0xFF
    dev.env_file.write_bytes(bytes(data))


def test_stop_leaves_no_process_mount_or_loop_device(tmp_path: Path) -> None:
    dev = start_rauc_device(tmp_path / "device")
    procs = list(dev.processes)
    try:
        bundle = make_bundle(dev, tmp_path / "b.raucb", NEW_VERSION, PAYLOAD)
        out = dev.run("rauc", "install", str(bundle), timeout=60)  # RAUC mounts the bundle on a loop device
        assert out.returncode == 0, out.stderr
    finally:
        dev.stop()
    assert all(p.returncode is not None for p in procs)
    assert str(dev.dir) not in Path("/proc/self/mountinfo").read_text()
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        assert str(dev.dir) not in backing.read_text()


@pytest.mark.asyncio
async def test_gate_refuses_downgrade_and_foreign_bundle_by_what_the_device_says(
    rauc_device: RaucDevice, transport: SshTransport, keys: TrustedKeys, tmp_path: Path
) -> None:
    """The facts the gate compares come from the real RAUC's status, read through the probe."""
    slots = await _slots(_context(transport))
    booted = slots.booted_slot
    assert booted is not None
    facts = DeviceFacts(slots.compatible, booted.bundle_version, "rauc-dev")
    old, foreign = await asyncio.to_thread(_signed_bundles, rauc_device, tmp_path)
    refused = check_before_flash(old, None, facts, Overrides(), keys)
    assert not refused.ok
    assert refused.reasons[0].startswith("downgrade")
    assert INSTALLED_VERSION in refused.reasons[0]
    assert check_before_flash(old, None, facts, Overrides(downgrade=True), keys).ok
    other = check_before_flash(foreign, None, facts, Overrides(), keys)
    assert not other.ok
    assert other.reasons[0].startswith("not for this device")


def _signed_bundles(dev: RaucDevice, d: Path) -> tuple[Path, Path]:
    old = make_bundle(dev, d / "old.raucb", "0.9.0", PAYLOAD)
    foreign = make_bundle(dev, d / "foreign.raucb", "3.0.0", PAYLOAD, compatible="another-board")
    for path in (old, foreign):
        sign_detached(dev, path)
    return old, foreign


@pytest.mark.asyncio
async def test_slot_actions_take_it_back_on_real_rauc(rauc_device: RaucDevice, transport: SshTransport,
                                                      bundle: Path) -> None:
    """After the install, "boot A next" and "mark B bad" (what a rollback does) through `rauc status mark-*`:
    RAUC runs the custom backend, and the counters in the env file show it."""
    out = await asyncio.to_thread(rauc_device.run, "rauc", "install", str(bundle))
    assert out.returncode == 0, out.stderr
    ctx = _context(transport)
    records: list[tuple[str, str]] = []
    slots = await _slots(ctx)
    a, b = slots.slot("A"), slots.slot("B")
    assert a is not None
    assert b is not None
    steps: tuple[tuple[Slot, Verb], ...] = ((a, "mark-active"), (b, "mark-bad"))
    for slot, verb in steps:
        action = actions_for(slots, slot)[verb]
        outcome = await perform(action, ctx.run, lambda name, detail, result: records.append((name, result)))
        assert outcome.ok, str(outcome)
        slots = await _slots(ctx)
    assert [r for _, r in records] == ["ok", "ok"]
    assert slots.primary == "rootfs.0"
    b_now = slots.slot("B")
    assert b_now is not None
    assert b_now.health == "bad"
    env = await asyncio.to_thread(rauc_device.fw_env)
    assert (env["BOOT_ORDER"], env["BOOT_B_LEFT"], env["BOOT_A_LEFT"]) == ("A", "0", "3")


# --- the whole flash job (core/flash/machine.py) ---------------------------------------------------------

Records = list[tuple[str, dict[str, Any], str]]


def _ssh_connect(dev: RaucDevice, known_hosts: Path) -> Callable[[], Awaitable[SshTransport]]:
    sshd = dev.sshd
    assert sshd is not None
    url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}"

    async def connect() -> SshTransport:
        t = SshTransport(parse_target(url), Credentials(key_path=str(sshd.client_key), use_agent=False), known_hosts,
                         accept_new_host_key=True)
        await t.connect()
        return t

    return connect


async def _run_flash(dev: RaucDevice, image: Path, keys: TrustedKeys, tmp_path: Path) -> tuple[FlashJob, Records]:
    """One whole job, reboot=False, uploading into the device's own dir (never the host's /var/tmp)."""
    upload = dev.dir / "upload"
    await asyncio.to_thread(upload.mkdir, exist_ok=True)
    connect = _ssh_connect(dev, tmp_path / "known_hosts")
    sshd = dev.sshd
    assert sshd is not None
    job = prepare_flash(image, image.with_name(image.name + ".sig"), device="rauc-dev", site="lab",
                        target=f"ssh://{sshd.user}@{sshd.host}:{sshd.port}",
                        options=FlashOptions(reboot=False, remote_dir=str(upload)))
    records: Records = []
    store = JobStore(tmp_path / "flash-jobs")
    link = TransportLink(connect)
    try:
        done = await run_job(job, link, store=store, record=lambda a, d, r: records.append((a, dict(d), r)),
                             backends=[RaucBackend()], keys=keys)
    finally:
        await link.close()
    assert store.load(done.id).status == done.status  # what was said is what is on disk
    return done, records


@pytest.mark.asyncio
async def test_flash_job_without_reboot_installs_real_bundle(
    rauc_device: RaucDevice, bundle: Path, keys: TrustedKeys, tmp_path: Path
) -> None:
    """Preflight, SFTP upload, `rauc install` by the job; reboot=False ends it "installed" with B primary."""
    done, records = await _run_flash(rauc_device, bundle, keys, tmp_path)
    steps = {s.name: s.state for s in done.steps}
    assert done.status == "installed", f"{done.message} {[(s.name, s.state, s.detail) for s in done.steps]}"
    assert steps == {"preflight": "done", "transfer": "done", "install": "done", "reboot": "skipped",
                     "health": "skipped", "mark-good": "skipped"}
    assert (done.from_slot, done.to_slot, done.from_version, done.backend) == ("A", "B", INSTALLED_VERSION, "rauc")
    final = [(d, r) for a, d, r in records if a == "flash"]
    assert len(final) == 1
    detail, result = final[0]
    assert result == "installed"
    assert (detail["to_version"], detail["image_sha256"]) == (NEW_VERSION, done.image_sha256)
    assert str(detail["key_fingerprint"]).startswith("SHA256:")
    t = await _ssh_connect(rauc_device, tmp_path / "known_hosts")()
    try:
        after = await _slots(_context(t))
    finally:
        await t.close()
    _assert_new_slot_primary(after, rauc_device)


@pytest.mark.asyncio
async def test_flash_job_refuses_downgrade_before_sending_a_byte(
    rauc_device: RaucDevice, keys: TrustedKeys, tmp_path: Path
) -> None:
    old, _ = await asyncio.to_thread(_signed_bundles, rauc_device, tmp_path)
    done, _records = await _run_flash(rauc_device, old, keys, tmp_path)
    assert done.status == "refused", done.message
    assert "downgrade" in done.message
    assert await asyncio.to_thread(lambda: list((rauc_device.dir / "upload").iterdir())) == []
    status = await asyncio.to_thread(rauc_device.run, "rauc", "status", "--output-format=json")
    assert '"boot_primary":"rootfs.0"' in status.stdout
