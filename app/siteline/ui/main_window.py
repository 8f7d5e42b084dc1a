"""The main window: site/device tree on the left, the selected device's page on the right.

Everything it needs (plugins, inventory, sessions, theme) comes in through the constructor from
the composition root in app.py; it creates no stores or transports of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QItemSelection, QModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError, TransportError
from siteline.core.inventory import DeviceEntry, Inventory
from siteline.core.keep import Keep
from siteline.core.loopwatch import LoopWatch
from siteline.core.plugins import PluginHost
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials
from siteline.ui.console_tab import ShellOpener
from siteline.ui.credentials_dialog import CredentialsDialog, PasswordPrompts
from siteline.ui.delegates import TallRowDelegate
from siteline.ui.device_controls import DeviceControls
from siteline.ui.device_dialog import DeviceDialog
from siteline.ui.device_page import DevicePage
from siteline.ui.device_tree_model import NAME_COLUMN, STATE_COLUMN, DeviceTreeModel, NameRole
from siteline.ui.first_run import DemoLauncher, apply_technician, needs_first_run, saved_technician
from siteline.ui.host_key_dialog import HostKeyPrompts
from siteline.ui.icons import icon
from siteline.ui.keep_controller import KeepController
from siteline.ui.plugins_dialog import PluginsDialog
from siteline.ui.sessions import SessionManager
from siteline.ui.status_bar import StatusBar
from siteline.ui.theme import Theme
from siteline.ui.update_controller import UpdateController
from siteline.ui.window_settings import WindowSettings, from_b64, to_b64

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    sig_closed = Signal()

    def __init__(
        self,
        plugins: PluginHost,
        inventory: Inventory,
        sessions: SessionManager,
        settings_path: Path,
        theme: Theme | None = None,
        title: str | None = None,
        keep: Keep | None = None,
        keep_problem: str = "",
    ) -> None:
        super().__init__()
        self.plugins = plugins
        self.inventory = inventory
        self.sessions = sessions
        self.theme = theme
        self.loopwatch: LoopWatch | None = None  # set by app.py; tests and the bench read worst_stall
        self._settings_path = settings_path
        self._settings = WindowSettings.load(settings_path)
        self.device_dialog: DeviceDialog | None = None
        self.plugins_dialog: PluginsDialog | None = None
        self.provision_wizard: Any = None  # the provisioning wizard while it is open
        self.first_run: Any = None  # the first-run guide while it is open
        self.glossary: Any = None
        self.demo = DemoLauncher()  # the demo site the guide starts, stopped when this window closes
        self.config_dir = settings_path.parent
        self._given_devices = False  # started with devices (the demo): no first-run guide
        self.confirm_box: QMessageBox | None = None
        self.passwords = PasswordPrompts(sessions, self)
        self.setWindowTitle(title or "Siteline")
        self.setWindowIcon(icon("siteline"))
        self.model = DeviceTreeModel(self)
        self._build_central()
        self.status = StatusBar(plugins, self)
        self.setStatusBar(self.status)
        # What is kept on this laptop (outbox, audit, vault, sync); None when it could not be opened, and why.
        self.keep_ui = KeepController(keep, self) if keep is not None else None
        self.keep_problem = keep_problem
        apply_technician(self, saved_technician(self.config_dir))
        self._build_actions()
        self._connect()
        # The refresh schedule, antenna alignment, factory-password check and slot actions.
        self.controls = DeviceControls(self)
        self.updates = self._build_updates()
        self._restore_settings()

    # -- building ----------------------------------------------------------------------------

    def _build_central(self) -> None:
        self.tree = QTreeView()
        self.tree.setObjectName("deviceTree")
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)
        self.tree.setItemDelegate(TallRowDelegate(self.tree))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setIconSize(self.tree.iconSize().expandedTo(self.tree.iconSize() * 1.25))
        # Names keep their width; the state column takes the rest and elides (the tooltip has it all).
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(90)
        header.setSectionResizeMode(NAME_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(STATE_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.add_button = QPushButton(icon("add"), "&Add device…")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        left_layout.addWidget(self.tree, 1)
        left_layout.addWidget(self.add_button)
        self.page = DevicePage(self.plugins, self.theme.state_colour if self.theme else None)
        self.empty = QLabel("No device selected.\n\nPick one on the left, or press Ctrl+N to add a device by its URL.")
        self.empty.setObjectName("placeholder")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.page)
        self.page.console_opener = self._shell_opener
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.stack)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([380, 800])
        self.setCentralWidget(self.splitter)
        self.resize(1180, 720)

    def _build_updates(self) -> UpdateController:
        """The Update tab's worker: flash jobs kept in the data folder, recorded through the keep."""
        from siteline import paths
        from siteline.core.flash.store import JobStore

        def keys() -> Any:  # the signature code loads when an image is first checked, not at start
            from siteline.core.images.trusted_keys import TrustedKeys

            return TrustedKeys(data / "trusted-keys")

        def library() -> Any:
            from siteline.core.images.library import ImageLibrary

            return ImageLibrary(data / "images")

        data = paths.data_dir()
        return UpdateController(
            self.page.update_tab, self.sessions, self.plugins, store=JobStore(data / "flash-jobs"),
            keys=keys, library=library,
            keep=self.keep_ui.keep if self.keep_ui is not None else None, problem=self.status.show_problem,
            parent=self)

    def _action(
        self, text: str, shortcut: QKeySequence | QKeySequence.StandardKey | str | None, slot: Callable[[], object],
        tip: str = "",
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        keys = QKeySequence.StandardKey
        self.act_add = self._action("&Add device…", keys.New, self.add_device, "Add a device by URL")
        self.act_edit = self._action("&Edit device…", "F2", self.edit_device, "Change the selected device")
        self.act_remove = self._action("&Remove device…", keys.Delete, self.remove_device)
        self.act_refresh = self._action("Re&fresh", keys.Refresh, self._on_refresh_triggered)
        self.act_reconnect = self._action("Re&connect", "Ctrl+R", self.reconnect_device)
        self.act_open = self._action("&Open device", None, self.open_device, "Move to the device's tabs")
        self.act_plugins = self._action("&Plugins…", None, self.show_plugins, "Loaded plugins and their errors")
        self.act_mqtt = self._action("&MQTT Explorer…", None, self.show_mqtt_explorer,
                                     "Browse a broker's topics live, inspect and publish")
        self.act_provision = self._action("&Provision new device…", "Ctrl+Shift+P", self.provision_device,
                                          "Replace factory passwords, set identity and firewall, prove posture")
        self.act_quit = self._action("&Quit", keys.Quit, self.close)
        self.act_diag = self._action("Save &diagnostics bundle…", "Ctrl+Shift+D", self.save_diagnostics,
                                     "Probes, logs, slots, posture and Siteline's log in one zip for support")
        self.act_first_run = self._action("&First-run guide…", None, self.show_first_run,
                                          "Vault, technician id, control plane and the demo site, step by step")
        self.act_glossary = self._action("&Glossary…", "F1", self.show_glossary,
                                         "What RSRP, boot counter, mark good and the other words mean")
        self.act_refresh.setShortcuts([QKeySequence("F5"), QKeySequence(QKeySequence.StandardKey.Refresh)])
        self.act_remove.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # Del in a text field edits text
        self.tree.addAction(self.act_remove)
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.act_add, self.act_provision])
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        device_menu = menu.addMenu("&Device")
        device_menu.addActions([self.act_open, self.act_edit, self.act_remove])
        device_menu.addSeparator()
        device_menu.addActions([self.act_refresh, self.act_reconnect])
        device_menu.addSeparator()
        device_menu.addAction(self.act_diag)
        if self.keep_ui is not None:
            device_menu.addSeparator()
            device_menu.addActions([self.keep_ui.act_note, self.keep_ui.act_snapshot])
        view_menu = menu.addMenu("&View")
        self._theme_group = QActionGroup(self)
        for mode, text in (("system", "Follow &system"), ("light", "&Light"), ("dark", "&Dark")):
            action = view_menu.addAction(text)
            action.setCheckable(True)
            action.setData(mode)
            action.setChecked((self.theme.mode if self.theme else "system") == mode)
            self._theme_group.addAction(action)
        self._theme_group.triggered.connect(self._on_theme_triggered)
        tools_menu = menu.addMenu("&Tools")
        tools_menu.addAction(self.act_mqtt)
        if self.keep_ui is not None:
            tools_menu.addSeparator()
            tools_menu.addActions(self.keep_ui.tools_actions)
        help_menu = menu.addMenu("&Help")
        help_menu.addActions([self.act_first_run, self.act_glossary])
        help_menu.addSeparator()
        help_menu.addAction(self.act_plugins)
        self._update_actions()

    def _connect(self) -> None:
        self.add_button.clicked.connect(self.add_device)
        self.tree.selectionModel().selectionChanged.connect(self._on_tree_selection_changed)
        self.tree.activated.connect(self._on_tree_activated)
        self.sessions.sig_state_changed.connect(self._on_session_state_changed)
        self.sessions.sig_snapshot_received.connect(self._on_session_snapshot)
        self.sessions.sig_password_needed.connect(self.passwords.ask)
        self.page.sig_refresh_requested.connect(self._on_refresh_triggered)
        self.page.sig_reconnect_requested.connect(self.reconnect_device)
        self.page.sig_edit_requested.connect(self.edit_device)
        self.page.sig_diag_requested.connect(self.save_diagnostics)
        self.page.sig_password_requested.connect(self._on_page_password_requested)
        self.status.sig_plugins_clicked.connect(self.show_plugins)
        self.host_keys = HostKeyPrompts(self.sessions, self)
        self.page.follow(self.sessions)
        self.model.follow(self.sessions)
        self.sessions.sig_path_event.connect(self.status.show_path_event)
        self.page.sig_host_key_review_requested.connect(self._on_host_key_review_requested)

    # -- devices -----------------------------------------------------------------------------

    @property
    def worst_stall(self) -> float:
        return self.loopwatch.worst_stall if self.loopwatch is not None else 0.0

    def load_devices(self, extra: list[tuple[DeviceEntry, Credentials]] | None = None) -> list[str]:
        """Read the saved list, add ``extra`` (the demo's devices) and start every session."""
        warnings = self.inventory.load()
        self._given_devices = bool(extra)
        given: dict[str, Credentials] = {}
        for entry, creds in extra or []:
            try:
                saved = self.inventory.upsert(entry)
            except SitelineError as exc:
                warnings.append(f"Device {entry.name} not added: {exc}")
                continue
            given[saved.name] = creds
        self.model.set_devices(self.inventory.devices)
        for entry in self.inventory.devices:
            self.sessions.add(entry, given.get(entry.name))
        self.tree.expandAll()
        for text in warnings:
            log.warning("%s", text)
        if warnings:
            self.status.showMessage(warnings[0], 15000)
        self._select(self._settings.selected or next(iter(self.model.device_names()), ""))
        self._update_summary()
        self._offer_unfinished_updates()
        return warnings

    def _offer_unfinished_updates(self) -> None:
        """Jobs a closed (or killed) Siteline left running: a banner on each device's Update tab offers resuming."""
        jobs = [j for j in self.updates.find_unfinished() if self.inventory.get(j.device) is not None]
        if jobs:
            names = ", ".join(sorted({j.device for j in jobs}))
            self.status.show_problem(f"An update did not finish on {names}: open its Update tab to resume it.")
            self.page.update_tab.sig_resume_requested.connect(lambda _id: self.status.clearMessage())

    def selected_device(self) -> str | None:
        indexes = self.tree.selectionModel().selectedRows(NAME_COLUMN)
        return indexes[0].data(NameRole) if indexes else None

    def _select(self, name: str) -> None:
        index = self.model.index_of(name)
        if index.isValid():
            self.tree.setCurrentIndex(index)

    def add_device(self) -> None:
        self._open_device_dialog(None)

    def edit_device(self) -> None:
        name = self.selected_device()
        entry = self.inventory.get(name) if name else None
        if entry is not None:
            self._open_device_dialog(entry)

    def _open_device_dialog(self, entry: DeviceEntry | None) -> None:
        sites = sorted({d.site for d in self.inventory.devices})
        dialog = DeviceDialog(sites, {d.name for d in self.inventory.devices}, entry, self)
        dialog.accepted.connect(lambda: self._on_device_dialog_accepted(dialog))
        self.device_dialog = dialog
        dialog.open()

    def _on_device_dialog_accepted(self, dialog: DeviceDialog) -> None:
        if dialog.entry is None:
            return
        if dialog.original is not None and dialog.entry.name != dialog.original \
                and dialog.original in self.updates.busy():
            # A rename would move the device away from the job that drives it; other edits wait for its end.
            self.status.show_problem(f"{dialog.original}: an update is running on it; it was not renamed. "
                                     "Rename it once the update has finished.")
            return
        try:
            saved = self.inventory.upsert(dialog.entry, replacing=dialog.original)
        except (SitelineError, OSError) as exc:
            QMessageBox.warning(self, "Device not saved", str(exc))
            return
        if dialog.original is None:
            self.model.add_device(saved)
            self.sessions.add(saved)
        else:
            self.model.update_device(dialog.original, saved)
            self.sessions.replace(dialog.original, saved)
            if self.sessions.postponed(dialog.original) is not None:
                self.status.show_problem(f"{saved.name}: saved; an update is running on it, so the connection "
                                         "uses the edited settings once the update has finished.")
        self.tree.expandAll()
        self._select(saved.name)
        self._update_summary()

    def remove_device(self) -> None:
        name = self.selected_device()
        if name is None:
            return
        if name in self.updates.busy():  # its job would be left mid-update with no link to finish on
            self.status.show_problem(f"{name}: an update is running on it; it was not removed. Remove it once "
                                     "the update has finished (or cancel the update while that is safe).")
            return
        question = f"Remove {name} from the device list?"
        box = QMessageBox(QMessageBox.Icon.Question, "Remove device", question, parent=self)
        box.setInformativeText("Its connection is closed. Nothing on the device changes.")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.accepted.connect(lambda: self.remove_now(name))  # Yes is an AcceptRole button
        self.confirm_box = box
        box.open()

    def remove_now(self, name: str) -> asyncio.Task[None] | None:
        self.inventory.remove(name)
        self.model.remove_device(name)
        task = self.sessions.remove(name)
        self.sessions.forget_history(name)
        if self.page.device == name:
            self.page.device = None
            self.stack.setCurrentWidget(self.empty)
        self._update_summary()
        self._update_actions()
        return task

    def provision_device(self) -> None:
        """The provisioning wizard, for the selected device's path and site (or a blank target)."""
        from siteline.ui.provision_service import Provisioner, session_pauser
        from siteline.ui.provision_wizard import ProvisionWizard

        name = self.selected_device()
        entry = self.inventory.get(name) if name else None
        keep = self.keep_ui.keep if self.keep_ui is not None else None
        # A session on the same serial port stops while the wizard uses it (a port opens exclusively).
        provisioner = Provisioner(keep=keep, pause=session_pauser(self.inventory, self.sessions))
        self.provision_wizard = ProvisionWizard(
            provisioner, sites=sorted({d.site for d in self.inventory.devices}),
            target=entry.target if entry else "", site=entry.site if entry else "", parent=self)
        self.provision_wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.provision_wizard.sig_provisioned.connect(self._on_provisioned)
        self.provision_wizard.open()

    def _on_provisioned(self, job: Any) -> None:
        """A box provisioned from a bare target joins the device list under its new name, so the next connection
        logs in with the vault's password and installs the certificate the control plane signs."""
        if not job.device or self.inventory.get(job.device) is not None:
            return
        if any(job.target in d.targets for d in self.inventory.devices):
            return  # already listed under the name the technician gave it
        target = parse_target(job.target)
        user = None if target.is_ssh else (job.data.get("credentials") or {}).get("users", ["root"])[0]
        entry = DeviceEntry(job.device, job.target, job.site or "Unsorted", username=user, tags=tuple(job.tags),
                            notes=f"Provisioned with profile {job.profile_name} (job {job.id}).")
        try:
            saved = self.inventory.upsert(entry)
        except (SitelineError, OSError) as exc:
            self.status.show_problem(f"{job.device} was provisioned but not added to the device list: {exc}")
            return
        self.model.add_device(saved)
        self.sessions.add(saved)
        self.tree.expandAll()
        self._select(saved.name)

    def reconnect_device(self) -> None:
        name = self.selected_device()
        if name:
            self.sessions.reconnect(name)

    def open_device(self) -> None:
        if self.selected_device():
            self.page.tabs.setFocus()

    def show_first_run(self) -> None:
        from siteline.ui.first_run import open_first_run

        if self.first_run is not None and shiboken6.isValid(self.first_run) and self.first_run.isVisible():
            self.first_run.raise_()
            return
        open_first_run(self)

    def show_glossary(self) -> None:
        from siteline.ui.help_text import GlossaryDialog

        self.glossary = GlossaryDialog(parent=self)
        self.glossary.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.glossary.show()

    def show_plugins(self) -> None:
        self.plugins_dialog = PluginsDialog(self.plugins, self)
        self.plugins_dialog.sig_plugins_changed.connect(self.status.update_plugins)  # recount failures after a toggle
        self.plugins_dialog.open()

    def save_diagnostics(self) -> None:
        from siteline.ui.diag_dialog import open_diag_dialog

        name = self.selected_device()
        session = self.sessions.get(name) if name else None
        if session is None:
            self.status.showMessage("Select a device first: a diagnostics bundle is of one device.", 8000)
            return
        open_diag_dialog(self, session, self.plugins, keep=self.keep_ui.keep if self.keep_ui else None)

    # -- slots -------------------------------------------------------------------------------

    def _on_host_key_review_requested(self) -> None:
        self.host_keys.review(self.page.device)

    def show_mqtt_explorer(self) -> None:
        # Its own window (not modal): a technician watches topics while working on a device. Imported
        # here: most sessions never open it, and startup stays quick.
        from siteline.ui.mqtt_explorer import MqttExplorer

        window = MqttExplorer(parent=self)
        if self.keep_ui is not None:
            keep = self.keep_ui.keep
            window.on_publish_done = lambda broker, detail, result: keep.record(
                "mqtt-publish", device=broker, site="-", detail=detail, result=result)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.show()

    def _on_refresh_triggered(self) -> None:
        name = self.selected_device()
        if name:
            self.controls.refresh_now(name)

    def _on_tree_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        name = self.selected_device()
        entry = self.inventory.get(name) if name else None
        session = self.sessions.get(name) if name else None
        if entry is None or session is None:
            self.stack.setCurrentWidget(self.empty)
        else:
            self.page.show_device(entry, session.state, session.snapshots)
            self.stack.setCurrentWidget(self.page)
        self._update_actions()

    def _on_tree_activated(self, index: QModelIndex) -> None:
        if index.data(NameRole):
            self.open_device()
        else:
            self.tree.setExpanded(index, not self.tree.isExpanded(index))

    def _shell_opener(self, name: str) -> ShellOpener:
        """Resolved when the person clicks Connect, so it uses whatever link is up at that moment."""

        async def open_shell(cols: int, rows: int) -> Any:
            session = self.sessions.get(name)
            if session is None:
                raise TransportError(f"{name} is no longer in the device list.")
            return await session.open_shell(cols, rows)

        return open_shell

    def _on_session_state_changed(self, name: str) -> None:
        state = self.sessions.state(name)
        self.model.set_state(name, state)
        if name == self.page.device:
            self.page.show_state(state)
        self._update_summary()

    def _on_session_snapshot(self, name: str, kind: str) -> None:
        session = self.sessions.get(name)
        if session is not None and name == self.page.device:
            self.page.show_snapshot(kind, session.snapshots.get(kind))

    def _on_page_password_requested(self) -> None:
        if self.page.device:
            self.passwords.ask(self.page.device, self.sessions.state(self.page.device).reason)

    @property
    def password_dialog(self) -> CredentialsDialog | None:
        return self.passwords.dialog

    def _on_theme_triggered(self, action: QAction) -> None:
        if self.theme is not None:
            self.theme.apply(action.data())
        if self.page.device:
            self.page.show_state(self.sessions.state(self.page.device))

    # -- bookkeeping -------------------------------------------------------------------------

    def _update_summary(self) -> None:
        names = self.sessions.names()
        up = sum(1 for n in names if self.sessions.state(n).state is ConnState.UP)
        self.status.update_devices(up, len(names))

    def _update_actions(self) -> None:
        has = self.selected_device() is not None
        for action in (self.act_edit, self.act_remove, self.act_refresh, self.act_reconnect, self.act_open,
                       self.act_diag):
            action.setEnabled(has)
        if self.keep_ui is not None:
            self.keep_ui.act_note.setEnabled(has)
            self.keep_ui.act_snapshot.setEnabled(has)

    def _restore_settings(self) -> None:
        if self._settings.geometry:
            self.restoreGeometry(from_b64(self._settings.geometry))
        if self._settings.splitter:
            self.splitter.restoreState(from_b64(self._settings.splitter))
        if self.theme is not None and self._settings.theme in ("light", "dark") and self.theme.mode == "system":
            self.theme.apply(self._settings.theme)  # type: ignore[arg-type]
            for action in self._theme_group.actions():
                action.setChecked(action.data() == self._settings.theme)

    def save_settings(self) -> None:
        self._settings.geometry = to_b64(self.saveGeometry())
        self._settings.splitter = to_b64(self.splitter.saveState())
        self._settings.selected = self.selected_device() or ""
        self._settings.theme = self.theme.mode if self.theme else "system"
        self._settings.save(self._settings_path)

    def start_keep(self) -> None:
        """Once shown: start syncing the outbox, or say why nothing can be kept."""
        if self.keep_ui is not None:
            self.keep_ui.start()
        elif self.keep_problem:
            self.status.show_problem(f"Nothing can be recorded: {self.keep_problem}")
        if not self._given_devices and needs_first_run(self.config_dir):
            self.show_first_run()

    async def stop_device_work(self) -> None:
        """Before the links close: the log follower, the refresh schedule, alignment and checks end."""
        await self.page.logs.close()
        await self.updates.close()
        if self.provision_wizard is not None and shiboken6.isValid(self.provision_wizard):
            await self.provision_wizard.close_work()  # the runner saves its job "interrupted": resumable
        await self.controls.close()
        await self.demo.stop()

    async def close_keep(self) -> None:
        if self.keep_ui is not None:
            await self.keep_ui.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        event.accept()
        self.sig_closed.emit()
