"""The Console tab: an interactive shell on the device in a terminal widget (SSH for now).

The tab gets a *shell opener* (``await opener(cols, rows)`` -> a ShellChannel from
``siteline.core.transports.shell``); the byte stream and the protocol stay in core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from siteline.core.errors import SitelineError
from siteline.core.targets import Target
from siteline.ui.terminal_widget import TerminalWidget

log = logging.getLogger(__name__)


class Channel(Protocol):
    """What the tab needs of a shell (``siteline.core.transports.shell.ShellChannel`` is one)."""

    closed: bool

    def write(self, data: bytes) -> None: ...
    def resize(self, cols: int, rows: int) -> None: ...
    def add_output_listener(self, listener: Callable[[bytes], None]) -> Callable[[], None]: ...
    def add_closed_listener(self, listener: Callable[[str], None]) -> None: ...
    async def close(self) -> None: ...


ShellOpener = Callable[[int, int], Awaitable[Channel]]


class ConsoleTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.terminal = TerminalWidget()
        self.channel: Channel | None = None
        self._opener: ShellOpener | None = None
        self._target: Target | None = None
        self._task: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self.status = QLabel("Select an SSH device to open a shell.")
        self.status.setWordWrap(True)
        self.connect_button = QPushButton("Connect &shell")
        self.connect_button.setToolTip("Open an interactive shell on the device over SSH")
        self.connect_button.clicked.connect(self.start_shell)
        self.disconnect_button = QPushButton("&Hang up")
        self.disconnect_button.clicked.connect(self.stop_shell)
        self.terminal.sig_input.connect(self._on_input)
        self.terminal.sig_resized.connect(self._on_resized)
        row = QHBoxLayout()
        row.addWidget(self.connect_button)
        row.addWidget(self.disconnect_button)
        row.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.terminal, 1)
        self._update_buttons()

    def set_device(self, target: Target | None, opener: ShellOpener | None = None) -> None:
        """Show the tab for this device; ``opener`` is None until its SSH link is available."""
        if target != self._target:
            self.stop_shell()
        self._target = target
        self._opener = opener
        if target is None:
            self.status.setText("Select a device to open a shell.")
        elif not target.is_ssh:
            kind = "serial" if target.is_serial else "MQTT"
            self.status.setText(
                f"The console over {kind} comes in the next version of Siteline; over SSH it works now."
            )
        elif self.channel is None:
            self.status.setText("Press Connect shell to open a shell on the device.")
        self._update_buttons()

    def _update_buttons(self) -> None:
        ssh = self._target is not None and self._target.is_ssh
        running = self.channel is not None and not self.channel.closed
        self.connect_button.setEnabled(ssh and not running and self._task is None)
        self.disconnect_button.setEnabled(running)
        self.terminal.setEnabled(ssh)

    def start_shell(self) -> None:
        if self._opener is None:
            self.status.setText("Not connected to the device yet: wait until it is up, then press Connect shell.")
            return
        self._task = asyncio.ensure_future(self._open(self._opener))
        self._update_buttons()

    async def _open(self, opener: ShellOpener) -> None:
        self.status.setText("Opening a shell…")
        try:
            channel = await opener(self.terminal.vt.columns, self.terminal.vt.lines)
        except SitelineError as exc:
            self.status.setText(f"Cannot open a shell: {exc}")
            return
        except Exception as exc:  # an unexpected failure must leave the tab usable
            log.exception("opening a shell failed")
            self.status.setText(f"Cannot open a shell: {exc}. Check the connection and try again.")
            return
        finally:
            self._task = None
            self._update_buttons()
        self.channel = channel
        channel.add_output_listener(self.terminal.feed)
        channel.add_closed_listener(self._on_closed)
        self.status.setText("Shell open. Ctrl+Shift+C copies, Ctrl+Shift+V pastes, Shift+PgUp scrolls back.")
        self._update_buttons()
        self.terminal.setFocus()

    def _on_closed(self, reason: str) -> None:
        self.status.setText(f"The shell ended ({reason}). Press Connect shell to open a new one.")
        self._update_buttons()

    def _on_input(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.write(data)

    def _on_resized(self, cols: int, rows: int) -> None:
        if self.channel is not None:
            self.channel.resize(cols, rows)

    def stop_shell(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            self._closing = asyncio.ensure_future(channel.close())  # kept: a bare future may be collected
        self._update_buttons()

    async def close_shell(self) -> None:
        """Hang up and wait for it (window close, tests)."""
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.close()
        if self._closing is not None:
            await self._closing
        self._update_buttons()
