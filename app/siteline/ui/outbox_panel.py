"""The outbox panel: what is waiting, sent or failed, why, and the hand-carry export/import.

It calls ``Outbox`` (core/outbox/store.py) and shows typed results; the sync loop is not its business:
"Retry now" puts failed items back to pending and emits ``sig_wake_requested``, which the main window
connects to ``Syncer.wake``. File dialogs only pick a path: ``export_async``/``import_async`` do the work in
a worker thread (50,000 items take seconds; the Outbox is thread-safe, one lock around its connection)
while the panel shows it is busy; ``export_to``/``import_from`` are the same on the calling thread (scripts).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import shiboken6
from PySide6.QtCore import QItemSelection, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontDatabase, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError
from siteline.core.outbox.model import State
from siteline.ui.delegates import TallRowDelegate
from siteline.ui.device_dialog import bad_colour
from siteline.ui.help_text import HelpLine
from siteline.ui.outbox_model import (
    COL_CREATED,
    COL_ERROR,
    ItemIdRole,
    OutboxTableModel,
    SortRole,
    local_time,
    state_text,
)
from siteline.ui.sync_status import default_state_colour, human_bytes

if TYPE_CHECKING:
    from siteline.core.outbox.model import ImportResult, Item, OutboxStatus
    from siteline.core.outbox.store import Outbox

log = logging.getLogger(__name__)
REFRESH_MS = 3000
ROW_LIMIT = 500
FILTERS = (("All items", None), ("Waiting", State.PENDING), ("Failed", State.FAILED), ("Sent", State.SENT))
MAX_REJECTS_SHOWN = 8
T = TypeVar("T")


def _label(name: str, wrap: bool = True) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(wrap)
    label.setTextFormat(Qt.TextFormat.PlainText)  # payload fields and errors are data, never markup
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def recovered_text(path: Path) -> str:
    """Rich text: the path is escaped (a folder name is data, never markup)."""
    return (
        "<b>The outbox file was damaged and has been set aside.</b><br>"
        f"It is kept as {html.escape(str(path))}. A new, empty outbox is in use, so new work is kept safely. "
        "Items in the old file may not have been sent: <b>do not delete it</b>; give it to support (or your "
        "team lead) so they can recover them."
    )


class OutboxPanel(QWidget):
    sig_wake_requested = Signal()
    """Items are waiting again (retry, import): the sync loop should try now (connect to ``Syncer.wake``)."""

    def __init__(
        self, outbox: Outbox, state_colour: Callable[[str], QColor] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("outboxPanel")
        self.setWindowTitle("Outbox")
        self.outbox = outbox
        self.model = OutboxTableModel(state_colour or default_state_colour(self), self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setSortRole(SortRole)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self._on_timer_timeout)
        self.timer.start()
        self.refresh()

    # -- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.banner = _label("recoveredBanner")
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.banner.setStyleSheet(f"QLabel {{ border: 2px solid {bad_colour(self).name()}; padding: 8px; }}")
        recovered = getattr(self.outbox, "recovered_from", None)
        self.banner.setText(recovered_text(Path(recovered)) if recovered else "")
        self.banner.setVisible(bool(recovered))
        self.summary = _label("outboxSummary")
        self.message = _label("outboxMessage")
        self.message.hide()
        self.busy = QProgressBar()
        self.busy.setObjectName("outboxBusy")
        self.busy.setRange(0, 0)  # indeterminate: the outbox does not report progress
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(12)
        self.busy.hide()
        self.task: asyncio.Future[Any] | None = None
        self.help_line = HelpLine("outbox")
        layout = QVBoxLayout(self)
        layout.addWidget(self.help_line)
        layout.addWidget(self.banner)
        layout.addLayout(self._build_filters())
        layout.addWidget(self.summary)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._build_table())
        splitter.addWidget(self._build_details())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([380, 300])  # the list first: a technician scans states before reading a payload
        layout.addWidget(splitter, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.busy)
        layout.addLayout(self._build_buttons())

    def _build_filters(self) -> QHBoxLayout:
        self.state_filter = QComboBox()
        self.state_filter.setObjectName("outboxStateFilter")
        for text, state in FILTERS:
            self.state_filter.addItem(text, state)
        self.state_filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.search = QLineEdit()
        self.search.setObjectName("outboxSearch")
        self.search.setPlaceholderText("Find kind, site, device or error…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        show = QLabel("&Show:")
        show.setBuddy(self.state_filter)
        row = QHBoxLayout()
        row.addWidget(show)
        row.addWidget(self.state_filter)
        row.addWidget(self.search, 1)
        return row

    def _build_table(self) -> QTableView:
        self.table = QTableView()
        self.table.setObjectName("outboxTable")
        self.table.setModel(self.proxy)
        self.table.setItemDelegate(TallRowDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_ERROR, QHeaderView.ResizeMode.Stretch)
        header.setResizeContentsPrecision(0)  # size columns from the visible rows: 500 rows cost 0.2 s a refresh
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_CREATED, Qt.SortOrder.DescendingOrder)  # newest first, as the outbox reads
        self.table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)
        return self.table

    def _build_details(self) -> QWidget:
        self.details_title = _label("outboxDetailsTitle")
        font = self.details_title.font()
        font.setBold(True)
        self.details_title.setFont(font)
        self.details_hash = _label("outboxPayloadHash")
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.payload_view = QPlainTextEdit()
        self.payload_view.setObjectName("outboxPayload")
        self.payload_view.setReadOnly(True)
        self.payload_view.setFont(fixed)
        self.attempts_view = QPlainTextEdit()
        self.attempts_view.setObjectName("outboxAttempts")
        self.attempts_view.setReadOnly(True)
        self.attempts_view.setFont(fixed)
        attempts = QWidget()
        side = QVBoxLayout(attempts)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(QLabel("Delivery attempts:"))
        side.addWidget(self.attempts_view, 1)
        row = QHBoxLayout()
        row.addWidget(self.payload_view, 3)  # payload and attempts side by side: both stay readable
        row.addWidget(attempts, 2)
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.details_title)
        layout.addWidget(self.details_hash)
        layout.addLayout(row, 1)
        self._show_item(None)
        return box

    def _build_buttons(self) -> QHBoxLayout:
        self.retry_button = QPushButton("&Retry now")
        self.retry_button.setObjectName("outboxRetry")
        self.retry_button.setToolTip("Failed items (the selected ones, or all) are sent again, now.")
        self.export_button = QPushButton("&Export…")
        self.export_button.setObjectName("outboxExport")
        self.export_button.setToolTip("Write what is waiting to a file, to carry to a machine that has a network.")
        self.import_button = QPushButton("&Import…")
        self.import_button.setObjectName("outboxImport")
        self.import_button.setToolTip("Add the items of an export file from another laptop; duplicates are skipped.")
        self.refresh_button = QPushButton("Re&fresh")
        self.refresh_button.setObjectName("outboxRefresh")
        self.retry_button.clicked.connect(self._on_retry_clicked)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.import_button.clicked.connect(self._on_import_clicked)
        self.refresh_button.clicked.connect(self.refresh)
        row = QHBoxLayout()
        row.addWidget(self.retry_button)
        row.addStretch(1)
        for button in (self.export_button, self.import_button, self.refresh_button):
            row.addWidget(button)
        return row

    # -- reading -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the outbox again (timer, Refresh, or a signal that items changed); the selection stays."""
        selected = self.selected_ids()
        try:
            items = self.outbox.items(state=self.state_filter.currentData(), limit=ROW_LIMIT)
            status = self.outbox.status()
        except (SitelineError, sqlite3.Error, OSError) as exc:  # a closed or broken database must not crash the panel
            log.warning("outbox refresh failed: %s", exc)
            self._say(f"Could not read the outbox: {exc}", error=True)
            return
        self.model.set_items(items)
        self._reselect(selected)
        self.summary.setText(self._summary(status, len(items)))
        self._show_item(self.current_item())

    def _summary(self, s: OutboxStatus, shown: int) -> str:
        parts = [f"{s.pending:,} waiting"]
        high = s.pending_by_priority.get(0, 0)
        if high:
            parts[0] += f" ({high:,} high priority)"
        parts += [f"{s.failed:,} failed", f"{s.sent:,} sent"]
        if s.oldest_pending is not None:
            parts.append(f"oldest waiting since {local_time(s.oldest_pending)}")
        parts.append(f"{human_bytes(s.bytes_this_month)} sent in {s.month}")
        text = " · ".join(parts)
        return f"{text}\n(showing the newest {shown:,})" if shown >= ROW_LIMIT else text

    def selected_ids(self) -> list[str]:
        rows = self.table.selectionModel().selectedRows()
        return [self.proxy.data(r, ItemIdRole) for r in rows]

    def current_item(self) -> Item | None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return None
        return self.model.item(self.model.row_of(ids[0]))

    def _reselect(self, ids: list[str]) -> None:
        if ids == self.selected_ids():
            return
        selection = QItemSelection()
        for item_id in ids:
            row = self.model.row_of(item_id)
            if row >= 0:
                index = self.proxy.mapFromSource(self.model.index(row, 0))
                selection.select(index, index.siblingAtColumn(self.model.columnCount() - 1))
        flags = self.table.selectionModel().SelectionFlag.ClearAndSelect
        self.table.selectionModel().select(selection, flags)

    def _show_item(self, item: Item | None) -> None:
        if item is None:
            self.details_title.setText("Select an item to see what it carries.")
            self.payload_view.setPlainText("")
            self.details_hash.setText("")
            self.attempts_view.setPlainText("")
            return
        self.details_title.setText(
            f"{item.kind} · {item.site} / {item.device} · {state_text(item)} · created {local_time(item.created)}"
        )
        try:
            pretty = json.dumps(json.loads(item.payload), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            pretty = item.payload  # shown as it is: the person may still read it
        if self.payload_view.toPlainText() != pretty:
            self.payload_view.setPlainText(pretty)
        self.details_hash.setText(f"id {item.id} · payload sha256 {item.payload_sha256}")
        self.attempts_view.setPlainText(self._attempts_text(item))

    def _attempts_text(self, item: Item) -> str:
        if self.working:  # the worker may hold the outbox's lock for seconds: never wait for it here
            return "(shown when the export or import has finished)"
        try:
            attempts = self.outbox.attempts(item.id)
        except SitelineError as exc:
            return f"(could not read the attempts: {exc})"
        if not attempts:
            return "None yet." if state_text(item) == "pending" else "No attempts recorded."
        lines = []
        for a in attempts:
            size = f"  {human_bytes(a.bytes)}" if a.bytes else ""
            error = f"  {a.error}" if a.error else ""
            lines.append(f"{local_time(a.at)}  {a.outcome}{size}{error}")
        return "\n".join(lines)

    def _on_table_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self._show_item(self.current_item())

    def _on_timer_timeout(self) -> None:
        if self.isVisible() and not self.working:  # an import holds the outbox's lock: reading would wait for it
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.working:  # the worker's end refreshes
            self.refresh()

    # -- actions -------------------------------------------------------------------------------

    def retry(self) -> int:
        """Failed items back to pending: the selected failed ones, else every failed one. Returns how many."""
        chosen = [i for i in map(self.model.item, self._selected_rows()) if i and state_text(i) == "failed"]
        try:
            count = self.outbox.retry([i.id for i in chosen] if chosen else None)
        except SitelineError as exc:
            self._say(f"Could not retry: {exc}", error=True)
            return 0
        if count:
            self._say(f"{count:,} failed item{'s' if count != 1 else ''} waiting again; sending as soon as "
                      "the control plane is reachable.")
        else:
            self._say("Nothing had failed; asked to send what is waiting now.")
        self.sig_wake_requested.emit()
        self.refresh()
        return count

    def _selected_rows(self) -> list[int]:
        return [self.model.row_of(i) for i in self.selected_ids()]

    @property
    def working(self) -> bool:
        """An export or import is running in the worker thread."""
        return self.task is not None and not self.task.done()

    def export_to(self, path: Path) -> int | None:
        """Write the waiting and failed items to ``path`` (hand-carry) on this thread. The count, None on error."""
        try:
            return self._exported(path, self.outbox.export(path))
        except (SitelineError, OSError) as exc:
            self._failed("export", path, exc)
            return None

    async def export_async(self, path: Path) -> int | None:
        """``export_to`` in a worker thread; the panel is busy (Export, Import, Retry, Refresh off) meanwhile."""
        try:
            count = await self._in_worker(f"Exporting to {path}…", self.outbox.export, path)
        except (SitelineError, OSError) as exc:
            self._failed("export", path, exc)
            return None
        return self._exported(path, count) if self._alive() else count

    def _exported(self, path: Path, count: int) -> int:
        if count:
            self._say(f"Exported {count:,} item{'s' if count != 1 else ''} (waiting and failed) to {path}. "
                      "Carry the file to a machine with a network and use Import… there; the control plane "
                      "drops items it already has.")
        else:
            self._say(f"Nothing was waiting: {path} holds no items.")
        return count

    def _failed(self, action: str, path: Path, exc: SitelineError | OSError) -> None:
        if not self._alive():  # closed and deleted while the worker ran: nobody to tell
            return
        if isinstance(exc, SitelineError):
            self._say(f"{action.capitalize()} failed: {exc}", error=True)
        elif action == "export":
            self._say(f"Could not write {path}: {exc.strerror or exc}. Pick another folder or free some space, "
                      "then export again. Nothing in the outbox changed.", error=True)
        else:
            self._say(f"Could not read {path}: {exc.strerror or exc}. Check the file and try again.", error=True)

    def import_from(self, path: Path) -> ImportResult | None:
        """Add the items of an export file on this thread; says how many were new, already here, or rejected."""
        try:
            return self._imported(path, self.outbox.import_file(path))
        except (SitelineError, OSError) as exc:
            self._failed("import", path, exc)
            return None

    async def import_async(self, path: Path) -> ImportResult | None:
        """``import_from`` in a worker thread; the panel is busy meanwhile."""
        try:
            result = await self._in_worker(f"Importing {path.name}…", self.outbox.import_file, path)
        except (SitelineError, OSError) as exc:
            self._failed("import", path, exc)
            return None
        return self._imported(path, result) if self._alive() else result

    def _imported(self, path: Path, result: ImportResult) -> ImportResult:
        rejected: list[str] = list(result.rejected)
        text = (f"Imported {path.name}: {result.added:,} new, {result.duplicates:,} already here, "
                f"{len(rejected):,} rejected.")
        if rejected:
            shown = "\n".join(f"• {r}" for r in rejected[:MAX_REJECTS_SHOWN])
            more = len(rejected) - MAX_REJECTS_SHOWN
            text += f"\n{shown}" + (f"\n… and {more:,} more." if more > 0 else "")
        self._say(text, error=bool(rejected))
        if result.added:
            self.sig_wake_requested.emit()
        self.refresh()
        return result

    async def _in_worker(self, doing: str, work: Callable[[Path], T], path: Path) -> T:
        """Run ``work(path)`` in the default executor with the panel busy; never touches a deleted widget."""
        self._set_busy(True, doing)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, work, path)
        finally:
            if self._alive():
                self._set_busy(False)

    def _set_busy(self, busy: bool, doing: str = "") -> None:
        # Everything that reads or writes the outbox on this thread: an import holds its lock for seconds.
        for widget in (self.export_button, self.import_button, self.retry_button, self.refresh_button,
                       self.state_filter):
            widget.setEnabled(not busy)
        self.busy.setVisible(busy)
        if busy:
            self._say(doing)

    def _alive(self) -> bool:
        """The panel was not closed and deleted while the worker ran (a deleted widget raises RuntimeError)."""
        return shiboken6.isValid(self) and shiboken6.isValid(self.message)

    def _start(self, job: Coroutine[Any, Any, object]) -> None:
        """One export or import at a time; busy at once, so a second click cannot get in before the task runs."""
        if self.working:
            job.close()
            return
        self._set_busy(True, "Starting…")
        self.task = asyncio.ensure_future(job)

    def _on_retry_clicked(self) -> None:
        self.retry()

    def _on_export_clicked(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        suggested = str(Path.home() / f"siteline-outbox-{stamp}.jsonl.gz")
        name, _ = QFileDialog.getSaveFileName(self, "Export the outbox", suggested, "Outbox export (*.jsonl.gz)")
        if name:
            self._start(self.export_async(Path(name)))

    def _on_import_clicked(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Import an outbox export", str(Path.home()), "Outbox export (*.jsonl.gz);;All files (*)")
        if name:
            self._start(self.import_async(Path(name)))

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        colour = bad_colour(self).name() if error else self.palette().color(self.foregroundRole()).name()
        self.message.setStyleSheet(f"color: {html.escape(colour)};")
        self.message.setProperty("error", error)
        self.message.show()

