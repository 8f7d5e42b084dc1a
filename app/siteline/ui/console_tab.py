"""The Console tab: an interactive shell on the device (SSH or the serial console) in a terminal widget.

The tab gets a *shell opener* (``await opener(cols, rows)`` -> a channel with the protocol of
``siteline.core.transports.shell.ShellChannel``; the serial transport's SerialShell keeps it too);
the byte stream and the protocol stay in core. Search in the scrollback and the session log live
here as a find bar and a toggle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from siteline.core.errors import SitelineError
from siteline.core.targets import Target
from siteline.ui.help_text import HelpLine
from siteline.ui.session_log import SessionLog, SessionLogError, default_log_path
from siteline.ui.terminal_screen import HISTORY_LINES
from siteline.ui.terminal_search import FindBar
from siteline.ui.terminal_widget import TerminalWidget

if TYPE_CHECKING:
    from siteline.core.console_audit import ConsoleInputRecorder

log = logging.getLogger(__name__)
MQTT_NO_CONSOLE = "Console not available: MQTT has no interactive console; use Run… to send a command."


class Channel(Protocol):
    """What the tab needs of a shell (``ShellChannel`` over SSH and ``SerialShell`` are two)."""

    closed: bool

    def write(self, data: bytes) -> None: ...
    def resize(self, cols: int, rows: int) -> None: ...
    def add_output_listener(self, listener: Callable[[bytes], None]) -> Callable[[], None]: ...
    def add_closed_listener(self, listener: Callable[[str], None]) -> None: ...
    async def close(self) -> None: ...


ShellOpener = Callable[[int, int], Awaitable[Channel]]
PathChooser = Callable[[Path], Path | None]  # proposed path -> chosen path, None when the person cancels


def _has_console(target: Target | None) -> bool:
    return target is not None and (target.is_ssh or target.is_serial)


class ConsoleTab(QWidget):
    def __init__(self, parent: QWidget | None = None, history_lines: int = HISTORY_LINES) -> None:
        super().__init__(parent)
        self.terminal = TerminalWidget(history=history_lines)
        self.channel: Channel | None = None
        self.session_log: SessionLog | None = None
        # Makes the audit recorder for a device's shell (set by the window when there is an audit trail):
        # the command lines typed are recorded, lines typed with the echo off (passwords) never are.
        self.recorder_factory: Callable[[str, int], ConsoleInputRecorder | None] | None = None
        self.recorder: ConsoleInputRecorder | None = None
        self.choose_log_path: PathChooser = self._ask_log_path  # tests and scripts replace the dialog
        self._opener: ShellOpener | None = None
        self._target: Target | None = None
        self._name = ""
        self._task: asyncio.Future[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()  # hang-ups in flight, kept: a bare future may be collected
        self.status = QLabel()
        # One line, never wrapped (the whole text in its tooltip): a status that wrapped when the shell opened took
        # a row from the terminal just after a serial shell was told its size, which a serial tty cannot relearn.
        self.status.setWordWrap(False)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._say("Select an SSH or serial device to open a shell.")
        self.log_status = QLabel("")
        self.log_status.setWordWrap(True)
        self.connect_button = QPushButton("Connect &shell")
        self.connect_button.setToolTip("Open an interactive shell on the device (SSH or the serial console)")
        self.connect_button.clicked.connect(self.start_shell)
        self.disconnect_button = QPushButton("&Hang up")
        self.disconnect_button.clicked.connect(self.stop_shell)
        self.find_button = QPushButton("&Find…")
        self.find_button.setToolTip("Search the scrollback (Ctrl+Shift+F)")
        self.find_button.clicked.connect(self.open_find)
        self.log_button = QPushButton("&Log to file…")
        self.log_button.setCheckable(True)
        self.log_button.setToolTip("Write everything the device prints to a text file (terminal codes removed)")
        self.log_button.toggled.connect(self._on_log_button_toggled)
        self.find_bar = FindBar()
        self.find_bar.sig_query_changed.connect(self._on_find_query_changed)
        self.find_bar.sig_step_requested.connect(self._on_find_step_requested)
        self.find_bar.sig_closed.connect(self._on_find_closed)
        self.terminal.sig_input.connect(self._on_input)
        self.terminal.sig_resized.connect(self._on_resized)
        self.terminal.sig_find_requested.connect(self.open_find)
        self.terminal.sig_search_updated.connect(self._on_terminal_search_updated)
        shortcut = QShortcut(QKeySequence("Ctrl+Shift+F"), self)  # also when the find bar has the focus
        shortcut.activated.connect(self.open_find)
        self._layout(self._toolbar())
        self._update_buttons()

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)

    def _toolbar(self) -> QHBoxLayout:
        row = QHBoxLayout()
        for button in (self.connect_button, self.disconnect_button, self.find_button, self.log_button):
            row.addWidget(button)
        row.addWidget(self.status, 1)
        return row

    def _layout(self, toolbar: QHBoxLayout) -> None:
        self.help_line = HelpLine("console", wrap=False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.help_line)
        layout.addLayout(toolbar)
        layout.addWidget(self.log_status)
        layout.addWidget(self.find_bar)
        layout.addWidget(self.terminal, 1)
        self.log_status.hide()

    @property
    def target(self) -> Target | None:
        """The path the tab opens its shell over (the device's path in use)."""
        return self._target

    @property
    def device_name(self) -> str:
        """The device the tab is showing (the name given to :meth:`set_device`)."""
        return self._name

    def set_device(self, target: Target | None, opener: ShellOpener | None = None, name: str = "") -> None:
        """Show the tab for this device; ``opener`` is None until a link that has a shell is up."""
        name = name or _name_for(target)
        if target != self._target or name != self._name:
            self._cancel_opening()  # a shell still opening belongs to the device no longer shown
            self.stop_shell()
        self._target = target
        self._opener = opener
        self._name = name
        if target is None:
            self._say("Select a device to open a shell.")
        elif target.is_mqtt:
            self._say(MQTT_NO_CONSOLE)
        elif self.channel is None:
            self._say("Press Connect shell to open a shell on the device.")
        self._update_buttons()

    def _cancel_opening(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    def _update_buttons(self) -> None:
        usable = _has_console(self._target)
        running = self.channel is not None and not self.channel.closed
        self.connect_button.setEnabled(usable and not running and self._task is None)
        self.disconnect_button.setEnabled(running)
        self.terminal.setEnabled(usable)

    # -- the shell -----------------------------------------------------------------------------

    def start_shell(self) -> None:
        if self._opener is None:
            self._say("Not connected to the device yet: wait until it is up, then press Connect shell.")
            return
        self._task = asyncio.ensure_future(self._open(self._opener))
        self._update_buttons()

    async def _open(self, opener: ShellOpener) -> None:
        me = asyncio.current_task()
        self._say("Opening a shell…")
        try:
            channel = await opener(self.terminal.vt.columns, self.terminal.vt.lines)
        except asyncio.CancelledError:
            self._open_failed(me, "Opening the shell was stopped. Press Connect shell to try again.")
            raise
        except SitelineError as exc:
            self._open_failed(me, f"Cannot open a shell: {exc}")
            return
        except Exception as exc:  # an unexpected failure must leave the tab usable
            log.exception("opening a shell failed")
            self._open_failed(me, f"Cannot open a shell: {exc}. Check the connection and try again.")
            return
        if self._task is not me:
            # Another device was selected while this shell opened (an opener that could not be cancelled
            # half-way): it must not show here, nor stay open on a device nobody looks at.
            self._hang_up(channel)
            return
        self._task = None
        self.channel = channel
        self._start_recorder()
        channel.add_output_listener(self._on_output)
        channel.add_closed_listener(self._on_closed)
        self._say("Shell open. Ctrl+Shift+C copies, Ctrl+Shift+V pastes, Ctrl+Shift+F finds, "
                            "Shift+PgUp scrolls back.")
        self._update_buttons()
        self.terminal.setFocus()

    def _open_failed(self, me: asyncio.Task[object] | None, message: str) -> None:
        if self._task is not me:
            return  # the tab shows another device now: this failure is not its news
        self._task = None
        self._say(message)
        self._update_buttons()

    def _start_recorder(self) -> None:
        self._stop_recorder()
        if self.recorder_factory is not None:
            self.recorder = self.recorder_factory(self._name, self.terminal.vt.columns)

    def _stop_recorder(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.flush()  # lines still waiting for their echo are withheld, never guessed

    def _on_output(self, data: bytes) -> None:
        self.terminal.feed(data)
        if self.recorder is not None:
            self.recorder.received(data)
        if self.session_log is not None:
            try:
                self.session_log.write(data)
            except SessionLogError as exc:  # the log stops; the terminal goes on
                self._log_stopped(str(exc))

    def _on_closed(self, reason: str) -> None:
        self._stop_recorder()
        self._say(f"The shell ended ({reason}). Press Connect shell to open a new one.")
        self._update_buttons()

    def _on_input(self, data: bytes) -> None:
        if self.channel is not None:
            if self.recorder is not None:
                self.recorder.typed(data)
            self.channel.write(data)

    def _on_resized(self, cols: int, rows: int) -> None:
        if self.recorder is not None:
            self.recorder.resize(cols)
        if self.channel is not None:
            self.channel.resize(cols, rows)

    def stop_shell(self) -> None:
        self._stop_recorder()
        channel, self.channel = self.channel, None
        if channel is not None:
            self._hang_up(channel)
        self._update_buttons()

    def _hang_up(self, channel: Channel) -> None:
        closing = asyncio.ensure_future(channel.close())
        self._closing.add(closing)
        closing.add_done_callback(self._on_hung_up)

    def _on_hung_up(self, closing: asyncio.Future[None]) -> None:
        self._closing.discard(closing)
        if not closing.cancelled() and closing.exception() is not None:
            log.warning("hanging up a shell failed: %s", closing.exception())

    async def close_shell(self) -> None:
        """Hang up and wait for it (window close, tests); the session log is closed too."""
        self._cancel_opening()
        self._stop_recorder()
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self.stop_log()
        self._update_buttons()

    # -- search --------------------------------------------------------------------------------

    def open_find(self) -> None:
        self.find_bar.open_bar(self.terminal.selected_text().split("\n")[0])
        self._on_find_query_changed()

    def _on_find_query_changed(self) -> None:
        self.terminal.search(self.find_bar.query, self.find_bar.case_sensitive)

    def _on_find_step_requested(self, forward: bool) -> None:
        self.terminal.step_match(forward)

    def _on_find_closed(self) -> None:
        self.terminal.clear_search()
        self.terminal.setFocus()

    def _on_terminal_search_updated(self) -> None:
        self.find_bar.show_count(self.terminal.current_match, len(self.terminal.matches))

    # -- session log ---------------------------------------------------------------------------

    def _on_log_button_toggled(self, on: bool) -> None:
        if on and self.session_log is None:
            self.start_log()
        elif not on and self.session_log is not None:
            self.stop_log()

    def start_log(self, path: Path | None = None) -> bool:
        """Start logging to ``path`` (or ask, proposing ``<device>-<time>.log``); False if cancelled or failed."""
        chosen = path or self.choose_log_path(default_log_path(self._name))
        if chosen is None:
            self.log_button.setChecked(False)
            return False
        try:
            self.session_log = SessionLog(chosen)
        except SessionLogError as exc:
            self._log_stopped(str(exc))
            return False
        self.log_button.setChecked(True)
        self.log_status.setText(f"Logging to {chosen}")
        self.log_status.setToolTip(str(chosen))
        self.log_status.show()
        return True

    def stop_log(self) -> None:
        session_log, self.session_log = self.session_log, None
        if session_log is not None:
            session_log.close()
            self.log_status.setText(f"Session logged to {session_log.path}")
        self.log_button.setChecked(False)

    def _log_stopped(self, message: str) -> None:
        if self.session_log is not None:
            self.session_log.close()
            self.session_log = None
        self.log_button.setChecked(False)
        self.log_status.setText(message)
        self.log_status.show()

    def _ask_log_path(self, proposed: Path) -> Path | None:
        chosen, _ = QFileDialog.getSaveFileName(self, "Log this session to a file", str(proposed),
                                                "Log files (*.log *.txt);;All files (*)")
        return Path(chosen) if chosen else None


def _name_for(target: Target | None) -> str:
    if target is None:
        return "device"
    if target.is_serial:
        return Path(target.device).name or "serial"
    return target.host or "device"
