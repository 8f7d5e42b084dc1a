"""The audit trail per device (newest first) and a Verify button that checks the hash chain.

It reads ``AuditTrail.records`` / ``AuditTrail.verify`` (core/audit.py) and shows typed results; the
chain itself is checked in core, never here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError
from siteline.ui.delegates import TallRowDelegate
from siteline.ui.help_text import HelpLine
from siteline.ui.sync_status import default_state_colour
from siteline.ui.table_model import RowTableModel

if TYPE_CHECKING:
    from siteline.core.audit import AuditRecord, AuditTrail

log = logging.getLogger(__name__)
HEADERS = ("Time", "Technician", "Device", "Action", "Result", "Detail")
COL_TIME, COL_TECHNICIAN, COL_DEVICE, COL_ACTION, COL_RESULT, COL_DETAIL = range(len(HEADERS))
ALL_DEVICES = "All devices"
RECORD_LIMIT = 1000
DETAIL_CHARS = 120
AnyIndex = QModelIndex | QPersistentModelIndex


def detail_summary(detail: Any, limit: int = DETAIL_CHARS) -> str:
    """``{"command": "reboot", "exit": 0}`` -> ``command=reboot, exit=0``, cut at ``limit`` characters."""
    if isinstance(detail, str):
        with contextlib.suppress(ValueError):
            detail = json.loads(detail) if detail.strip() else {}
    if isinstance(detail, Mapping):
        text = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in detail.items())
    else:
        text = "" if detail is None else str(detail)
    text = " ".join(text.split())  # one line in the table
    return text if len(text) <= limit else text[: limit - 1] + "…"


def damaged_text(damaged: Sequence[Any]) -> str:
    """The warning for damaged outboxes set aside beside the trail's file ("" when there are none)."""
    if not damaged:
        return ""
    files = "\n".join(f"  {p}" for p in damaged)
    return ("Warning: the outbox was damaged and set aside, so the audit trail restarted; its earlier records "
            f"are in:\n{files}\nDo not delete {'these files' if len(damaged) > 1 else 'this file'}: give "
            f"{'them' if len(damaged) > 1 else 'it'} to support or your team lead.")


