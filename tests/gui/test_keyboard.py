"""Keyboard reach and glove-sized targets: Enter opens, F2 edits (rename keeps the session), F5 reads again."""

from __future__ import annotations

from PySide6.QtCore import Qt

from siteline.core.inventory import DeviceEntry
from siteline.core.transports.base import Credentials
from tests.gui.conftest import close_window, show, until


def test_keyboard_flow_and_row_height(make_window, aloop, qtbot) -> None:
    devices = [
        (DeviceEntry("gw-01", "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root")),
        (DeviceEntry("gw-02", "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root")),
    ]

    async def scenario() -> None:
        window = make_window()
        window.load_devices(devices)
        await show(window)
        assert window.keep_ui.sync_widget.word == "not configured"
        await until(lambda: window.sessions.all_up(), what="both up")
        tree = window.tree
        tree.setFocus()
        window._select("gw-01")
        assert tree.visualRect(window.model.index_of("gw-01")).height() >= 28  # gloved fingers

        qtbot.keyClick(tree, Qt.Key.Key_Down)
        assert window.selected_device() == "gw-02"
        qtbot.keyClick(tree, Qt.Key.Key_Return)
        assert window.page.tabs.hasFocus()
        assert window.page.device == "gw-02"

        window.page.overview.clear()
        qtbot.keyClick(window, Qt.Key.Key_F5)
        await until(lambda: window.page.overview.filled, what="refreshed overview")

        qtbot.keyClick(window, Qt.Key.Key_F2)
        dialog = window.device_dialog
        assert dialog is not None
        assert dialog.windowTitle() == "Edit device"
        dialog.name.setText("gw-01")
        assert not dialog.ok_button.isEnabled()  # taken by the other device
        assert "already a device called 'gw-01'" in dialog.message.text()
        dialog.name.setText("gw-02-north")
        dialog.site.setCurrentText("Tower 8")
        dialog.ok_button.click()
        assert window.model.entry("gw-02") is None
        assert window.model.entry("gw-02-north").site == "Tower 8"
        assert window.inventory.get("gw-02-north") is not None
        assert window.selected_device() == "gw-02-north"
        await until(lambda: window.sessions.state("gw-02-north").state.value == "up", what="renamed device up")
        assert window.sessions.get("gw-02") is None
        await close_window(window)

    aloop.run(scenario())
