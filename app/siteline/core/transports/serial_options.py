"""Serial port settings from a target, and the errors a person sees when a port cannot be opened."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import serial
import serial.tools.list_ports

from siteline.core.errors import TransportError
from siteline.core.targets import Target

COMMON_BAUDS = "9600, 57600 or 115200"
BY_ID = Path("/dev/serial/by-id")
PARITIES = {"n": serial.PARITY_NONE, "e": serial.PARITY_EVEN, "o": serial.PARITY_ODD,
            "m": serial.PARITY_MARK, "s": serial.PARITY_SPACE}
STOPBITS = {"1": serial.STOPBITS_ONE, "1.5": serial.STOPBITS_ONE_POINT_FIVE, "2": serial.STOPBITS_TWO}
FLOWS = ("none", "rtscts", "xonxoff", "dsrdtr")


def port_settings(target: Target) -> dict[str, Any]:
    """pyserial keyword arguments from the target's options (default 115200 8N1, no flow control)."""
    opts = target.options
    parity = opts.get("parity", "n")[:1].lower()
    stopbits, flow = opts.get("stopbits", "1"), opts.get("flow", "none").lower()
    bytesize = opts.get("bytesize", "8")
    if parity not in PARITIES or stopbits not in STOPBITS or flow not in FLOWS or bytesize not in "5678":
        raise TransportError(
            f"The serial options in {target} are not valid.",
            f"parity: none/even/odd/mark/space, bytesize: 5-8, stopbits: 1/1.5/2, flow: {'/'.join(FLOWS)}.",
        )
    return {
        "baudrate": target.baud, "parity": PARITIES[parity], "stopbits": STOPBITS[stopbits],
        "bytesize": int(bytesize), "rtscts": flow == "rtscts", "xonxoff": flow == "xonxoff",
        "dsrdtr": flow == "dsrdtr",
    }


def ports_seen() -> str:
    names = sorted(p.device for p in serial.tools.list_ports.comports())
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else "none"


def open_error(exc: BaseException, port: str) -> TransportError:
    code = getattr(exc, "errno", None)
    text = str(exc)
    # pyserial on Windows raises SerialException without an errno; the Win32 error is only in its text.
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "FileNotFoundError" in text:
        return TransportError(f"The serial port {port} does not exist.",
                              f"Is the cable plugged in? Ports seen: {ports_seen()}.")
    if "PermissionError" in text or "Access is denied" in text:
        # Windows has no per-user port permission: access denied there means another program has it open.
        return TransportError(f"The serial port {port} is busy: another program holds it.",
                              "Close the other terminal (PuTTY, Tera Term, another Siteline) and retry.")
    if code in (errno.EACCES, errno.EPERM):
        return TransportError(f"Permission denied on {port}.",
                              "Add your user to the 'dialout' group (sudo usermod -aG dialout $USER), "
                              "then log out and back in.")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return TransportError(f"The serial port {port} is busy: another program holds it.",
                              "Close the other terminal (screen, minicom, picocom, another Siteline) and retry.")
    return TransportError(f"Cannot open the serial port {port}: {text}.", "Check the cable and the port name.")


def lost_reason(device: str, error: str) -> str:
    """Why the port stopped working, for a person: a vanished device node means the cable was pulled."""
    if not os.path.exists(device):
        return f"the serial cable was pulled ({device} is gone)"
    return f"the serial port {device} went away ({error}); is the cable unplugged?"


def stable_alias(device: str, by_id: Path = BY_ID) -> str | None:
    """The /dev/serial/by-id link that names the same port as ``device`` now, if there is one.

    ttyUSB numbers move when a cable is plugged back in (another adapter took ttyUSB0 meanwhile);
    the by-id name, made from the adapter's serial number, does not. Remembered at connect time,
    it lets a reconnect find the same adapter under its new number.
    """
    if device.startswith(str(by_id)):
        return None  # already the stable name
    try:
        real = os.path.realpath(device)
        links = sorted(by_id.iterdir())
    except OSError:
        return None
    for link in links:
        try:
            if link.is_symlink() and os.path.realpath(link) == real:
                return str(link)
        except OSError:
            continue
    return None
