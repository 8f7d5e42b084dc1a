"""The right-hand side: one device's header and its tabs (Overview now; the others come later)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QHideEvent, QPalette, QShowEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from siteline.core.device.system import System
from siteline.core.errors import HostKeyProblem, TargetError
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnectionState, ConnState
from siteline.ui.console_tab import ConsoleTab, ShellOpener
from siteline.ui.help_text import HelpLine, explain
from siteline.ui.icons import state_icon
from siteline.ui.logs.device_logs import DeviceLogsTab
from siteline.ui.overview_tab import OverviewTab
from siteline.ui.panel_tabs import KINDS as PANEL_KINDS
from siteline.ui.panel_tabs import TITLES as PANEL_TITLES
from siteline.ui.panel_tabs import PanelTab
from siteline.ui.path_view import active_path, path_line, paths_tooltip
from siteline.ui.update_tab import UpdateTab

if TYPE_CHECKING:
    from siteline.ui.sessions import SessionManager

log = logging.getLogger(__name__)

# Tabs later issues fill, with what they will hold, so the technician knows what to expect.
LATER_TABS: tuple[tuple[str, str], ...] = ()


def placeholder(title: str, text: str) -> QWidget:
    page = QWidget()
    label = QLabel(f"<b>{title}</b> is coming in a later version of Siteline.<br><br>{text}")
    label.setObjectName("placeholder")
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    layout = QVBoxLayout(page)
    layout.addWidget(label)
    return page


class DevicePage(QWidget):
    sig_refresh_requested = Signal()
    sig_reconnect_requested = Signal()
    sig_edit_requested = Signal()
    sig_diag_requested = Signal()
    sig_password_requested = Signal()
    sig_host_key_review_requested = Signal()  # reopen the host-key question of the shown device
    sig_slot_action_requested = Signal(object)  # a SlotAction from the Slots tab, not yet confirmed

    def __init__(
        self,
        plugins: PluginHost,
        state_colour: Callable[[str], QColor] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.device: str | None = None
        self._entry: DeviceEntry | None = None
        # Set by the window: device name -> a shell opener for its live SSH link (None when it has none).
        self.console_opener: Callable[[str], ShellOpener | None] | None = None
        self._state_colour = state_colour
        self._title = QLabel()
        self._title.setObjectName("pageTitle")
        self._target = QLabel()
        self._target.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._state_icon = QLabel()
        self._state = QLabel()
        self._state.setTextFormat(Qt.TextFormat.PlainText)  # reasons quote what the device or network said
        self._state.setObjectName("pageState")
        self._state.setWordWrap(True)
        self._sessions: SessionManager | None = None
        self.path = QLabel()
        self.path.setObjectName("pagePath")
        self.path.setTextFormat(Qt.TextFormat.PlainText)
        self.path.setWordWrap(True)
        self.path.hide()
        self._build_host_key_bar()
        self.overview = OverviewTab()
        self._snapshots: dict[str, Any] = {}  # the shown device's latest snapshot per kind, for the health lines
        self.overview.sig_area_activated.connect(self._on_overview_area_activated)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("deviceTabs")
        self.tabs.addTab(self.overview, "Overview")
        self.console = ConsoleTab()
        self.panel_tabs = {kind: PanelTab(kind) for kind in PANEL_KINDS}
        for kind in PANEL_KINDS:
            self.tabs.addTab(self.panel_tabs[kind], PANEL_TITLES[kind])
        # The Timeline: built the first time its tab is opened (pyqtgraph costs start-up time).
        self.timeline_tab = QWidget()
        self.timeline_tab.setObjectName("timelineTab")
        QVBoxLayout(self.timeline_tab).setContentsMargins(0, 0, 0, 0)
        self.timeline: Any = None  # a TimelinePanel once built
        self.tabs.addTab(self.timeline_tab, "Timeline")
        self.tabs.currentChanged.connect(self._on_tabs_current_changed)
        self.panel_tabs["slots"].sig_panel_built.connect(self._on_slots_panel_built)
        self._connected = False
        self.logs = DeviceLogsTab()
        self.logs.setObjectName("logsTab")
        self.tabs.addTab(self.logs, "Logs")
        self.tabs.addTab(self.console, "Console")
        self.update_tab = UpdateTab()  # the window's UpdateController feeds it and runs what it asks for
        self.tabs.addTab(self.update_tab, "Update")
        for title, text in LATER_TABS:
            self.tabs.addTab(placeholder(title, text), title)
        # Set by the window: whether a device's link is metered (the Logs tab then polls slowly).
        self.is_metered: Callable[[str], bool] = lambda _name: False
        self._watched = True
        self._add_plugin_panels(plugins)
        self._build_layout()

    def _build_host_key_bar(self) -> None:
        self.host_key_bar = QFrame()
        self.host_key_bar.setObjectName("hostKeyBar")
        self.host_key_text = QLabel()
        self.host_key_text.setObjectName("hostKeyText")
        self.host_key_text.setTextFormat(Qt.TextFormat.PlainText)
        self.host_key_button = QPushButton("Re&view…")
        self.host_key_button.setToolTip("Show the device's host key and decide whether to trust it")
        self.host_key_button.clicked.connect(self.sig_host_key_review_requested.emit)
        row = QHBoxLayout(self.host_key_bar)
        row.setContentsMargins(6, 3, 6, 3)
        row.addWidget(self.host_key_text)
        row.addWidget(self.host_key_button)
        row.addStretch(1)
        self.host_key_bar.hide()

    def _build_layout(self) -> None:
        buttons = QHBoxLayout()
        for text, signal, tip in (
            ("&Refresh", self.sig_refresh_requested, "Read the device again (F5)"),
            ("Re&connect", self.sig_reconnect_requested, "Drop the link and connect now (Ctrl+R)"),
            ("&Edit…", self.sig_edit_requested, "Change name, site or target (F2)"),
            ("Dia&gnostics…", self.sig_diag_requested,
             "Save this device's probes, logs, slots, posture and Siteline's log in one zip for support "
             "(Ctrl+Shift+D)"),
        ):
            button = QPushButton(text)
            button.setObjectName("pageButton_" + text.replace("&", "").rstrip("…").lower())
            button.setToolTip(tip)
            button.clicked.connect(signal.emit)
            buttons.addWidget(button)
        self.password_button = QPushButton("Enter &password…")
        self.password_button.clicked.connect(self.sig_password_requested.emit)
        buttons.addWidget(self.password_button)
        self.help_line = HelpLine("paths")  # the header shows the device's paths: the line explains them
        explain(self._target, "Target URL")
        explain(self.host_key_text, "Host key fingerprint")
        buttons.addSpacing(12)
        buttons.addWidget(self.help_line, 1)
        state_row = QHBoxLayout()
        state_row.addWidget(self._state_icon)
        state_row.addWidget(self._state, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self._title)
        layout.addWidget(self._target)
        layout.addWidget(self.path)
        layout.addLayout(state_row)
        layout.addWidget(self.host_key_bar)
        layout.addLayout(buttons)
        layout.addWidget(self.tabs, 1)

    def _add_plugin_panels(self, plugins: PluginHost) -> None:
        for contribution in plugins.panels():
            try:
                widget: Any = contribution.item.factory(self, None)
                self.tabs.addTab(widget, contribution.item.title)
            except Exception:  # a plugin's panel must not take the page down
                log.exception("panel '%s' of plugin %s failed", contribution.item.title, contribution.plugin)

    def follow(self, sessions: SessionManager) -> None:
        """Keep the path line and the host-key bar of the shown device current from ``sessions``' signals."""
        self._sessions = sessions
        sessions.sig_paths_changed.connect(self._on_sessions_changed)
        sessions.sig_paths_changed.connect(self._on_timeline_news)
        sessions.sig_snapshot_received.connect(self._on_timeline_news)
        sessions.sig_snapshot_received.connect(self._on_network_news)
        self.logs.on_warnings = self._on_log_warnings
        sessions.sig_host_key_problem.connect(self._on_sessions_changed)
        sessions.sig_state_changed.connect(self._on_sessions_changed)

    def _on_sessions_changed(self, name: str, *_args: object) -> None:
        if name == self.device:
            self._refresh_from_sessions()
            self.show_logs_of(name)

    def _on_log_warnings(self, name: str, records: list[Any]) -> None:
        history = self._sessions.history(name) if self._sessions is not None else None
        if history is not None and history.observe_logs(records):
            self._on_timeline_news(name)

    def _on_network_news(self, name: str, kind: str) -> None:
        if name == self.device and kind == "network":  # the uplink may have become cellular: the log's pace
            self.show_logs_of(name)

    def set_watched(self, watched: bool) -> None:
        """Whether anyone can see the window (shown and not minimised): the log is read only then."""
        self._watched = watched
        self._tell_logs()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._tell_logs()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._tell_logs()

    def _tell_logs(self) -> None:
        self.logs.set_shown(self._watched and self.isVisible() and self.tabs.currentWidget() is self.logs)

    def show_logs_of(self, name: str) -> None:
        session = self._sessions.get(name) if self._sessions is not None else None
        self.logs.set_device(name, session, self.is_metered(name))

    def _refresh_from_sessions(self) -> None:
        if self._sessions is None or self.device is None:
            return
        self.show_paths(self._sessions.paths(self.device), self._sessions.active_target(self.device))
        self.show_host_key_problem(self._sessions.host_key_problem(self.device))
        if self._entry is not None and self._console_target(self._entry) != self.console.target:
            self._show_console_target(self._entry)  # the session moved to another path

    def show_paths(self, paths: list[Any], active_target: Any = None) -> None:
        """The "Path" line: shown for a device with more than one path (one path is the target line)."""
        if len(paths) < 2:
            self.path.hide()
            return
        self.path.setText(f"Path: {path_line(paths, active_target)}")
        self.path.setToolTip(paths_tooltip(paths, active_target))
        found = active_path(paths, active_target)
        preferred = found is not None and found[0] == 0
        # On a fallback the link may be slower or metered: the line takes the "retrying" colour to be noticed.
        self._paint(self.path, None if preferred else "retrying" if found else "down")
        self.path.show()

    def _paint(self, label: QLabel, state: str | None) -> None:
        colour = self._state_colour(state) if state and self._state_colour else None
        pal = label.palette()
        pal.setColor(QPalette.ColorRole.WindowText, colour or self.palette().color(QPalette.ColorRole.WindowText))
        label.setPalette(pal)

    def show_host_key_problem(self, problem: HostKeyProblem | None) -> None:
        if problem is None:
            self.host_key_bar.hide()
            return
        if problem.kind == "changed":
            text = "⚠ Host key CHANGED — not connecting: this may be an attack —"
        else:
            text = "Host key not trusted yet —"
        self.host_key_bar.setToolTip(f"{problem.display_name}: offered {problem.offered_fingerprint}")
        self.host_key_text.setText(text)
        state = "down" if problem.kind == "changed" else "retrying"
        border = self._state_colour(state).name() if self._state_colour else "#c0392b"
        text_rule = f" #hostKeyText {{ color: {border}; font-weight: bold; }}" if problem.kind == "changed" else ""
        self.host_key_bar.setStyleSheet(f"#hostKeyBar {{ border: 1px solid {border}; border-radius: 3px; }}{text_rule}")
        self.host_key_bar.show()
        self.password_button.hide()  # the password is not what stops this device

    def show_device(self, entry: DeviceEntry, state: ConnectionState, snapshots: dict[str, Any]) -> None:
        if entry.name != self.device:
            self.overview.clear()
            for tab in self.panel_tabs.values():
                tab.reset()
        changed = entry.name != self.device
        self.device = entry.name
        self._entry = entry
        self.show_logs_of(entry.name)
        if changed and self.timeline is not None:
            self.timeline.show_history(self._history())
        self._show_console_target(entry)
        self._title.setText(entry.name)
        self._target.setText(f"{entry.target}   ·   site {entry.site}")
        self.update_tab.set_device(entry.name, entry.site)
        self.update_tab.show_slots(snapshots.get("slots"))
        self.show_state(state)
        system = snapshots.get("system")
        if isinstance(system, System):
            self.overview.show_system(system)
        for kind, tab in self.panel_tabs.items():
            if snapshots.get(kind) is not None and snapshots.get(kind) is not tab.latest:
                tab.show_snapshot(snapshots[kind], self.tabs.currentWidget() is tab)
        self._snapshots = dict(snapshots)
        self.overview.show_health(self._snapshots)
        if self._sessions is None:
            self.show_host_key_problem(None)
            self.show_paths([])
        self._refresh_from_sessions()

    def _show_console_target(self, entry: DeviceEntry) -> None:
        opener = self.console_opener(entry.name) if self.console_opener else None
        self.console.set_device(self._console_target(entry), opener, name=entry.name)

    def _console_target(self, entry: DeviceEntry) -> Target | None:
        """The path the Console tab works over: the one in use, not the preferred one.

        A device whose preferred path is MQTT and whose fallback is the serial cable has a console while
        it is on the cable. While no path is up the tab keeps the path it showed, else the first path
        that can carry a console (Connect then says the device is not connected yet).
        """
        targets = _parsed(entry.targets)
        active = self._sessions.active_target(entry.name) if self._sessions is not None else None
        in_use = _parsed((active,)) if active else []
        if in_use:
            return in_use[0]
        shown = self.console.target
        if self.console.device_name == entry.name and shown is not None and shown in targets:
            return shown
        return next((t for t in targets if t.is_ssh or t.is_serial), targets[0] if targets else None)

    @property
    def slots_panel(self) -> Any:
        """The Slots tab's panel, or None until that tab was opened."""
        return self.panel_tabs["slots"].panel

    def _on_slots_panel_built(self, panel: Any) -> None:
        panel.sig_action_requested.connect(self.sig_slot_action_requested.emit)
        self._enable_slot_actions()

    def _enable_slot_actions(self) -> None:
        if self.slots_panel is not None:
            self.slots_panel.set_actions_enabled(self._connected, f"{self.device or 'The device'} is not connected.")

    def show_state(self, state: ConnectionState) -> None:
        self._connected = state.state is ConnState.UP
        self._enable_slot_actions()
        self.update_tab.set_connected(self._connected, f"{self.device or 'The device'} is not connected "
                                      f"({state.describe()}).")
        self._state_icon.setPixmap(state_icon(state.state).pixmap(20, 20))
        self._state.setText(state.describe())
        self._state.setToolTip(state.describe())
        if self._state_colour is not None:
            pal = self._state.palette()
            pal.setColor(QPalette.ColorRole.WindowText, self._state_colour(state.state.value))
            self._state.setPalette(pal)
        self.password_button.setVisible(state.state is ConnState.DOWN and self.host_key_bar.isHidden())
        if not self.overview.filled:
            waiting = {
                ConnState.UP: "Connected; reading the device…",
                ConnState.CONNECTING: "Connecting…",
            }.get(state.state, "Not connected: the identity below fills in once the device answers.")
            self.overview.show_waiting(waiting)

    def show_snapshot(self, kind: str, snapshot: Any) -> None:
        if kind == "system" and isinstance(snapshot, System):
            self.overview.show_system(snapshot)
        tab = self.panel_tabs.get(kind)
        if tab is not None:
            tab.show_snapshot(snapshot, self.tabs.currentWidget() is tab)
        if kind == "slots":
            self.update_tab.show_slots(snapshot)
        self._snapshots[kind] = snapshot
        self.overview.show_health(self._snapshots)

    def _on_overview_area_activated(self, area: str) -> None:
        """A health row was clicked or Entered: open that area's tab (disk lives on the Overview itself)."""
        tab = self.panel_tabs.get(area)
        if tab is not None:
            self.tabs.setCurrentWidget(tab)

    def _on_tabs_current_changed(self, _index: int) -> None:
        current = self.tabs.currentWidget()
        self._tell_logs()
        if isinstance(current, PanelTab):
            current.build()
        elif current is self.timeline_tab:
            if self.timeline is None:
                from siteline.ui.panels.timeline_panel import TimelinePanel

                self.timeline = TimelinePanel()
                self.timeline_tab.layout().addWidget(self.timeline)
                self.timeline.show_history(self._history())
            else:
                self.timeline.refresh()

    def _history(self) -> Any:
        return self._sessions.history(self.device) if self._sessions is not None and self.device else None

    def _on_timeline_news(self, name: str, *_args: object) -> None:
        if name == self.device and self.timeline is not None and self.tabs.currentWidget() is self.timeline_tab:
            self.timeline.refresh_soon()  # one redraw for a probe round's burst of snapshots


def _parsed(texts: tuple[str, ...] | list[str]) -> list[Target]:
    """The targets that parse (a broken one in the inventory must not take the page down)."""
    found = []
    for text in texts:
        try:
            found.append(parse_target(text))
        except TargetError:
            continue
    return found
