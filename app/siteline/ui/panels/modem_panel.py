"""The Modem panel: how good the signal is now (dBm figures and what they mean), who the operator is,
registration and SIM, the IMEI (masked until revealed), and the signal's history with the path changes marked.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from siteline.core.device.modem import Modem, ModemSignal, SignalReading, rsrp_band
from siteline.ui.help_text import HelpLine, explain, term_row
from siteline.ui.panels import UNKNOWN, ProblemsLabel, RawOutput, fmt, paint, plain_label
from siteline.ui.panels.signal_plot import SignalPlot

# Which technology's figures lead: the one a modem camps on for data (5G NSA still anchors on LTE).
_LEAD = ("lte", "nr", "umts", "gsm")
_TECH_NAMES = {"lte": "LTE", "nr": "5G NR", "umts": "UMTS (3G)", "gsm": "GSM (2G)"}
_BAND_TONE = {"excellent": "good", "good": "good", "fair": "warn", "poor": "bad"}
_BAND_WORDS = {
    "excellent": "excellent (≥ −80 dBm)",
    "good": "good (−80 … −90 dBm)",
    "fair": "fair (−90 … −100 dBm): usable, may be slow",
    "poor": "poor (< −100 dBm): expect drops; check the antenna",
}
_TERMS = {"operator": "Operator", "registration": "Registration", "sim": "SIM", "imei": "IMEI"}
MODEM_FIELDS = (
    ("operator", "Operator"),
    ("technology", "Technology"),
    ("signal_quality", "Signal quality"),
    ("registration", "Registration"),
    ("state", "Modem state"),
    ("sim", "SIM"),
    ("hardware", "Modem"),
    ("imei", "IMEI"),
)


def rsrq_words(rsrq: float | None) -> str:
    """Rule-of-thumb meaning of RSRQ (dB): how much the cell is loaded or interfered."""
    if rsrq is None:
        return ""
    return "good" if rsrq >= -10 else "fair" if rsrq >= -15 else "poor (busy or interfered cell)"


def snr_words(snr: float | None) -> str:
    """Rule-of-thumb meaning of SNR (dB): how clean the signal is above the noise."""
    if snr is None:
        return ""
    return "excellent" if snr >= 20 else "good" if snr >= 13 else "fair" if snr >= 0 else "poor (noise above signal)"


def lead_reading(signal: ModemSignal) -> tuple[str, SignalReading] | None:
    found = signal.technologies()
    for tech in _LEAD:
        reading = found.get(tech)
        if reading is not None and not reading.is_empty():
            return tech, reading
    return None


def signal_lines(signal: ModemSignal) -> list[str]:
    """One line per technology with figures, e.g. "LTE: RSRP −102 dBm · RSRQ −12 dB · SNR 11.4 dB · RSSI −73 dBm"."""
    lines = []
    for tech, r in signal.technologies().items():
        parts = [
            f"{name} {fmt(value, unit, digits)}"
            for name, value, unit, digits in (
                ("RSRP", r.rsrp, "dBm", 0), ("RSRQ", r.rsrq, "dB", 0), ("SNR", r.snr, "dB", 1),
                ("RSCP", r.rscp, "dBm", 0), ("Ec/Io", r.ecio, "dB", 1), ("RSSI", r.rssi, "dBm", 0),
            )
            if value is not None
        ]
        if parts:
            lines.append(f"{_TECH_NAMES.get(tech, tech)}: " + " · ".join(parts))
    if not lines and signal.rssi is not None:
        lines.append(f"RSSI {fmt(signal.rssi, 'dBm')}")
    return lines


def headline(signal: ModemSignal) -> tuple[str, str | None]:
    """The one line read first, and its tone: "RSRP −100 dBm — fair (…)"."""
    lead = lead_reading(signal)
    if lead is None:
        if signal.rssi is not None:
            return f"RSSI {fmt(signal.rssi, 'dBm')} (technology not reported)", None
        polling_off = signal.refresh_rate == 0
        if polling_off:
            return "No signal figures (signal polling is off)", "warn"
        return "No signal figures", "bad"
    tech, r = lead
    band = rsrp_band(r.rsrp)
    if band is not None:
        return f"{_TECH_NAMES[tech]} RSRP {fmt(r.rsrp, 'dBm')} — {_BAND_WORDS[band]}", _BAND_TONE[band]
    figure = ("RSCP", r.rscp, "dBm") if r.rscp is not None else ("RSSI", r.rssi, "dBm")
    return f"{_TECH_NAMES[tech]} {figure[0]} {fmt(figure[1], figure[2])}", None


def _sim_words(modem: Modem) -> tuple[str, str | None]:
    if modem.sim_present is False:
        return "missing — insert a SIM card", "bad"
    if modem.sim_locked:
        return f"locked ({modem.unlock_required or 'PIN'} needed)", "bad"
    if modem.sim_present:
        return "present, unlocked", None
    return UNKNOWN, None


def _quality_words(modem: Modem) -> tuple[str, str | None]:
    if modem.signal_quality is None:
        return UNKNOWN, None
    stale = " (cached: may be old)" if modem.signal_recent is False else ""
    if stale:
        return f"{modem.signal_quality} % (cached: may be old)", "warn"
    return f"{modem.signal_quality} % (ModemManager's estimate)", None


def modem_fields(modem: Modem) -> dict[str, tuple[str, str | None]]:
    """What each row shows and its tone; pure so it can be tested without widgets."""
    code = f"({modem.operator_code})" if modem.operator_code else ""
    operator = " ".join(x for x in (modem.operator_name, code) if x)
    techs = ", ".join(t.upper() if t != "5gnr" else "5G NR" for t in modem.access_technologies)
    reg = modem.registration or UNKNOWN
    reg_tone = {"home": None, "roaming": "warn", "searching": "warn", "denied": "bad", "idle": "bad"}.get(reg)
    if modem.roaming:
        reg = f"{reg} — roaming charges may apply"
    state = modem.state or UNKNOWN
    if modem.failed_reason and modem.failed_reason != "--":
        state = f"{state} ({modem.failed_reason})"
    state_tone = "bad" if modem.state in ("failed", "locked", "disabled") else None
    hardware = " ".join(x for x in (modem.manufacturer, modem.model) if x) or UNKNOWN
    if modem.firmware:
        hardware += f", firmware {modem.firmware}"
    return {
        "operator": (operator or UNKNOWN, None),
        "technology": (techs or UNKNOWN, None),
        "signal_quality": _quality_words(modem),
        "registration": (reg, reg_tone),
        "state": (state, state_tone),
        "sim": _sim_words(modem),
        "hardware": (hardware, None),
        "imei": (modem.masked_imei() or UNKNOWN, None),
    }


class ModemPanel(QWidget):
    """Feed it ``show_modem``, ``show_signal`` (each call adds to the history) and ``mark`` for path changes."""

    def __init__(self, history_seconds: float = 3600.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.modem: Modem | None = None
        self.signal: ModemSignal | None = None
        self._imei_revealed = False
        self.quality = plain_label("Waiting for the modem's signal…", "modemQuality")
        font = self.quality.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.4)  # the one figure read from a step away
        font.setBold(True)
        self.quality.setFont(font)
        self.figures = plain_label("", "modemFigures")
        self.meaning = plain_label("", "modemMeaning")
        self._values: dict[str, QLabel] = {}
        self.reveal_button = QPushButton("Reveal")
        self.reveal_button.setObjectName("revealImei")
        self.reveal_button.setCheckable(True)
        self.reveal_button.setToolTip("Show the full IMEI (it identifies this modem; keep it out of screenshots)")
        self.reveal_button.toggled.connect(self._on_reveal_toggled)
        self.plot = SignalPlot(history_seconds)
        self.problems = ProblemsLabel()
        self.raw = RawOutput()
        self._build_layout()

    def _build_layout(self) -> None:
        now = QGroupBox("Signal now")
        now_layout = QVBoxLayout(now)
        for label in (self.quality, self.figures, self.meaning):
            now_layout.addWidget(label)
        now_layout.addWidget(term_row("RSRP", "RSRQ", "SNR/SINR", "RSSI"))
        info = QGroupBox("Network and SIM")
        form = QFormLayout(info)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        for key, title in MODEM_FIELDS:
            value = plain_label(UNKNOWN, f"modem_{key}")
            self._values[key] = value
            if key == "imei":
                row = QHBoxLayout()
                row.addWidget(value, 1)
                row.addWidget(self.reveal_button)
                form.addRow(f"{title}:", row)
            else:
                form.addRow(f"{title}:", value)
            if key in _TERMS:
                explain(form.labelForField(row if key == "imei" else value), _TERMS[key])
        top = QHBoxLayout()
        top.addWidget(now, 1)
        top.addWidget(info, 1)
        minutes = round(self.plot.history_seconds / 60)
        span = "last hour" if minutes == 60 else f"last {minutes} min"
        history = QGroupBox(f"Signal history ({span}; dashed lines: network path changes)")
        QVBoxLayout(history).addWidget(self.plot)
        self.help_line = HelpLine("modem")
        layout = QVBoxLayout(self)
        layout.addWidget(self.help_line)
        layout.addWidget(self.problems)
        layout.addLayout(top)
        layout.addWidget(history, 1)
        layout.addWidget(self.raw)

    def value(self, key: str) -> str:
        return self._values[key].text()

    def show_modem(self, modem: Modem) -> None:
        self.modem = modem
        for key, (text, tone) in modem_fields(modem).items():
            self._values[key].setText(text)
            paint(self._values[key], tone)
        self._show_imei()
        self._refresh_problems()

    def show_signal(self, signal: ModemSignal, at: float | None = None) -> None:
        """The current figures, and one more point on the history at ``at`` (epoch seconds; now by default)."""
        self.signal = signal
        text, tone = headline(signal)
        if lead_reading(signal) is None and self.modem is not None and self.modem.state in ("failed", "locked"):
            # The modem's own state is the reason there are no figures: say that, not "no signal".
            why = self.modem.failed_reason or self.modem.unlock_required or ""
            text, tone = f"No signal: modem {self.modem.state}" + (f" ({why})" if why else ""), "bad"
        self.quality.setText(text)
        paint(self.quality, tone)
        self.figures.setText("\n".join(signal_lines(signal)))
        lead = lead_reading(signal)
        r = lead[1] if lead else SignalReading()
        meaning = [f"RSRQ {fmt(r.rsrq, 'dB')}: {rsrq_words(r.rsrq)}" if r.rsrq is not None else "",
                   f"SNR {fmt(r.snr, 'dB', 1)}: {snr_words(r.snr)}" if r.snr is not None else ""]
        self.meaning.setText("\n".join(m for m in meaning if m))
        self.plot.add_sample(time.time() if at is None else at, r.rsrp, r.rsrq, r.snr)
        self._refresh_problems()

    def mark(self, t: float, text: str) -> None:
        """A network path change at ``t`` (epoch seconds), e.g. "wired → cellular"."""
        self.plot.mark(t, text)

    def show_unavailable(self, reason: str, raw: str = "") -> None:
        """The modem could not be read at all (a ParseError, a missing tool): say so, with the raw output."""
        self.problems.show_error(f"Could not read the modem: {reason}")
        self.raw.set_text(raw)

    def _refresh_problems(self) -> None:
        problems = (self.modem.problems if self.modem else ()) + (self.signal.problems if self.signal else ())
        self.problems.show_problems(problems, "Some modem facts could not be read")
        raws = [part.raw.rstrip() for part in (self.modem, self.signal) if part is not None and part.raw]
        self.raw.set_text("\n\n".join(raws))

    def _on_reveal_toggled(self, revealed: bool) -> None:
        self._imei_revealed = revealed
        self.reveal_button.setText("Hide" if revealed else "Reveal")
        self._show_imei()

    def _show_imei(self) -> None:
        if self.modem is None or self.modem.imei is None:
            self._values["imei"].setText(UNKNOWN)
            self.reveal_button.setEnabled(False)
            return
        self.reveal_button.setEnabled(True)
        self._values["imei"].setText(self.modem.imei if self._imei_revealed else (self.modem.masked_imei() or UNKNOWN))

    def clear(self) -> None:
        self.modem = None
        self.signal = None
        self.reveal_button.setChecked(False)
        for label in self._values.values():
            label.setText(UNKNOWN)
        self.quality.setText("Waiting for the modem's signal…")
        paint(self.quality, None)
        self.figures.clear()
        self.meaning.clear()
        self.plot.clear()
        self.problems.show_problems(())
        self.raw.set_text("")

