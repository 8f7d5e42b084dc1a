"""Review of the flash state machine against a hostile field: Siteline killed at the worst line, then resumed.

"Killed" is modelled exactly: the audit callback raises a BaseException that nothing in run_job catches, so
nothing after that line runs and the only thing left is what the job store holds on disk (the same as a
SIGKILL or a power cut right after that record). The job is then loaded from the store and resumed, as
`siteline jobs resume` or the app would. Real simulator over its real SSH, real `rauc bundle`, real openssl.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.integration.flash_worker import backends, bundle, fast_options, make_signer, ssh_link
from tests.peers import require_tool
from tests.peers.sim import make_state, running_device

from siteline.core.flash.job import FlashJob, HealthCheck
from siteline.core.flash.machine import prepare_flash, run_job
from siteline.core.flash.store import JobStore
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.simulator.device import SimulatedDevice
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.systemctl import MARK_GOOD_UNIT, set_enabled

pytestmark = [pytest.mark.peer("rauc"), pytest.mark.timeout(90)]
OLD = "2024.03.0"


class Killed(BaseException):
    """Siteline dies here: not an Exception, so no handler in run_job sees it."""


@dataclass
class Signer:
    key: Path
    cert: Path
    keys: TrustedKeys


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    for tool in ("rauc", "openssl", "mksquashfs"):
        require_tool(tool)
    key, cert, keys = make_signer(tmp_path_factory.mktemp("reviewkeys"))
    return Signer(key, cert, keys)


@dataclass
class Rig:
    state: DeviceState
    device: SimulatedDevice
    store: JobStore
    known_hosts: Path
    tmp: Path
    records: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.device.ssh_port is not None
        return self.device.ssh_port

    async def run(self, job: FlashJob, signer: Signer,
                  kill_when: Callable[[str, dict[str, Any], str], bool] | None = None) -> FlashJob:
        def record(action: str, detail: Any, result: str) -> None:
            self.records.append((action, dict(detail), result))
            if kill_when is not None and kill_when(action, dict(detail), result):
                raise Killed(f"killed after {action} {dict(detail)}")

        link = ssh_link(self.port, self.known_hosts)
        try:
            return await run_job(job, link, store=self.store, record=record, backends=backends(), keys=signer.keys)
        finally:
            await link.close()

    async def killed_then_resumed(self, job: FlashJob, signer: Signer,
                                  kill_when: Callable[[str, dict[str, Any], str], bool]) -> FlashJob:
        with pytest.raises(Killed):
            await self.run(job, signer, kill_when)
        saved = self.store.load(job.id)  # all that survives the kill
        # Since the fix a step's end and the job's status are one save: a kill at the step's record finds the
        # job already final on disk (the window is closed); the resume must then return exactly that.
        return await self.run(saved, signer)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    state = make_state(tmp_path / "device")
    assert set_enabled(state, MARK_GOOD_UNIT, False) == 0  # Siteline's health check decides
    async with running_device(state) as device:
        yield Rig(state, device, JobStore(tmp_path / "jobs"), tmp_path / "known_hosts", tmp_path)


def _job(rig: Rig, signer: Signer, version: str, *, options: Any = None, **flags: Any) -> FlashJob:
    image = bundle(rig.tmp / "images", signer.key, signer.cert, version, **flags)
    return prepare_flash(image, None, device="gw-01", site="test-site", target=f"ssh://root@127.0.0.1:{rig.port}",
                         options=options or fast_options())


def _step_ended(step: str, state: str) -> Callable[[str, dict[str, Any], str], bool]:
    return lambda action, detail, _r: action == "flash-step" and detail["step"] == step and detail["state"] == state


@pytest.mark.asyncio
async def test_killed_after_the_rollback_step_ended_resume_must_not_report_success(rig: Rig, signer: Signer) -> None:
    # BUG: the automatic rollback ends by Stop("rolled-back", step_state="done"); _drive saves the step "done"
    # (flow.end) and only then, in a second save, the job's status (flow.finish). Killed between the two
    # saves, the resume finds no pending step and _drive calls flow.finish("succeeded"): the technician is
    # told "2025.04.0-sick runs on B, healthy and marked good" while the device runs A with B marked bad.
    job = _job(rig, signer, "2025.04.0-sick", healthy=False)
    done = await rig.killed_then_resumed(job, signer, _step_ended("rollback", "done"))
    assert rig.state.booted_slot() == "A"
    assert done.status == "rolled-back", (done.status, done.message)
    assert "healthy and marked good" not in done.message or "rolled back" in done.message


@pytest.mark.asyncio
async def test_killed_after_the_health_check_failed_resume_must_not_mark_the_sick_slot_good(
        rig: Rig, signer: Signer) -> None:
    # BUG: boot.health() ends the failed check with flow.end(step, "failed") (saved, then the audit record is
    # written) and only afterwards sets mark-good "skipped" and queues the rollback step (second save).
    # Killed in between (e.g. during the fsync'd audit write), the store holds: health failed, mark-good
    # pending, no rollback step. The resume runs mark-good on the UNHEALTHY new slot and reports success.
    job = _job(rig, signer, "2025.05.0-sick", healthy=False)
    done = await rig.killed_then_resumed(job, signer, _step_ended("health", "failed"))
    env = rig.state.read_env()
    assert done.status == "rolled-back", (done.status, done.message, env)
    assert rig.state.booted_slot() == "A", env
    assert env["BOOT_B_LEFT"] == "0", env  # the sick slot is marked bad, not good


@pytest.mark.asyncio
async def test_killed_after_a_no_reboot_install_resume_must_not_undo_it(rig: Rig, signer: Signer) -> None:
    # BUG: --no-reboot ends the reboot step by Stop("installed", step_state="skipped"); killed between the
    # step's save and the job's, the resume runs the pending health step: the device still runs A (it was
    # never rebooted), so health() calls _judge_boot, which takes that for "B did not boot", makes A active
    # again (keep_good) - undoing the install the technician asked for - and reports "rolled-back: did not
    # boot on B (its attempts used up)": a claim with no evidence, B was never tried.
    job = _job(rig, signer, "2025.06.0", options=fast_options(reboot=False))
    done = await rig.killed_then_resumed(job, signer, _step_ended("reboot", "skipped"))
    env = rig.state.read_env()
    assert done.status == "installed", (done.status, done.message)
    assert env["BOOT_ORDER"].split()[0] == "B", env
    assert not any("did not boot" in line for line in [*done.evidence, done.message])


@pytest.mark.asyncio
async def test_killed_after_a_refusal_resume_must_not_send_the_image(rig: Rig, signer: Signer) -> None:
    # BUG: a preflight refusal (here: the bundle is for another device) is saved as "preflight failed" first and
    # as the job's "refused" status in a second save. Killed in between, the resume picks the next pending
    # step - transfer - and sends the refused image's bytes to the device (then fails at install with an
    # unrelated message). "Refuse before a byte is sent" must hold across a restart too.
    job = _job(rig, signer, "2025.07.0-other", compatible="someone-elses-board")
    done = await rig.killed_then_resumed(job, signer, _step_ended("preflight", "failed"))
    states = {s.name: s.state for s in done.steps}
    assert done.status == "refused", (done.status, done.message, states, done.step("transfer").detail)
    assert states["transfer"] == "skipped", states
    assert not [r for r in rig.records if r[0] == "flash-step" and r[1]["step"] == "transfer"]


@pytest.mark.asyncio
async def test_image_that_does_not_boot_is_not_rolled_back_until_the_old_slot_proved_healthy(
        rig: Rig, signer: Signer) -> None:
    # BUG: boot._judge_boot reports "rolled-back ... primary and good again" as soon as the device came back on
    # the old slot, without running the health check on it (the spec: "confirm the old slot is back and
    # healthy"; job.py: rolled-back = "back on the old slot, healthy"). Here nothing is healthy (the check is
    # `false`): the automatic-rollback path says needs-attention for the same device; this path says all is
    # well. Fix: in _judge_boot (flash kind), run wait_healthy(flow, step) on the old slot before keep_good and
    # Stop("needs-attention", ...) when it fails, as auto_rollback does.
    options = fast_options(health=HealthCheck(command="false", settle=0.0, timeout=0.1))
    done = await rig.run(_job(rig, signer, "2025.08.0-panics", boots=False, options=options), signer)
    assert rig.state.booted_slot() == "A"
    assert done.status == "needs-attention", (done.status, done.message, done.evidence)
    assert "`false` exited 1" in done.message


@pytest.mark.asyncio
async def test_control_good_flash_still_succeeds_and_records_once(rig: Rig, signer: Signer) -> None:
    # Not a bug: the control for the kill tests above (same rig, no kill): one "flash" record, B marked good.
    done = await rig.run(_job(rig, signer, "2025.09.0"), signer)
    assert done.status == "succeeded", done.message
    assert [r for a, _, r in rig.records if a == "flash"] == ["succeeded"]
    assert rig.state.read_env()["BOOT_B_LEFT"] == "3"
    assert json.loads(rig.store.path(done.id).read_text())["status"] == "succeeded"
    assert done.from_version == OLD


class _DropsOnBootMark:
    """The real SSH link, except that the device drops the link whenever the boot id is read (a device that
    answers `true` after each reconnect and then goes away again: a boot loop, a flapping radio)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind = inner, "ssh"
        self.boot_marks = 0

    async def run(self, command: str, timeout: float) -> Any:
        if "boot_id" in command:
            self.boot_marks += 1
            raise ConnectionResetError("the link dropped")
        return await self.inner.run(command, timeout)

    async def put(self, local: Path, remote: str, progress: Any) -> Any:
        return await self.inner.put(local, remote, progress)

    async def reconnect(self, timeout: float) -> None:
        await self.inner.reconnect(timeout)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.asyncio
