"""The device page's Update tab: the gate's verdict, the steps of a job in any state, confirmations, the
resume banner, and a real flash and rollback against a simulated device over SSH through the window.

``SITELINE_SHOTS=/some/folder`` saves screenshots of the tab before, during and after a flash.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from siteline import paths
from siteline.core.flash.job import FlashJob, FlashOptions, HealthCheck
from siteline.core.flash.store import JobStore
from siteline.core.images.gate import GateResult, Overrides, bootloader_phrase, check_before_flash
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.inventory import DeviceEntry
from siteline.core.targets import Target
from siteline.core.transports.base import Credentials, Transport
from siteline.core.transports.ssh import SshTransport
from siteline.ui.panels import tone_colour
from siteline.ui.update_steps import TOUCH_HEIGHT, ConfirmDialog
from siteline.ui.update_tab import UpdateTab
from siteline.ui.update_verify import remaining
from siteline_slots.parsers import merge, parse_fw_printenv, parse_rauc_status
from tests.gui.conftest import close_window, show, until
from tests.peers import require_tool
from tests.peers.sim import PASSWORD, make_state, running_device

DATA = Path(__file__).resolve().parents[1] / "data"
SHOTS = os.environ.get("SITELINE_SHOTS")
COMPATIBLE = "nwedge-gw-imx8mm"  # the simulator's devices
GOLDEN_COMPATIBLE = "acme-gw"  # tests/data/rauc/status-1.8.json
MIB = 1 << 20

pytestmark = pytest.mark.timeout(60)


def shot(widget, name: str) -> None:
    if SHOTS:  # no processEvents here: inside a coroutine on the qasync loop it would re-enter the loop
        widget.grab().save(str(Path(SHOTS) / f"{name}.png"))


def factory_slots():
    return merge(parse_rauc_status((DATA / "rauc/status-1.8.json").read_text()),
                 parse_fw_printenv((DATA / "fw_printenv/rauc-factory-a.txt").read_text()))


def make_tab(qtbot) -> UpdateTab:
    tab = UpdateTab()
    qtbot.addWidget(tab)
    tab.resize(900, 760)
    tab.set_device("gw-roof-07", "Roof 7")
    tab.show_slots(factory_slots())
    tab.set_connected(True)
    return tab


def _openssl(*args: str | Path) -> None:
    done = subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EC key and certificate (signs the bundle's CMS and the detached .sig), its public key in pub.pem."""
    d = tmp_path_factory.mktemp("signer")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             d / "key.pem", "-out", d / "cert.pem", "-days", "1", "-subj", "/CN=siteline-update-tab-test")
    _openssl("pkey", "-in", d / "key.pem", "-pubout", "-out", d / "pub.pem")
    return d


