"""The Update tab's recovery: a device whose slots ran out of boot attempts gets a red panel that resets the boot
counters over the window's session, records it, and goes away once the slots read back fine.

``SITELINE_SHOTS=/some/folder`` saves screenshots of the panel, its confirmation and the outcome.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.core.device.slot_actions import ActionOutcome
from siteline.core.inventory import DeviceEntry
from siteline.core.targets import Target
from siteline.core.transports.base import Credentials, Transport
from siteline.core.transports.ssh import SshTransport
from siteline.simulator.tools.systemctl import MARK_GOOD_UNIT, set_enabled
from siteline.ui.sessions import default_factory
from siteline.ui.update_steps import COUNTERS_FIRST, TOUCH_HEIGHT
from siteline.ui.update_tab import UpdateTab
from siteline_slots.parsers import merge, parse_fw_printenv, parse_rauc_status
from tests.gui.conftest import close_window, show, until
from tests.peers.sim import PASSWORD, make_state, running_device

DATA = Path(__file__).resolve().parents[1] / "data"
SHOTS = os.environ.get("SITELINE_SHOTS")
FACTORY_ENV = (DATA / "fw_printenv/rauc-factory-a.txt").read_text()

pytestmark = pytest.mark.timeout(60)


def shot(widget, name: str) -> None:
    if SHOTS:
        widget.grab().save(str(Path(SHOTS) / f"{name}.png"))


def slots_with(a_left: int, b_left: int):
    env = FACTORY_ENV.replace("BOOT_A_LEFT=3", f"BOOT_A_LEFT={a_left}")
    env = env.replace("BOOT_B_LEFT=3", f"BOOT_B_LEFT={b_left}")
    return merge(parse_rauc_status((DATA / "rauc/status-1.8.json").read_text()), parse_fw_printenv(env))


def make_tab(qtbot, slots) -> UpdateTab:
    tab = UpdateTab()
    qtbot.addWidget(tab)
    tab.resize(900, 760)
    tab.set_device("gw-roof-07", "Roof 7")
    tab.show_slots(slots)
    tab.set_connected(True)
    tab.show()
    return tab


def test_exhausted_counters_show_the_panel_with_each_slots_attempts(qtbot) -> None:
    tab = make_tab(qtbot, slots_with(0, 0))
    panel = tab.recovery
    assert panel.alarm.isVisible()
    assert panel.headline.text() == "⚠ gw-roof-07 may not boot again: every slot is out of boot attempts"
    assert panel.counters.text() == ("Slot A (1.1.0, running now) has 0 boot attempts left, "
                                     "slot B (1.2.0) has 0 boot attempts left.")
    assert panel.button.isEnabled()
    assert panel.button.minimumHeight() >= TOUCH_HEIGHT
    asked: list[bool] = []
    tab.sig_reset_counters_confirmed.connect(lambda: asked.append(True))
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    dialog = tab.dialog
    assert dialog is not None
    assert dialog.heading.text() == "Reset the boot counters of gw-roof-07?"
    # exactly what will be written, as the recovery runs it (the slots in the snapshot's order)
    assert "fw_setenv BOOT_B_LEFT 3 && fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_ORDER 'A B'" in dialog.effect.text()
    assert "slot A boots first" in dialog.effect.text()
    qtbot.keyClick(dialog, Qt.Key.Key_Return)  # a stray Enter is Cancel
    assert asked == []
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(tab.dialog.ok_button, Qt.MouseButton.LeftButton)
    assert asked == [True]
    tab.set_connected(False, "gw-roof-07 is not connected (retrying in 4 s).")
    assert not panel.button.isEnabled()
    assert panel.why_off.text() == "gw-roof-07 is not connected (retrying in 4 s)."


def test_the_running_slot_alone_out_of_attempts_also_shows_the_panel(qtbot) -> None:
    tab = make_tab(qtbot, slots_with(0, 3))
    assert tab.recovery.alarm.isVisible()
    assert "the running slot A has no boot attempts left" in tab.recovery.headline.text()


def test_a_failed_reset_says_what_happened_and_what_to_do(qtbot) -> None:
    tab = make_tab(qtbot, slots_with(0, 0))
    tab.show_recovery(True, None)
    assert not tab.recovery.button.isEnabled()
    assert tab.recovery.button.text() == "Resetting the boot counters…"
    tab.show_recovery(False, ActionOutcome(False, "failed", "The boot counters were not reset: `fw_setenv …` exited 1 "
                                           "(Cannot open /dev/mtd1).", "Check that the env is writable."))
    assert tab.recovery.alarm.isVisible()
    assert tab.recovery.result.text().startswith("✖ Reset failed: The boot counters were not reset")
    assert "What to do: Check that the env is writable." in tab.recovery.result.text()


def test_a_healthy_device_shows_no_panel(qtbot) -> None:
    tab = make_tab(qtbot, slots_with(3, 3))
    assert tab.recovery.alarm.isHidden()
    assert tab.recovery.result.isHidden()
    tab.show_slots(None)  # slots not read: nothing to say yet
    assert tab.recovery.alarm.isHidden()


# -- through the window, against a simulated device --------------------------------------------------------


def _ssh_factory(known_hosts: Path):
    def make(target: Target, creds: Credentials) -> Transport:
        return SshTransport(target, creds, known_hosts, accept_new_host_key=True, connect_timeout=3.0)

    return make


def test_reset_the_counters_of_a_simulated_device(make_window, aloop, qtbot, tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev", name="gw-stuck", boot_delay=0.05)
    assert set_enabled(state, MARK_GOOD_UNIT, False) == 0  # nothing on the device resets a counter by itself

    async def scenario() -> None:
        async with running_device(state) as device:
            state.write_env({**state.read_env(), "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"})  # what power cuts leave
            window = make_window(factory=_ssh_factory(tmp_path / "known_hosts"))
            entry = DeviceEntry(name="gw-stuck", target=f"ssh://root@127.0.0.1:{device.ssh_port}", site="Roof 7")
            window.load_devices([(entry, Credentials(username="root", password=PASSWORD, use_agent=False))])
            window.resize(1180, 860)
            await show(window)
            tab = window.page.update_tab
            window.page.tabs.setCurrentWidget(tab)
            panel = tab.recovery
            await until(lambda: panel.alarm.isVisible() and panel.button.isEnabled(), timeout=20,
                        what="recovery panel")
            assert "every slot is out of boot attempts" in panel.headline.text()
            assert "running now) has 0 boot attempts left" in panel.counters.text()
            shot(window, "recovery-panel")
            qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
            await until(lambda: tab.dialog is not None and tab.dialog.isVisible(), what="confirmation")
            assert "gw-stuck" in tab.dialog.heading.text()
            shot(tab.dialog, "recovery-confirm")
            tab.dialog.ok_button.click()
            await until(lambda: tab.reset_outcome is not None and not tab.resetting, timeout=20, what="reset done")
            assert tab.reset_outcome.ok, str(tab.reset_outcome)
            await until(lambda: panel.alarm.isHidden(), timeout=20, what="panel gone after the slots refresh")
            assert panel.result.text().startswith("✔ Boot counters reset: every slot has 3 boot attempts again")
            assert "Next: Reboot the device when ready" in panel.result.text()
            shot(window, "recovery-done")
            env = state.read_env()
            assert (env["BOOT_A_LEFT"], env["BOOT_B_LEFT"], env["BOOT_ORDER"]) == ("3", "3", "A B")
            keep = window.keep_ui.keep
            assert keep.flush_records()
            records = [r for r in keep.audit.records(device="gw-stuck") if r.action == "boot-counters-reset"]
            assert [(r.result, r.site) for r in records] == [("ok", "Roof 7")]
            await close_window(window)
        gc.collect()

    aloop.run(scenario(), timeout=50)


def test_after_a_needs_attention_job_the_panel_comes_first_and_flash_waits(qtbot) -> None:
    from siteline.core.flash.job import FlashJob

    tab = make_tab(qtbot, slots_with(3, 3))
    job = FlashJob.new(device="gw-roof-07", site="Roof 7", target="ssh://root@10.0.0.7", image="/img/u.raucb",
                       signature="/img/u.raucb.sig", image_sha256="ab" * 32, image_format="raucb",
                       image_version="2.0.0", image_size=1 << 20)
    tab.show_job(job)
    job = FlashJob.from_json(job.to_json())
    job.status, job.message = "needs-attention", "Both slots are out of boot attempts. Or let Siteline do it …"
    tab.show_job(job)
    assert tab.recovery.alarm.isHidden()  # the slots read before the job said nothing yet
    tab.show_slots(slots_with(0, 0))  # the controller reads them again after every job
    assert tab.recovery.alarm.isVisible()
    assert tab.recovery.button.isEnabled()
    assert tab.outcome.headline.text().startswith("⚠ Needs you")
    qtbot.mouseClick(tab.again_button, Qt.MouseButton.LeftButton)
    assert tab.flash_blocked() == COUNTERS_FIRST
    assert tab.flash_why.text() == COUNTERS_FIRST
    from siteline.core.images.gate import GateResult

    tab.show_gate(Path("/img/u.raucb"), GateResult(ok=True, reasons=[]))
    assert tab.flash_blocked() == COUNTERS_FIRST
    assert not tab.flash_button.isEnabled()
    assert not tab.rollback_button.isEnabled()
    assert tab.rollback_why.text().startswith("Reset the boot counters first")


def test_reset_over_the_serial_console_when_ssh_is_not_there(make_window, aloop, tmp_path: Path) -> None:
    """A device in that state may never get as far as SSH: the window's session is the serial console."""
    state = make_state(tmp_path / "dev", name="gw-serial", boot_delay=0.05)
    assert set_enabled(state, MARK_GOOD_UNIT, False) == 0
    link = tmp_path / "ttyGW"

    async def scenario() -> None:
        async with running_device(state, ssh=False, serial_link=link):
            state.write_env({**state.read_env(), "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"})
            window = make_window(factory=default_factory(tmp_path / "known_hosts"))
            entry = DeviceEntry(name="gw-serial", target=f"serial://{link}?baud=115200", site="Roof 7")
            window.load_devices([(entry, Credentials(username="root", password=PASSWORD, use_agent=False))])
            await show(window)
            tab = window.page.update_tab
            window.page.tabs.setCurrentWidget(tab)
            await until(lambda: tab.recovery.alarm.isVisible() and tab.recovery.button.isEnabled(), timeout=25,
                        what="recovery panel over serial")
            outcome = await window.updates.reset_counters("gw-serial")
            assert outcome is not None
            assert outcome.ok, str(outcome)
            env = state.read_env()
            assert (env["BOOT_A_LEFT"], env["BOOT_B_LEFT"], env["BOOT_ORDER"]) == ("3", "3", "A B")
            await until(lambda: tab.recovery.alarm.isHidden(), timeout=20, what="panel gone")
            await close_window(window)
        gc.collect()

    aloop.run(scenario(), timeout=50)