async def test_resumed_reboot_step_on_a_flapping_link_gives_up_in_bounded_time(rig: Rig, signer: Signer) -> None:
    # BUG: boot._rebooted_meanwhile loops `while True`; when reading the boot id raises a link error it calls
    # _wait_back (which succeeds as soon as `true` answers) and `continue`s without looking at any deadline or
    # counter - the REBOOT_GRACE deadline is only checked after a successful read, and _drive's
    # LINK_TROUBLE_LIMIT never sees these errors. A device that answers and drops again keeps Siteline in
    # this loop forever (the job "running", the technician waiting). Fix: count the rounds (or check a
    # deadline of boot_timeout) in the except branch and let the LINK_ERRORS escape to _drive's
    # _link_trouble after a few, which bounds it and ends "needs-attention".
    import asyncio
    import time

    job = _job(rig, signer, "2025.10.0")
    with pytest.raises(Killed):  # killed right after the install: B is primary, the reboot is next
        await rig.run(job, signer, _step_ended("install", "done"))
    saved = rig.store.load(job.id)
    reboot = saved.step("reboot")  # as a kill right after Siteline sent `reboot` leaves it
    reboot.state, reboot.started = "running", time.time()
    saved.boot_id = "id:00000000-0000-4000-8000-000000000000"
    rig.store.save(saved)
    link = _DropsOnBootMark(ssh_link(rig.port, rig.known_hosts))
    task = asyncio.ensure_future(run_job(saved, link, store=rig.store, record=lambda *_: None, backends=backends(),
                                         keys=signer.keys))
    try:
        done = await asyncio.wait_for(asyncio.shield(task), 6.0)
    except TimeoutError:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pytest.fail(f"run_job still looping after 6 s ({link.boot_marks} boot-id reads, each followed by a "
                    "reconnect)")
    finally:
        await link.close()
    assert done.finished


