"""The Overview tab: what is wrong with this box (one health line per area), then who it is (System snapshot).

The health block answers first, in a fixed order (modem, network, slots, disk, posture) so the eye learns
where to look. Each row carries its tone three ways — a mark, a word and a colour — because a colour alone
is lost in sunlight and to colour-blind eyes. A row is a big target: click it, or Enter on it, and the page
switches to that area's tab (``sig_area_activated``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent, QMouseEvent, QPalette
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.health import AREAS, DISK_BAD, DISK_WARN, TITLES, HealthLine, assess, summary, worst
from siteline.core.device.system import Mount, System
from siteline.ui.help_text import HelpLine, explain
from siteline.ui.panels import plain_label
from siteline.ui.theme import STATE_COLOURS

FIELDS = (
    ("hostname", "Host name"),
    ("os", "Operating system"),
    ("version", "Version"),
    ("build", "Build"),
    ("kernel", "Kernel"),
    ("machine", "Architecture"),
    ("uptime", "Uptime"),
    ("load", "Load (1/5/15 min)"),
    ("cluster", "Cluster node"),
)
UNKNOWN = "—"


def format_uptime(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return UNKNOWN
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


def system_fields(system: System) -> dict[str, str]:
    """What each row shows; pure so it can be tested without widgets."""
    os = system.os
    return {
        "hostname": system.hostname or UNKNOWN,
        "os": os.pretty_name or os.name or UNKNOWN,
        "version": os.version or os.version_id or UNKNOWN,
        "build": os.build_id or UNKNOWN,
        "kernel": system.kernel or UNKNOWN,
        "machine": system.machine or UNKNOWN,
        "uptime": format_uptime(system.uptime_seconds),
        "load": " / ".join(f"{v:.2f}" for v in system.load) if system.load else UNKNOWN,
        "cluster": cluster_text(system),
    }


def cluster_text(system: System) -> str:
    """"k3s node gw-01: ✔ Ready (v1.28.5+k3s1)", or the dash when the device runs no k3s / MicroK8s."""
    node = system.k8s
    if node is None:
        return "none (no k3s or MicroK8s)" if system.mounts else UNKNOWN  # mounts: the probe asked about both
    name = f" {node.node}" if node.node else ""
    marks = {True: TONE_MARKS["good"][0] + " Ready", False: TONE_MARKS["bad"][0] + " NOT ready"}
    state = marks.get(node.ready, "? state not known") if node.ready is not None else "? state not known"
    version = f" ({node.version})" if node.version else ""
    reason = f" — {node.reason}" if node.reason else ""
    return f"{node.distribution} node{name}: {state}{version}{reason}"


# --- storage ----------------------------------------------------------------------------------------------

IMAGE_TYPES = frozenset({"squashfs", "erofs", "iso9660", "cramfs", "romfs"})  # full by design, never a warning


def human_bytes(n: int | None) -> str:
    if n is None:
        return UNKNOWN
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024.0 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= 1024.0
    return UNKNOWN


@dataclass(frozen=True)
class StorageRow:
    """One mount as the Storage section shows it; pure so it can be tested without widgets."""

    mountpoint: str
    fs_type: str
    size: str
    percent: float | None
    used: str  # "96 % ▲ nearly full": the mark and words carry the tone, the bar's colour only repeats it
    free: str
    mode: str  # "read-only", "read-write" or the dash
    tone: str  # good / warn / bad / unknown


def storage_row(m: Mount) -> StorageRow:
    image = (m.fs_type or "") in IMAGE_TYPES
    pct = m.use_percent
    if pct is None:
        used, tone = UNKNOWN, "unknown"
    elif image or m.read_only:
        used, tone = f"{pct:.0f} % (image)" if image else f"{pct:.0f} %", "good"  # nothing writes there
    elif pct >= DISK_BAD or m.available == 0:
        used, tone = f"{pct:.0f} % {TONE_MARKS['bad'][0]} full", "bad"
    elif pct >= DISK_WARN:
        used, tone = f"{pct:.0f} % {TONE_MARKS['warn'][0]} nearly full", "warn"
    else:
        used, tone = f"{pct:.0f} %", "good"
    mode = "read-only" if m.read_only else "read-write" if m.read_only is False else UNKNOWN
    return StorageRow(m.mountpoint, m.fs_type or UNKNOWN, human_bytes(m.size), pct, used,
                      human_bytes(m.available), mode, tone)


def root_mode_text(system: System) -> str:
    if system.root_read_only is True:
        return "Root filesystem is mounted read-only"
    if system.root_read_only is False:
        return "Root filesystem is mounted read-write"
    return "Root filesystem: read-only or read-write not known"


# Mark and word per tone: never colour alone.
TONE_MARKS: dict[str, tuple[str, str]] = {
    "good": ("\u2714", "OK"),  # heavy check mark
    "warn": ("\u25b2", "Check"),  # triangle
    "bad": ("\u2716", "Problem"),  # heavy cross
    "unknown": ("?", "Unknown"),
}
_ACTIVATE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space)
_PALETTE_EVENTS = (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)


_TONE_STATE = {"good": "up", "warn": "retrying", "bad": "down"}  # theme.STATE_COLOURS, as the panels use


def tone_hex(tone: str) -> str | None:
    """The tone's colour for the application's current palette; None for unknown (the plain text colour).

    Read from the application palette, not the widget's: a row's own palette is held by its style sheet.
    """
    state = _TONE_STATE.get(tone)
    if state is None:
        return None
    dark = QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return STATE_COLOURS["dark" if dark else "light"][state]


def tone_word(tone: str) -> str:
    mark, word = TONE_MARKS.get(tone, TONE_MARKS["unknown"])
    return f"{mark} {word}"


class HealthRow(QFrame):
    """One area's line: the tone mark and word, the area, the headline and the reason; clickable."""

    sig_activated = Signal(str)  # the area, when the row is clicked or Enter is pressed on it

    def __init__(self, area: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.area = area
        self.line: HealthLine | None = None
        self.setObjectName(f"health_{area}")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setMinimumHeight(52)
        self.mark = plain_label(name=f"healthMark_{area}", selectable=False)
        self.mark.setWordWrap(False)
        self.title = plain_label(TITLES.get(area, area), name=f"healthArea_{area}", selectable=False)
        self.title.setWordWrap(False)
        self.headline = plain_label(name=f"healthHeadline_{area}", selectable=False)
        self.reason = plain_label(name=f"healthReason_{area}", selectable=False)
        self.go = QLabel("\u203a")  # a chevron: this row leads somewhere
        self.go.setObjectName(f"healthGo_{area}")
        for label, size, bold in ((self.mark, 13, True), (self.title, 11, True), (self.headline, 11, False),
                                  (self.reason, 10, False), (self.go, 16, True)):
            font = label.font()
            font.setPointSize(size)
            font.setBold(bold)
            label.setFont(font)
        widest = max(self.mark.fontMetrics().horizontalAdvance(tone_word(t)) for t in TONE_MARKS)
        self.mark.setFixedWidth(widest + 6)  # the words line up, row under row
        self.title.setFixedWidth(self.title.fontMetrics().horizontalAdvance("A/B slots") + 16)
        words = QVBoxLayout()
        words.setSpacing(2)
        words.addWidget(self.headline)
        words.addWidget(self.reason)
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 6, 10, 6)
        row.setSpacing(12)
        row.addWidget(self.mark, 0, Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.title, 0, Qt.AlignmentFlag.AlignVCenter)
        row.addLayout(words, 1)
        row.addWidget(self.go, 0, Qt.AlignmentFlag.AlignVCenter)

    @property
    def tone(self) -> str:
        return self.line.tone if self.line else "unknown"

    def show_line(self, line: HealthLine) -> None:
        self.line = line
        self.mark.setText(tone_word(line.tone))
        self.headline.setText(line.headline)
        self.reason.setText(line.reason)
        self.reason.setVisible(bool(line.reason))
        more = "\n".join(f"\u2022 {d}" for d in line.details)
        self.setToolTip((more + "\n\n" if more else "") + f"Click or press Enter to open {line.title}.")
        self.setAccessibleName(f"{line.title}: {TONE_MARKS.get(line.tone, TONE_MARKS['unknown'])[1]}. {line.text()}")
        self.setProperty("tone", line.tone)
        self.repaint_tone()

    def repaint_tone(self) -> None:
        """Colours follow the palette (light or dark), so they are applied again when it changes.

        They go into the row's style sheet, not the labels' palettes: a parent's style sheet re-polishes its
        children and would drop a palette set on them.
        """
        app = QGuiApplication.palette()
        found = tone_hex(self.tone)
        colour = found or app.color(QPalette.ColorRole.WindowText).name()
        edge = found or app.color(QPalette.ColorRole.Mid).name()
        focus = app.color(QPalette.ColorRole.Highlight).name()
        name, area = self.objectName(), self.area
        sheet = (
            f"QFrame#{name} {{ border: 1px solid palette(mid); border-left: 8px solid {edge}; border-radius: 4px;"
            f" background: palette(alternate-base); }}"
            f" QFrame#{name}:focus {{ border: 3px solid {focus}; border-left: 8px solid {edge}; }}"
            f" QLabel {{ border: none; background: transparent; }}"
            f" QLabel#healthMark_{area}, QLabel#healthGo_{area} {{ color: {colour}; }}"
        )
        if sheet != self.styleSheet():  # setting a sheet re-polishes: only when it changed, or palette events loop
            self.setStyleSheet(sheet)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in _PALETTE_EVENTS and self.line is not None:
            # Light <-> dark: the rows hear of it before the application palette reads the new colours.
            QTimer.singleShot(0, self, self.repaint_tone)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.sig_activated.emit(self.area)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in _ACTIVATE_KEYS:
            self.sig_activated.emit(self.area)
            event.accept()
            return
        if event.key() in (Qt.Key.Key_Down, Qt.Key.Key_Up):  # walk the rows like a list
            self.focusNextPrevChild(event.key() == Qt.Key.Key_Down)
            event.accept()
            return
        super().keyPressEvent(event)


