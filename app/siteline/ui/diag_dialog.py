"""Device > Save diagnostics bundle…: one click gathers the selected device's probes, logs, slot state, posture
and Siteline's own log into one zip (secrets blanked) over the device's OPEN session, no second login.

The work is core's (siteline.core.diag); this dialog asks where to save, shows each area as it is collected,
then the result ("saved … 84 KB; queued for the control plane", or why not) and an "Open folder" button.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QStandardPaths, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from siteline.core import app_log
from siteline.core.diag.archive import BundleWriteError, build_bundle, own_log_tail, write_bundle
from siteline.core.diag.collect import AREAS, DEFAULT_LOG_LINES, MAX_LOG_LINES, Collected, collect
from siteline.core.diag.outbox import queue_with_settings
from siteline.core.errors import SitelineError
from siteline.core.plugins import PluginHost
from siteline.core.transports.base import ConnState

log = logging.getLogger(__name__)

ACTION_TEXT = "Save &diagnostics bundle…"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
AREA_TITLES = {"system": "System", "modem": "Modem", "network": "Network", "slots": "Slots and boot counters",
               "posture": "Security posture", "logs": "Recent logs", "config": "Config files"}


def default_file_name(device: str, when: float | None = None) -> str:
    """``siteline-diag-<device>-<UTC time>.zip``, the device's name folded to what every file system takes."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    name = _UNSAFE.sub("_", device).strip("._") or "device"
    return f"siteline-diag-{name[:60]}-{stamp}.zip"


def default_folder() -> Path:
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(docs) if docs and Path(docs).is_dir() else Path.home()


