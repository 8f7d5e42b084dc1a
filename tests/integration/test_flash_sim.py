"""The flash / rollback state machine against the simulated device over its real SSH server.

Real `rauc bundle` bundles signed by the openssl CLI; the device's own rauc-mark-good.service is disabled so
Siteline's health check decides; millisecond boot timings.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.integration.flash_worker import backends, bundle, fast_options, make_signer, ssh_link
from tests.peers import require_tool
from tests.peers.sim import make_state, running_device

from siteline.core.audit import AuditTrail
from siteline.core.flash.job import FlashJob, HealthCheck
from siteline.core.flash.machine import prepare_flash, prepare_rollback, run_job
from siteline.core.flash.store import JobStore
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.outbox.store import Outbox
from siteline.simulator.device import SimulatedDevice
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.systemctl import MARK_GOOD_UNIT, set_enabled

pytestmark = [pytest.mark.peer("rauc"), pytest.mark.timeout(90)]
REPO = str(Path(__file__).resolve().parents[2])  # `-m tests.integration.flash_worker` runs from here
OLD = "2024.03.0"  # what the simulator ships in both slots


@dataclass
class Signer:
    key: Path
    cert: Path
    keys: TrustedKeys
    root: Path


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    require_tool("rauc")
    require_tool("openssl")
    require_tool("mksquashfs")
    root = tmp_path_factory.mktemp("flashkeys")
    key, cert, keys = make_signer(root)
    return Signer(key, cert, keys, root)


@dataclass
class Bench:
    state: DeviceState
    device: SimulatedDevice
    store: JobStore
    known_hosts: Path
    tmp: Path
    records: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    seen: list[FlashJob] = field(default_factory=list)

    def record(self, action: str, detail: Any, result: str) -> None:
        self.records.append((action, dict(detail), result))

    async def run(self, job: FlashJob, signer: Signer) -> FlashJob:
        link = ssh_link(self.port, self.known_hosts)
        try:
            return await run_job(job, link, store=self.store, record=self.record, backends=backends(),
                                 keys=signer.keys, listener=lambda j: self.seen.append(j))
        finally:
            await link.close()

    @property
    def port(self) -> int:
        assert self.device.ssh_port is not None
        return self.device.ssh_port

    def env(self) -> dict[str, str]:
        return self.state.read_env()


@pytest_asyncio.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    state = make_state(tmp_path / "device")
    assert set_enabled(state, MARK_GOOD_UNIT, False) == 0  # Siteline's health check decides, not the device
    async with running_device(state) as device:
        yield Bench(state, device, JobStore(tmp_path / "jobs"), tmp_path / "known_hosts", tmp_path)


def _flash(bench: Bench, signer: Signer, version: str, **flags: Any) -> FlashJob:
    image = bundle(bench.tmp / "images", signer.key, signer.cert, version, **flags)
    return prepare_flash(image, None, device="gw-01", site="test-site", target=f"ssh://root@127.0.0.1:{bench.port}",
                         options=fast_options())


def _steps(job: FlashJob) -> dict[str, str]:
    return {s.name: s.state for s in job.steps}


@pytest.mark.asyncio
async def test_good_image_boots_is_checked_and_marked_good(bench: Bench, signer: Signer) -> None:
    job = _flash(bench, signer, "2025.01.0")
    done = await bench.run(job, signer)
    assert done.status == "succeeded", (done.message, done.steps)
    assert _steps(done) == {"preflight": "done", "transfer": "done", "install": "done", "reboot": "done",
                            "health": "done", "mark-good": "done"}
    assert bench.state.booted_slot() == "B"
    env = bench.env()
    assert env["BOOT_B_LEFT"] == "3"  # marked good: the trial is over
    assert env["BOOT_ORDER"].split()[0] == "B"
    assert (done.from_slot, done.to_slot, done.from_version) == ("A", "B", OLD)
    assert "booted B, 2 attempts left" in done.evidence
    assert "2025.01.0 runs on B" in done.message
    assert done.key_fingerprint
    assert bench.store.load(job.id).status == "succeeded"
    steps = [d["step"] for a, d, _ in bench.records if a == "flash-step"]
    assert steps == ["preflight", "transfer", "install", "reboot", "health", "mark-good"]
    final = [(d, r) for a, d, r in bench.records if a == "flash"]
    assert len(final) == 1
    assert final[0][1] == "succeeded"
    assert final[0][0]["image_sha256"] == job.image_sha256
    assert final[0][0]["to_version"] == "2025.01.0"
    assert any(a == "slot-mark" for a, _, _ in bench.records)
    assert any(s.step("transfer").done == job.image_size for s in bench.seen)


async def _sh(bench: Bench, command: str) -> str:
    link = ssh_link(bench.port, bench.known_hosts)
    try:
        return (await link.run(command, 10)).stdout
    finally:
        await link.close()



@pytest.mark.asyncio
async def test_image_that_does_not_boot_comes_back_on_the_old_slot(bench: Bench, signer: Signer) -> None:
    done = await bench.run(_flash(bench, signer, "2025.02.0-panics", boots=False), signer)
    assert done.status == "rolled-back", done.message
    assert "came back on A: B used its 3 attempts" in done.evidence
    assert "did not boot on B" in done.message
    assert _steps(done)["reboot"] == "failed"
    assert _steps(done)["health"] == "skipped"
    assert bench.state.booted_slot() == "A", (bench.env(), bench.device.boots, done.evidence, bench.records)
    env = bench.env()
    # The old slot boots next (B has no attempts left, so U-Boot skips it) and is good again.
    assert json.loads(await _sh(bench, "rauc status --output-format=json"))["boot_primary"] == "rootfs.0"
    assert env["BOOT_A_LEFT"] == "3"
    assert env["BOOT_B_LEFT"] == "0"
    assert [r for a, _, r in bench.records if a == "flash"] == ["rolled-back"]


@pytest.mark.asyncio
async def test_unhealthy_image_is_rolled_back_automatically(bench: Bench, signer: Signer) -> None:
    done = await bench.run(_flash(bench, signer, "2025.03.0-sick", healthy=False), signer)
    assert done.status == "rolled-back", done.message
    states = _steps(done)
    assert (states["health"], states["mark-good"], states["rollback"]) == ("failed", "skipped", "done")
    assert "edge-agent.service" in done.message
    assert "failed the health check" in done.message
    assert "booted B, 2 attempts left" in done.evidence
    assert "marked B bad and A active" in done.evidence
    assert bench.state.booted_slot() == "A"
    env = bench.env()
    assert (env["BOOT_A_LEFT"], env["BOOT_B_LEFT"]) == ("3", "0")
    verbs = [d["verb"] for a, d, _ in bench.records if a == "slot-mark"]
    assert verbs[0] == "mark-bad"  # RAUC's mark-bad of the booted slot already makes the other one primary


@pytest.mark.asyncio
async def test_bad_signature_and_wrong_compatible_are_refused_before_a_byte_is_sent(
    bench: Bench, signer: Signer
) -> None:
    other = make_signer(bench.tmp / "otherkey")  # a key nobody trusted
    image = bundle(bench.tmp / "images", other[0], other[1], "2025.04.0")
    job = prepare_flash(image, None, device="gw-01", site="test-site", target="t", options=fast_options())
    done = await bench.run(job, signer)
    assert done.status == "refused"
    assert done.message.startswith("signature refused")
    assert _steps(done) == {"preflight": "failed", "transfer": "skipped", "install": "skipped",
                            "reboot": "skipped", "health": "skipped", "mark-good": "skipped"}
    wrong = await bench.run(_flash(bench, signer, "2025.05.0", compatible="other-board"), signer)
    assert wrong.status == "refused"
    assert wrong.message.startswith("not for this device")
    assert "other-board" in wrong.message
    assert "update-" not in await _sh(bench, "ls /data")
    assert bench.state.booted_slot() == "A"
    assert bench.env()["BOOT_ORDER"] == "A B"
    assert [r for a, _, r in bench.records if a == "flash"] == ["refused", "refused"]


@pytest.mark.asyncio
@pytest.mark.parametrize("die_after", ["install", "reboot-sent", "reboot"])
async def test_killed_siteline_resumes_and_finishes(bench: Bench, signer: Signer, die_after: str) -> None:
    job = _flash(bench, signer, "2025.06.0")
    stopped = await _kill_mid_job(bench, signer, job, die_after)
    if die_after == "reboot-sent":  # it died waiting for the device: the resume must see the reboot happened
        assert stopped.step("reboot").state == "running"
        assert stopped.boot_id
    else:
        assert stopped.step(die_after).state == "done"  # type: ignore[arg-type]
    done = await bench.run(stopped, signer)
    assert done.status == "succeeded", done.message
    assert bench.state.booted_slot() == "B"
    assert bench.device.boots == 1  # one reboot: a resume never reboots the device a second time
    env = bench.env()
    assert int(env["BOOT_A_LEFT"]) > 0
    assert int(env["BOOT_B_LEFT"]) > 0  # never both slots unbootable
    assert bench.store.unfinished() == []


@pytest.mark.asyncio
async def test_killed_during_the_automatic_rollback_finishes_it(bench: Bench, signer: Signer) -> None:
    job = _flash(bench, signer, "2025.06.1-sick", healthy=False)
    stopped = await _kill_mid_job(bench, signer, job, "reboot-sent-2")
    assert stopped.step("rollback").state == "running"
    assert stopped.step("health").state == "failed"
    done = await bench.run(stopped, signer)
    assert done.status == "rolled-back", done.message
    assert bench.state.booted_slot() == "A"
    env = bench.env()
    assert (env["BOOT_A_LEFT"], env["BOOT_B_LEFT"]) == ("3", "0")


async def _kill_mid_job(bench: Bench, signer: Signer, job: FlashJob, die_after: str) -> FlashJob:
    """Run ``job`` in a worker process that SIGKILLs itself at ``die_after``; return the job as it was left."""
    bench.store.save(job)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.flash_worker", str(bench.store.root), job.id, str(bench.port),
        str(bench.known_hosts), str(signer.keys.root), die_after, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=REPO)
    _out, err = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == -signal.SIGKILL, err.decode()
    left = bench.store.unfinished("gw-01")
    assert [j.id for j in left] == [job.id]
    return left[0]


@pytest.mark.asyncio
async def test_manual_rollback_with_the_real_audit_trail(bench: Bench, signer: Signer) -> None:
    outbox = Outbox.open(bench.tmp / "outbox.sqlite")
    trail = AuditTrail(outbox, "tech-1")
    bench.record = lambda a, d, r: trail.record(a, device="gw-01", site="test-site", detail=d, result=r)  # type: ignore[method-assign]
    job = prepare_rollback(device="gw-01", site="test-site", target="t", options=fast_options())
    done = await bench.run(job, signer)
    assert done.status == "succeeded", done.message
    assert done.message.startswith("rolled back: B (2024.03.0) runs")
    assert [s.state for s in done.steps] == ["done"] * 5
    assert bench.state.booted_slot() == "B"
    assert bench.env()["BOOT_B_LEFT"] == "3"
    records = trail.records("gw-01")
    actions = [r.action for r in reversed(records)]
    assert actions.count("flash-step") == 5
    assert actions[-1] == "rollback"
    assert "slot-mark" in actions
    assert records[0].result == "succeeded"
    assert trail.verify().clean
    outbox.close()


@pytest.mark.asyncio
async def test_device_that_does_not_come_back_needs_attention_with_the_console_recovery(
    bench: Bench, signer: Signer
) -> None:
    job = _flash(bench, signer, "2025.07.0")
    job.options = fast_options(remote_dir="/data", boot_timeout=1.0)
    stopping: list[asyncio.Task[None]] = []

    def pull_the_plug(seen: FlashJob) -> None:  # the device dies as it reboots and stays dead
        if seen.step("reboot").detail.startswith("rebooting") and not stopping:
            stopping.append(asyncio.create_task(bench.device.stop()))

    link = ssh_link(bench.port, bench.known_hosts)
    try:
        done = await run_job(job, link, store=bench.store, record=bench.record, backends=backends(),
                             keys=signer.keys, listener=pull_the_plug)
    finally:
        await link.close()
        await asyncio.gather(*stopping)
    assert done.status == "needs-attention", done.message
    assert "did not come back within 1 s" in done.message
    assert "fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && fw_setenv BOOT_ORDER 'A B'" in done.message
    assert "setenv BOOT_A_LEFT 3; setenv BOOT_B_LEFT 3; setenv BOOT_ORDER 'A B'; saveenv; reset" in done.message
    assert _steps(done)["reboot"] == "failed"


@pytest.mark.asyncio
async def test_cancel_before_anything_changed(bench: Bench, signer: Signer) -> None:
    job = _flash(bench, signer, "2025.08.0")
    link = ssh_link(bench.port, bench.known_hosts)
    task: asyncio.Task[FlashJob] | None = None

    def cancel_at_transfer(seen: FlashJob) -> None:
        if seen.step("transfer").state == "running" and task is not None:
            task.cancel()

    task = asyncio.create_task(run_job(job, link, store=bench.store, record=bench.record, backends=backends(),
                                       keys=signer.keys, listener=cancel_at_transfer))
    with pytest.raises(asyncio.CancelledError):
        await task
    await link.close()
    saved = bench.store.load(job.id)
    assert saved.status == "cancelled"
    assert not saved.cancellable
    assert saved.step("transfer").state == "skipped"
    assert [r for a, _, r in bench.records if a == "flash"] == ["cancelled"]
    assert bench.env()["BOOT_ORDER"] == "A B"


@pytest.mark.asyncio
async def test_large_image_on_a_cellular_link_needs_the_technicians_yes(
    bench: Bench, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siteline.core.flash import preflight
    from siteline.simulator.tools import scenario

    monkeypatch.setattr(preflight, "METERED_LIMIT", 1024)  # the 64 KiB test bundle counts as large
    assert scenario.main("sim-scenario", ["wired-fail"], bench.state) == 0
    done = await bench.run(_flash(bench, signer, "2025.10.0"), signer)
    assert done.status == "refused"
    assert "metered cellular link" in done.message
    assert "0.1 MiB" in done.message
    assert " s at a good LTE rate" in done.message
    job = _flash(bench, signer, "2025.11.0")
    job.options = fast_options(remote_dir="/data", allow_metered=True)
    allowed = await bench.run(job, signer)
    assert allowed.status == "succeeded", allowed.message
    assert "allowed by the technician" in allowed.step("preflight").detail


@pytest.mark.asyncio
async def test_a_running_slot_on_its_last_attempt_is_refused(bench: Bench, signer: Signer) -> None:
    env = bench.env()
    env["BOOT_A_LEFT"] = "1"  # earlier power cuts during boot used up all but one of A's attempts
    bench.state.write_env(env)
    done = await bench.run(_flash(bench, signer, "2025.12.1"), signer)
    assert done.status == "refused"
    assert "has 1 boot attempt(s) left" in done.message
    assert "mark it good first" in done.message
    assert _steps(done)["transfer"] == "skipped"


@pytest.mark.asyncio
async def test_both_slots_out_of_attempts_is_shown_plainly_with_the_recovery(bench: Bench, signer: Signer) -> None:
    def power_cuts_meanwhile(seen: FlashJob) -> None:  # after preflight: A's attempts go as the install runs
        if seen.step("install").state == "running" and bench.env()["BOOT_A_LEFT"] != "1":
            env = bench.env()
            env["BOOT_A_LEFT"] = "1"
            bench.state.write_env(env)

    job = _flash(bench, signer, "2025.12.0-panics", boots=False)
    link = ssh_link(bench.port, bench.known_hosts)
    try:
        done = await run_job(job, link, store=bench.store, record=bench.record, backends=backends(),
                             keys=signer.keys, listener=power_cuts_meanwhile)
    finally:
        await link.close()
    assert done.status == "needs-attention", done.message
    assert "both slots are out of boot attempts" in done.message
    assert "A 2024.03.0: 0 attempts left (booted)" in done.message
    assert "B 2025.12.0-panics: 0 attempts left" in done.message
    assert "fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && fw_setenv BOOT_ORDER 'A B'" in done.message
    assert bench.state.booted_slot() == "A"


@pytest.mark.asyncio
async def test_old_slot_unhealthy_too_needs_attention(bench: Bench, signer: Signer) -> None:
    job = _flash(bench, signer, "2026.01.0")
    job.options = fast_options(health=HealthCheck(command="false", settle=0.0, timeout=0.1))  # nothing is healthy
    done = await bench.run(job, signer)
    assert done.status == "needs-attention", done.message
    assert "rolled back to A, but A is unhealthy" in done.message
    assert "`false` exited 1" in done.message
    assert bench.state.booted_slot() == "A"
    assert bench.env()["BOOT_B_LEFT"] == "0"  # the new slot stays marked bad; A keeps running


class _Relabelled:
    """The SSH link presented as another kind of link (what preflight decides on)."""

    def __init__(self, inner: Any, kind: str) -> None:
        self._inner, self.kind, self.line_bps = inner, kind, 115_200

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "words"), [("mqtt", "reached only through MQTT"),
                                             ("serial", "over the serial console at 115200 bit/s")])
async def test_links_that_cannot_carry_the_image_are_refused(
    bench: Bench, signer: Signer, monkeypatch: pytest.MonkeyPatch, kind: str, words: str
) -> None:
    from siteline.core.flash import preflight

    monkeypatch.setattr(preflight, "SERIAL_LIMIT", 1024)  # the 64 KiB bundle counts as too large for a console
    job = _flash(bench, signer, "2026.02.0")
    inner = ssh_link(bench.port, bench.known_hosts)
    try:
        done = await run_job(job, _Relabelled(inner, kind), store=bench.store, record=bench.record,
                             backends=backends(), keys=signer.keys)
    finally:
        await inner.close()
    assert done.status == "refused"
    assert words in done.message
    assert "update-" not in await _sh(bench, "ls /data")


@pytest.mark.asyncio
async def test_without_reboot_it_stops_installed_and_says_what_the_reboot_will_do(
    bench: Bench, signer: Signer
) -> None:
    job = _flash(bench, signer, "2026.03.0")
    job.options = fast_options(reboot=False)
    done = await bench.run(job, signer)
    assert done.status == "installed", done.message
    assert done.message.startswith("2026.03.0 is installed in B, which boots at the next reboot")
    assert "falls back to A (2024.03.0)" in done.message
    assert [s.state for s in done.steps] == ["done", "done", "done", "skipped", "skipped", "skipped"]
    assert bench.state.booted_slot() == "A"
    assert bench.device.boots == 0
    assert bench.env()["BOOT_ORDER"] == "B A"


@pytest.mark.asyncio
async def test_no_room_and_downgrade_are_refused(bench: Bench, signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    from siteline.core.flash import preflight

    older = await bench.run(_flash(bench, signer, "2023.01.0"), signer)
    assert older.status == "refused"
    assert older.message.startswith("downgrade")
    monkeypatch.setattr(preflight, "SPACE_MARGIN", 1 << 40)  # more than the simulated disk holds
    full = await bench.run(_flash(bench, signer, "2026.04.0"), signer)
    assert full.status == "refused"
    assert full.message.startswith("not enough space in /data on the device")


# --- the device family's health check, used when the technician chose none -------------------------------


@pytest.fixture
def family_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Writes SITELINE_HOME's health-checks.json: the Northwind family with ``fields`` changed."""
    home = tmp_path / "home"
    monkeypatch.setenv("SITELINE_HOME", str(home))
    (home / "config").mkdir(parents=True)

    def write(**fields: object) -> None:
        family = {"family": "Northwind edge gateway", "compatibles": ["nwedge-gw-*"],
                  "units": ["edge-agent.service"], "settle": 0, "timeout": 0.3, **fields}
        (home / "config" / "health-checks.json").write_text(json.dumps({"families": [family]}))

    return write


