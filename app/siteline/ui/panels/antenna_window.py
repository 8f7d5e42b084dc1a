"""Antenna alignment: one big RSRP figure, its band in words, a trend arrow and the last minute, every second.

Made for a person on a mast with gloves on, glancing at a laptop a metre away in the sun: the number is
huge, every colour comes with a word or an arrow, the buttons are big. The window has no I/O: it calls the
``sampler`` it was given (an async callable returning a ModemSignal) once per ``interval`` and shows what
comes back; a failing sample shows why and the window keeps asking. Closing it stops the sampling and calls
``on_close`` once, so whoever opened it can put the modem's polling rate back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QColor, QFont
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from siteline.core.device.modem import ModemSignal, SignalReading, rsrp_band
from siteline.ui.help_text import HelpLine, explain
from siteline.ui.panels import UNKNOWN, fmt, is_dark, paint, plain_label
from siteline.ui.panels.signal_plot import RSRP_BANDS

log = logging.getLogger(__name__)

Sampler = Callable[[], Awaitable[ModemSignal]]
Trend = Literal["rising", "falling", "steady"]
HISTORY_SECONDS = 60.0
TREND_SECONDS = 5.0
TREND_DB = 1.0  # a change smaller than this over the trend window is noise, not a trend
STALE_SECONDS = 5.0  # without a good sample for this long the big figure is no longer shown
SAMPLE_TIMEOUT = 15.0
BIG_POINTS = 96  # the RSRP figure: readable at arm's length (> 72 pt)
_BAND_TONE = {"excellent": "good", "good": "good", "fair": "warn", "poor": "bad"}
_BAND_RGB = {"excellent": (30, 160, 70), "good": (120, 190, 60), "fair": (230, 160, 30), "poor": (210, 60, 50)}
_ARROWS = {"rising": "▲ rising", "falling": "▼ falling", "steady": "► steady"}


@dataclass(frozen=True)
class Point:
    t: float  # monotonic seconds
    rsrp: float


@dataclass
class _Run:
    """One sampling loop's state: told to stop, and whether a sample is in flight."""

    stopped: bool = False
    in_sample: bool = False


def serving(signal: ModemSignal) -> tuple[str, SignalReading] | None:
    """The reading to point by: 5G NR when it reports RSRP, else LTE (alignment needs RSRP)."""
    for name, reading in (("5G NR", signal.nr), ("LTE", signal.lte)):
        if reading is not None and reading.rsrp is not None:
            return name, reading
    return None


def trend(points: list[Point] | deque[Point], now: float, window: float = TREND_SECONDS,
          threshold: float = TREND_DB) -> Trend | None:
    """Rising / falling / steady over the last ``window`` seconds (least-squares slope); None with < 2 points."""
    recent = [p for p in points if now - p.t <= window]
    if len(recent) < 2:
        return None
    mean_t = sum(p.t for p in recent) / len(recent)
    mean_v = sum(p.rsrp for p in recent) / len(recent)
    spread = sum((p.t - mean_t) ** 2 for p in recent)
    if spread <= 0:
        return "steady"
    slope = sum((p.t - mean_t) * (p.rsrp - mean_v) for p in recent) / spread
    change = slope * min(window, recent[-1].t - recent[0].t or window)
    if change >= threshold:
        return "rising"
    return "falling" if change <= -threshold else "steady"


def _big_font(points: int, bold: bool = True) -> QFont:
    font = QFont()
    font.setPointSize(points)
    font.setBold(bold)
    return font


