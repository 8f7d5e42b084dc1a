"""The window's side of what Siteline keeps: the sync status in the status bar, the Tools entries for
the outbox, the audit trail, the vault and the control plane, technician notes, and the console's
audit recorder. The window builds one and adds its actions to its menus; no protocol logic here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import QWidget

from siteline.core.errors import SitelineError
from siteline.core.keep import Keep, KeepProblem
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.vault import Vault
from siteline.ui.sync_status import SyncStatusWidget

if TYPE_CHECKING:
    from siteline.core.console_audit import ConsoleInputRecorder
    from siteline.ui.main_window import MainWindow

log = logging.getLogger(__name__)
IDLE_CHECK_MS = 15_000  # how often the vault's idle lock is checked


class KeepController(QObject):
    def __init__(self, keep: Keep, window: MainWindow) -> None:
        super().__init__(window)
        self.keep = keep
        self.window = window
        self.sync_widget = SyncStatusWidget(self._state_colour(), parent=window.status)
        window.status.add_sync_widget(self.sync_widget)
        self.sync_widget.set_status(keep.status)
        self._unlisten = [keep.add_status_listener(self.sync_widget.on_status),
                          keep.add_problem_listener(self._on_problem)]
        self.sync_widget.sig_clicked.connect(self.show_outbox)
        self.outbox_panel: QWidget | None = None
        self.audit_view: QWidget | None = None
        self.vault_window: QWidget | None = None
        self.control_plane_dialog: QWidget | None = None
        self.note_dialog: QWidget | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.act_outbox = self._action("&Outbox…", None, self.show_outbox,
                                       "What waits to reach the control plane; export it for hand-carry")
        self.act_audit = self._action("&Audit trail…", None, self.show_audit,
                                      "Every action on devices and on Siteline's trust, hash-chained")
        self.act_vault = self._action("&Vault…", None, self.show_vault, "Passwords and keys, encrypted on this laptop")
        self.act_control_plane = self._action("&Control plane…", None, self.show_control_plane,
                                              "Where the outbox is sent (or work offline)")
        self.act_note = self._action("Add &note…", "Ctrl+Shift+N", self.add_note,
                                     "A note about the selected device, kept and sent with the rest")
        self.act_snapshot = self._action("Save &snapshot", "Ctrl+Shift+S", self.save_snapshot,
                                         "Keep what the selected device's probes show now; sent with the rest")
        self.idle_timer = QTimer(self)
        self.idle_timer.setInterval(IDLE_CHECK_MS)
        self.idle_timer.timeout.connect(self._on_idle_timer_timeout)
        self.idle_timer.start()
        window.page.console.recorder_factory = self._recorder_for

    def _state_colour(self) -> Callable[[str], QColor] | None:
        """The theme's colours, looked up at paint time: they follow a light/dark switch while a panel is open."""
        theme = self.window.theme
        return theme.state_colour if theme is not None else None

    def _action(self, text: str, shortcut: str | None, slot: object, tip: str) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.window.addAction(action)
        return action

    @property
    def tools_actions(self) -> list[QAction]:
        return [self.act_outbox, self.act_audit, self.act_vault, self.act_control_plane]

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> None:
        """After the window shows: say where a damaged outbox went, and start syncing when set up."""
        recovered = self.keep.outbox.recovered_from
        if recovered is not None:
            self.window.status.show_problem(
                f"The outbox file was damaged and was set aside as {recovered}; a new one was started. "
                "Send the old file to support.")
        self.keep.start_sync()

    async def close(self) -> None:
        if shiboken6.isValid(self.idle_timer):  # the window may be gone already (tests, a crash on close)
            self.idle_timer.stop()
        for unlisten in self._unlisten:
            unlisten()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.keep.close()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- slots -------------------------------------------------------------------------------------

    def _on_problem(self, problem: KeepProblem) -> None:
        self.window.status.show_problem(f"{problem.message} {problem.hint}".strip())

    def _on_idle_timer_timeout(self) -> None:
        if self.keep.vault.lock_if_idle():
            log.info("the vault locked itself after %.0f s without use", self.keep.vault.idle_timeout)

    def _recorder_for(self, device: str, cols: int) -> ConsoleInputRecorder | None:
        # Imported with the first shell: it needs the terminal machinery (and asyncssh) the window does not.
        from siteline.core.console_audit import audit_recorder

        session = self.window.sessions.get(device)
        if session is None:
            return None
        # Through the writer's queue: typing never waits on the disk; failures reach the status bar.
        return audit_recorder(self.keep.writer, site=session.entry.site, device=device, cols=cols,
                              on_error=lambda exc: self._on_problem(KeepProblem(exc.message, exc.hint)))

    # -- windows -----------------------------------------------------------------------------------

    def _show(self, widget: QWidget) -> None:
        widget.setWindowFlag(Qt.WindowType.Window, True)  # its own window: a technician keeps it beside the device
        widget.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        widget.show()
        widget.raise_()
        widget.activateWindow()

    def show_outbox(self) -> None:
        from siteline.ui.outbox_panel import OutboxPanel

        if self.outbox_panel is not None and self.outbox_panel.isVisible():
            self.outbox_panel.raise_()
            return
        panel = OutboxPanel(self.keep.outbox, self._state_colour(), parent=self.window)
        panel.resize(1000, 560)
        panel.sig_wake_requested.connect(lambda: self.keep.wake(retry=True))
        self.outbox_panel = panel
        panel.destroyed.connect(lambda _o=None: setattr(self, "outbox_panel", None))
        self._show(panel)

    def show_audit(self) -> None:
        from siteline.ui.audit_view import AuditView

        view = AuditView(self.keep.audit, self._state_colour(), parent=self.window)
        view.resize(1000, 560)
        view.set_device(self.window.selected_device())
        self.audit_view = view
        self._show(view)

    def show_vault(self) -> None:
        from siteline.ui.vault_window import VaultWindow

        window = VaultWindow(self.keep.vault, self.window)
        window.sig_vault_changed.connect(self._on_vault_changed)
        window.sig_lock_changed.connect(self._on_vault_lock_changed)
        window.sig_trust_changed.connect(self._on_vault_trust_changed)
        self.vault_window = window
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.show()

    def _on_vault_changed(self, vault: object) -> None:
        if isinstance(vault, Vault):
            self.keep.vault = vault
            self.keep.record("vault-created", device="-", site="-", detail={"path": str(vault.path)})
            self.keep.start_sync()

    def _on_vault_trust_changed(self, action: str, detail: object) -> None:
        self.keep.record(action, device="-", site="-", detail=detail if isinstance(detail, dict) else {})

    def _on_vault_lock_changed(self, locked: bool) -> None:
        if not locked:
            self.keep.start_sync()  # the control plane's password may be in it
            names = self.window.sessions.use_vault_secrets()  # and remembered device passwords
            if names:
                self.window.status.showMessage(f"Connecting with the vault's passwords: {', '.join(names)}", 10000)

    def show_control_plane(self) -> None:
        from siteline.ui.control_plane_dialog import ControlPlaneDialog

        dialog = ControlPlaneDialog(self.keep.settings or parked_settings(), vault=self.keep.vault,
                                    parent=self.window)
        dialog.sig_settings_saved.connect(self._on_settings_saved)
        dialog.finished.connect(lambda _r, d=dialog: self._on_control_plane_finished(d))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.control_plane_dialog = dialog
        dialog.open()

    def _on_control_plane_finished(self, dialog: QWidget) -> None:
        if getattr(dialog, "work_offline", False):
            self._spawn(self.keep.work_offline())
            self.window.status.showMessage("Working offline: everything stays on this laptop. Tools → Control "
                                           "plane to send again (your settings were kept).", 15000)

    def _on_settings_saved(self, settings: object) -> None:
        from siteline.core.keep import offline_settings_path

        offline_settings_path().unlink(missing_ok=True)  # online again: the parked copy is stale
        if isinstance(settings, ControlPlaneSettings):
            self._spawn(self.keep.apply_settings(settings))

    def _selected(self, what: str) -> tuple[str, Any] | None:
        """The selected device's name and session; None (and the person told) when there is none."""
        name = self.window.selected_device()
        session = self.window.sessions.get(name) if name else None
        if name is None or session is None:
            self.window.status.showMessage(f"Select a device first: {what}.", 8000)
            return None
        return name, session

    def save_snapshot(self) -> None:
        selected = self._selected("a snapshot is of one device")
        if selected is None:
            return
        name, session = selected
        try:
            item = self.keep.save_snapshot(session.entry.site, name, dict(session.snapshots))
        except SitelineError as exc:
            self.window.status.show_problem(f"Snapshot not saved: {exc}")
            return
        kinds = ", ".join(sorted(session.snapshots))
        self.window.status.showMessage(f"Snapshot of {name} ({kinds}) saved on this laptop; it is sent with the rest "
                                       f"(id {item.id[:8]}…).", 10000)

    def add_note(self) -> None:
        from siteline.ui.note_dialog import NoteDialog

        selected = self._selected("a note belongs to a device")
        if selected is None:
            return
        name, session = selected
        site = session.entry.site

        def save(text: str) -> None:
            self.keep.note(site, name, text)

        dialog = NoteDialog(site, name, save, parent=self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.note_dialog = dialog
        dialog.open()


def parked_settings() -> ControlPlaneSettings | None:
    """The settings "Work offline" set aside, to start from when the person points at the control plane again."""
    from siteline.core.keep import offline_settings_path
    from siteline.core.outbox.settings import SettingsError, load_settings

    path = offline_settings_path()
    try:
        return load_settings(path) if path.exists() else None
    except SettingsError:
        return None


def open_keep() -> tuple[Keep | None, str]:
    """The keep for the window, or None and why (an outbox from a newer Siteline is refused, not overwritten)."""
    try:
        return Keep.open(), ""
    except SitelineError as exc:
        log.error("what Siteline keeps cannot be opened: %s", exc)
        return None, str(exc)
