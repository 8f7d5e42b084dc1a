"""A broken plugin is reported in the status bar and the plugins dialog, disabled, and the window keeps working."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication

from siteline.api import hookimpl
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost, load_plugins
from siteline.core.transports.base import Credentials
from siteline.core.user_plugins import MODULE_PREFIX
from siteline.ui.plugin_table_model import ENABLED, NAME, SOURCE, STATUS, VERSION
from siteline.ui.plugins_dialog import PluginsDialog
from tests.gui.conftest import close_window, plugins_with_builtins, show, until


class BrokenPanels:
    """Raises while contributing panels: fails as soon as the window asks for them."""

    @hookimpl
    def siteline_panels(self):
        raise RuntimeError("panel factory exploded")


class _BadProbe:
    name = "bad-system"
    kind = "system"

    async def collect(self, ctx):
        raise ValueError("cannot make sense of os-release")


class BrokenProbe:
    """Loads fine, then raises from its probe once a device is up."""

    @hookimpl
    def siteline_probes(self):
        return [_BadProbe()]


def test_broken_plugins_are_reported_and_disabled(make_window, aloop, qtbot) -> None:
    host = plugins_with_builtins((BrokenPanels(), "broken-panels"), (BrokenProbe(), "broken-probe"))

    async def scenario() -> None:
        window = make_window(plugins=host)
        assert window.status.plugin_failures == 1  # the panel hook failed while the page was built
        assert "1 failed" in window.status.plugin_button.text()
        assert "panel factory exploded" in window.status.plugin_button.toolTip()
        window.load_devices([(DeviceEntry("gw-01", "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root"))])
        await show(window)
        # The built-in system probe still fills the Overview; the broken one is disabled on first use.
        await until(lambda: window.page.overview.filled, what="overview from the working plugin")
        await until(lambda: window.status.plugin_failures == 2, what="probe failure reported")
        assert "2 failed" in window.status.plugin_button.text()

        window.status.plugin_button.click()
        dialog = window.plugins_dialog
        assert dialog is not None
        assert dialog.isVisible()
        rows = {
            dialog.model.index(r, NAME).data(): dialog.model.index(r, STATUS).data()
            for r in range(dialog.model.rowCount())
        }
        assert rows["system"] == "enabled"
        assert rows["broken-panels"].startswith("failed: RuntimeError: panel factory exploded")
        assert rows["broken-probe"].startswith("failed: ValueError: cannot make sense of os-release")
        assert "broken-probe" in dialog.failures.text()
        dialog.close()

        window.sessions.reconnect("gw-01")  # the window still works: reconnect and read again
        await until(lambda: window.model.state("gw-01").state.value == "up", what="up again")
        await close_window(window)

    aloop.run(scenario())


# -- the dialog on its own: user plugins, switching, failure details, the folder ---------------------------------


@pytest.fixture
def user_home(home: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Path]:
    """A SITELINE_HOME with a working and a broken plugin in its user plugin folder."""
    folder = home / "data" / "plugins"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "vendor.py").write_text(VENDOR)
    (folder / "broken.py").write_text("raise RuntimeError('vendor bug at import')\n")
    with caplog.at_level(logging.CRITICAL, logger="siteline.core"):
        yield home
    for name in [m for m in sys.modules if m.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


VENDOR = """
from siteline.api import hookimpl

__version__ = "0.7"

class Probe:
    name = "vendor-logs"
    kind = "logs"

    async def collect(self, ctx):
        return None

@hookimpl
def siteline_probes():
    return [Probe()]