class AntennaWindow(QWidget):
    """The alignment view of one modem; ``start()`` begins sampling (the Start button does too)."""

    sig_sampling_changed = Signal(bool)  # sampling started (True) or stopped (False)
    sig_sample_failed = Signal(str)  # a sample could not be read: the reason in words

    def __init__(self, sampler: Sampler, on_close: Callable[[], object] | None = None, device: str = "",
                 interval: float = 1.0, sample_timeout: float = SAMPLE_TIMEOUT,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Antenna alignment — {device}" if device else "Antenna alignment")
        self.setObjectName("antennaWindow")
        self._sampler = sampler
        self._on_close = on_close
        self.interval = interval
        self.points: deque[Point] = deque()
        self.best: tuple[float, datetime] | None = None  # the highest RSRP seen, and when
        self.marked: float | None = None  # the RSRP the person marked as the position to come back to
        self.last_ok: float | None = None
        self.failures = 0
        self.sample_timeout = sample_timeout
        self._task: asyncio.Task[None] | None = None  # the sampling loop while it is wanted
        self._run_state: _Run | None = None
        self._ending: asyncio.Task[None] | None = None  # the last stopped loop, until it has ended
        self._closed = False
        self._build(device)
        self.resize(900, 640)

    # -- building ----------------------------------------------------------------------------

    def _build(self, device: str) -> None:
        self.title = plain_label(f"Pointing the antenna of {device}" if device else "Pointing the antenna",
                                 "antennaTitle", selectable=False)
        self.title.setFont(_big_font(16))
        self.figure = QLabel(UNKNOWN)
        self.figure.setObjectName("antennaRsrp")
        self.figure.setFont(_big_font(BIG_POINTS))
        self.figure.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.figure.setMinimumWidth(self.figure.fontMetrics().horizontalAdvance("−120") + 16)
        self.unit = QLabel("dBm RSRP")
        self.unit.setFont(_big_font(20, bold=False))
        self.band = QLabel("waiting…")
        self.band.setObjectName("antennaBand")
        self.band.setFont(_big_font(36))
        self.arrow = QLabel("")
        self.arrow.setObjectName("antennaTrend")
        self.arrow.setFont(_big_font(30))
        self.rsrq = QLabel(f"RSRQ {UNKNOWN}")
        self.snr = QLabel(f"SNR {UNKNOWN}")
        self.tech = QLabel("")
        for label in (self.rsrq, self.snr, self.tech):
            label.setFont(_big_font(22, bold=False))
        self.best_label = plain_label("Best so far: —", "antennaBest", selectable=False)
        self.best_label.setFont(_big_font(20, bold=False))
        self.status = plain_label("Press Start to read the signal every second.", "antennaStatus", selectable=False)
        self.status.setFont(_big_font(15, bold=False))
        self.start_button = self._button("&Start", "Read the signal every second", self._on_start_clicked)
        self.start_button.setObjectName("antennaStart")
        self.mark_button = self._button("&Mark best", "Remember this reading as the position to come back to",
                                        self._on_mark_clicked)
        self.mark_button.setObjectName("antennaMark")
        self.mark_button.setEnabled(False)
        self._build_plot()
        self._build_layout()

    def _button(self, text: str, tip: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.setFont(_big_font(18))
        button.setMinimumSize(180, 64)  # a gloved thumb
        button.clicked.connect(slot)
        return button

    def _build_plot(self) -> None:
        dark = is_dark(self)
        fg = QColor("#e6e8eb" if dark else "#1b1f24")
        self.plot = pg.PlotWidget()
        self.plot.setObjectName("antennaSparkline")
        self.plot.setBackground(QColor("#1a1d22" if dark else "#ffffff"))
        self.plot.setMinimumHeight(150)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setXRange(-HISTORY_SECONDS, 0, padding=0)
        ticks = _big_font(12, bold=False)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setTextPen(fg)
            self.plot.getAxis(axis).setPen(fg)
            self.plot.getAxis(axis).setStyle(tickFont=ticks)
        self.plot.getAxis("left").setWidth(56)
        for name, low, high in RSRP_BANDS:  # faint bands: the line's height reads as a quality at a glance
            region = pg.LinearRegionItem((low, high), orientation="horizontal", movable=False,
                                         brush=pg.mkBrush(*_BAND_RGB[name], 50 if dark else 35))
            for edge in region.lines:
                edge.setPen(pg.mkPen(None))
            region.setZValue(-10)
            self.plot.addItem(region, ignoreBounds=True)
        self.plot.setLabel("bottom", "seconds ago", color=fg.name())
        self.plot.setLabel("left", "RSRP dBm", color=fg.name())
        self.curve = self.plot.plot(pen=pg.mkPen((120, 190, 245) if dark else (31, 95, 139), width=4))
        best_rgb, mark_rgb = ((110, 220, 140), (240, 180, 90)) if dark else ((20, 120, 50), (170, 100, 0))
        self.best_line = pg.InfiniteLine(angle=0, movable=False, label="best",
                                         pen=pg.mkPen(best_rgb, width=2, style=Qt.PenStyle.DashLine),
                                         labelOpts={"position": 0.04, "color": best_rgb, "anchors": [(0, 1), (0, 1)]})
        self.mark_line = pg.InfiniteLine(angle=0, movable=False, label="marked",
                                         pen=pg.mkPen(mark_rgb, width=2, style=Qt.PenStyle.DotLine),
                                         labelOpts={"position": 0.16, "color": mark_rgb, "anchors": [(0, 0), (0, 0)]})
        for line in (self.best_line, self.mark_line):
            line.hide()
            self.plot.addItem(line)

    def _build_layout(self) -> None:
        figures = QGridLayout()
        figures.addWidget(self.figure, 0, 0, 3, 1)
        figures.addWidget(self.unit, 0, 1, Qt.AlignmentFlag.AlignBottom)
        figures.addWidget(self.band, 1, 1)
        figures.addWidget(self.arrow, 2, 1, Qt.AlignmentFlag.AlignTop)
        side = QVBoxLayout()
        for label in (self.rsrq, self.snr, self.tech):
            side.addWidget(label)
        side.addStretch(1)
        figures.addLayout(side, 0, 2, 3, 1)
        figures.setColumnStretch(2, 1)
        figures.setHorizontalSpacing(24)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.mark_button)
        buttons.addWidget(self.best_label, 1)
        self.help_line = HelpLine("antenna")
        explain(self.unit, "RSRP")
        explain(self.rsrq, "RSRQ")
        explain(self.snr, "SNR/SINR")
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.help_line)
        layout.addLayout(figures)
        layout.addWidget(self.plot, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

    # -- sampling ----------------------------------------------------------------------------

    @property
    def sampling(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.sampling or self._closed:
            return
        run = _Run()
        # ensure_future, as main_window does: a click is handled by Qt, outside a running coroutine.
        self._task = asyncio.ensure_future(self._run(run))
        self._run_state = run
        self.start_button.setText("&Stop")
        self.start_button.setToolTip("Stop reading the signal")
        self.status.setText(f"Reading the signal every {self.interval:g} s…")
        paint(self.status, None)
        self.sig_sampling_changed.emit(True)

    def stop(self) -> None:
        """Stop sampling now; see :meth:`wait_stopped` to wait until the loop has ended.

        A sample in flight is let finish (within ``sample_timeout``) and its result ignored: cutting a command
        short over SSH or a console leaves the device mid-command and the link unsure of its state.
        """
        task, run, was = self._task, self._run_state, self.sampling
        self._task = self._run_state = None
        if task is not None and run is not None and not task.done():
            run.stopped = True
            if not run.in_sample:
                task.cancel()  # only waiting for the next second: nothing to cut short
            self._ending = task
        self.start_button.setText("&Start")
        self.start_button.setToolTip("Read the signal every second")
        if was:
            self.status.setText("Stopped. Press Start to read the signal again.")
            paint(self.status, None)
            self.sig_sampling_changed.emit(False)

    async def wait_stopped(self) -> None:
        """Wait until a stopped sampling loop has really ended (its last sample done or timed out)."""
        if self._ending is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._ending})

    async def _run(self, run: _Run) -> None:
        while not run.stopped:
            started = time.monotonic()
            run.in_sample = True
            try:
                async with asyncio.timeout(self.sample_timeout):
                    signal = await self._sampler()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever the link or device did: say it and keep asking
                if not run.stopped:
                    self.show_failure(str(exc) or type(exc).__name__)
            else:
                if not run.stopped:
                    self.show_signal(signal)
            finally:
                run.in_sample = False
            if run.stopped:
                return
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    # -- showing -----------------------------------------------------------------------------

    def show_signal(self, signal: ModemSignal, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        found = serving(signal)
        if found is None:
            techs = ", ".join(signal.technologies()) or "no technology"
            self.show_failure(f"the modem reports no LTE or 5G RSRP ({techs}); is it registered on LTE?", now)
            return
        tech, reading = found
        rsrp = reading.rsrp
        assert rsrp is not None  # serving() only picks readings with RSRP
        self.failures, self.last_ok = 0, now
        self.points.append(Point(now, rsrp))
        while self.points and now - self.points[0].t > HISTORY_SECONDS:
            self.points.popleft()
        self.figure.setText(f"{rsrp:.0f}".replace("-", "−"))
        band = rsrp_band(rsrp) or ""
        self.band.setText(band.upper())
        for label in (self.figure, self.band):
            paint(label, _BAND_TONE.get(band))
        self.rsrq.setText(f"RSRQ {fmt(reading.rsrq, 'dB')}")
        self.snr.setText(f"SNR {fmt(reading.snr, 'dB')}")
        self.tech.setText(tech)
        direction = trend(self.points, now)
        self.arrow.setText(_ARROWS[direction] if direction else "")
        paint(self.arrow, {"rising": "good", "falling": "bad"}.get(direction or ""))
        if self.best is None or rsrp > self.best[0]:
            self.best = (rsrp, datetime.now())
        self.mark_button.setEnabled(True)
        self._show_best(rsrp)
        self.status.setText(f"Reading the signal every {self.interval:g} s. Turn slowly; wait for the arrow.")
        paint(self.status, None)
        self._redraw(now)

    def show_failure(self, reason: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.failures += 1
        self.sig_sample_failed.emit(reason)
        reason = reason.strip().rstrip(".")
        self.status.setText(f"⚠ Could not read the signal: {reason}. Still trying every {self.interval:g} s.")
        paint(self.status, "bad")
        if self.last_ok is None or now - self.last_ok > STALE_SECONDS:
            self.figure.setText(UNKNOWN)
            self.band.setText("no reading")
            self.arrow.setText("")
            for label in (self.figure, self.band):
                paint(label, None)

    def _show_best(self, now_rsrp: float | None) -> None:
        parts = []
        if self.best is not None:
            parts.append(f"Best so far: {fmt(self.best[0], 'dBm')} at {self.best[1]:%H:%M:%S}")
        if self.marked is not None:
            gap = (now_rsrp - self.marked) if now_rsrp is not None else None
            where = "" if gap is None else (
                " (now at the mark)" if abs(gap) < 1 else f" (now {abs(gap):.0f} dB {'above' if gap > 0 else 'below'})")
            parts.append(f"Marked: {fmt(self.marked, 'dBm')}{where}")
        self.best_label.setText("\n".join(parts) or "Best so far: —")

    def _redraw(self, now: float) -> None:
        xs = [p.t - now for p in self.points]
        self.curve.setData(xs, [p.rsrp for p in self.points])
        values = [p.rsrp for p in self.points] + [v for v in (self.marked,) if v is not None]
        if self.best is not None:
            self.best_line.setValue(self.best[0])
            self.best_line.show()
            values.append(self.best[0])
        if values:
            # At least 12 dB tall: one noisy dB must not look like the antenna moved.
            low, high = min(values), max(values)
            middle, half = (low + high) / 2, max((high - low) / 2 + 2, 6.0)
            self.plot.setYRange(middle - half, middle + half, padding=0)
        self.plot.setXRange(-HISTORY_SECONDS, 0, padding=0)

    # -- slots -------------------------------------------------------------------------------

    def _on_start_clicked(self) -> None:
        if self.sampling:
            self.stop()
        else:
            self.start()

    def _on_mark_clicked(self) -> None:
        if not self.points:
            return
        self.marked = self.points[-1].rsrp
        self.mark_line.setValue(self.marked)
        self.mark_line.show()
        self._show_best(self.points[-1].rsrp)
        self._redraw(self.points[-1].t)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()
        if not self._closed:
            self._closed = True
            if self._on_close is not None:
                try:
                    self._on_close()
                except Exception:  # the window closes regardless; the caller's problem is logged
                    log.exception("the antenna window's close callback failed")
        event.accept()
