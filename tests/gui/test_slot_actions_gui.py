"""Slot action buttons on the Slots panel and the confirmation dialog (typed device name for risky ones)."""

from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog

from siteline.core.device.slot_actions import SlotAction, perform
from siteline.core.device.slots import Slots
from siteline.core.inventory import DeviceEntry
from siteline.core.plugin_api import make_context
from siteline.core.targets import Target
from siteline.core.transports.base import Credentials, Result
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.ui.device_page import DevicePage
from siteline.ui.panels.slot_action_dialog import TOUCH_HEIGHT, SlotActionDialog, name_matches
from siteline.ui.panels.slots_panel import SlotsPanel
from siteline_slots.parsers import merge, parse_barebox_state, parse_fw_printenv, parse_rauc_status
from siteline_slots.probe import SlotsProbe
from tests.gui.conftest import close_window, show, until
from tests.gui.shell_transport import LocalShellTransport
from tests.peers.sim import make_state

DATA = Path(__file__).resolve().parents[1] / "data"
SHOTS = os.environ.get("SITELINE_SHOTS")  # a folder: save screenshots there to look at them


def golden(path: str) -> str:
    return (DATA / path).read_text()


def factory_rauc() -> Slots:
    return merge(parse_rauc_status(golden("rauc/status-1.8.json")),
                 parse_fw_printenv(golden("fw_printenv/rauc-factory-a.txt")))


def shot(widget, name: str) -> None:
    if SHOTS:
        widget.grab().save(str(Path(SHOTS) / f"{name}.png"))


def make_panel(qtbot, slots: Slots) -> SlotsPanel:
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 640)
    panel.show_slots(slots)
    return panel


def test_buttons_follow_the_actions_that_make_sense(qtbot) -> None:
    panel = make_panel(qtbot, factory_rauc())
    a, b = panel.boxes
    assert {v: btn.isEnabled() for v, btn in a.buttons.items()} == {
        "mark-good": False, "mark-bad": True, "mark-active": False}
    assert {v: btn.isEnabled() for v, btn in b.buttons.items()} == {
        "mark-good": False, "mark-bad": True, "mark-active": True}
    assert a.buttons["mark-good"].toolTip() == "Slot A is already marked good."
    assert a.buttons["mark-active"].toolTip() == "Slot A already boots next."
    assert b.buttons["mark-active"].toolTip().startswith("The device will boot slot B (1.2.0) at the next reboot")
    assert b.buttons["mark-active"].text() == "▶ Boot this next"
    assert all(btn.minimumHeight() >= TOUCH_HEIGHT for box in panel.boxes for btn in box.buttons.values())
    panel.show()
    shot(panel, "slots-panel-actions")


def test_click_emits_the_action(qtbot) -> None:
    panel = make_panel(qtbot, factory_rauc())
    got: list[SlotAction] = []
    panel.sig_action_requested.connect(got.append)
    qtbot.mouseClick(panel.boxes[1].buttons["mark-active"], Qt.MouseButton.LeftButton)
    assert [(a.verb, a.slot, a.command) for a in got] == [("mark-active", "B", "rauc status mark-active rootfs.1")]
    qtbot.mouseClick(panel.boxes[0].buttons["mark-good"], Qt.MouseButton.LeftButton)  # disabled: nothing
    assert len(got) == 1


def test_buttons_off_while_disconnected_and_after_a_failed_read(qtbot) -> None:
    panel = make_panel(qtbot, factory_rauc())
    panel.set_actions_enabled(False, "gw-01 is not connected.")
    assert not any(btn.isEnabled() for box in panel.boxes for btn in box.buttons.values())
    assert panel.boxes[1].buttons["mark-active"].toolTip() == "gw-01 is not connected."
    panel.show_slots(factory_rauc())  # a new snapshot keeps them off until the page says otherwise
    assert not panel.boxes[1].buttons["mark-active"].isEnabled()
    panel.set_actions_enabled(True)
    assert panel.boxes[1].buttons["mark-active"].isEnabled()
    panel.show_unavailable("rauc: not found")
    assert not panel.boxes[1].buttons["mark-active"].isEnabled()


