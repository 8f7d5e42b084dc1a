"""A simulated cellular modem's AT-command port (3GPP TS 27.007 / V.250) on its own pty.

The same Quectel EC25 that the simulated `mmcli` reports, reached the way a device without
ModemManager reaches it: AT commands on a serial port. Its answers come from the same modem state
(signal walk, enabled, IMEI), converted to the 27.007 index values, so an AT probe and mmcli agree
to within the AT quantisation (RSRP 1 dB, RSRQ 0.5 dB, RSSI 2 dB).

The framing is what modems print in verbose mode (ATV1): the command line echoed as typed while
ATE1 (the default), each information line as ``\\r\\n<text>\\r\\n``, the final result as ``\\r\\nOK\\r\\n``,
``\\r\\nERROR\\r\\n`` or ``\\r\\n+CME ERROR: <n>\\r\\n`` (AT+CMEE=1, numeric; =2 in words; =0 plain ERROR).
Anything that is not a command it knows is answered ERROR; nothing a client sends can stop it.

The device's own shells reach the port at the link's path (by default ``<state>/dev/ttyUSB2``: device commands
see the host's files, /run aside). ``ATModem(..., modemmanager=False)`` makes an AT-only device, whose shells
find no `mmcli`, so the AT-command probe reads the modem instead of the ModemManager one.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline.simulator import dynamics
from siteline.simulator.serial_line import SerialLine
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.mmcli import MANUFACTURER, MODEL, OPERATOR_CODE, OPERATOR_NAME

log = logging.getLogger(__name__)
REVISION = "EC25EFAR06A06M4G"  # what mmcli shows as the firmware revision
MAX_LINE = 560  # V.250 asks for at least 40 characters; longer lines are thrown away and answered ERROR
AT_BAUD = 115200
TAC, CELL_ID = "1A2B", "01C3D4E5"
ACT_EUTRAN = 7
# 27.007 9.2.1 codes used here, with the words AT+CMEE=2 prints.
CME_WORDS = {3: "operation not allowed", 4: "operation not supported", 30: "no network service",
             50: "Incorrect parameters"}


class CommandError(Exception):
    """A command that fails: ``code`` None for a plain ERROR, else the +CME ERROR number."""

    def __init__(self, code: int | None = None) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class ATSession:
    """The settings a modem keeps between commands (reset by ATZ)."""

    echo: bool = True
    verbose: bool = True
    cmee: int = 1
    creg: int = 0  # AT+CREG=<n>: 2 adds the location and technology to the answer
    cereg: int = 0
    cops_format: int = 0  # AT+COPS=3,<format>: 0 long name, 1 short name, 2 numeric MCC+MNC

    def reset(self) -> None:
        """ATZ / AT&F: back to the factory settings."""
        self.echo, self.verbose, self.cmee, self.creg, self.cereg, self.cops_format = True, True, 1, 0, 0, 0


# --- the answers, from the modem state ---------------------------------------------------------------------


def _index(value: float, offset: float, step: float, top: int) -> int:
    """A level in dBm/dB to its 27.007 index (offset + step * index), clamped to 0..top."""
    return int(min(top, max(0, round((value - offset) / step))))


def csq(m: dict[str, Any]) -> str:
    if not m.get("enabled", True) or "rssi" not in m:
        return "+CSQ: 99,99"
    return f"+CSQ: {_index(float(m['rssi']), -113.0, 2.0, 31)},99"


def cesq(m: dict[str, Any]) -> str:
    """LTE only (the walk is an LTE cell): rxlev, ber, rscp and ecno unknown; rsrq, rsrp from the state."""
    if not m.get("enabled", True) or "rsrp" not in m:
        return "+CESQ: 99,99,255,255,255,255"
    rsrq = _index(float(m.get("rsrq", -20.0)), -20.0, 0.5, 34)
    rsrp = _index(float(m["rsrp"]), -141.0, 1.0, 97)
    return f"+CESQ: 99,99,255,255,{rsrq},{rsrp}"


def cops(m: dict[str, Any], fmt: int) -> str:
    if not m.get("enabled", True):
        return "+COPS: 0"  # automatic selection, not registered: no operator
    name = OPERATOR_CODE if fmt == 2 else OPERATOR_NAME if fmt == 0 else OPERATOR_NAME.split()[0]
    return f'+COPS: 0,{fmt},"{name}",{ACT_EUTRAN}'


def registration(prefix: str, n: int, m: dict[str, Any]) -> str:
    stat = 1 if m.get("enabled", True) else 0  # home, as mmcli says; 0 = not registered, not searching
    if n >= 2 and stat:
        return f'{prefix}: {n},{stat},"{TAC}","{CELL_ID}",{ACT_EUTRAN}'
    return f"{prefix}: {n},{stat}"


# --- the interpreter ---------------------------------------------------------------------------------------


Handler = Callable[[ATSession, dict[str, Any], str], list[str]]


def _set_n(attr: str, top: int) -> Handler:
    def handler(session: ATSession, modem: dict[str, Any], arg: str) -> list[str]:
        if not re.fullmatch(r"\d", arg) or int(arg) > top:
            raise CommandError(50)
        setattr(session, attr, int(arg))
        return []
    return handler


def _cops_set(session: ATSession, modem: dict[str, Any], arg: str) -> list[str]:
    parts = arg.split(",")
    if len(parts) == 2 and parts[0] == "3" and parts[1] in ("0", "1", "2"):
        session.cops_format = int(parts[1])
        return []
    if parts[0] == "0" and len(parts) == 1:
        return []  # automatic selection: what it does already
    raise CommandError(3)  # manual selection and deregistration are not simulated


# The execute/read forms ("+CSQ", "+COPS?"), the set forms ("+CMEE=1") and the test forms ("+CSQ=?").
READS: dict[str, Callable[[ATSession, dict[str, Any]], list[str]]] = {
    "+CSQ": lambda s, m: [csq(m)],
    "+CESQ": lambda s, m: [cesq(m)],
    "+COPS?": lambda s, m: [cops(m, s.cops_format)],
    "+CREG?": lambda s, m: [registration("+CREG", s.creg, m)],
    "+CEREG?": lambda s, m: [registration("+CEREG", s.cereg, m)],
    "+CGSN": lambda s, m: [str(m.get("imei", "350000000000000"))],
    "+GSN": lambda s, m: [str(m.get("imei", "350000000000000"))],
    "+CPIN?": lambda s, m: ["+CPIN: READY"],
    "+CMEE?": lambda s, m: [f"+CMEE: {s.cmee}"],
    "+CFUN?": lambda s, m: [f"+CFUN: {1 if m.get('enabled', True) else 4}"],
    "+CGMI": lambda s, m: [MANUFACTURER],
    "+CGMM": lambda s, m: [MODEL],
    "+CGMR": lambda s, m: [REVISION],
}
SETS: dict[str, Handler] = {
    "+CMEE": _set_n("cmee", 2), "+CREG": _set_n("creg", 2), "+CEREG": _set_n("cereg", 2), "+COPS": _cops_set,
}
TESTS = {
    "+CSQ": "+CSQ: (0-31,99),(0-7,99)", "+CESQ": "+CESQ: (0-63,99),(0-7,99),(0-96,255),(0-49,255),(0-34,255),"
    "(0-97,255)", "+CREG": "+CREG: (0-2)", "+CEREG": "+CEREG: (0-2)", "+CMEE": "+CMEE: (0-2)",
    "+COPS": '+COPS: (1,"Vodafone UK","Vodafone","23415",7),,(0-4),(0-2)',
}


def _split_commands(body: str) -> list[str]:
    """``E0V1+CSQ;+CREG?`` -> ["E0", "V1", "+CSQ", "+CREG?"]: basic commands, then ';'-separated extended ones."""
    commands: list[str] = []
    basic = re.match(r"((?:[A-Z&]\d*)*)", body)
    head = basic.group(1) if basic else ""
    commands += re.findall(r"&?[A-Z]\d*", head)
    rest = body[len(head):]
    commands += [c for c in (part.strip() for part in rest.split(";")) if c]
    return commands


def _basic(session: ATSession, modem: dict[str, Any], command: str) -> list[str]:
    letter, digits = command.rstrip("0123456789"), command[len(command.rstrip("0123456789")):]
    value = int(digits) if digits else 0
    if letter == "E" and value in (0, 1):
        session.echo = bool(value)
    elif letter == "V" and value in (0, 1):
        session.verbose = bool(value)
    elif letter in ("Z", "&F") and value == 0:
        session.reset()
    elif letter == "I" and value == 0:
        return [MANUFACTURER, MODEL, f"Revision: {REVISION}"]  # ATI, as Quectel prints it
    else:
        raise CommandError(None)
    return []


def _extended(session: ATSession, modem: dict[str, Any], command: str) -> list[str]:
    if command.endswith("=?"):
        name = command[:-2]
        if name in TESTS:
            return [TESTS[name]]
        if name in READS:
            return []
        raise CommandError(None)
    if "=" in command:
        name, arg = command.split("=", 1)
        if name in SETS:
            return SETS[name](session, modem, arg)
        raise CommandError(None if name not in READS else 4)
    if command in READS:
        return READS[command](session, modem)
    raise CommandError(None)


def execute(session: ATSession, line: str, modem_state: Callable[[], dict[str, Any]]) -> bytes:
    """One command line (without its CR) -> the bytes the modem prints back (information and final result)."""
    text = line.strip()
    if not text.upper().startswith("AT") or len(text) > MAX_LINE or not text.isascii() or not text.isprintable():
        return _final(session, CommandError(None))
    lines: list[str] = []
    modem: dict[str, Any] | None = None
    try:
        for command in _split_commands(text[2:].upper().replace(" ", "")):  # V.250: spaces do not count
            if modem is None:
                modem = modem_state()
            if command.startswith("+"):
                lines += _extended(session, modem, command)
            else:
                lines += _basic(session, modem, command)
    except CommandError as exc:
        return _frame(session, lines) + _final(session, exc)
    except (OSError, ValueError) as exc:  # the state dir could not be read: the modem says so, it does not die
        log.warning("AT modem: the modem state could not be read: %s", exc)
        return _frame(session, lines) + _final(session, CommandError(100))
    return _frame(session, lines) + _final(session, None)


def _frame(session: ATSession, lines: list[str]) -> bytes:
    if session.verbose:
        return b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines)
    return b"".join(line.encode() + b"\r\n" for line in lines)


def _final(session: ATSession, error: CommandError | None) -> bytes:
    if error is None:
        return b"\r\nOK\r\n" if session.verbose else b"0\r"
    if error.code is not None and session.cmee:
        shown = str(error.code) if session.cmee == 1 else CME_WORDS.get(error.code, "unknown")
        return f"\r\n+CME ERROR: {shown}\r\n".encode()
    return b"\r\nERROR\r\n" if session.verbose else b"4\r"


# --- the port ------------------------------------------------------------------------------------------------


def default_link(state: DeviceState) -> Path:
    """Where the AT port is linked when no path is given: in the state dir, a path the device's shells see too.

    Device commands run in a private mount namespace that still shows the host's files (bar a tmpfs over
    /run), so any link outside /run is the same path inside the device; /dev itself is the host's and is
    never written.
    """
    return state.root / "dev" / "ttyUSB2"


def remove_modemmanager(state: DeviceState) -> None:
    """An AT-only device: no ModemManager, so `command -v mmcli` fails in the device's shells.

    The shims are rewritten each time the state is opened (``DeviceState.open``), so this is applied after
    opening, by :class:`ATModem` when it starts with ``modemmanager=False``.
    """
    with contextlib.suppress(FileNotFoundError):
        (state.root / "bin" / "mmcli").unlink()


class ATModem:
    """The modem's AT port: a pty whose slave is linked at ``link``; ``start`` / ``stop``.

    ``modemmanager=False`` makes the device AT-only (see :func:`remove_modemmanager`): the way a modem on a
    box without ModemManager is read.
    """

    def __init__(self, state: DeviceState, link: Path | None = None, baud: int = AT_BAUD, *,
                 modemmanager: bool = True) -> None:
        if link is None:
            link = default_link(state)
            link.parent.mkdir(parents=True, exist_ok=True)
        self.modemmanager = modemmanager
        self.state = state
        self.session = ATSession()
        self.line = SerialLine(Path(link), baud, self._on_input, seed=state.config.seed)
        self._buffer = bytearray()
        self._discarding = False  # a line grew past MAX_LINE: drop it up to its CR

    @property
    def url(self) -> str:
        return f"serial://{self.line.link}?baud={self.line.device_baud}"

    async def start(self) -> None:
        if not self.modemmanager:
            remove_modemmanager(self.state)
        self.line.open()

    async def stop(self) -> None:
        await self.line.close()

    def _modem(self) -> dict[str, Any]:
        return dynamics.advance(self.state.root)

    def _on_input(self, data: bytes) -> None:
        try:
            self._feed(data)
        except Exception:  # one bad byte sequence must never take the port down
            log.exception("AT modem: input %r could not be handled", data[:40])
            self._buffer.clear()

    def _feed(self, data: bytes) -> None:
        for byte in data:
            if self.session.echo:
                self.line.write(bytes([byte]))
            if byte == 0x0D:  # S3: the command line ends
                line, discarded = bytes(self._buffer), self._discarding
                self._buffer.clear()
                self._discarding = False
                if discarded:
                    self.line.write(_final(self.session, CommandError(None)))
                elif line.strip():
                    self.line.write(execute(self.session, line.decode("latin-1"), self._modem))
            elif byte in (0x08, 0x7F):  # S5: backspace
                if self._buffer:
                    self._buffer.pop()
            elif byte == 0x0A:
                continue  # a line feed after the CR is not part of the next command
            elif len(self._buffer) >= MAX_LINE:
                self._discarding = True
            else:
                self._buffer.append(byte)