"""


def _row(dialog: PluginsDialog, name: str, source_prefix: str = "") -> int:
    for r in range(dialog.model.rowCount()):
        info = dialog.model.row_at(r)
        if info is not None and info.name == name and info.source.startswith(source_prefix):
            return r
    raise AssertionError(f"no row for {name}")


def _cell(dialog: PluginsDialog, name: str, column: int, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
    return dialog.model.index(_row(dialog, name), column).data(role)


def _make(qtbot, host: PluginHost) -> PluginsDialog:
    dialog = PluginsDialog(host)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_dialog_lists_user_plugins_and_switches_one_off_and_on(qtbot, qtmodeltester, user_home: Path) -> None:
    host = load_plugins()
    dialog = _make(qtbot, host)
    qtmodeltester.check(dialog.model)
    assert dialog.model.headers == ("Plugin", "Version", "Source", "Status", "Enabled")
    vendor_file = user_home / "data" / "plugins" / "vendor.py"
    assert (_cell(dialog, "vendor", VERSION), _cell(dialog, "vendor", SOURCE)) == ("0.7", f"user folder {vendor_file}")
    assert _cell(dialog, "vendor", STATUS) == "enabled"
    assert _cell(dialog, "broken", STATUS) == "failed: RuntimeError: vendor bug at import"
    assert _cell(dialog, "vendor", ENABLED, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    assert str(user_home / "data" / "plugins") in dialog.folder_label.text()

    changed: list[bool] = []
    dialog.sig_plugins_changed.connect(lambda: changed.append(True))
    assert dialog.set_plugin_enabled("vendor", False)  # a user plugin: no question asked
    assert _cell(dialog, "vendor", STATUS) == "disabled by user"
    assert _cell(dialog, "vendor", ENABLED, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked
    assert "vendor" not in {c.plugin for c in host.probes()}
    assert "Siteline stopped using it" in dialog.message.text()
    assert load_plugins().info("vendor").disabled_by_user  # remembered for the next start
    assert dialog.set_plugin_enabled("vendor", True)
    assert "loaded now" in dialog.message.text()
    assert "vendor" in {c.plugin for c in host.probes()}
    assert changed == [True, True]
    qtmodeltester.check(dialog.model)


def test_failure_details_are_shown_and_copyable(qtbot, user_home: Path) -> None:
    dialog = _make(qtbot, load_plugins())
    assert dialog.details.toPlainText() == ""
    dialog.select_plugin("broken")
    text = dialog.details.toPlainText()
    assert "RuntimeError: vendor bug at import" in text
    assert "Traceback (most recent call last)" in text
    assert dialog.details.isReadOnly()
    assert dialog.copy_button.isEnabled()
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == text
    dialog.select_plugin("vendor")  # a working plugin has no details
    assert dialog.details.toPlainText() == ""
    assert not dialog.copy_button.isEnabled()


@pytest.mark.parametrize(("answer", "disabled"), [("Cancel", False), ("Disable", True)])
def test_disabling_a_core_plugin_asks_first(qtbot, home: Path, answer: str, disabled: bool) -> None:
    host = load_plugins()
    dialog = _make(qtbot, host)
    assert not dialog.set_plugin_enabled("slots", False)  # not yet: a question first
    box = dialog.confirm_box
    assert box is not None
    assert box.isVisible()
    assert "What stops working without it: A/B slot state" in box.informativeText()
    assert _cell(dialog, "slots", STATUS) == "enabled"
    next(b for b in box.buttons() if b.text() == answer).click()
    assert (_cell(dialog, "slots", STATUS) == "disabled by user") is disabled
    assert (_cell(dialog, "slots", ENABLED, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked) is disabled
    assert bool(host.update_backends()) is not disabled


def test_a_core_plugin_switched_on_again_asks_nothing(qtbot, home: Path) -> None:
    host = load_plugins()
    host.set_enabled("posture", False)
    dialog = _make(qtbot, host)
    assert dialog.set_plugin_enabled("posture", True)
    assert dialog.confirm_box is None
    assert host.probes("posture")


def test_open_plugin_folder_creates_it_and_asks_the_desktop(qtbot, home: Path) -> None:
    opened: list[QUrl] = []

    class Catcher(QObject):
        @Slot(QUrl)
        def open(self, url: QUrl) -> None:
            opened.append(url)

    catcher = Catcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")  # Qt's own hook: no file manager starts in tests
    try:
        dialog = _make(qtbot, load_plugins())
        dialog.open_folder_button.click()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    folder = home / "data" / "plugins"
    assert folder.is_dir()
    assert [u.toLocalFile() for u in opened] == [str(folder)]