def bundle(signer: Path, out_dir: Path, version: str, *, boots: bool = True, bootloader: bool = False,
           compatible: str = COMPATIBLE) -> Path:
    """A real `rauc bundle` for the simulator's devices, with its detached signature as ops teams make it."""
    content = out_dir / f"content-{version}"
    content.mkdir(parents=True)
    (content / "rootfs.ext4").write_bytes(os.urandom(65536))
    extra = "\n[image.bootloader]\nfilename=u-boot.img\n" if bootloader else ""
    if bootloader:
        (content / "u-boot.img").write_bytes(os.urandom(1024))
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={compatible}\nversion={version}\n\n"
                                            f"[image.rootfs]\nfilename=rootfs.ext4\n{extra}")
    (content / "siteline-sim.conf").write_text(f"[siteline-sim]\nboots={str(boots).lower()}\n")
    out = out_dir / f"update-{version}.raucb"
    done = subprocess.run([require_tool("rauc"), "bundle", f"--cert={signer / 'cert.pem'}",
                           f"--key={signer / 'key.pem'}", content, out], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    _openssl("dgst", "-sha256", "-sign", signer / "key.pem", "-out", f"{out}.sig", out)
    return out


def trusted(signer: Path, root: Path) -> TrustedKeys:
    keys = TrustedKeys(root)
    keys.add((signer / "pub.pem").read_bytes(), "ops-2026")
    return keys


def job_at_transfer() -> FlashJob:
    job = FlashJob.new(device="gw-roof-07", site="Roof 7", target="ssh://root@10.0.0.7", image="/img/update-2.0.raucb",
                       signature="/img/update-2.0.raucb.sig", image_sha256="ab" * 32, image_format="raucb",
                       image_version="2.0.0", image_size=64 * MIB)
    preflight, transfer = job.step("preflight"), job.step("transfer")
    preflight.state, preflight.detail = "done", "slot A booted and good; slot B free; 1.2 GiB free in /var/tmp"
    transfer.state, transfer.detail = "running", "over SSH, 6.1 MiB/s"
    transfer.done, transfer.total, transfer.eta = 40 * MIB, 64 * MIB, 80.0
    return job


# -- the gate's verdict -------------------------------------------------------------------------------


def test_unsigned_image_is_refused_with_the_reason_and_what_to_do(qtbot, tmp_path: Path) -> None:
    tab = make_tab(qtbot)
    image = tmp_path / "update-2.0.raucb"
    image.write_bytes(b"hsqs" + os.urandom(4000))
    gate = check_before_flash(image, None, tab.device_facts, Overrides(), TrustedKeys(tmp_path / "keys"))
    tab.show_gate(image, gate)
    tab.show()
    assert not tab.flash_button.isEnabled()
    assert tab.flash_button.minimumHeight() >= TOUCH_HEIGHT
    assert tab.verdict.text() == "✖ Will not flash: unsigned, unreadable image"
    assert tab.flash_why.text() == "Refused: unsigned, unreadable image (see Verification above)."
    assert tab.flash_button.toolTip() == tab.flash_why.text()
    assert "What to do: Get the .sig file" in tab.reasons.text()
    assert tab.reasons.palette().color(tab.reasons.foregroundRole()) == tone_colour(tab.reasons, "bad")
    assert tab.steps_box.isHidden()
    shot(tab, "update-refused")


def test_overrides_lift_only_their_own_refusal() -> None:
    gate = GateResult(ok=False, reasons=["downgrade: 1.0 is older than 2.0",
                                         'it rewrites the bootloader: to flash it anyway type exactly "X"'])
    assert remaining(gate, True, "", "X") == ['it rewrites the bootloader: to flash it anyway type exactly "X"']
    assert remaining(gate, True, "X", "X") == []
    assert remaining(gate, False, "x", "X") == gate.reasons  # the phrase must be exact
    assert remaining(GateResult(ok=False, reasons=["unsigned: no .sig"]), True, "X", "X") == ["unsigned: no .sig"]


def test_signed_image_enables_flash_and_the_dialog_says_what_happens(qtbot, tmp_path: Path, signer: Path) -> None:
    tab = make_tab(qtbot)
    image = bundle(signer, tmp_path, "2025.01.0", compatible=GOLDEN_COMPATIBLE)
    gate = check_before_flash(image, None, tab.device_facts, Overrides(), trusted(signer, tmp_path / "keys"))
    tab.show_gate(image, gate)
    tab.show()
    assert gate.ok, gate.reasons
    assert tab.verdict.text() == "✔ Ready to flash: signed by ops-2026, made for this device"
    assert "key ops-2026 SHA256:" in tab.facts.text()
    assert tab.flash_button.isEnabled()
    assert tab.flash_button.text() == "⚡ Flash 2025.01.0 to gw-roof-07"
    shot(tab, "update-before")
    got: list[FlashOptions] = []
    tab.sig_flash_confirmed.connect(got.append)
    tab.reboot_now.setChecked(False)
    qtbot.mouseClick(tab.flash_button, Qt.MouseButton.LeftButton)
    dialog = tab.dialog
    assert isinstance(dialog, ConfirmDialog)
    assert dialog.heading.text() == "Flash 2025.01.0 to gw-roof-07?"
    assert "to gw-roof-07 at site Roof 7" in dialog.effect.text()
    assert "Does not reboot: 2025.01.0 starts at the next reboot." in dialog.effect.text()
    assert "Installs 2025.01.0 into slot B (1.2.0), the slot not running now. Slot A (1.1.0) stays" in \
        dialog.effect.text()
    shot(dialog, "update-confirm")
    qtbot.keyClick(dialog, Qt.Key.Key_Return)  # a stray Enter is Cancel
    assert dialog.result() == QDialog.DialogCode.Rejected
    assert got == []
    qtbot.mouseClick(tab.flash_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(tab.dialog.ok_button, Qt.MouseButton.LeftButton)
    assert [o.reboot for o in got] == [False]
    tab.set_connected(False, "gw-roof-07 is not connected (retrying in 4 s).")
    assert not tab.flash_button.isEnabled()
    assert tab.flash_why.text() == "gw-roof-07 is not connected (retrying in 4 s)."


def test_bootloader_image_needs_the_exact_phrase(qtbot, tmp_path: Path, signer: Path) -> None:
    tab = make_tab(qtbot)
    image = bundle(signer, tmp_path, "2025.01.0", bootloader=True, compatible=GOLDEN_COMPATIBLE)
    gate = check_before_flash(image, None, tab.device_facts, Overrides(), trusted(signer, tmp_path / "keys"))
    tab.show_gate(image, gate)
    tab.show()
    phrase = bootloader_phrase(tab.device_facts)
    assert tab.phrase.isVisible()
    assert phrase in tab.phrase_label.text()
    assert not tab.flash_button.isEnabled()
    qtbot.keyClicks(tab.phrase, phrase.upper())
    assert not tab.flash_button.isEnabled()
    tab.phrase.setText(phrase)
    assert tab.flash_button.isEnabled()
    assert tab.options().bootloader_override == phrase


# -- a job in any state ----------------------------------------------------------------------------------


def test_running_job_shows_its_steps_progress_eta_and_when_cancel_is_safe(qtbot) -> None:
    tab = make_tab(qtbot)
    job = job_at_transfer()
    tab.show_job(job)
    tab.show()
    transfer = tab.steps.row("transfer")
    assert transfer.mark.text() == "▶"
    assert transfer.bar.isVisible()
    assert transfer.bar.format() == "40.0 MiB of 64.0 MiB · 1:20 left"
    assert transfer.bar.value() == 625
    assert tab.steps.row("preflight").mark.text() == "✔"
    assert not tab.steps.row("install").bar.isVisible()
    assert tab.image_box.isHidden()  # one thing going on: the steps
    assert tab.flash_button.isHidden()
    assert tab.cancel_button.isEnabled()
    assert not tab.rollback_button.isEnabled()
    assert tab.running_line.text() == "Flashing 2.0.0 to gw-roof-07…"
    shot(tab, "update-during")
    job.step("transfer").state = "done"
    job.step("install").state = "running"
    tab.show_job(job)
    assert not tab.cancel_button.isEnabled()
    assert tab.cancel_button.toolTip().startswith("Cannot cancel now: 'Install into the other slot'")


def test_finished_job_shows_the_outcome_in_words(qtbot) -> None:
    tab = make_tab(qtbot)
    job = job_at_transfer()
    tab.show_job(job)
    job = FlashJob.from_json(job.to_json())  # the machine's next saved state
    for step in job.steps:
        step.state = "done"
    job.step("health").state = "failed"
    job.step("mark-good").state = "skipped"
    job.status = "rolled-back"
    job.message = "2.0.0 booted on B but edge-agent.service stayed inactive; back on A (1.1.0), primary and good"
    job.evidence = ["booted B, 2 attempts left", "edge-agent.service: inactive (failed)", "booted A"]
    tab.show_job(job)
    tab.show()
    assert tab.outcome.headline.text().startswith("⚠ Rolled back")
    assert "edge-agent.service stayed inactive" in tab.outcome.message.text()
    assert "  • booted A" in tab.outcome.evidence.text()
    assert tab.cancel_button.isHidden()
    assert tab.again_button.isVisible()
    assert not tab.rollback_button.isEnabled()  # the slots changed under the job: read them first
    assert tab.rollback_why.text() == "Reading the device's slots again after the last job…"
    tab.show_slots(factory_slots())
    assert tab.rollback_button.isEnabled()
    qtbot.mouseClick(tab.again_button, Qt.MouseButton.LeftButton)
    assert tab.image_box.isVisible()


def test_rollback_asks_first_naming_the_device_and_slots(qtbot) -> None:
    tab = make_tab(qtbot)
    tab.show()
    asked: list[bool] = []
    tab.sig_rollback_confirmed.connect(lambda: asked.append(True))
    qtbot.mouseClick(tab.rollback_button, Qt.MouseButton.LeftButton)
    dialog = tab.dialog
    assert dialog is not None
    assert dialog.heading.text() == "Roll gw-roof-07 back to slot B (1.2.0)?"
    assert "gw-roof-07 runs slot A (1.1.0) now" in dialog.effect.text()
    assert asked == []
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert asked == [True]


def test_resume_banner_offers_an_unfinished_job(qtbot) -> None:
    tab = make_tab(qtbot)
    job = job_at_transfer()
    tab.show_resumable(job)
    tab.show()
    assert tab.banner.isVisible()
    assert "did not finish" in tab.banner_text.text()
    asked: list[str] = []
    tab.sig_resume_requested.connect(asked.append)
    qtbot.mouseClick(tab.resume_button, Qt.MouseButton.LeftButton)
    assert asked == [job.id]
    tab.set_connected(False, "gw-roof-07 is not connected.")
    assert not tab.resume_button.isEnabled()


# -- through the window, against a simulated device --------------------------------------------------------


def _machine_ready() -> bool:
    try:
        import siteline.core.flash.machine  # noqa: F401
    except ImportError:
        return False
    return True


def _ssh_factory(known_hosts: Path):
    def make(target: Target, creds: Credentials) -> Transport:
        return SshTransport(target, creds, known_hosts, accept_new_host_key=True, connect_timeout=3.0)

    return make


async def confirm(tab: UpdateTab) -> None:
    """Press the confirmation's action button once the dialog is up (on a real display that takes a moment)."""
    await until(lambda: tab.dialog is not None and tab.dialog.isVisible(), what="confirmation dialog")
    tab.dialog.ok_button.click()


FAST = FlashOptions(boot_timeout=20.0, health=HealthCheck(settle=0.0, timeout=1.0), remote_dir="/var/tmp")


async def open_on_update_tab(make_window, device, tmp_path: Path, signer: Path):
    """A window with the simulated device in its list, its Update tab shown once the slots are read."""
    window = make_window(factory=_ssh_factory(tmp_path / "known_hosts"))
    trusted(signer, paths.data_dir() / "trusted-keys")
    entry = DeviceEntry(name=device.state.hostname(), target=f"ssh://root@127.0.0.1:{device.ssh_port}",
                        site="Roof 7")
    window.load_devices([(entry, Credentials(username="root", password=PASSWORD, use_agent=False))])
    window.resize(1180, 860)
    await show(window)
    tab = window.page.update_tab
    tab.base_options = FAST
    window.page.tabs.setCurrentWidget(tab)
    await until(lambda: tab.slots is not None and tab.connected, timeout=30, what="slots read")
    return window, tab


async def flash(qtbot, tab: UpdateTab, image: Path) -> FlashJob:
    tab.choose_image(image)
    await until(lambda: tab.flash_button.isEnabled(), timeout=20, what="image verified")
    qtbot.mouseClick(tab.flash_button, Qt.MouseButton.LeftButton)
    await confirm(tab)
    await until(lambda: tab.job is not None and tab.job.finished, timeout=45, what="flash finished")
    return tab.job


@pytest.mark.skipif(not _machine_ready(), reason="the flash machine is not there yet")
def test_flash_then_roll_back_a_simulated_device(make_window, aloop, qtbot, tmp_path: Path, signer: Path) -> None:
    state = make_state(tmp_path / "dev", name="gw-sim", boot_delay=0.1)
    image = bundle(signer, tmp_path, "2025.01.0")

    async def scenario() -> None:
        async with running_device(state) as device:
            window, tab = await open_on_update_tab(make_window, device, tmp_path, signer)
            tab.choose_image(image)
            await until(lambda: tab.flash_button.isEnabled(), timeout=20, what="image verified")
            shot(window, "window-update-before")
            job = await flash(qtbot, tab, image)
            assert job.status == "succeeded", (job.message, job.evidence)
            assert tab.outcome.headline.text().startswith("✔ Updated")
            shot(window, "window-update-succeeded")
            await until(lambda: tab.rollback_button.isEnabled(), timeout=20, what="rollback offered")
            qtbot.mouseClick(tab.rollback_button, Qt.MouseButton.LeftButton)
            await confirm(tab)
            await until(lambda: tab.job is not None and tab.job.kind == "rollback" and tab.job.finished,
                        timeout=45, what="rollback finished")
            assert tab.job.status in ("succeeded", "rolled-back"), (tab.job.message, tab.job.evidence)
            assert tab.outcome.headline.text().startswith("✔ Rolled back")
            shot(window, "window-update-rolled-back-by-hand")
            keep = window.keep_ui.keep
            assert keep.flush_records()
            actions = [(r.action, r.result, r.site) for r in keep.audit.records(device="gw-sim")]
            assert ("flash", "succeeded", "Roof 7") in actions
            assert any(a == "rollback" for a, _r, _s in actions)
            assert any(a == "flash-step" for a, _r, _s in actions)
            await close_window(window)
        gc.collect()

    aloop.run(scenario(), timeout=100)


@pytest.mark.skipif(not _machine_ready(), reason="the flash machine is not there yet")
def test_resumed_job_with_an_image_that_does_not_boot_ends_rolled_back(make_window, aloop, qtbot, tmp_path: Path,
                                                                       signer: Path) -> None:
    """A job Siteline left unfinished is offered at start; resumed, its image does not boot: rolled back."""
    from siteline.core.flash.machine import prepare_flash

    state = make_state(tmp_path / "dev", name="gw-bad", boot_delay=0.05)
    image = bundle(signer, tmp_path, "2025.02.0", boots=False)

    async def scenario() -> None:
        async with running_device(state) as device:
            target = f"ssh://root@127.0.0.1:{device.ssh_port}"
            left = prepare_flash(image, None, device="gw-bad", site="Roof 7", target=target, options=FAST)
            JobStore(paths.data_dir() / "flash-jobs").save(left)
            window, tab = await open_on_update_tab(make_window, device, tmp_path, signer)
            assert tab.banner.isVisible()
            await until(lambda: tab.resume_button.isEnabled(), what="resume offered")
            qtbot.mouseClick(tab.resume_button, Qt.MouseButton.LeftButton)
            await until(lambda: tab.job is not None and tab.job.finished, timeout=45, what="resumed job finished")
            job = tab.job
            assert job.id == left.id
            assert job.status == "rolled-back", (job.message, job.evidence)
            assert tab.banner.isHidden()
            assert tab.outcome.headline.text().startswith("⚠ Rolled back")
            assert job.message in tab.outcome.message.text()
            assert tab.outcome.evidence.isVisibleTo(tab)
            shot(window, "window-update-rolled-back")
            await until(lambda: not tab.rollback_button.isEnabled() and "marked bad" in tab.rollback_why.text(),
                        timeout=20, what="rollback to the bad slot refused")
            shot(window, "window-update-rolled-back-reread")
            await close_window(window)
        gc.collect()

    aloop.run(scenario(), timeout=100)


def test_an_image_checked_before_the_slots_were_read_is_checked_again(qtbot) -> None:
    tab = UpdateTab()
    qtbot.addWidget(tab)
    tab.set_device("gw-roof-07", "Roof 7")
    asked: list[Path] = []
    tab.sig_image_chosen.connect(asked.append)
    tab.show_gate(Path("/img/u.raucb"), GateResult(ok=False, reasons=["device compatible unknown: read the slots"]))
    tab.show_slots(factory_slots())
    assert asked == [Path("/img/u.raucb")]
    tab.show_slots(factory_slots())  # only while the verdict still lacks the device
    assert len(asked) == 2  # the controller has not answered yet: asked again, harmless


def test_unfinished_job_is_offered_on_its_devices_tab_at_start(make_window, aloop, home: Path) -> None:
    job = replace(job_at_transfer(), device="gw-left", target="ssh://root@127.0.0.1:1")
    JobStore(paths.data_dir() / "flash-jobs").save(job)

    async def scenario() -> None:
        window = make_window()
        window.load_devices([(DeviceEntry(name="gw-left", target="ssh://root@127.0.0.1:1", site="Roof 7"),
                              Credentials(username="root"))])
        await show(window)
        tab = window.page.update_tab
        assert tab.device == "gw-left"
        window.page.tabs.setCurrentWidget(tab)
        assert tab.banner.isVisible()
        assert "An update to 2.0.0 of gw-left did not finish" in tab.banner_text.text()
        assert "gw-left" in window.status.currentMessage()
        await close_window(window)

    aloop.run(scenario())
    assert json.loads((paths.data_dir() / "flash-jobs" / f"{job.id}.json").read_text())["status"] == "running"


def test_cancel_stops_the_job_only_while_that_is_safe(make_window, aloop, qtbot) -> None:
    async def scenario() -> None:
        window = make_window()
        window.load_devices([(DeviceEntry(name="gw-roof-07", target="ssh://root@127.0.0.1:1", site="Roof 7"),
                              Credentials(username="root"))])
        await show(window)
        tab, state = window.page.update_tab, window.updates.state("gw-roof-07")
        job = job_at_transfer()
        state.job, state.task = job, asyncio.ensure_future(asyncio.sleep(30))
        tab.show_job(job)
        job.step("transfer").state, job.step("install").state = "done", "running"
        tab.show_job(job)
        qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)  # disabled while installing
        window.updates.cancel()  # and refused when asked anyway
        await asyncio.sleep(0)
        assert not state.task.cancelled()
        job.step("install").state, job.step("transfer").state = "pending", "running"
        tab.show_job(job)
        qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
        await asyncio.sleep(0)
        assert state.task.cancelled()
        await close_window(window)

    aloop.run(scenario())


def test_a_healthy_device_shows_no_boot_counter_panel(qtbot) -> None:
    tab = make_tab(qtbot)  # A and B with 3 attempts each
    tab.show()
    assert tab.recovery.alarm.isHidden()
    assert tab.recovery.result.isHidden()
    assert not tab.counters_out
    assert tab.rollback_button.isEnabled()
