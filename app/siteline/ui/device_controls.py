"""What the device page's panels ask of the device, kept out of the window class.

- the refresh schedule (metered links slow, unseen devices paused) and F5;
- antenna alignment (the modem reads its signal every second while the window is open);
- the factory-password check the Posture panel asks for after the person confirmed it;
- slot actions (mark good / bad / active) the Slots panel asks for, confirmed in a dialog, then the
  slots read again.

Everything a person starts here is recorded in the audit trail, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QLabel, QMenu, QPushButton

from siteline import paths
from siteline.core.device.slot_actions import SlotAction, perform
from siteline.core.errors import SitelineError, TargetError, TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.refresh_policy import LinkChoice, load_settings, metered, save_settings
from siteline.core.targets import parse_target
from siteline.core.tasks import cancel_and_wait
from siteline.core.transports.base import ConnState, Result
from siteline.ui.panels.slot_action_dialog import SlotActionDialog
from siteline.ui.refresh_scheduler import RefreshScheduler

if TYPE_CHECKING:
    from siteline.core.device.posture import PostureCheck
    from siteline.core.session import DeviceSession
    from siteline.ui.main_window import MainWindow

log = logging.getLogger(__name__)


class DeviceControls(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.page = window.page
        self.sessions = window.sessions
        self.antenna_window: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Factory checks and the device each is for: cancelled at close or removal, not waited out.
        self._checks: dict[asyncio.Task[Any], str] = {}
        self.antenna_device: str | None = None
        self._closing = False
        self.factory_pause: float | None = None  # between factory logins; None: factory_login's own pacing
        settings, warnings = load_settings()
        kinds = tuple(dict.fromkeys(c.item.kind for c in window.plugins.probes()))
        self.refresher = RefreshScheduler(self.sessions, settings, kinds=kinds,
                                          control_plane_metered=self._control_plane_metered, parent=self)
        self.refresh_label = QLabel()
        self.refresh_label.setObjectName("refreshPolicy")
        window.status.addPermanentWidget(self.refresh_label)
        for warning in warnings:
            window.status.show_problem(warning)
        self.refresher.sig_policy_changed.connect(self._on_refresher_policy_changed)
        self.page.tabs.currentChanged.connect(lambda _i: self.tell_shown())
        window.tree.selectionModel().selectionChanged.connect(lambda *_: self.tell_shown())
        self.page.is_metered = self.is_metered
        self.page.panel_tabs["posture"].sig_panel_built.connect(self._on_posture_panel_built)
        self.page.sig_slot_action_requested.connect(self._on_slot_action_requested)
        self._add_antenna_button()
        self._add_data_plan_menu()
        self.sessions.sig_device_removed.connect(self._on_device_removed)
        window.installEventFilter(self)

    # -- the refresh schedule ----------------------------------------------------------------------

    def _control_plane_metered(self) -> bool:
        keep = self.window.keep_ui.keep if self.window.keep_ui is not None else None
        return bool(keep is not None and keep.settings is not None and keep.settings.metered)

    def is_metered(self, name: str) -> bool:
        return bool(metered(self.refresher.view(name), self.refresher.settings).metered)

    def _add_data_plan_menu(self) -> None:
        """Device > Data plan: what the person knows about the link beats what Siteline guesses from it."""
        menus = [a.menu() for a in self.window.menuBar().actions() if a.text().replace("&", "") == "Device"]
        device_menu = next((m for m in menus if isinstance(m, QMenu)), None)
        if device_menu is None:
            return
        self.plan_menu = device_menu.addMenu("Data &plan")
        self.plan_actions: dict[str, QAction] = {}
        group = QActionGroup(self.plan_menu)
        for choice, text, tip in (
            ("auto", "&Decide from the link", "Metered when its traffic goes over cellular (or a metered "
             "control plane): refreshed every 5 min instead of every 30 s"),
            ("metered", "&Metered: save data", "Always refreshed slowly, and its log polled slowly"),
            ("unmetered", "&Not metered", "Always refreshed at the normal pace"),
        ):
            action = self.plan_menu.addAction(text)
            action.setCheckable(True)
            action.setToolTip(tip)
            action.setStatusTip(tip)
            action.triggered.connect(lambda _checked=False, c=choice: self.set_link_choice(c))
            group.addAction(action)
            self.plan_actions[choice] = action
        self.plan_menu.aboutToShow.connect(self._on_plan_menu_about_to_show)

    def _on_plan_menu_about_to_show(self) -> None:
        name = self.page.device
        for action in self.plan_actions.values():
            action.setEnabled(name is not None)
        if name is not None:
            self.plan_actions[self.refresher.settings.link_choice(name)].setChecked(True)

    def set_link_choice(self, choice: LinkChoice) -> None:
        """Mark the shown device's link metered / not metered / automatic, and keep that in the settings."""
        name = self.page.device
        if name is None:
            return
        settings = self.refresher.settings.with_link_choice(name, choice)
        try:
            save_settings(settings)
        except OSError as exc:
            self.window.status.show_problem(f"The data plan of {name} was not saved ({exc}); it applies until "
                                            "Siteline closes. Free some disk space and choose it again to keep it.")
        self.refresher.set_settings(settings)
        self.tell_shown()
        self.page.show_logs_of(name)  # the log's polling pace follows

    def tell_shown(self) -> None:
        shown = self.page.device if self.window.stack.currentWidget() is self.page else None
        self.refresher.set_shown(shown, getattr(self.page.tabs.currentWidget(), "kind", None))
        self.refresh_label.setText(self.refresher.describe(shown) if shown else "")

    def _on_refresher_policy_changed(self, name: str, text: str) -> None:
        if name == self.page.device:
            self.refresh_label.setText(text)

    def refresh_now(self, name: str) -> None:
        task = self.refresher.refresh_now(name)
        if task is not None:
            task.add_done_callback(report_task_error)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() in (QEvent.Type.Show, QEvent.Type.Hide,
                                                        QEvent.Type.WindowStateChange):
            seen = self.window.isVisible() and not self.window.isMinimized()
            self.refresher.set_window_visible(seen)
            self.page.set_watched(seen)
        return False

    # -- panels' own requests ---------------------------------------------------------------------

    def _on_posture_panel_built(self, panel: Any) -> None:
        panel.device_name = self.page.device or "this device"
        panel.sig_factory_check_requested.connect(lambda: self._start_check(panel))

    def _start_check(self, panel: Any) -> None:
        task = self._start(self._factory_check(panel))
        self._checks[task] = self.page.device or ""
        task.add_done_callback(lambda t: self._checks.pop(t, None))

    def _on_device_removed(self, name: str) -> None:
        """A removed device: its alignment window closes (putting the old rate back) and its check stops."""
        if self.antenna_window is not None and self.antenna_device == name:
            self.antenna_window.close()
        for task, device in list(self._checks.items()):
            if device == name:
                task.cancel()  # audited as cancelled

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(report_task_error)
        return task

    def _record(self, action: str, name: str, detail: dict[str, Any], result: str, site: str | None = None) -> None:
        session = self.sessions.get(name)
        site = site if site is not None else (session.entry.site if session is not None else None)
        if self.window.keep_ui is not None and site is not None:  # a device removed meanwhile is still recorded
            self.window.keep_ui.keep.record(action, device=name, site=site, detail=detail, result=result)

    async def _factory_check(self, panel: Any) -> None:
        from siteline.core.device.factory_login import PAUSE, check_factory_logins

        name = self.page.device
        session = self.sessions.get(name) if name else None
        if name is None or session is None:
            return
        target_text = self.sessions.active_target(name) or session.entry.target
        try:
            target = parse_target(target_text)
        except TargetError as exc:
            self.window.status.show_problem(f"The factory-password check cannot reach {name}: {exc}")
            return
        site = session.entry.site
        panel.set_factory_running(True)
        tried: list[str] = []
        # Recorded whatever happens: "cancelled" when the window closed (or the task was cancelled) meanwhile.
        result, detail = "cancelled", dict[str, Any](tried=tried)
        try:
            pause = PAUSE if self.factory_pause is None else self.factory_pause
            check: PostureCheck = await check_factory_logins(target, paths.data_dir() / "known_hosts", pause=pause,
                                                             on_attempt=lambda a: tried.append(a.name))
            result, detail = check.status, {"tried": tried, "status": check.status, "reason": check.reason}
        except SitelineError as exc:
            result, detail = "failed", {"tried": tried, "error": str(exc)}
            self.window.status.show_problem(f"The factory-password check on {name} stopped: {exc} "
                                            "Press 'Try factory passwords…' on its Posture tab to try again.")
            return
        finally:
            self._record("factory-password-check", name, detail, result, site)
            if shiboken6.isValid(panel):  # another device shown meanwhile deleted this panel
                panel.set_factory_running(False)
        if shiboken6.isValid(panel):
            panel.show_factory_result(check)
        posture = session.snapshots.get("posture")
        if posture is not None and hasattr(posture, "with_check"):
            session.snapshots["posture"] = posture.with_check(check)
            if self.page.device == name:
                self.page.show_snapshot("posture", session.snapshots["posture"])

    # -- slot actions -------------------------------------------------------------------------------

    def _on_slot_action_requested(self, action: SlotAction) -> None:
        """Confirm (the device name typed for a risky one), then run, audit and re-read the slots."""
        name = self.page.device
        entry = self.window.inventory.get(name) if name else None
        if entry is None:
            return
        dialog = SlotActionDialog(action, entry.name, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._start(self._run_slot_action(action, entry)))
        dialog.open()

    async def _run_slot_action(self, action: SlotAction, entry: DeviceEntry) -> None:
        session = self.sessions.get(entry.name)
        panel = self.page.slots_panel if self.page.device == entry.name else None

        def record(what: str, detail: dict[str, Any], result: str) -> None:
            self._record(what, entry.name, detail, result, entry.site)

        async def run(command: str, timeout: float) -> Result:
            if session is None:
                raise TransportError(f"{entry.name} is not connected.", "Connect to it, then try again.")
            return await session.run(command, timeout)

        if panel is not None:
            panel.set_actions_enabled(False, f"{action.title}: running…")
            panel.show_action_outcome(f"{action.title}: running…", None)
        try:
            outcome = await perform(action, run, record)
        finally:
            if panel is not None and shiboken6.isValid(panel):
                up = session is not None and session.state.state is ConnState.UP
                panel.set_actions_enabled(up, f"{entry.name} is not connected.")
        if panel is not None and shiboken6.isValid(panel):
            panel.show_action_outcome(str(outcome), outcome.ok)
        if not outcome.ok:
            self.window.status.show_problem(f"{entry.name}: {outcome}")
        if session is not None and session.state.state is ConnState.UP:
            await session.refresh("slots")  # the Slots tab shows what the device has now

    # -- antenna alignment --------------------------------------------------------------------------

    def _add_antenna_button(self) -> None:
        button = QPushButton("Antenna a&lignment…")
        button.setObjectName("antennaButton")
        button.setToolTip("Read the signal every second, in big figures, while you point the antenna")
        button.setMinimumHeight(40)
        button.setProperty("touch", True)  # the style sheet sizes it for gloves
        layout = self.page.panel_tabs["modem"].layout()
        layout.insertWidget(0, button, 0, Qt.AlignmentFlag.AlignRight)  # type: ignore[union-attr]
        button.clicked.connect(self.open_antenna_window)
        self.page.antenna_button = button  # type: ignore[attr-defined]

    def open_antenna_window(self) -> None:
        name = self.page.device
        session = self.sessions.get(name) if name else None
        index = getattr(session.snapshots.get("modem"), "index", None) if session is not None else None
        if name is None or session is None or index is None:
            self.window.status.show_problem("Antenna alignment needs the modem read once: open the Modem tab, "
                                            "wait for it to fill (or press F5), then try again.")
            return
        if self.antenna_window is not None:
            self.antenna_window.close()  # one at a time; its close puts the old rate back
        self._start(self._open_antenna(name, session, int(index)))

    async def _open_antenna(self, name: str, session: DeviceSession, index: int) -> None:
        # The alignment commands are ModemManager's (mmcli --signal-setup): the built-in modem plugin has them.
        from siteline.ui.panels.antenna_window import AntennaWindow
        from siteline_modemmanager.alignment import sample, start_alignment, stop_alignment

        try:
            previous = await start_alignment(session.context(), index)
        except SitelineError as exc:
            self.window.status.show_problem(f"Antenna alignment could not start on {name}: {exc}")
            return

        async def restore() -> None:
            try:
                await stop_alignment(session.context(), index, previous)
            except SitelineError as exc:
                self.window.status.show_problem(f"The modem of {name} may still read its signal every second: {exc}")

        if self._closing or self.sessions.get(name) is not session:
            await restore()  # the window closed (or the device went) while the modem answered: no window now
            return

        def on_close() -> None:
            self.antenna_window = None
            self._start(restore())

        window = AntennaWindow(lambda: sample(session.context(), index), on_close=on_close, device=name)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.antenna_window = window
        self.antenna_device = name
        window.show()
        window.start()
        self._record("antenna-alignment", name, {"modem": index, "previous_rate": previous}, "ok")

    # -- closing ------------------------------------------------------------------------------------

    async def close(self) -> None:
        """The window is closing: the antenna window first (its close restores the rate), then the rest."""
        self._closing = True  # an alignment still starting puts the rate back instead of opening its window
        if self.antenna_window is not None:
            self.antenna_window.close()
        for check in list(self._checks):
            await cancel_and_wait(check)  # up to 5 paced SSH logins: not worth holding the exit for
        await self.refresher.close()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def report_task_error(task: asyncio.Task[Any]) -> None:
    """Errors of fire-and-forget work go where async-slot errors go: the excepthook (logged and shown)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        import sys

        sys.excepthook(type(exc), exc, exc.__traceback__)