def test_barebox_slots_show_disabled_buttons_saying_why(qtbot) -> None:
    slots = merge(None, parse_barebox_state(golden("barebox-state/system1-marked-bad.txt")), booted="system0")
    panel = make_panel(qtbot, slots)
    buttons = [btn for box in panel.boxes for btn in box.buttons.values()]
    assert buttons
    assert not any(btn.isEnabled() for btn in buttons)
    assert all("cannot change barebox" in btn.toolTip() for btn in buttons)


def test_dialog_for_a_routine_action_needs_no_typing(qtbot) -> None:
    slots = factory_rauc()
    action = next(a for a in make_panel(qtbot, slots).boxes[1].slot_actions.values() if a.verb == "mark-active")
    dialog = SlotActionDialog(action, "gw-01")
    qtbot.addWidget(dialog)
    assert dialog.typed is None
    assert dialog.ok_button.isEnabled()
    assert dialog.ok_button.text() == "Boot slot B next"
    assert dialog.command.toPlainText() == "rauc status mark-active rootfs.1"
    assert "A (1.1.0) stays as fallback" in dialog.effect.text()
    assert dialog.risk.text().startswith("⚠ Risk: medium")
    dialog.show()
    shot(dialog, "slot-action-dialog-medium")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_dialog_for_marking_the_running_slot_bad_wants_the_device_name(qtbot) -> None:
    panel = make_panel(qtbot, factory_rauc())
    action = panel.boxes[0].slot_actions["mark-bad"]
    assert action.typed_confirmation
    dialog = SlotActionDialog(action, "gw-roof-07")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.typed is not None
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.typed, "gw-roof-0")
    assert not dialog.ok_button.isEnabled()
    assert dialog.mismatch.text() == "That is not gw-roof-07."
    dialog.accept()  # Enter or a script: still refused while the name is wrong
    assert dialog.result() != QDialog.DialogCode.Accepted
    qtbot.keyClicks(dialog.typed, "7")
    assert dialog.ok_button.isEnabled()
    assert dialog.mismatch.text() == ""
    assert dialog.risk.text().startswith("⚠ Risk: HIGH")
    shot(dialog, "slot-action-dialog-typed")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_cancel_is_cancel(qtbot) -> None:
    action = make_panel(qtbot, factory_rauc()).boxes[0].slot_actions["mark-bad"]
    dialog = SlotActionDialog(action, "gw-01")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClick(dialog, Qt.Key.Key_Return)  # Enter lands on Cancel, never on the risky action
    assert dialog.result() == QDialog.DialogCode.Rejected


def test_name_matching_forgives_case_and_spaces_only() -> None:
    assert name_matches(" GW-01 ", "gw-01")
    assert not name_matches("gw-1", "gw-01")
    assert not name_matches("", "")


def test_click_confirm_perform_reprobe_against_a_simulated_device(qtbot, aloop, tmp_path: Path) -> None:
    """The flow the device page wires: button -> dialog -> perform (audited) -> re-probe -> the panel shows it."""
    device = make_state(tmp_path / "dev", name="gw-gui")

    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(device, command, timeout=timeout)
        return Result(code, out.decode(), err.decode())

    ctx = make_context("gw-gui", "sim://gw-gui", run, logging.getLogger("test"))
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    panel.show_slots(aloop.run(SlotsProbe().collect(ctx)))
    requested: list[SlotAction] = []
    panel.sig_action_requested.connect(requested.append)
    qtbot.mouseClick(panel.boxes[1].buttons["mark-active"], Qt.MouseButton.LeftButton)
    dialog = SlotActionDialog(requested[0], "gw-gui")
    qtbot.addWidget(dialog)
    dialog.open()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted
    audit: list[tuple[str, dict, str]] = []
    outcome = aloop.run(perform(dialog.action, run, lambda n, d, r: audit.append((n, d, r))))
    assert outcome.ok, outcome
    assert [(n, r) for n, _d, r in audit] == [("slot-mark", "ok")]
    panel.show_slots(aloop.run(SlotsProbe().collect(ctx)))
    a, b = panel.boxes
    assert b.next_badge.text() == "▶ NEXT BOOT"
    assert not b.buttons["mark-active"].isEnabled()
    assert a.buttons["mark-active"].isEnabled()  # going back is offered
    assert "it will switch slots on reboot" in panel.sentence.text()


