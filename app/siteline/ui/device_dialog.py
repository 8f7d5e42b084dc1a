"""Add or edit a device: name, site, its paths (target URLs in order of preference, each checked as it
is typed) and a serial login name."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError, TargetError
from siteline.core.inventory import DeviceEntry
from siteline.core.targets import Target, parse_target

EXAMPLES = "ssh://root@10.0.0.5:22   ·   serial:///dev/ttyUSB0?baud=115200   ·   mqtt://broker:1883/edge/site-a/gw1"
BAD, BAD_ON_DARK = QColor("#c0392b"), QColor("#ff7b6b")
# The inventory learns fallback paths in the multipath work; until then a dialog must not drop them silently.
HAS_FALLBACKS = "fallbacks" in {f.name for f in dataclasses.fields(DeviceEntry)}


def check_target(text: str) -> tuple[Target | None, str]:
    """The parsed target and a one-line explanation for the person typing it."""
    try:
        target = parse_target(text)
    except TargetError as exc:
        return None, str(exc)
    kind = {"serial": "Serial console", "ssh": "SSH", "mqtt": "MQTT", "mqtts": "MQTT over TLS"}[target.scheme]
    where = target.device if target.is_serial else f"{target.host}:{target.effective_port}"
    via = f" via {', '.join(str(j) for j in target.jumps)}" if target.jumps else ""
    return target, f"{kind} to {where}{via}"


def entry_targets(entry: DeviceEntry) -> list[str]:
    """Every path of ``entry`` in order of preference."""
    return [entry.target, *getattr(entry, "fallbacks", ())]


def bad_colour(widget: QWidget) -> QColor:
    """Red that stays readable on the dark palette too."""
    return BAD_ON_DARK if widget.palette().color(QPalette.ColorRole.Window).lightness() < 128 else BAD


def _colour(label: QLabel, colour: QColor) -> None:
    pal = label.palette()
    pal.setColor(QPalette.ColorRole.WindowText, colour)
    label.setPalette(pal)


@dataclasses.dataclass
class _Row:
    number: QLabel
    edit: QLineEdit
    up: QToolButton
    down: QToolButton
    remove: QToolButton
    note: QLabel

    def widgets(self) -> list[QWidget]:
        return [self.number, self.edit, self.up, self.down, self.remove, self.note]


class PathList(QWidget):
    """The device's target URLs in order of preference: add, remove, move up/down; each row checked inline."""

    sig_paths_changed = Signal()

    def __init__(self, targets: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edits: list[QLineEdit] = []
        self.notes: list[QLabel] = []
        self._rows: list[_Row] = []
        self._grid = QGridLayout()
        self._grid.setContentsMargins(0, 0, 0, 0)
        self.add_button = QPushButton("+ Add a &fallback path")
        self.add_button.setToolTip("Another way to reach the device, tried when the ones above do not answer")
        self.add_button.clicked.connect(lambda: self.add_path(""))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._grid)
        layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignLeft)
        for text in targets or [""]:
            self.add_path(text)

    def targets(self) -> list[str]:
        return [e.text().strip() for e in self.edits]

    def add_path(self, text: str) -> QLineEdit:
        edit = QLineEdit(text)
        edit.setPlaceholderText("ssh://root@10.0.0.5" if not self.edits else "serial:///dev/ttyUSB0")
        edit.textChanged.connect(lambda _t: self._refresh())
        number = QLabel()
        note = QLabel()
        note.setWordWrap(True)
        note.setObjectName("pathNote")
        up, down, remove = QToolButton(), QToolButton(), QToolButton()
        for button, glyph, tip in ((up, "↑", "Prefer this path"), (down, "↓", "Try this path later"),
                                   (remove, "✕", "Remove this path")):
            button.setText(glyph)
            button.setToolTip(tip)
            button.setAccessibleName(tip)
        up.clicked.connect(lambda: self.move_path(self.edits.index(edit), -1))
        down.clicked.connect(lambda: self.move_path(self.edits.index(edit), +1))
        remove.clicked.connect(lambda: self.remove_path(self.edits.index(edit)))
        self.edits.append(edit)
        self.notes.append(note)
        self._rows.append(_Row(number, edit, up, down, remove, note))
        self._relayout()
        edit.setFocus()
        return edit

    def remove_path(self, index: int) -> None:
        if len(self.edits) <= 1 or not 0 <= index < len(self.edits):
            return  # a device keeps at least one path
        for widget in self._rows.pop(index).widgets():
            self._grid.removeWidget(widget)
            widget.deleteLater()
        self.edits.pop(index)
        self.notes.pop(index)
        self._relayout()

    def move_path(self, index: int, delta: int) -> None:
        other = index + delta
        if not (0 <= index < len(self.edits) and 0 <= other < len(self.edits)):
            return
        a, b = self.edits[index], self.edits[other]
        text_a, text_b = a.text(), b.text()
        a.setText(text_b)
        b.setText(text_a)
        b.setFocus()  # the focus follows the moved path

    def _relayout(self) -> None:
        for i, row in enumerate(self._rows):
            for col, widget in enumerate(row.widgets()[:5]):
                self._grid.addWidget(widget, i * 2, col)
            self._grid.addWidget(row.note, i * 2 + 1, 1, 1, 4)
            row.number.setText(f"{i + 1}.")
            row.up.setEnabled(i > 0)
            row.down.setEnabled(i < len(self._rows) - 1)
            row.remove.setEnabled(len(self._rows) > 1)
        self._refresh()

    def problems(self) -> list[str | None]:
        """Per path: why it cannot be saved, or None."""
        texts = self.targets()
        found: list[str | None] = []
        for i, text in enumerate(texts):
            target, description = check_target(text)
            if not text:
                found.append("Type the device's target URL." if i == 0 else "Type a URL, or remove this path (✕).")
            elif target is None:
                found.append(description)
            elif text in texts[:i]:
                found.append(f"The same as path {texts.index(text) + 1}.")
            else:
                found.append(None)
        return found

    def _refresh(self) -> None:
        for i, (note, problem) in enumerate(zip(self.notes, self.problems(), strict=True)):
            text = self.edits[i].text().strip()
            role = "preferred" if i == 0 else "fallback"
            if problem is None:
                note.setText(f"✓ {check_target(text)[1]} ({role})")
                _colour(note, self.palette().color(QPalette.ColorRole.PlaceholderText))
            else:
                note.setText(problem)
                _colour(note, bad_colour(self) if text else self.palette().color(QPalette.ColorRole.PlaceholderText))
        self.sig_paths_changed.emit()


