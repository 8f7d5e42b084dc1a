"""The main window: add/validate/persist devices, connection states, removal, Overview, password prompt."""

from __future__ import annotations

import asyncio
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from siteline.core.backoff import Backoff
from siteline.core.targets import TargetError, parse_target
from siteline.core.transports.base import ConnState
from siteline.ui.device_tree_model import STATE_COLUMN
from tests.gui.conftest import close_window, show, until
from tests.gui.shell_transport import password_factory
from tests.peers import free_port


def test_add_device_validates_and_persists(make_window, aloop, qtbot, home) -> None:
    async def first_run() -> None:
        window = make_window()
        window.load_devices()
        await show(window)
        assert window.status.devices.text().startswith("No devices yet")
        qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
        dialog = window.device_dialog
        assert dialog is not None
        assert dialog.isVisible()
        dialog.name.setText("gw-01")
        dialog.site.setCurrentText("Tower 7")
        bad = "ssh://root@10.0.0.5:99999"
        dialog.target.setText(bad)
        expected = _target_error(bad)
        assert expected.message in dialog.message.text()
        assert expected.hint in dialog.message.text()
        assert not dialog.ok_button.isEnabled()
        dialog.target.setText("serial:///dev/ttyUSB7?baud=115200")
        dialog.username.setText("root")
        assert dialog.ok_button.isEnabled(), dialog.message.text()
        assert "Serial console" in dialog.message.text()
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
        assert window.model.entry("gw-01") is not None
        assert window.selected_device() == "gw-01"
        assert window.stack.currentWidget() is window.page
        await close_window(window)

    async def second_run() -> None:
        window = make_window()
        window.load_devices()
        entry = window.model.entry("gw-01")
        assert entry is not None
        assert entry.site == "Tower 7"
        assert entry.username == "root"
        assert window.selected_device() == "gw-01"  # the selection came back too
        await close_window(window)

    aloop.run(first_run())
    assert (home / "config" / "devices.json").is_file()
    assert (home / "config" / "window.json").is_file()
    aloop.run(second_run())


def _target_error(text: str) -> TargetError:
    try:
        parse_target(text)
    except TargetError as exc:
        return exc
    raise AssertionError(f"{text} parsed")


def test_closed_port_retries_then_removal_stops_session(make_window, aloop, qtbot) -> None:
    """The real transport factory against a port nobody listens on."""
    from siteline import paths
    from siteline.ui.sessions import default_factory

    port = free_port()

    async def scenario() -> None:
        window = make_window(
            factory=default_factory(paths.data_dir() / "known_hosts"),
            backoff=lambda: Backoff(initial=30.0, jitter=0.0),  # long enough to read the countdown
        )
        window.load_devices()
        await show(window)
        window.inventory.upsert(_entry("edge-1", f"ssh://root@127.0.0.1:{port}"))
        window.load_devices()
        index = lambda: window.model.index_of("edge-1", STATE_COLUMN)  # noqa: E731
        await until(lambda: str(index().data()).startswith("retrying"), what="retrying state")
        first = index().data()
        assert 25 <= int(first.split()[2]) <= 30, first  # counting down from the 30 s backoff
        state = window.sessions.state("edge-1")
        assert state.reason
        assert state.reason in index().data(Qt.ItemDataRole.ToolTipRole)
        assert state.reason in window.page._state.text()  # the page says why too
        await asyncio.sleep(1.3)  # the once-a-second ticker moves the countdown
        assert index().data() != first

        window.tree.setFocus()
        window._select("edge-1")
        qtbot.keyClick(window.tree, Qt.Key.Key_Delete)
        box = window.confirm_box
        assert box is not None
        assert "edge-1" in box.text()
        box.button(QMessageBox.StandardButton.Yes).click()
        assert window.model.entry("edge-1") is None
        assert window.inventory.get("edge-1") is None
        await until(lambda: not window.sessions._stopping, what="session stopped")
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t for t in pending if "session" in t.get_name()], pending
        await close_window(window)

    aloop.run(scenario())


def _entry(name: str, target: str, site: str = "Tower 7"):
    from siteline.core.inventory import DeviceEntry

    return DeviceEntry(name=name, target=target, site=site)


def test_device_up_fills_overview(make_window, aloop) -> None:
    async def scenario() -> None:
        window = make_window()
        window.load_devices([(_entry("local", "ssh://root@127.0.0.1:22"), _creds())])
        await show(window)
        await until(lambda: window.page.overview.filled, what="overview filled")
        assert window.model.index_of("local", STATE_COLUMN).data() == "up"
        assert window.page.overview.value("kernel") == os.uname().release
        assert window.page.overview.value("uptime") != "—"
        assert window.status.devices.text() == "1 of 1 devices up"
        await close_window(window)

    aloop.run(scenario())


def _creds():
    from siteline.core.transports.base import Credentials

    return Credentials(username="root")


def test_password_prompt_reconnects(make_window, aloop, qtbot, home) -> None:
    async def scenario() -> None:
        window = make_window(factory=password_factory("s3cret"))
        window.load_devices([(_entry("locked", "ssh://root@127.0.0.1:22"), _creds())])
        await show(window)
        await until(lambda: window.password_dialog is not None and window.password_dialog.isVisible(), what="prompt")
        assert window.sessions.state("locked").state is ConnState.DOWN
        dialog = window.password_dialog
        assert dialog.device == "locked"
        qtbot.keyClicks(dialog.password, "s3cret")
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()
        await until(lambda: window.sessions.state("locked").state is ConnState.UP, what="up after password")
        await close_window(window)

    aloop.run(scenario())
    saved = home / "config" / "devices.json"
    assert "s3cret" not in saved.read_text()  # the password lives in memory only


def test_diagnostics_is_one_click_from_the_device_page(make_window, aloop, qtbot, home) -> None:
    """The page's Diagnostics… button opens the bundle dialog for the device shown."""
    from PySide6.QtWidgets import QPushButton

    from siteline.core.inventory import DeviceEntry
    from siteline.core.transports.base import Credentials
    from siteline.ui.diag_dialog import DiagDialog

    async def scenario() -> None:
        window = make_window()
        window.load_devices([(DeviceEntry("gw-09", f"ssh://root@127.0.0.1:{free_port()}", "Tower 9"), Credentials())])
        await show(window)
        assert window.selected_device() == "gw-09"
        button = window.page.findChild(QPushButton, "pageButton_diagnostics")
        assert button is not None
        assert button.isVisible()
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        dialogs = window.findChildren(DiagDialog)
        assert [d.windowTitle() for d in dialogs] == ["Diagnostics bundle for gw-09"]
        dialogs[0].close()
        await close_window(window)

    aloop.run(scenario())
