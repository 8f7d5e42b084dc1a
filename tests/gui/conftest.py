"""GUI test support: a qasync loop on pytest-qt's QApplication, a private SITELINE_HOME, window builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
import shiboken6
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from siteline.core.backoff import Backoff
from siteline.core.plugins import PluginHost
from siteline.ui.app import build_window
from siteline.ui.main_window import MainWindow
from siteline.ui.qt_loop import SitelineLoop
from tests.gui.shell_transport import local_shell_factory

T = TypeVar("T")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own config/data folders, so persistence tests start clean."""
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class Loop:
    """Runs coroutines on a qasync loop in Qt's main thread, as the app does."""

    def __init__(self, loop: qasync.QEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.fixture
def aloop(qapp) -> Iterator[Loop]:
    qapp.setQuitOnLastWindowClosed(False)  # as run_gui does: closing a window must not stop the loop
    loop = SitelineLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield Loop(loop)
        leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        assert not leftover, f"tasks still running after the test: {leftover}"
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=0.2, jitter=0.0)


def plugins_with_builtins(*extra: tuple[object, str]) -> PluginHost:
    host = PluginHost()
    host.load_entry_points()
    for plugin, name in extra:
        host.register(plugin, name)
    return host


@pytest.fixture
def make_window(qtbot, home: Path, aloop: Loop) -> Iterator[Callable[..., MainWindow]]:
    """Build a window like app.py does; the local-shell factory unless a test passes another.

    Sessions a failed test left running are stopped before the loop closes. The fixture, not
    qtbot.addWidget, closes the windows: pytest-qt's deleteLater comes before fixture teardown, and
    the loop that runs stop_device_work would carry out that deletion halfway through it.
    """
    made: list[MainWindow] = []

    def make(plugins: PluginHost | None = None, factory: Any = None, **kwargs: Any) -> MainWindow:
        window = build_window(
            plugins or plugins_with_builtins(),
            factory=factory or local_shell_factory,
            backoff=kwargs.pop("backoff", fast_backoff),
            **kwargs,
        )
        made.append(window)
        return window

    yield make
    for window in made:
        if shiboken6.isValid(window):  # else the test deleted it already (its timers went with it)
            aloop.run(window.stop_device_work())
        if window.sessions.names() or window.sessions._stopping:
            aloop.run(window.sessions.close_all())
        aloop.run(window.close_keep())
        if shiboken6.isValid(window):
            window.close()
            window.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


async def show(window: MainWindow) -> None:
    """Show and activate (window shortcuts only fire in the active window), letting Qt catch up."""
    window.show()
    window.activateWindow()
    window.raise_()
    def active() -> bool:  # the window, or a dialog of it that opened meanwhile (e.g. a password prompt)
        current = QApplication.activeWindow()
        return current is window or (current is not None and current.parent() is window)

    await until(active, timeout=5.0, what="active window")


async def close_window(window: MainWindow) -> None:
    window.close()
    await window.stop_device_work()
    await window.sessions.close_all()
    await window.close_keep()