class DeviceDialog(QDialog):
    """``entry`` is the validated result after ``accepted``; ``original`` is the name being edited."""

    def __init__(
        self,
        sites: list[str],
        existing_names: set[str],
        entry: DeviceEntry | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit device" if entry else "Add device")
        self.setMinimumWidth(600)
        self.original = entry.name if entry else None
        self.entry: DeviceEntry | None = None
        self._existing = existing_names - ({entry.name} if entry else set())

        self.name = QLineEdit(entry.name if entry else "")
        self.name.setPlaceholderText("gw-01")
        self.site = QComboBox()
        self.site.setEditable(True)
        self.site.addItems(sorted(set(sites)) or ["Unsorted"])
        self.site.setCurrentText(entry.site if entry else (sites[0] if sites else "Unsorted"))
        self.paths = PathList(entry_targets(entry) if entry else [])
        self.paths.add_button.setVisible(HAS_FALLBACKS or len(self.paths.edits) > 1)
        self.username = QLineEdit(entry.username or "" if entry else "")
        self.username.setPlaceholderText("root")
        self.message = QLabel()
        self.message.setObjectName("validation")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("&Name:", self.name)
        form.addRow("&Site:", self.site)
        form.addRow("&Paths:", self.paths)
        examples = QLabel(f"Target URLs, the preferred one first. {EXAMPLES}")
        examples.setWordWrap(True)
        examples.setEnabled(False)
        form.addRow("", examples)
        form.addRow("Serial &login:", self.username)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

        for edit in (self.name, self.username):
            edit.textChanged.connect(self._on_input_changed)
        self.paths.sig_paths_changed.connect(self._on_input_changed)
        self.site.currentTextChanged.connect(self._on_input_changed)
        self.name.setFocus()
        self._on_input_changed()

    @property
    def target(self) -> QLineEdit:
        """The preferred path's field."""
        return self.paths.edits[0]

    @property
    def ok_button(self):
        return self.buttons.button(QDialogButtonBox.StandardButton.Ok)

    def problem(self) -> str | None:
        """Why the input cannot be saved yet, or None when it can."""
        name = self.name.text().strip()
        if not name:
            return "Give the device a name."
        if name in self._existing:
            return f"There is already a device called '{name}'. Pick another name."
        for i, problem in enumerate(self.paths.problems()):
            if problem is not None:
                return problem if i == 0 else f"Path {i + 1}: {problem}"
        if len(self.paths.edits) > 1 and not HAS_FALLBACKS:
            return "This version of Siteline keeps one path per device: remove the others."
        try:
            self._build().validated()
        except SitelineError as exc:
            return str(exc)
        return None

    def _parsed(self) -> list[Target]:
        return [t for t in (check_target(text)[0] for text in self.paths.targets()) if t is not None]

    def _build(self) -> DeviceEntry:
        first, *rest = self.paths.targets()
        username = self.username.text().strip() or None
        serial = any(t.is_serial for t in self._parsed())
        extra = {"fallbacks": tuple(rest)} if HAS_FALLBACKS else {}
        return DeviceEntry(
            name=self.name.text().strip(),
            target=first,
            site=self.site.currentText().strip() or "Unsorted",
            username=username if serial else None,
            **extra,  # type: ignore[arg-type]
        )

    def _on_input_changed(self, *_args: object) -> None:
        parsed = self._parsed()
        self.username.setEnabled(not parsed or any(t.is_serial for t in parsed))
        problem = self.problem()
        self.ok_button.setEnabled(problem is None)
        if self.target.text().strip() == "" and problem is not None:
            self._show(problem if self.name.text().strip() else "Type a name and the device's target URL.", bad=False)
        elif problem is not None:
            self._show(problem, bad=True)
        else:
            self._show(f"✓ {self._summary()}", bad=False)

    def _summary(self) -> str:
        texts = [check_target(t)[1] for t in self.paths.targets()]
        if len(texts) == 1:
            return texts[0]
        return f"{texts[0]}; then {len(texts) - 1} fallback path(s)"

    def _show(self, text: str, bad: bool) -> None:
        self.message.setText(text)
        self.message.setProperty("valid", not bad)
        _colour(self.message, bad_colour(self) if bad else self.palette().color(QPalette.ColorRole.WindowText))

    def accept(self) -> None:
        if self.problem() is not None:
            return
        self.entry = self._build().validated()
        super().accept()
