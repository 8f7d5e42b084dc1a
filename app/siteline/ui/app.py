"""The composition root of the desktop app and its event loop.

``run_gui`` builds QApplication, a qasync loop in Qt's main thread, the plugin host, the
inventory, the sessions and the window, and hands each what it needs through its constructor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication, QMessageBox

from siteline import __version__, paths
from siteline.core.backoff import Backoff
from siteline.core.errors import SitelineError
from siteline.core.inventory import DeviceEntry, Inventory
from siteline.core.loopwatch import LoopWatch
from siteline.core.plugins import PluginHost, load_plugins
from siteline.core.session import TransportFactory
from siteline.core.transports.base import Credentials
from siteline.ui.icons import icon
from siteline.ui.keep_controller import open_keep
from siteline.ui.main_window import MainWindow
from siteline.ui.qt_loop import SitelineLoop
from siteline.ui.sessions import SessionManager, default_factory
from siteline.ui.theme import Theme, set_high_dpi_policy, wanted_mode

log = logging.getLogger(__name__)
qt_log = logging.getLogger("qt")
SCREENSHOT_TIMEOUT = 60.0
DeviceList = list[tuple[DeviceEntry, Credentials]]


# -- process-wide plumbing ---------------------------------------------------------------------

_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def _qt_message_handler(kind: QtMsgType, context: object, message: str) -> None:
    """Qt's own warnings ("QFont::setPointSize ...") land in our log instead of bare stderr."""
    qt_log.log(_QT_LEVELS.get(kind, logging.WARNING), "%s", message)


def install_qt_message_handler() -> object:
    """Route Qt's messages into logging; returns the previous handler so a caller can put it back."""
    return qInstallMessageHandler(_qt_message_handler)


