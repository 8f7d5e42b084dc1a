"""What the Logs panel does on request: find next/previous, go to a time, copy, export, open a file.

A mixin of `LogView` (kept apart so that each module stays small); it uses the view's model, bar and table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from siteline.ui.logs.exporter import SYNC_LIMIT, Exporter, export_now
from siteline.ui.logs.highlight import HighlightDelegate
from siteline.ui.logs.log_model import LogModel
from siteline.ui.logs.log_table import LogTable
from siteline.ui.logs.navigate import FILE_SCAN_LIMIT, find_row, row_at_time, search_patterns
from siteline.ui.logs.toolbar import LogToolbar, mark_field
from siteline.ui.logs.words import parse_when

COPY_LIMIT = 200_000  # rows copied at once: more belongs in Export


class LogActions:
    """Search, time jump, copy, export and open for `LogView`."""

    model: LogModel
    bar: LogToolbar
    table: LogTable
    highlighter: HighlightDelegate
    _resume: tuple[str, bool, int, int] | None
    _exporter: Exporter | None
    sig_export_finished: Any

    def flush(self) -> int:
        raise NotImplementedError

    def open_file(self, path: Path) -> None:
        raise NotImplementedError

    def _select(self, row: int, pause: bool = True) -> None:
        raise NotImplementedError

    def _on_search_text_changed(self, text: str) -> None:
        self.highlighter.set_pattern(search_patterns(text)[1] if text else None)
        self.table.viewport().update()

    def find_next(self, forward: bool = True) -> int | None:
        """Select the next (or previous) line whose message contains the search text; wraps around."""
        text = self.bar.search.text()
        if not text:
            self.bar.say("Type what to find in the Find field first.", "warn")
            return None
        self.flush()
        current = self.table.currentIndex()
        origin = row = current.row() if current.isValid() else (-1 if forward else self.model.rowCount())
        resume, self._resume = self._resume, None
        if resume is not None and resume[:3] == (text, forward, origin):
            row = resume[3]  # the last press searched part of a big file: go on from where it stopped
        found = find_row(self.model, text, row, forward)
        if found.stopped_at is not None:
            self._resume = (text, forward, origin, found.stopped_at)
            self.bar.say(f"“{text}” is not in the {FILE_SCAN_LIMIT:,} lines searched so far (up to line "
                         f"{found.stopped_at + 1:,}); press {'Next' if forward else 'Previous'} again to keep looking.",
                         "warn")
            return None
        if found.row is None:
            mark_field(self.bar.search, True)
            self.bar.say(f"“{text}” is not in the lines shown.", "warn")
            return None
        mark_field(self.bar.search, False)
        self.bar.say(("Reached the end; continued from the top." if forward else
                      "Reached the top; continued from the end.") if found.wrapped else "")
        self._select(found.row)
        return found.row

    def go_to_time(self, text: str) -> int | None:
        """Select the first line at or after a typed time (14:02, 14:02:30 or 2026-11-27 14:02)."""
        self.flush()
        current = self.table.currentIndex()
        reference = self.model.time_of_row(current.row() if current.isValid() else self.model.rowCount() - 1)
        try:
            when = parse_when(text, reference)
        except ValueError as exc:
            mark_field(self.bar.when, True)
            self.bar.say(f"Cannot jump to “{text}”: {exc}.", "bad")
            return None
        row = row_at_time(self.model, when)
        if row is None:
            mark_field(self.bar.when, True)
            self.bar.say(f"No line shown is at or after {text}.", "warn")
            return None
        mark_field(self.bar.when, False)
        self.bar.say("")
        self._select(row)
        return row

    def _on_go_clicked(self) -> None:
        self.go_to_time(self.bar.when.text())

    def copy_selection(self) -> int:
        # Selection ranges, not selectedRows(): Ctrl+A over millions of rows must not build an index per cell.
        selection = self.table.selectionModel().selection()
        ranges = [(selection.at(i).top(), selection.at(i).bottom()) for i in range(selection.count())]
        count = len({row for top, bottom in ranges for row in range(top, bottom + 1)}) \
            if sum(bottom - top + 1 for top, bottom in ranges) <= COPY_LIMIT else COPY_LIMIT + 1
        if not count:
            self.bar.say("Select one or more lines to copy.", "warn")
            return 0
        if count > COPY_LIMIT:
            self.bar.say(f"Too many lines to copy (over {COPY_LIMIT:,}); use Export… to save them to a file.", "warn")
            return 0
        rows = sorted({row for top, bottom in ranges for row in range(top, bottom + 1)})
        QGuiApplication.clipboard().setText(self.model.rows_text(rows))
        self.bar.say(f"Copied {len(rows):,} line{'s' if len(rows) != 1 else ''}.")
        return len(rows)

    def export_to(self, path: Path) -> int | None:
        """Write the lines shown (after filters) to `path`, whole or not at all.

        Returns how many lines were written, or None when many lines are written in the background
        (`sig_export_finished` tells when they are).
        """
        self.flush()
        if self._exporter is not None:
            self.bar.say("An export is still running; wait for it to finish.", "warn")
            return None
        path = Path(path)
        total, read = self.model.snapshot()
        if total > SYNC_LIMIT:
            exporter = Exporter(path, total, read, self.table)
            exporter.sig_progress.connect(lambda done, of: self.bar.say(f"Exporting to {path.name}… {done / of:.0%}"))
            exporter.sig_finished.connect(lambda count, error: self._on_export_finished(path, count, error))
            try:
                exporter.start()
            except OSError as exc:
                exporter.deleteLater()
                self._on_export_finished(path, 0, exc.strerror or str(exc))
                return 0
            self._exporter = exporter
            self.bar.say(f"Exporting {total:,} lines to {path.name}…")
            return None
        try:
            count = export_now(path, total, read)
        except OSError as exc:
            self._on_export_finished(path, 0, exc.strerror or str(exc))
            return 0
        self._on_export_finished(path, count, "")
        return count

    def _on_export_finished(self, path: Path, count: int, error: str) -> None:
        if self._exporter is not None:
            self._exporter.deleteLater()
            self._exporter = None
        if error:
            self.bar.say(f"Could not write {path}: {error}. Pick another folder (nothing was written).", "bad")
        else:
            self.bar.say(f"Exported {count:,} lines to {path}.")
        self.sig_export_finished.emit(count, error)

    def _on_export_clicked(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self.table, "Export the lines shown", "siteline-logs.txt",
                                              "Text files (*.txt *.log);;All files (*)")
        if name:
            self.export_to(Path(name))

    def _on_open_clicked(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self.table, "Open a log file", "",
                                              "Log files (*.log *.txt *.json *.jsonl);;All files (*)")
        if name:
            self.open_file(Path(name))