class AuditTableModel(RowTableModel["AuditRecord"]):
    def __init__(self, state_colour: Callable[[str], QColor], parent: QObject | None = None) -> None:
        super().__init__(HEADERS, parent)
        self._state_colour = state_colour
        self.bad_seq: int | None = None  # the first record verify found broken: drawn red and bold

    def set_records(self, records: Sequence[AuditRecord]) -> None:
        self.beginResetModel()
        self._rows = list(records)
        self.endResetModel()

    def set_bad_seq(self, seq: int | None) -> None:
        self.bad_seq = seq
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(HEADERS) - 1))

    def record(self, row: int) -> AuditRecord | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of_seq(self, seq: int) -> int:
        return next((r for r, rec in enumerate(self._rows) if getattr(rec, "seq", None) == seq), -1)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        rec = self.record(index.row()) if index.isValid() else None
        if rec is None:
            return None
        col = index.column()
        bad = self.bad_seq is not None and getattr(rec, "seq", None) == self.bad_seq
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(rec, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(rec, bad)
        if role == Qt.ItemDataRole.ForegroundRole:
            if bad:
                return self._state_colour("down")
            if col == COL_RESULT:
                return self._state_colour("up" if rec.result == "ok" else "down")
        if role == Qt.ItemDataRole.FontRole and bad:
            font = QFont()
            font.setBold(True)
            return font
        return None

    def _display(self, rec: AuditRecord, col: int) -> str:
        if col == COL_TIME:
            return dt.datetime.fromtimestamp(rec.ts).strftime("%Y-%m-%d %H:%M:%S")
        if col == COL_DETAIL:
            return detail_summary(rec.detail)
        return str((None, rec.technician, rec.device, rec.action, rec.result)[col])

    def _tooltip(self, rec: AuditRecord, bad: bool) -> str:
        lines = [
            f"Record #{getattr(rec, 'seq', '?')} · id {getattr(rec, 'id', '?')}",
            f"Site {rec.site}, device {rec.device}",
            detail_summary(rec.detail, limit=2000),
        ]
        if bad:
            lines.insert(0, "THIS RECORD FAILED VERIFICATION")
        return "\n".join(lines)


class AuditView(QWidget):
    """The trail, one device or all; Verify says "intact: N records" or names the first bad record in red."""

    def __init__(
        self, trail: AuditTrail, state_colour: Callable[[str], QColor] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("auditView")
        self.setWindowTitle("Audit trail")
        self.trail = trail
        self._state_colour = state_colour or default_state_colour(self)
        self.model = AuditTableModel(self._state_colour, self)
        self.device_filter = QComboBox()
        self.device_filter.setObjectName("auditDeviceFilter")
        self.device_filter.setMinimumContentsLength(16)
        self.device_filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.verify_button = QPushButton("&Verify")
        self.verify_button.setObjectName("auditVerify")
        self.verify_button.setToolTip("Check that no record was edited, removed or inserted (the hash chain).")
        self.verify_button.clicked.connect(self._on_verify_clicked)
        self.task: asyncio.Future[Any] | None = None
        self.refresh_button = QPushButton("Re&fresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.result = QLabel()
        self.result.setObjectName("auditVerifyResult")
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.TextFormat.PlainText)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = self._build_table()
        device_label = QLabel("&Device:")
        device_label.setBuddy(self.device_filter)
        top = QHBoxLayout()
        top.addWidget(device_label)
        top.addWidget(self.device_filter)
        top.addStretch(1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.verify_button)
        self.help_line = HelpLine("audit")
        layout = QVBoxLayout(self)
        layout.addWidget(self.help_line)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.result)
        self.refresh()

    def _build_table(self) -> QTableView:
        table = QTableView()
        table.setObjectName("auditTable")
        table.setModel(self.model)
        table.setItemDelegate(TallRowDelegate(table))
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.verticalHeader().hide()
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_DETAIL, QHeaderView.ResizeMode.Stretch)
        return table

    def device(self) -> str | None:
        text = self.device_filter.currentText()
        return None if not text or text == ALL_DEVICES else text

    def refresh(self) -> None:
        """Read the trail again for the chosen device; the device list grows as devices appear."""
        try:
            everything = self.trail.records(None, limit=RECORD_LIMIT)
            chosen = self.device()
            records = everything if chosen is None else self.trail.records(chosen, limit=RECORD_LIMIT)
        except (SitelineError, sqlite3.Error, OSError) as exc:
            log.warning("reading the audit trail failed: %s", exc)
            self._show_result(f"Could not read the audit trail: {exc}", bad=True)
            return
        self._fill_devices(sorted({r.device for r in everything} | ({chosen} if chosen else set())))
        self.model.set_records(records)

    def _fill_devices(self, devices: list[str]) -> None:
        wanted = [ALL_DEVICES, *devices]
        current = [self.device_filter.itemText(i) for i in range(self.device_filter.count())]
        if wanted == current:
            return
        keep = self.device_filter.currentText() or ALL_DEVICES
        self.device_filter.blockSignals(True)  # refilling is not the person choosing a device
        self.device_filter.clear()
        self.device_filter.addItems(wanted)
        self.device_filter.setCurrentIndex(max(0, wanted.index(keep) if keep in wanted else 0))
        self.device_filter.blockSignals(False)

    def set_device(self, device: str | None) -> None:
        """Show one device's trail (the main window calls this for the selected device)."""
        name = device or ALL_DEVICES
        if self.device_filter.findText(name) < 0:
            self.device_filter.addItem(name)
        self.device_filter.setCurrentText(name)
        self.refresh()

    def verify(self) -> Any:
        """Check the whole chain here and now (scripts, tests); the button uses ``verify_async``."""
        try:
            outcome = self.trail.verify()
        except (SitelineError, sqlite3.Error, OSError) as exc:
            self._show_result(f"Could not verify the audit trail: {exc}", bad=True)
            return None
        self._show_outcome(outcome)
        return outcome

    def _on_verify_clicked(self) -> None:
        if self.task is None or self.task.done():
            self.verify_button.setEnabled(False)  # at once: a second click must not start a second walk
            self.task = asyncio.ensure_future(self.verify_async())

    async def verify_async(self) -> Any:
        """The same check in a worker thread (verify_file opens its own read-only connection): a trail of
        100,000 records takes seconds, and the window keeps painting meanwhile."""
        self.verify_button.setEnabled(False)
        self._show_result("Checking every record…", bad=False)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(None, self.trail.verify)
        except (SitelineError, sqlite3.Error, OSError) as exc:
            if self._alive():
                self._show_result(f"Could not verify the audit trail: {exc}", bad=True)
            return None
        finally:
            if self._alive():
                self.verify_button.setEnabled(True)
        if self._alive():  # the window may have been closed and deleted while the thread walked the chain
            self._show_outcome(outcome)
        return outcome

    def _alive(self) -> bool:
        """Both C++ objects still exist: touching a deleted widget raises RuntimeError."""
        return shiboken6.isValid(self) and shiboken6.isValid(self.verify_button)

    def _show_outcome(self, outcome: Any) -> None:
        """Say "intact: N records" or name the first bad record in red, mark it and scroll to it; either way
        name the damaged outboxes kept beside this one (the trail restarted after them)."""
        damaged = damaged_text(getattr(outcome, "damaged", ()))
        if outcome.ok:
            self.model.set_bad_seq(None)
            if damaged:
                self._show_result(f"Intact since it restarted: {outcome.count:,} records, none edited, removed or "
                                  f"inserted.\n{damaged}", bad=True)
            else:
                self._show_result(f"Intact: {outcome.count:,} records, none edited, removed or inserted.", bad=False)
            return
        self.model.set_bad_seq(outcome.first_bad_seq)
        self._show_result(
            f"BROKEN at record #{outcome.first_bad_seq}: {outcome.reason}\n"
            "Someone or something edited this laptop's audit trail. Do not delete anything: keep the outbox "
            "file as evidence and tell your team lead." + (f"\n{damaged}" if damaged else ""),
            bad=True,
        )
        row = self.model.row_of_seq(outcome.first_bad_seq) if outcome.first_bad_seq is not None else -1
        if row >= 0:
            self.table.scrollTo(self.model.index(row, 0))

    def _show_result(self, text: str, bad: bool) -> None:
        self.result.setText(text)
        self.result.setProperty("bad", bad)
        colour = self._state_colour("down" if bad else "up").name()
        weight = "font-weight: 600;" if bad else ""
        self.result.setStyleSheet(f"color: {colour}; {weight}")
