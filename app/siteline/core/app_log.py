"""Siteline's own log file: ``state_dir()/logs/siteline.log``, rotated (about 1 MiB x 3), secrets blanked.

Support staff ask for it (a diagnostics bundle carries its tail). Every record passes a redacting filter
before it reaches the file, so a password typed into a command or a broker URL with a login in it never
lands on disk. :func:`install` is called once, early, by ``cli.main``; a folder that cannot be written
leaves the program without a log file, never without a program.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import threading
from pathlib import Path

from siteline import paths

LOG_NAME = "siteline.log"
MAX_BYTES = 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_installed: logging.Handler | None = None
_restore: list[tuple[logging.Handler | logging.Logger, int]] = []  # levels install changed, for uninstall


_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY[A-Z0-9 ]{0,40}-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]{0,60}-----")
KEY_LINES_MAX = 200  # records a key block may span (an 8192-bit RSA key is ~100 lines); then it is taken as over
KEY_LINE_TEXT = "*** (a line of a private key, blanked)"


class RedactingFilter(logging.Filter):
    """Formats the record's message once, redacts it, and hands the result on (args dropped).

    Each record is redacted alone, so a private key logged one line per record (a device's output logged line
    by line) would lose only its BEGIN line: the filter remembers, per logger, that a key block began and
    blanks every record up to its END line (at most :data:`KEY_LINES_MAX`)."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._in_key: dict[str, int] = {}  # logger name -> records blanked so far inside an open key block
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        from siteline.core.diag.redact import redact_text

        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: keep what there is, never lose the record
            message = f"{record.msg!r} {record.args!r}"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact_text(self._key_block(record.name, message)).text, None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text).text
        return True

    def _key_block(self, logger: str, message: str) -> str:
        """The message with what lies inside a key block that began in an earlier record blanked; notes whether
        this record leaves a block open (a BEGIN line without its END after it)."""
        with self._lock:
            if logger in self._in_key:
                end = _KEY_END.search(message)
                if end is None:
                    self._in_key[logger] += 1
                    if self._in_key[logger] >= KEY_LINES_MAX:
                        del self._in_key[logger]
                    return KEY_LINE_TEXT
                del self._in_key[logger]
                message = f"{KEY_LINE_TEXT} {end.group()}{message[end.end():]}"
            begins = list(_KEY_BEGIN.finditer(message))
            if begins and _KEY_END.search(message, begins[-1].end()) is None:
                self._in_key[logger] = 0  # redact_text blanks this record's part; the next records are the body
            return message


def _let_through(root: logging.Logger, level: int) -> None:
    old = root.getEffectiveLevel()
    if old <= level:
        return
    for existing in root.handlers:
        if existing.level < old:
            _restore.append((existing, existing.level))
            existing.setLevel(old)
    _restore.append((root, root.level))
    root.setLevel(level)


def log_dir() -> Path:
    return paths.state_dir() / "logs"


def path() -> Path | None:
    """The log file in use, or None when :func:`install` has not run (or could not open it)."""
    if _installed is None:
        return None
    return Path(getattr(_installed, "baseFilename", log_dir() / LOG_NAME))


def install(level: int = logging.INFO) -> Path | None:
    """Add the rotating, redacting file handler to the root logger (once); returns the file, None if it failed.

    ``level`` is what the file gets. When the root logger was stricter (the CLI shows warnings only), it is
    lowered to ``level`` and the handlers already there are raised to its old level: the terminal shows what it
    showed before, the file gets more."""
    global _installed
    if _installed is not None:
        return path()
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(folder / LOG_NAME, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                       encoding="utf-8", delay=True)
    except OSError as exc:
        logging.getLogger(__name__).warning("Siteline's log file cannot be kept: %s", exc)
        return None
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    _let_through(logging.getLogger(), level)
    chatty = logging.getLogger("asyncssh")  # five INFO lines per command run: the file would hold minutes only
    if level > logging.DEBUG and chatty.level == logging.NOTSET:
        _restore.append((chatty, chatty.level))
        chatty.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    _installed = handler
    return path()


def uninstall() -> None:
    """Remove and close the handler (tests; a second window's own log)."""
    global _installed
    if _installed is not None:
        logging.getLogger().removeHandler(_installed)
        _installed.close()
        _installed = None
    while _restore:
        owner, level = _restore.pop()
        owner.setLevel(level)
