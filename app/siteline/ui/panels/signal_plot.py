"""A live history of RSRP (with its quality bands), RSRQ and SNR, with markers where the network path changed.

Two stacked plots share one time axis: RSRP in dBm on top (its scale is -140..-44, so it would flatten the dB
figures if they shared an axis), RSRQ and SNR in dB below. History is bounded by age (an hour by default),
so a panel left open on a site all day does not grow without end.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from siteline.ui.panels import is_dark

HISTORY_SECONDS = 3600.0
# RSRP bands (dBm) as core.device.modem.rsrp_band draws them; the plot's lowest/highest edges are display limits.
RSRP_BANDS = (("excellent", -80.0, -44.0), ("good", -90.0, -80.0), ("fair", -100.0, -90.0), ("poor", -140.0, -100.0))
_BAND_RGB = {"excellent": (30, 160, 70), "good": (120, 190, 60), "fair": (230, 160, 30), "poor": (210, 60, 50)}
_LINE_RGB = {"rsrp": (31, 95, 139), "rsrq": (140, 80, 180), "snr": (0, 140, 140)}
_LINE_RGB_DARK = {"rsrp": (120, 190, 245), "rsrq": (200, 150, 240), "snr": (90, 220, 210)}


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the epoch
    rsrp: float | None
    rsrq: float | None
    snr: float | None


def _nan(value: float | None) -> float:
    return math.nan if value is None else value  # a gap in the line, never a fake 0


class SignalPlot(QWidget):
    """``add_sample`` appends one reading; ``mark(time, text)`` draws a vertical marker (e.g. "wired → cellular")."""

    def __init__(self, history_seconds: float = HISTORY_SECONDS, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history_seconds = history_seconds
        self.samples: deque[Sample] = deque()
        self.markers: deque[tuple[float, str, list[pg.InfiniteLine]]] = deque()
        dark = is_dark(self)
        fg = QColor("#e6e8eb" if dark else "#1b1f24")
        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.setObjectName("signalPlot")
        self._graphics.setBackground(QColor("#1a1d22" if dark else "#ffffff"))
        self._graphics.setMinimumHeight(260)
        self.rsrp_plot = self._graphics.addPlot(row=0, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self.db_plot = self._graphics.addPlot(row=1, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self._graphics.ci.layout.setRowStretchFactor(0, 3)
        self._graphics.ci.layout.setRowStretchFactor(1, 2)
        self.db_plot.setXLink(self.rsrp_plot)
        for plot, unit in ((self.rsrp_plot, "RSRP (dBm)"), (self.db_plot, "RSRQ, SNR (dB)")):
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setLabel("left", unit, color=fg.name())
            plot.getAxis("left").setWidth(62)  # equal widths keep the two time axes lined up
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setTextPen(fg)
                plot.getAxis(axis).setPen(fg)
        self.rsrp_plot.setYRange(-125, -60, padding=0)
        self.db_plot.setYRange(-20, 30, padding=0)
        self._draw_bands(dark)
        lines = _LINE_RGB_DARK if dark else _LINE_RGB
        legend = self.db_plot.addLegend(offset=(8, 4), labelTextColor=fg)
        self.rsrp_curve = self.rsrp_plot.plot(pen=pg.mkPen(lines["rsrp"], width=2.5), connect="finite")
        self.rsrq_curve = self.db_plot.plot(pen=pg.mkPen(lines["rsrq"], width=2), name="RSRQ", connect="finite")
        self.snr_curve = self.db_plot.plot(
            pen=pg.mkPen(lines["snr"], width=2, style=Qt.PenStyle.DashLine), name="SNR", connect="finite"
        )
        legend.setBrush(pg.mkBrush(QColor(26, 29, 34, 200) if dark else QColor(255, 255, 255, 210)))
        self._marker_pen = pg.mkPen(fg, width=1.5, style=Qt.PenStyle.DashLine)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._graphics)

    def _draw_bands(self, dark: bool) -> None:
        alpha = 60 if dark else 45
        for name, low, high in RSRP_BANDS:
            region = pg.LinearRegionItem(
                (low, high), orientation="horizontal", movable=False, brush=pg.mkBrush(*_BAND_RGB[name], alpha)
            )
            for line in region.lines:
                line.setPen(pg.mkPen(None))
            region.setZValue(-10)
            self.rsrp_plot.addItem(region, ignoreBounds=True)
            label = pg.TextItem(name, color=(*_BAND_RGB[name], 255), anchor=(1, 0.5))
            label.setZValue(-5)
            self.rsrp_plot.addItem(label, ignoreBounds=True)
            label.setPos(0, (max(low, -125) + min(high, -60)) / 2)
            label.setProperty("band", name)
        self._band_labels = [i for i in self.rsrp_plot.items if isinstance(i, pg.TextItem)]

    def add_sample(self, t: float, rsrp: float | None, rsrq: float | None, snr: float | None) -> None:
        self.samples.append(Sample(t, rsrp, rsrq, snr))
        self._prune(t)
        self._redraw()

    def mark(self, t: float, text: str) -> None:
        """A vertical line at ``t`` (seconds since the epoch) labelled ``text`` on the RSRP plot."""
        top = pg.InfiniteLine(
            t, angle=90, movable=False, pen=self._marker_pen, label=text,
            labelOpts={"position": 0.92, "color": self._marker_pen.color(), "fill": pg.mkBrush(0, 0, 0, 0)},
        )
        bottom = pg.InfiniteLine(t, angle=90, movable=False, pen=self._marker_pen)
        self.rsrp_plot.addItem(top)
        self.db_plot.addItem(bottom)
        self.markers.append((t, text, [top, bottom]))
        self._prune(max(t, self.samples[-1].t if self.samples else t))
        self._redraw()

    def clear(self) -> None:
        self.samples.clear()
        while self.markers:
            self._remove_marker()
        self._redraw()

    def _prune(self, now: float) -> None:
        cutoff = now - self.history_seconds
        while self.samples and self.samples[0].t < cutoff:
            self.samples.popleft()
        while self.markers and self.markers[0][0] < cutoff:
            self._remove_marker()

    def _remove_marker(self) -> None:
        _, _, (top, bottom) = self.markers.popleft()
        self.rsrp_plot.removeItem(top)
        self.db_plot.removeItem(bottom)

    def _redraw(self) -> None:
        xs = [s.t for s in self.samples]
        self.rsrp_curve.setData(xs, [_nan(s.rsrp) for s in self.samples])
        self.rsrq_curve.setData(xs, [_nan(s.rsrq) for s in self.samples])
        self.snr_curve.setData(xs, [_nan(s.snr) for s in self.samples])
        times = xs + [m[0] for m in self.markers]
        if not times:
            return
        start, end = min(times), max(times)
        span = max(end - start, 60.0)  # at least a minute, so one sample is not a vertical smear
        # A margin right of the newest sample holds the band names, so they never sit on the line.
        self.rsrp_plot.setXRange(end - span, end + span * 0.1, padding=0)
        low = min([-125.0] + [s.rsrp for s in self.samples if s.rsrp is not None])
        high = max([-60.0] + [s.rsrp for s in self.samples if s.rsrp is not None])
        self.rsrp_plot.setYRange(low - 3, high + 3, padding=0)
        for label in self._band_labels:
            label.setPos(end + span * 0.1, label.pos().y())
