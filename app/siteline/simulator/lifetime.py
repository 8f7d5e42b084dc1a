"""Processes the simulator starts (devices, brokers) end with the program that started them.

A crash of the demo or of a test run skips every clean-up; without this a broker or a device
would keep its port and its files after its owner is gone.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def _ask_for_sigterm_when_parent_dies() -> None:
    import ctypes  # in the forked child only

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent() -> Callable[[], None] | None:
    """A Popen ``preexec_fn`` for that, or None where it cannot be had.

    Linux ties the signal to the thread that forked, so from any thread but the main one the child
    would die with that thread: nothing is set there (nor off Linux).
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    return _ask_for_sigterm_when_parent_dies