def test_outcome_line_says_what_happened(qtbot) -> None:
    panel = make_panel(qtbot, factory_rauc())
    assert panel.outcome.isHidden()
    panel.show_action_outcome("Boot slot B next: running…", None)
    assert panel.outcome.text() == "… Boot slot B next: running…"
    panel.show_action_outcome("Mark slot B bad: not done — rauc failed (exit 1: rauc mark: ...).", False)
    assert panel.outcome.text().startswith("⚠ Mark slot B bad: not done")
    assert not panel.outcome.isHidden()
    panel.show_slots(factory_rauc())  # a re-probe keeps the line: it says what was done
    assert not panel.outcome.isHidden()


class SimShellTransport(LocalShellTransport):
    """The local-shell transport, but each command runs on a simulated device (its shims, its state dir)."""

    device: DeviceState

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        code, out, err = await run_command(self.device, command, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))


def test_window_confirms_runs_audits_and_rereads(make_window, aloop, qtbot, tmp_path: Path) -> None:
    """The device page's wiring (lead's part): button -> dialog -> perform over the session -> keep -> re-probe."""
    if not hasattr(DevicePage, "sig_slot_action_requested"):
        pytest.skip("the Slots panel is not wired into the device page yet")
    state = make_state(tmp_path / "dev", name="gw-win")

    def factory(target: Target, credentials: Credentials) -> SimShellTransport:
        transport = SimShellTransport(target, credentials)
        transport.device = state
        return transport

    async def scenario() -> None:
        window = make_window(factory=factory)
        window.load_devices([(DeviceEntry(name="gw-win", target="ssh://root@127.0.0.1:22", site="Roof 7"),
                              Credentials(username="root"))])
        await show(window)
        tab = window.page.panel_tabs["slots"]
        await until(lambda: tab.latest is not None, timeout=30, what="slots probed")
        window.page.tabs.setCurrentWidget(tab)
        await until(lambda: window.page.slots_panel is not None and bool(window.page.slots_panel.boxes))
        panel = window.page.slots_panel
        await until(lambda: panel.boxes[1].buttons["mark-active"].isEnabled(), what="actions enabled")
        qtbot.mouseClick(panel.boxes[1].buttons["mark-active"], Qt.MouseButton.LeftButton)
        await until(lambda: isinstance(QApplication.activeModalWidget(), SlotActionDialog), what="dialog")
        dialog = QApplication.activeModalWidget()
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
        await until(lambda: panel.outcome.text().startswith("✔ Done"), timeout=30, what="action done")
        await until(lambda: window.page.slots_panel.boxes[1].next_badge.text() == "▶ NEXT BOOT", timeout=30,
                    what="re-probed slots")
        assert state.read_env()["BOOT_ORDER"] == "B A"
        shot(window, "window-slots")
        keep = window.keep_ui.keep
        assert keep.flush_records()
        records = [r for r in keep.audit.records(device="gw-win") if r.action == "slot-mark"]
        assert [(r.result, r.site, json.loads(r.detail)["verb"]) for r in records] == [("ok", "Roof 7", "mark-active")]
        assert json.loads(records[0].detail)["command"] == "rauc status mark-active rootfs.1"
        await close_window(window)
        gc.collect()  # anything this window left behind shows up here, in this test, not in the next one

    aloop.run(scenario(), timeout=90)