_open_error_boxes: set[QMessageBox] = set()
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def install_excepthook() -> ExceptHook:
    """Log AND show errors that escape slots (qasync sends async-slot errors here); returns the old hook."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        log.error("unexpected error", exc_info=(kind, exc, tb))
        if QApplication.instance() is None or kind is KeyboardInterrupt:
            return
        box = QMessageBox(QMessageBox.Icon.Critical, "Siteline: something went wrong", _error_text(exc))
        box.setDetailedText("".join(traceback.format_exception(kind, exc, tb)))
        # A parentless box lives only as long as its Python wrapper: keep it until it is closed.
        _open_error_boxes.add(box)
        box.finished.connect(lambda _r: _open_error_boxes.discard(box))
        box.open()

    sys.excepthook = hook
    return previous


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, SitelineError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n\nThe window keeps working. Please report this with the details below."


def make_application() -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    set_high_dpi_policy()
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Siteline")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("siteline")
    app.setWindowIcon(icon("siteline"))
    return app


# -- composition -------------------------------------------------------------------------------


def build_window(
    plugins: PluginHost,
    *,
    factory: TransportFactory | None = None,
    title: str | None = None,
    theme: Theme | None = None,
    backoff: Callable[[], Backoff] = Backoff,
    config_dir: Path | None = None,
    secrets: Mapping[str, str] | None = None,
) -> MainWindow:
    """Build the window and what it stands on; every path comes from ``siteline.paths``."""
    config = config_dir or paths.config_dir()
    factory = factory or default_factory(paths.data_dir() / "known_hosts")
    keep, keep_problem = open_keep()
    if keep is not None:
        for name, value in (secrets or {}).items():
            keep.give_secret(name, value)
    sessions = SessionManager(plugins, factory, backoff=backoff, keep=keep)
    window = MainWindow(plugins, Inventory(config / "devices.json"), sessions, config / "window.json", theme, title,
                        keep=keep, keep_problem=keep_problem)
    sessions.setParent(window)
    return window


async def run_window(
    window: MainWindow,
    devices: DeviceList | None = None,
    *,
    on_ready: Callable[[MainWindow], None] | None = None,
    stall_threshold: float = 2.0,
) -> int:
    """Show ``window``, start its sessions and the hang detector, and wait until it closes."""
    watch = LoopWatch(threshold=stall_threshold, on_stall=lambda _s: _on_stall(window))
    window.loopwatch = watch
    watch.start()
    closed = asyncio.Event()
    window.sig_closed.connect(lambda: closed.set())  # a lambda: PySide dropped the bound-method connection
    started = time.monotonic()
    try:
        window.load_devices(devices)
        window.show()
        window.start_keep()
        log.info("window shown %.0f ms after start", (time.monotonic() - started) * 1000)
        if on_ready is not None:
            on_ready(window)
        shot = _start_screenshot(window)
        await closed.wait()
        if shot is not None:
            shot.cancel()
    finally:
        await window.page.console.close_shell()  # hang up the console (and close its log) before the links
        await window.stop_device_work()
        await window.sessions.close_all()
        await window.close_keep()  # after the sessions: their disconnects go into the audit trail
        await watch.stop()
        log.info("%s", watch.stats.describe())
    return 0


def _on_stall(window: MainWindow) -> None:
    watch = window.loopwatch
    if watch is not None:
        window.status.show_stall(watch.stats.stalls_over_threshold, watch.worst_stall)


def run_gui(
    devices: DeviceList | None = None,
    *,
    title: str | None = None,
    on_ready: Callable[[MainWindow], None] | None = None,
    stall_threshold: float = 2.0,
    factory: TransportFactory | None = None,
    secrets: Mapping[str, str] | None = None,
) -> int:
    """Open Siteline's window (with ``devices`` added, e.g. the demo's) and run until it is closed.

    ``factory`` replaces the real transports (tests); returns the exit code for ``sys.exit``.
    """
    app = make_application()
    app.setQuitOnLastWindowClosed(False)  # the window's close ends run_window; cleanup runs after
    previous_qt_handler = install_qt_message_handler()
    previous_hook = install_excepthook()
    loop = SitelineLoop(app)
    asyncio.set_event_loop(loop)
    try:
        theme = Theme(app, wanted_mode())
        window = build_window(load_plugins(), factory=factory, title=title, theme=theme, secrets=secrets)
        old_sigint = signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(window.close))
        try:
            code: int = loop.run_until_complete(
                run_window(window, devices, on_ready=on_ready, stall_threshold=stall_threshold)
            )
            return code
        finally:
            signal.signal(signal.SIGINT, old_sigint)
            window.deleteLater()
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        sys.excepthook = previous_hook
        qInstallMessageHandler(previous_qt_handler)  # type: ignore[arg-type]


# -- README screenshot -------------------------------------------------------------------------


def _start_screenshot(window: MainWindow) -> asyncio.Task[None] | None:
    target = os.environ.get("SITELINE_SCREENSHOT")
    if not target:
        return None
    when = os.environ.get("SITELINE_SCREENSHOT_WHEN", "all-up")
    quit_after = os.environ.get("SITELINE_QUIT_AFTER_SCREENSHOT", "") in ("1", "true", "yes")
    return asyncio.get_running_loop().create_task(_screenshot(window, Path(target), when, quit_after))


def overview_ready(window: MainWindow) -> bool:
    """Every device up, every device's System snapshot in, and the shown page filled."""
    sessions = window.sessions
    if not sessions.all_up():
        return False
    if not all("system" in s.snapshots for s in (sessions.get(n) for n in sessions.names()) if s):
        return False
    return window.page.device is None or window.page.overview.filled


async def _screenshot(window: MainWindow, path: Path, when: str, quit_after: bool) -> None:
    deadline = time.monotonic() + SCREENSHOT_TIMEOUT
    while when == "all-up" and not overview_ready(window) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # polling is simplest: readiness spans sessions, snapshots and widgets
    if not overview_ready(window):
        log.warning("screenshot taken before every device was up (%s)", window.status.devices.text())
    tab = os.environ.get("SITELINE_SCREENSHOT_TAB", "")  # e.g. "Update": the device page's tab to show
    tabs = window.page.tabs
    for index in range(tabs.count()):
        if tab and tabs.tabText(index).replace("&", "") == tab:
            tabs.setCurrentIndex(index)
            await asyncio.sleep(2.0)  # the tab reads what it shows (the Update tab checks the chosen image)
    await asyncio.sleep(0.3)  # let the last repaint land
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path)):
        log.error("could not write the screenshot to %s", path)
    else:
        log.info("screenshot saved to %s", path)
    if quit_after:
        window.close()