class HealthBlock(QGroupBox):
    """The summary line, then one row per area in the fixed order."""

    sig_area_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Health", parent)
        self.setObjectName("healthBlock")
        self.lines: list[HealthLine] = []
        self.summary = plain_label(name="healthSummary")
        font = self.summary.font()
        font.setPointSize(13)
        font.setBold(True)
        self.summary.setFont(font)
        self.rows: dict[str, HealthRow] = {}
        layout = QVBoxLayout(self)
        layout.setSpacing(6)
        layout.addWidget(self.summary)
        for area in AREAS:
            row = HealthRow(area)
            row.sig_activated.connect(self.sig_area_activated.emit)
            self.rows[area] = row
            layout.addWidget(row)

    def show_lines(self, lines: Sequence[HealthLine]) -> None:
        self.lines = list(lines)
        for line in lines:
            row = self.rows.get(line.area)
            if row is not None:
                row.show_line(line)
        self.summary.setText(summary(lines))
        self._paint_summary()

    def _paint_summary(self) -> None:
        found = tone_hex(worst(self.lines))
        pal = self.summary.palette()
        app = QGuiApplication.palette()
        text = QColor(found) if found else app.color(QPalette.ColorRole.WindowText)
        pal.setColor(QPalette.ColorRole.WindowText, text)
        self.summary.setPalette(pal)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in _PALETTE_EVENTS and self.lines:
            QTimer.singleShot(0, self, self._paint_summary)