class DiagDialog(QDialog):
    """Collect and save one device's bundle. ``session`` is the device's open DeviceSession (``run``, ``entry``,
    ``state``); ``keep`` the window's Keep (its outbox queues the bundle, its audit trail records it, its sync
    loop is woken); without one the default outbox is opened for the queueing and nothing is recorded."""

    sig_bundle_saved = Signal(str)  # the file's path, once written

    def __init__(self, session: Any, plugins: PluginHost, *, keep: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.plugins, self.keep = session, plugins, keep
        self.device: str = session.entry.name
        self.site: str = session.entry.site
        self.saved_path: Path | None = None
        self._task: asyncio.Task[None] | None = None
        self.setWindowTitle(f"Diagnostics bundle for {self.device}")
        self.setMinimumWidth(560)
        self._build()
        self._on_session_checked()

    def _build(self) -> None:
        heading = QLabel(f"Collect <b>{html.escape(self.device)}</b>'s probes, recent logs, slot state, posture "
                         "and Siteline's own log into one zip for support staff. Secrets are blanked.")
        heading.setWordWrap(True)
        heading.setTextFormat(Qt.TextFormat.RichText)
        self.log_lines = QSpinBox()
        self.log_lines.setRange(10, MAX_LOG_LINES)
        self.log_lines.setValue(DEFAULT_LOG_LINES)
        self.log_lines.setSuffix(" log records")
        form = QFormLayout()
        form.addRow("Include", self.log_lines)
        self.area_labels: dict[str, QLabel] = {}
        for area in AREAS:
            label = QLabel("waiting")
            label.setTextFormat(Qt.TextFormat.PlainText)  # a device's words (an Unavailable reason) are never markup
            label.setObjectName(f"diagArea_{area}")
            self.area_labels[area] = label
            form.addRow(AREA_TITLES.get(area, area), label)
        self.result_label = QLabel("")
        self.result_label.setTextFormat(Qt.TextFormat.PlainText)  # holds paths, errors and device text
        self.result_label.setObjectName("diagResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.save_button = QPushButton("Collect and &save…")
        self.save_button.setDefault(True)
        self.folder_button = QPushButton("Open &folder")
        self.folder_button.setEnabled(False)
        self.close_button = QPushButton("&Close")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.folder_button.clicked.connect(self._on_folder_clicked)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.save_button, self.folder_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addLayout(form)
        layout.addWidget(self.result_label)
        layout.addLayout(buttons)

    def _connected(self) -> bool:
        return getattr(self.session.state, "state", None) is ConnState.UP

    def _on_session_checked(self) -> None:
        if not self._connected():
            self.result_label.setText(f"{self.device} is not connected ({self.session.state.describe()}). "
                                "Wait until it is, then try again.")

    # -- doing it ---------------------------------------------------------------------------------

    def choose_path(self) -> Path | None:
        """The Save-as dialog (tests replace this method)."""
        suggested = default_folder() / default_file_name(self.device)
        name, _filter = QFileDialog.getSaveFileName(self, "Save diagnostics bundle", str(suggested),
                                                    "Zip archives (*.zip)")
        return Path(name) if name else None

    def _on_save_clicked(self) -> None:
        if self._task is not None and not self._task.done():
            return
        if not self._connected():
            self._on_session_checked()
            return
        path = self.choose_path()
        if path is None:
            return
        self.save_button.setEnabled(False)  # at once: the task starts on the loop's next turn
        self._task = asyncio.ensure_future(self.save_to(path))

    async def save_to(self, path: Path) -> None:
        """Collect over the open session, write the zip to ``path`` (replacing it: the Save-as dialog asked),
        queue it when it fits, and say how it went."""
        self.save_button.setEnabled(False)
        self.result_label.setText("Collecting…")
        for label in self.area_labels.values():
            label.setText("waiting")
        try:
            collected = await collect(self.session.run, self.plugins, target=self._target(), device=self.device,
                                      log_lines=self.log_lines.value(), progress=self._on_area_progress)
            await self._write(collected, path)
        except SitelineError as exc:
            self.result_label.setText(f"Not saved: {exc}")
        finally:
            self.save_button.setEnabled(True)

    def _target(self) -> str:
        return str(getattr(self.session, "active_target", None) or self.session.target)

    async def _write(self, collected: Collected, path: Path) -> None:
        own_log = own_log_tail(app_log.path())
        bundle = await asyncio.to_thread(build_bundle, collected, site=self.site, own_log=own_log)
        try:
            await asyncio.to_thread(write_bundle, bundle, path, force=True)
        except BundleWriteError as exc:
            self.result_label.setText(f"Not saved: {exc}")
            return
        decision = queue_with_settings(bundle, site=self.site, device=self.device, file_name=path.name,
                                       outbox=getattr(self.keep, "outbox", None))
        self._record(path, bundle.size, bundle.sha256, collected, decision.message)
        if decision.queued and self.keep is not None:
            self.keep.wake()
        self.saved_path = path
        partial = f" PARTIAL: {collected.partial}." if collected.partial else ""
        self.result_label.setText(f"Saved {path} ({bundle.size_text}); {decision.message}.{partial}")
        self.folder_button.setEnabled(True)
        self.sig_bundle_saved.emit(str(path))

    def _record(self, path: Path, size: int, sha256: str, collected: Collected, outbox: str) -> None:
        if self.keep is not None:  # Keep.record never raises: a trail that cannot be written is reported by it
            self.keep.record("diagnostics-bundle", device=self.device, site=self.site,
                             detail={"file": path.name, "bytes": size, "sha256": sha256,
                                     "partial": bool(collected.partial), "outbox": outbox, "via": "gui"})

    def _on_area_progress(self, area: str, what: str) -> None:
        label = self.area_labels.get(area)
        if label is not None:
            label.setText({"collecting": "collecting…", "done": "collected"}.get(what, what))
            label.setToolTip(f"<p>{html.escape(what)}</p>")  # rich on purpose, escaped: device text is not markup

    def _on_folder_clicked(self) -> None:
        if self.saved_path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.saved_path.parent)))

    def done(self, result: int) -> None:  # Qt's name: closing cancels a collection still running
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().done(result)

    async def wait(self) -> None:
        """Until the collection started by the button has ended (tests)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def open_diag_dialog(parent: QWidget, session: Any, plugins: PluginHost, keep: Any = None) -> DiagDialog:
    """What the Device menu's action calls for the selected device's session."""
    dialog = DiagDialog(session, plugins, keep=keep, parent=parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
