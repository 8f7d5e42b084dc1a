"""The status bar: devices up, a UI stall, plugin trouble, and the control plane's sync (widget set by the window)."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QPushButton, QStatusBar, QWidget

from siteline.core.plugins import PluginHost, PluginInfo


class StatusBar(QStatusBar):
    sig_plugins_clicked = Signal()

    def __init__(self, plugins: PluginHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._plugins = plugins
        self.devices = QLabel()
        self.plugin_button = QPushButton()
        self.plugin_button.setObjectName("pluginStatus")
        self.plugin_button.setFlat(True)
        self.plugin_button.clicked.connect(self.sig_plugins_clicked.emit)
        self.stall = QLabel()
        self.stall.setObjectName("loopStall")
        self.stall.hide()
        self.addWidget(self.devices)
        for widget in (self.stall, self.plugin_button):
            self.addPermanentWidget(widget)
        # The host outlives windows in tests and may outlive this widget: never call into a deleted one.
        plugins.add_failure_listener(lambda _f: self.update_plugins() if shiboken6.isValid(self) else None)
        self.update_plugins()

    def update_plugins(self) -> None:
        total = len(self._plugins.plugins)
        failed = self.failed_plugins()
        if failed:
            self.plugin_button.setText(f"⚠ Plugins: {len(failed)} failed")
            self.plugin_button.setToolTip("\n".join(f"{p.name}: {p.error}" for p in failed))
        else:
            self.plugin_button.setText(f"Plugins: {total} loaded")
            self.plugin_button.setToolTip("Every plugin is working. Click for the list.")

    def failed_plugins(self) -> list[PluginInfo]:
        """Plugins disabled by an error (not those the person switched off)."""
        return [p for p in self._plugins.plugins if not p.enabled and p.error != "disabled by user"]

    @property
    def plugin_failures(self) -> int:
        return len(self.failed_plugins())

    def update_devices(self, up: int, total: int) -> None:
        self.devices.setText(f"{up} of {total} devices up" if total else "No devices yet — press Ctrl+N to add one")

    def show_path_event(self, device: str, message: str) -> None:
        """A path dropped or took over ("SSH via bastion dropped (...); continuing on serial ..."): said for a while."""
        self.showMessage(f"{device}: {message}", 15000)

    def add_sync_widget(self, widget: QWidget) -> None:
        """The control plane's state, items waiting and data used: rightmost, where people look for a link."""
        self.addPermanentWidget(widget)

    def show_problem(self, message: str) -> None:
        """Something about what Siteline keeps (a full disk, a set-aside outbox): said until replaced."""
        self.showMessage(f"⚠ {message}")

    def show_stall(self, count: int, worst: float) -> None:
        self.stall.setText(f"⚠ UI stalled {count}× (worst {worst:.1f} s)")
        self.stall.setToolTip("The window stopped responding for a while; this is a bug: please report it.")
        self.stall.show()
