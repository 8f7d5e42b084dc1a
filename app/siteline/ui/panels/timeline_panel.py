"""The Timeline panel: one time axis per device, so cause and effect are seen together.

On top the signal (RSRP with its quality bands) with dashed lines where the network path changed or the
device rebooted; below it one lane each for network, reboot, slots, logs, connection and clock, with a
marker per event (its shape says good / warning / bad, not only its colour); under the plot the same events
as a list (time, word, sentence). Clicking an event centres the plot on it; the zoom presets show the last
15 minutes, hour or day. The panel reads a core ``DeviceHistory`` and does no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.history import DeviceHistory
from siteline.core.device.timeline import TimelineEvent, build, clock_note, samples_between
from siteline.ui.help_text import HelpLine
from siteline.ui.panels import is_dark, paint, plain_label, tone_colour
from siteline.ui.panels.signal_plot import RSRP_BANDS

ZOOMS = (("15 min", 900.0), ("1 hour", 3600.0), ("24 hours", 86400.0))
# Lanes below the signal, top to bottom: (event kind, the word on the axis).
LANES = (("network", "network"), ("reboot", "reboot"), ("slots", "slots"), ("logs", "logs"),
         ("link", "connection"), ("clock", "clock"))
# Shape and glyph per tone, so the meaning survives without colour (colour-blind, sunlight, grey print).
SYMBOLS = {"bad": "x", "warn": "t1", "good": "o", "info": "s"}
GLYPHS = {"bad": "✖", "warn": "▲", "good": "●", "info": "■"}
# Lines across the signal plot: the events that explain a change of signal or a gap in it.
_LINE_KINDS = ("network", "reboot")
MAX_LINES = 60
_BAND_RGB = {"excellent": (30, 160, 70), "good": (120, 190, 60), "fair": (230, 160, 30), "poor": (210, 60, 50)}
COLUMNS = ("Time", "What", "Event")
EMPTY = "No events in this time range yet: the timeline fills in as the device is read."


def clock_text(at: float, span: float) -> str:
    """14:02:05, or with the day when the range covers more than a day."""
    stamp = time.localtime(at)
    return time.strftime("%d %b %H:%M:%S" if span > 86400 else "%H:%M:%S", stamp)


def short_label(event: TimelineEvent) -> str:
    """The few words on a line across the signal plot: "→ cellular", "reboot"."""
    if event.kind == "reboot":
        return "boot" if event.text.startswith("booted") else "reboot"
    arrow = event.text.rsplit("→", 1)
    return f"→ {arrow[1].split(':')[0].strip()}" if len(arrow) == 2 else event.text.split(" (")[0]


class TimelineModel(QAbstractTableModel):
    """The events of the shown window, oldest first; replaced whole on each refresh (a window, not a log)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._view = parent
        self.events: list[TimelineEvent] = []
        self.time_span = 3600.0

    def set_events(self, events: list[TimelineEvent], span: float) -> None:
        self.beginResetModel()
        self.events = events
        self.time_span = span
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.events)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.events):
            return None
        event, column = self.events[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (clock_text(event.at, self.time_span), f"{GLYPHS[event.tone]} {event.word}", event.text)[column]
        if role == Qt.ItemDataRole.ForegroundRole and column == 1 and event.tone != "info":
            return tone_colour(self._view, event.tone)
        if role == Qt.ItemDataRole.ToolTipRole:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
            return "\n".join(x for x in (f"{when} (this laptop's clock)", event.text, event.detail) if x)
        return None


class TimelinePanel(QWidget):
    """``show_history(history)`` then ``refresh()`` (or ``refresh_soon()``) whenever the history grew."""

    def __init__(self, parent: QWidget | None = None, now: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self.history: DeviceHistory | None = None
        self.span = 3600.0
        self.centre: float | None = None  # set by clicking an event; None follows the newest time
        self._now = now
        self._revision = -1
        self._lines: list[pg.InfiniteLine] = []
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(300)  # a probe round delivers several snapshots at once: one redraw for them
        self._soon.timeout.connect(self.refresh)
        self.note = plain_label("", "timelineClock")
        self.note.hide()
        self.summary = plain_label(EMPTY, "timelineSummary")
        self.zoom_buttons: dict[float, QPushButton] = {}
        self.latest_button = QPushButton("Back to now")
        self.model = TimelineModel(self)
        self.table = QTableView()
        self._build_plots()
        self._build_layout()

    # -- building ---------------------------------------------------------------------------------

    def _build_plots(self) -> None:
        dark = is_dark(self)
        self._fg = QColor("#e6e8eb" if dark else "#1b1f24")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("timelinePlot")
        self.graphics.setBackground(QColor("#1a1d22" if dark else "#ffffff"))
        self.graphics.setMinimumHeight(300)
        self.signal_plot = self.graphics.addPlot(row=0, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self.lane_plot = self.graphics.addPlot(row=1, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 3)
        self.lane_plot.setXLink(self.signal_plot)
        for plot, unit in ((self.signal_plot, "RSRP (dBm)"), (self.lane_plot, "")):
            plot.setMouseEnabled(x=False, y=False)  # zoom by the big preset buttons, not by a gloved wheel
            plot.hideButtons()
            plot.showGrid(x=True, y=False, alpha=0.15)
            plot.getAxis("left").setWidth(92)  # equal widths keep the two time axes lined up
            if unit:
                plot.setLabel("left", unit, color=self._fg.name())
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setTextPen(self._fg)
                plot.getAxis(axis).setPen(self._fg)
        self.signal_plot.getAxis("bottom").setStyle(showValues=False)
        self.signal_plot.setYRange(-125, -60, padding=0)
        for name, low, high in RSRP_BANDS:
            region = pg.LinearRegionItem((low, high), orientation="horizontal", movable=False,
                                         brush=pg.mkBrush(*_BAND_RGB[name], 60 if dark else 45))
            for line in region.lines:
                line.setPen(pg.mkPen(None))
            region.setZValue(-10)
            self.signal_plot.addItem(region, ignoreBounds=True)
        # The band names on the right, in their bands: the axis reads "good" beside the green, not a colour alone.
        self.signal_plot.showAxis("right")
        right = self.signal_plot.getAxis("right")
        right.setTicks([[(-70, "excellent"), (-85, "good"), (-95, "fair"), (-112, "poor")], []])
        right.setTextPen(self._fg)
        right.setPen(self._fg)
        right.setWidth(70)
        right.setStyle(tickLength=0)
        self.lane_plot.showAxis("right")
        self.lane_plot.getAxis("right").setWidth(70)
        self.lane_plot.getAxis("right").setStyle(showValues=False, tickLength=0)
        self.lane_plot.getAxis("right").setPen(self._fg)
        rgb = (120, 190, 245) if dark else (31, 95, 139)
        self.signal_curve = self.signal_plot.plot(pen=pg.mkPen(rgb, width=2.5), connect="finite")
        # A day at one reading per second is 86,400 points: draw the peaks per pixel, not every point.
        self.signal_curve.setDownsampling(auto=True, method="peak")
        self.signal_curve.setClipToView(True)
        count = len(LANES)
        self.lane_plot.setYRange(-0.6, count - 0.4, padding=0)
        self.lane_plot.getAxis("left").setTicks([[(count - 1 - i, word) for i, (_, word) in enumerate(LANES)]])
        self.markers: dict[str, pg.ScatterPlotItem] = {}
        for tone, symbol in SYMBOLS.items():
            item = pg.ScatterPlotItem(symbol=symbol, size=16, pen=pg.mkPen(self._fg, width=1),
                                      brush=pg.mkBrush(tone_colour(self, tone)))
            item.sigClicked.connect(self._on_marker_clicked)
            self.lane_plot.addItem(item)
            self.markers[tone] = item
        pen = pg.mkPen(self.palette().highlight().color(), width=3)
        self.cursor_lines = [pg.InfiniteLine(0, angle=90, movable=False, pen=pen) for _ in range(2)]
        for plot, line in zip((self.signal_plot, self.lane_plot), self.cursor_lines, strict=True):
            line.hide()
            plot.addItem(line, ignoreBounds=True)

    def _build_layout(self) -> None:
        zooms = QHBoxLayout()
        zooms.addWidget(QLabel("Show the last:"))
        group = QButtonGroup(self)
        group.setExclusive(True)
        for text, seconds in ZOOMS:
            button = QPushButton(text)
            button.setCheckable(True)
            button.setMinimumHeight(36)  # a target for a gloved finger
            button.setChecked(seconds == self.span)
            button.clicked.connect(lambda _=False, s=seconds: self.set_span(s))
            group.addButton(button)
            zooms.addWidget(button)
            self.zoom_buttons[seconds] = button
        self.latest_button.setMinimumHeight(36)
        self.latest_button.setToolTip("Stop centring on the chosen event and show the newest time")
        self.latest_button.clicked.connect(self._on_latest_clicked)
        self.latest_button.setEnabled(False)
        zooms.addWidget(self.latest_button)
        zooms.addStretch(1)
        self.table.setObjectName("timelineEvents")
        self.table.setModel(self.model)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.clicked.connect(self._on_table_clicked)
        self.help_line = HelpLine("timeline")
        layout = QVBoxLayout(self)
        layout.addWidget(self.help_line)
        layout.addWidget(self.note)
        layout.addLayout(zooms)
        layout.addWidget(self.graphics, 3)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 2)

    # -- feeding ----------------------------------------------------------------------------------

    def show_history(self, history: DeviceHistory | None) -> None:
        """Show another device's history (None: nothing); the view follows the newest time again."""
        self.history = history
        self.centre = None
        self._revision = -1
        self.refresh()

    def refresh_soon(self) -> None:
        """Redraw shortly, once for a burst of snapshots."""
        self._soon.start()

    def set_span(self, seconds: float) -> None:
        self.span = seconds
        if seconds in self.zoom_buttons:
            self.zoom_buttons[seconds].setChecked(True)
        self._revision = -1
        self.refresh()

    def time_window(self) -> tuple[float, float]:
        """The time range the list shows: the last ``span`` seconds up to now (or the newest event)."""
        end = self._now()
        if self.history is not None and self.history.samples:
            end = max(end, self.history.samples[-1].at)
        return end - self.span, end

    def refresh(self) -> None:
        history = self.history
        if history is not None and history.revision == self._revision:
            self._place_view()  # nothing new: only time moved on
            return
        self._revision = history.revision if history is not None else -1
        start, end = self.time_window()
        events = build(history, start, end) if history is not None else []
        self.model.set_events(events, self.span)
        if self.centre is not None:  # the reset dropped the selection: keep the chosen event marked
            chosen = next((i for i, e in enumerate(events) if e.at == self.centre), None)
            if chosen is not None:
                self.table.selectRow(chosen)
        self._show_note(history)
        self.summary.setText(self._summary_words(events))
        self._draw(history, events, start, end)
        self._place_view()
        QTimer.singleShot(0, self._scroll_to_newest)  # after the rows are laid out

    # -- drawing ----------------------------------------------------------------------------------

    def _show_note(self, history: DeviceHistory | None) -> None:
        note = clock_note(history) if history is not None else None
        if note is None:
            self.note.hide()
            return
        self.note.setText(f"⚠ {note[:1].upper()}{note[1:]} to this laptop's clock.")
        paint(self.note, "warn")
        self.note.show()

    def _summary_words(self, events: list[TimelineEvent]) -> str:
        if not events:
            return EMPTY
        bad = sum(e.tone == "bad" for e in events)
        warn = sum(e.tone == "warn" for e in events)
        label = next((text for text, seconds in ZOOMS if seconds == self.span), f"{self.span / 60:.0f} min")
        counts = ", ".join(x for x in (f"{bad} ✖ bad" if bad else "", f"{warn} ▲ warning" if warn else "") if x)
        head = f"{len(events)} events in the last {label}" + (f" ({counts})" if counts else "")
        return head + ". Click an event to centre the plot on it."

    def _draw(self, history: DeviceHistory | None, events: list[TimelineEvent], start: float, end: float) -> None:
        samples = samples_between(history, start, end) if history is not None else []
        xs: list[float] = []
        ys: list[float] = []
        gaps = sorted(b.at - a.at for a, b in pairwise(samples))
        # Missing readings (a reboot, no link) are a gap in the line, not a straight stroke across them.
        longest = max(60.0, 3 * gaps[len(gaps) // 2]) if gaps else 60.0
        for i, s in enumerate(samples):
            if i and s.at - samples[i - 1].at > longest:
                xs.append(s.at - 1)
                ys.append(math.nan)
            xs.append(s.at)
            ys.append(math.nan if s.rsrp is None else s.rsrp)
        self.signal_curve.setData(xs, ys)
        known = [y for y in ys if not math.isnan(y)]
        self.signal_plot.setYRange(min([-125.0, *known]) - 3, max([-60.0, *known]) + 3, padding=0)
        lanes = {kind: len(LANES) - 1 - i for i, (kind, _) in enumerate(LANES)}
        by_tone: dict[str, list[dict[str, Any]]] = {tone: [] for tone in SYMBOLS}
        for row, e in enumerate(events):
            if e.kind in lanes:
                by_tone[e.tone].append({"pos": (e.at, lanes[e.kind]), "data": row})
        for tone, spots in by_tone.items():
            self.markers[tone].setData(spots)
        changes = [e for e in events if e.kind in _LINE_KINDS and not e.text.endswith("(first seen)")]
        self._draw_lines([e for e in changes if not e.text.startswith("booted (")][-MAX_LINES:])

    def _draw_lines(self, events: list[TimelineEvent]) -> None:
        for line in self._lines:
            self.signal_plot.removeItem(line)
        self._lines = []
        pen = pg.mkPen(self._fg, width=1.5, style=Qt.PenStyle.DashLine)
        for i, e in enumerate(events):
            # Staggered heights, so labels of events minutes apart do not print over each other.
            opts = {"position": (0.95, 0.85, 0.75)[i % 3], "color": self._fg, "anchors": [(0, 0), (0, 0)]}
            line = pg.InfiniteLine(e.at, angle=90, movable=False, pen=pen, label=short_label(e), labelOpts=opts)
            self.signal_plot.addItem(line, ignoreBounds=True)
            self._lines.append(line)

    def _place_view(self) -> None:
        if self.centre is None:
            start, end = self.time_window()
        else:
            start, end = self.centre - self.span / 2, self.centre + self.span / 2
        self.signal_plot.setXRange(start, end, padding=0.01)

    # -- choosing an event ------------------------------------------------------------------------

    def centre_on(self, at: float) -> None:
        """Centre the plot on ``at`` at the current zoom, with a cursor line there."""
        self.centre = at
        for line in self.cursor_lines:
            line.setValue(at)
            line.show()
        self.latest_button.setEnabled(True)
        self._place_view()

    def select_row(self, row: int) -> None:
        if 0 <= row < len(self.model.events):
            self.table.selectRow(row)
            self.table.scrollTo(self.model.index(row, 0))
            self.centre_on(self.model.events[row].at)

    def _scroll_to_newest(self) -> None:
        if self.centre is None:  # following now: the newest event in view; else the chosen one stays put
            self.table.scrollToBottom()

    def _on_table_clicked(self, index: QModelIndex) -> None:
        self.select_row(index.row())

    def _on_marker_clicked(self, _item: Any, points: Any, *_args: Any) -> None:
        if len(points):
            row = points[0].data()
            self.select_row(int(row))

    def _on_latest_clicked(self) -> None:
        self.centre = None
        for line in self.cursor_lines:
            line.hide()
        self.latest_button.setEnabled(False)
        self.table.clearSelection()
        self._place_view()

    def x_range(self) -> tuple[float, float]:
        low, high = self.signal_plot.viewRange()[0]
        return float(low), float(high)