class StorageBox(QGroupBox):
    """Root read-only or not, then one line per mount: where, type, size, a use bar with its words, free, mode."""

    HEADERS = ("Mount", "Type", "Size", "Used", "", "Free", "Mode")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Storage", parent)
        self.setObjectName("storageBox")
        self.rows: list[StorageRow] = []
        self.root_mode = plain_label(NOT_READ, name="storageRoot")
        font = self.root_mode.font()
        font.setPointSize(12)
        font.setBold(True)
        self.root_mode.setFont(font)
        self.empty = plain_label("The device has not reported its mounts yet.", name="storageEmpty")
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(14)
        self.grid.setVerticalSpacing(8)
        self.grid.setColumnStretch(3, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.root_mode)
        layout.addWidget(self.empty)
        layout.addLayout(self.grid)

    def show_system(self, system: System) -> None:
        self.root_mode.setText(root_mode_text(system))
        self.rows = [storage_row(m) for m in system.mounts or ()]
        self._empty_grid()
        self.empty.setVisible(not self.rows)
        if not self.rows:
            self.empty.setText("The device did not report its mounts (df -P and /proc/mounts gave nothing).")
            return
        for col, title in enumerate(self.HEADERS):
            head = plain_label(title, selectable=False)
            font = head.font()
            font.setBold(True)
            font.setPointSize(11)
            head.setFont(font)
            self.grid.addWidget(head, 0, col)
        for r, row in enumerate(self.rows, start=1):
            self._add_row(r, row)

    def _add_row(self, r: int, row: StorageRow) -> None:
        colour = tone_hex(row.tone) if row.tone in ("warn", "bad") else None
        texts = ((0, row.mountpoint), (1, row.fs_type), (2, row.size), (4, row.used), (5, row.free), (6, row.mode))
        for col, text in texts:
            label = plain_label(text, name=f"storage_{r}_{col}")
            label.setWordWrap(False)
            font = label.font()
            font.setPointSize(11)  # as the health rows: read at arm's length
            label.setFont(font)
            # The use words carry the mark (▲ / ✖) in bold: colour is never the only signal.
            if (col == 4 and colour) or (col == 6 and row.mode == "read-only"):
                font = label.font()
                font.setBold(True)
                label.setFont(font)
            if col == 4 and colour:
                label.setStyleSheet(f"color: {colour};")
            self.grid.addWidget(label, r, col)
        bar = QProgressBar()
        bar.setObjectName(f"storageBar_{r}")
        bar.setRange(0, 100)
        bar.setFixedHeight(20)
        bar.setMinimumWidth(160)
        bar.setValue(round(row.percent) if row.percent is not None else 0)
        bar.setTextVisible(False)  # the words stand beside the bar, readable on any chunk colour
        bar.setAccessibleName(f"{row.mountpoint}: used {row.used}, {row.free} free")
        chunk = colour or QGuiApplication.palette().color(QPalette.ColorRole.Highlight).name()
        frame = "border: 1px solid palette(mid); border-radius: 3px; background: palette(base);"
        bar.setStyleSheet(f"QProgressBar {{ {frame} }} QProgressBar::chunk {{ background: {chunk}; }}")
        self.grid.addWidget(bar, r, 3)

    def _empty_grid(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()

    def clear(self) -> None:
        """Another device: nothing of this one's storage is known yet."""
        self.rows = []
        self._empty_grid()
        self.root_mode.setText(NOT_READ)
        self.empty.setText("The device has not reported its mounts yet.")
        self.empty.show()


NOT_READ = "Root filesystem: not read yet"


class OverviewTab(QWidget):
    sig_area_activated = Signal(str)  # a health row was clicked or Entered: "modem", "network", "slots", "disk" ...

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.system: System | None = None
        self._status = QLabel("Waiting for the device to answer…")
        self._status.setWordWrap(True)
        self.health = HealthBlock()
        self.health.sig_area_activated.connect(self.sig_area_activated.emit)
        self._values: dict[str, QLabel] = {}
        box = QGroupBox("Identity")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setVerticalSpacing(10)
        for key, label in FIELDS:
            value = QLabel(UNKNOWN)
            value.setObjectName(f"overview_{key}")
            value.setTextFormat(Qt.TextFormat.PlainText)  # the device's words, never markup
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            self._values[key] = value
            form.addRow(f"{label}:", value)
        self._problems = QLabel()
        self._problems.setObjectName("overviewProblems")
        self._problems.setTextFormat(Qt.TextFormat.PlainText)
        self._problems.setWordWrap(True)
        self._problems.hide()
        self.storage = StorageBox()
        self.help_line = HelpLine("overview")
        explain(form.labelForField(self._values["uptime"]), "Uptime")
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.addWidget(self.help_line)
        inner.addWidget(self._status)
        inner.addWidget(self.health)
        inner.addWidget(self.storage)
        inner.addWidget(box)
        inner.addWidget(self._problems)
        inner.addStretch(1)
        # Five health rows and the identity do not fit a small laptop screen at large font sizes: scroll.
        scroll = QScrollArea()
        scroll.setObjectName("overviewScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.show_health({})

    def value(self, key: str) -> str:
        return self._values[key].text()

    @property
    def filled(self) -> bool:
        return self.system is not None

    def show_health(self, snapshots: Mapping[str, object]) -> None:
        """Judge every area from the device's latest snapshots (by probe kind); call it whenever one arrives."""
        self.health.show_lines(assess(snapshots))

    def health_lines(self) -> list[HealthLine]:
        return list(self.health.lines)

    def show_waiting(self, text: str) -> None:
        self._status.setText(text)
        self._status.show()

    def show_system(self, system: System) -> None:
        self.system = system
        for key, text in system_fields(system).items():
            self._values[key].setText(text)
        self.storage.show_system(system)
        self._status.hide()
        if system.problems:
            self._problems.setText("Some facts could not be read: " + "; ".join(system.problems) + ".")
            self._problems.show()
        else:
            self._problems.hide()

    def clear(self) -> None:
        self.system = None
        for label in self._values.values():
            label.setText(UNKNOWN)
        self.storage.clear()
        self._problems.hide()
        self.show_health({})  # another device: nothing of this one's health is known yet
        self.show_waiting("Waiting for the device to answer…")