def _unchosen(job: FlashJob) -> FlashJob:
    job.options = replace(job.options, health=HealthCheck())
    return job


@pytest.mark.asyncio
async def test_the_family_check_catches_an_unhealthy_image(
        bench: Bench, signer: Signer, family_config: Callable[..., None]) -> None:
    family_config()
    done = await bench.run(_unchosen(_flash(bench, signer, "2025.07.0-sick", healthy=False)), signer)
    assert done.status == "rolled-back", done.message
    assert "edge-agent.service" in done.message
    assert "health check of Northwind edge gateway: edge-agent.service active" in done.steps[0].detail
    assert bench.state.booted_slot() == "A"


@pytest.mark.asyncio
async def test_an_unreadable_health_file_refuses_before_anything_is_sent(
        bench: Bench, signer: Signer, family_config: Callable[..., None]) -> None:
    family_config(units="edge-agent.service")  # a string, not a list
    done = await bench.run(_unchosen(_flash(bench, signer, "2025.08.0")), signer)
    assert done.status == "refused"
    assert "health-checks.json" in done.message
    assert "units must be a list" in done.message
    assert _steps(done)["transfer"] == "skipped"
    assert bench.state.booted_slot() == "A"


@pytest.mark.asyncio
async def test_a_check_the_technician_chose_wins_over_the_family(
        bench: Bench, signer: Signer, family_config: Callable[..., None]) -> None:
    family_config(command="false")  # the family's check would fail everything
    done = await bench.run(_flash(bench, signer, "2025.09.0"), signer)  # fast_options chose edge-agent.service
    assert done.status == "succeeded", done.message
