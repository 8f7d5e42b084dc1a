"""The log viewer's core: records, parsers for what devices print, a compact store and a lazy file index.

No Qt here: the UI wraps `LogStore` and `LogFile` in table models.
"""

from siteline.core.logs.parsers import parse_chunk, parse_line
from siteline.core.logs.record import PRIORITY_NAMES, LogRecord, Source
from siteline.core.logs.store import LogFile, LogStore

__all__ = ["PRIORITY_NAMES", "LogFile", "LogRecord", "LogStore", "Source", "parse_chunk", "parse_line"]