# --- Risky item: RAUC keeps installing after the SSH client died (real RAUC 1.8 service) ------------------------

class _DropsDuringInstall:
    """The real SSH link, except that the first `rauc install` is left running on the device (as RAUC does when
    the SSH client dies under it) and the link then drops."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind = inner, "ssh"
        self.dropped = False

    async def run(self, command: str, timeout: float) -> Any:
        if command.startswith("rauc install") and not self.dropped:
            self.dropped = True
            started = await self.inner.run(f"setsid {command} >/dev/null 2>&1 </dev/null & sleep 0.5", 10.0)
            assert started.exit_code == 0, started
            raise ConnectionResetError("the link dropped during the install")
        return await self.inner.run(command, timeout)

    async def put(self, local: Path, remote: str, progress: Any) -> Any:
        return await self.inner.put(local, remote, progress)

    async def reconnect(self, timeout: float) -> None:
        await self.inner.reconnect(timeout)

    async def close(self) -> None:
        await self.inner.close()


def _slow_rauc_bundle(dev: Any, out: Path, version: str, seconds: float) -> Path:
    """A plain bundle whose slot pre-install hook sleeps: the install runs (Operation "installing") that long."""
    import shutil
    import subprocess

    from tests.peers.rauc_device import COMPATIBLE

    content = out.with_name(out.name + ".content")
    content.mkdir(parents=True)
    (content / "rootfs.img").write_bytes(bytes(range(256)) * 64)
    hook = content / "hook.sh"
    hook.write_text(f'#!/bin/sh\ncase "$1" in slot-pre-install) sleep {seconds} ;; esac\nexit 0\n')
    hook.chmod(0o755)
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={COMPATIBLE}\nversion={version}\n\n[bundle]\nformat=plain\n\n"
        "[hooks]\nfilename=hook.sh\n\n[image.rootfs]\nfilename=rootfs.img\nhooks=pre-install\n")
    subprocess.run([require_tool("rauc"), "bundle", f"--cert={dev.cert}", f"--key={dev.key}", str(content),
                    str(out)], check=True, capture_output=True, timeout=30)
    shutil.rmtree(content)
    return out


@pytest.mark.asyncio
async def test_install_still_running_after_a_link_drop_is_waited_for_not_reported_failed(tmp_path: Path) -> None:
    # Risky (R1): the link drops while `rauc install` runs; RAUC goes on. The resumed step found B not primary yet,
    # ran `rauc install` again, RAUC refused (busy), and the job said "failed, nothing switched" while the first
    # install then switched B. Now the resume waits for RAUC's Operation to be idle, then judges by the slots.
    from tests.peers.rauc_device import public_key_pem, sign_detached, start_rauc_device

    from siteline.core.flash.job import FlashOptions
    from siteline.core.flash.link import TransportLink
    from siteline.core.targets import parse_target
    from siteline.core.transports.base import Credentials
    from siteline.core.transports.ssh import SshTransport
    from siteline_slots.update import RaucBackend

    dev = start_rauc_device(tmp_path / "rauc-device")
    try:
        sshd = dev.sshd
        assert sshd is not None
        url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}"

        async def connect() -> SshTransport:
            t = SshTransport(parse_target(url), Credentials(key_path=str(sshd.client_key), use_agent=False),
                             tmp_path / "known_hosts", accept_new_host_key=True)
            await t.connect()
            return t

        keys = TrustedKeys(tmp_path / "trusted")
        keys.add(public_key_pem(dev), "rauc-test")
        image = _slow_rauc_bundle(dev, tmp_path / "slow-2.0.0.raucb", "2.0.0", 2.0)
        sign_detached(dev, image)
        (dev.dir / "upload").mkdir()
        job = prepare_flash(image, None, device="rauc-dev", site="lab", target=url,
                            options=FlashOptions(reboot=False, remote_dir=str(dev.dir / "upload")))
        link = _DropsDuringInstall(TransportLink(connect))
        try:
            done = await run_job(job, link, store=JobStore(tmp_path / "jobs"), record=lambda *_: None,
                                 backends=[RaucBackend()], keys=keys)
        finally:
            await link.close()
        assert link.dropped
        assert done.status == "installed", (done.status, done.message, done.evidence)
        assert any("waited for it" in line for line in done.evidence), done.evidence
        assert dev.fw_env()["BOOT_ORDER"].split()[0] == "B"
    finally:
        dev.stop()


class _SlotChangesFail:
    """The real SSH link, except that marking a slot (RAUC's mark-active / mark-good) fails once the image has
    been installed: a device whose bootloader env cannot be written any more."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind = inner, "ssh"
        self.installed = False
        self.refused: list[str] = []

    async def run(self, command: str, timeout: float) -> Any:
        from siteline.core.transports.base import Result

        if command.startswith("rauc install"):
            self.installed = True
        elif self.installed and ("mark-active" in command or "mark-good" in command):
            self.refused.append(command)
            return Result(1, "", "rauc: Failed marking slot: cannot write the bootloader environment")
        return await self.inner.run(command, timeout)

    async def put(self, local: Path, remote: str, progress: Any) -> Any:
        return await self.inner.put(local, remote, progress)

    async def reconnect(self, timeout: float) -> None:
        await self.inner.reconnect(timeout)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.asyncio
async def test_a_failed_keep_good_is_not_reported_as_primary_and_good_again(rig: Rig, signer: Signer) -> None:
    # Risky (R1): keep_good() only noted its failures, and the job still said the old slot "is primary and good
    # again". The image does not boot; the device falls back to A, but A cannot be made primary/good here.
    link = _SlotChangesFail(ssh_link(rig.port, rig.known_hosts))
    try:
        done = await run_job(_job(rig, signer, "2025.11.0-panics", boots=False), link, store=rig.store,
                             record=lambda *_: None, backends=backends(), keys=signer.keys)
    finally:
        await link.close()
    assert rig.state.booted_slot() == "A"
    assert link.refused, "the test did not reach keep_good"
    assert done.status == "needs-attention", (done.status, done.message)
    assert "good again" not in done.message, done.message
    assert "failed" in done.message, done.message
