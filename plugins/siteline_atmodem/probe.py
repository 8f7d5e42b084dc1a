"""The AT-command modem probe: a modem without ModemManager, read with 27.007 commands on its AT port.

It runs only where ModemManager is absent (`command -v mmcli` fails): ModemManager holds the modem's ports
and its own probe reads the modem, so the two never talk to one modem at once. Everything happens in one
round trip (see chat.py); the answers go through parsers.py into the same Modem / ModemSignal snapshots
the ModemManager probe gives, so the panels and the CLI JSON do not care which probe read the modem.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from siteline.api import (
    DeviceContext,
    Modem,
    ModemSignal,
    ParseError,
    ProbeKind,
    Result,
    SignalReading,
    Unavailable,
)
from siteline_atmodem import chat
from siteline_atmodem.parsers import merge, parse_cesq, parse_cops, parse_creg, parse_csq

# What is asked, in order. AT+COPS is asked twice: numeric (MCC+MNC) first, then the long name, which leaves
# the modem in its default format. +CREG/+CEREG are read as they are set (no "=2"): switching on unsolicited
# registration reports would change what other users of the port see.
COMMANDS = {
    "cmee": "AT+CMEE=1", "cgmi": "AT+CGMI", "cgmm": "AT+CGMM", "cgmr": "AT+CGMR", "cgsn": "AT+CGSN",
    "cpin": "AT+CPIN?", "cops_code": "AT+COPS=3,2;+COPS?", "cops_name": "AT+COPS=3,0;+COPS?",
    "creg": "AT+CREG?", "cereg": "AT+CEREG?", "csq": "AT+CSQ", "cesq": "AT+CESQ",
}
_TECH = {"lte": "lte", "lte-nb-iot": "lte", "5gnr": "nr", "umts": "umts", "hsdpa": "umts", "hsupa": "umts",
         "hspa": "umts", "gsm": "gsm", "gsm-compact": "gsm", "edge": "gsm"}
_REGISTERED = {"home", "roaming", "home-sms-only", "roaming-sms-only", "home-csfb-not-preferred",
               "roaming-csfb-not-preferred"}
_FINAL = re.compile(r"^(OK|ERROR|\+CM[ES] ERROR:.*)$")


@dataclass(frozen=True)
class ATModemReport:
    """The modem area as the AT port tells it: which port, the modem, and its signal."""

    port: str
    modem: Modem
    signal: ModemSignal | None
    problems: tuple[str, ...] = ()
    source: str = "at"


def _unavailable(reason: str, raw: str = "") -> Unavailable:
    return Unavailable("modem", reason, raw)


class ATModemProbe:
    """``port`` forces the AT port's path (else the usual candidates are tried); ``wait`` is per command."""

    name = "atmodem"
    kind: ProbeKind = "modem"
    fallback = True  # asked only when ModemManager could not read the modem

    def __init__(self, port: str | None = None, baud: int = 115200, wait: float = chat.WAIT) -> None:
        self.port = port
        self.baud = baud
        self.wait = wait

    def timeout(self) -> float:
        """The round trip's limit: every candidate's test and every command waiting out its time, plus slack."""
        return 10.0 + self.wait * (len(COMMANDS) + len(chat.CANDIDATES))

    async def collect(self, ctx: DeviceContext) -> ATModemReport | Unavailable | None:
        script = chat.chat_script(list(COMMANDS.values()), self.port, self.baud, self.wait)
        return self.read(await ctx.run(script, self.timeout()))

    async def collect_direct(self, path: str) -> ATModemReport | Unavailable:
        """Read the modem over this computer's own serial port (the laptop's cable on the modem's AT port)."""
        out, err = await asyncio.to_thread(chat.talk_direct, path, list(COMMANDS.values()), self.baud, self.wait)
        report = self.read(Result(0 if chat.PORT in out else 1, out, err), path)
        return report if report is not None else _unavailable("the AT port answered as if ModemManager ran")

    def read(self, result: Result, port: str | None = None) -> ATModemReport | Unavailable | None:
        """The report from the chat's output; None when the device has ModemManager (nothing was sent then).

        ``port`` is the path that was asked for, when not the configured one (said in the reasons).
        """
        # A console merges stderr into stdout; over SSH they come apart. The markers serve both.
        if any(line.strip() == chat.HAS_MM for line in result.stdout.splitlines()):
            return None  # ModemManager's probe reads this modem
        found, answers = chat.split_answers(result.stdout)
        if not found:
            return port_of(result, port or self.port, self.wait)
        return read_answers(found, {key: answers[command] for key, command in COMMANDS.items() if command in answers})


def port_of(result: Result, configured: str | None, wait: float) -> Unavailable:
    """Why no AT port would do, in words: none there, busy, silent or garbled."""
    said = result.stderr.strip() or result.stdout.strip()
    raw = "\n".join(part for part in (result.stdout.strip(), result.stderr.strip()) if part)
    if chat.NO_TIMEOUT in result.stdout:
        return _unavailable("the device has no `timeout` command (coreutils or BusyBox), without which a silent "
                            "modem would hang the AT exchange: install it, or read the modem with ModemManager.", raw)
    if chat.NO_PORT not in result.stdout:
        return _unavailable(f"the AT exchange did not finish (exit status {result.exit_code}): "
                            f"{_last_words(said)}", raw)
    failed = [line.split(" ", 1)[1] for line in said.splitlines() if line.startswith(chat.OPEN_FAILED + " ")]
    # EBUSY (TIOCEXCL, a driver that allows one opener) or pyserial's lock on a port someone else locked.
    busy = any(words in said.lower() for words in ("resource busy", "exclusively lock"))
    if failed:
        holder = " (busy: another program such as ModemManager or pppd holds it)" if busy else ""
        return _unavailable(f"could not open the modem's AT port {', '.join(failed) or configured}{holder}: "
                            f"{_last_words(said)}. Stop the program holding it, or run the probe as root.", raw)
    silent = [line.split(":", 1)[0] for line in said.splitlines() if line.endswith(": no answer")]
    if silent:
        first = chat.seconds(wait if configured else min(wait, chat.FIRST_WAIT))
        return _unavailable(f"{', '.join(silent)} did not answer AT within {first} s ({_heard(said)}): not the "
                            "modem's AT port, a wrong baud rate, or another program (ModemManager, pppd) reads its "
                            "answers.", raw)
    where = configured or ", ".join(chat.CANDIDATES)
    return _unavailable(f"no AT port found: {where} does not exist there. Name the modem's AT port "
                        "(SITELINE_AT_PORT=/dev/ttyUSBn) or check the modem is powered and enumerated (ls /dev/tty*).",
                        raw)


def _last_words(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.startswith("@@")]
    return (lines[-1] if lines else text.splitlines()[-1] if text else "no message")[:200]


def _heard(text: str) -> str:
    """What came back from a silent or garbled port, shown safely (it may be any bytes)."""
    printed = [line for line in text.splitlines() if not line.endswith(": no answer") and not line.startswith("@@")]
    body = "".join(printed).strip()
    return f"it printed {body[:40]!r}" if body else "nothing came back"


def _info(text: str) -> str | None:
    """The one information line of an execute command (AT+CGMI, AT+CGSN ...), without echo and result code."""
    for line in (raw.strip() for raw in text.replace("\r", "\n").split("\n")):
        if line and not line.upper().startswith("AT") and not _FINAL.match(line) and not line.startswith("@@"):
            return re.sub(r"^\+\w+:\s*", "", line)[:64] or None  # some modems say "+CGMI: Quectel"
    return None


def _sim(text: str) -> dict[str, Any]:
    """AT+CPIN? -> sim_present / sim_locked / unlock_required in ModemManager's words."""
    match = re.search(r"\+CPIN:\s*(.+)", text)
    if match:
        code = match.group(1).strip().upper()
        words = "none" if code == "READY" else code.lower().replace(" ", "-")
        return {"sim_present": True, "sim_locked": code != "READY", "unlock_required": words}
    if re.search(r"\+CME ERROR:\s*(10|SIM not inserted)", text):
        return {"sim_present": False}
    return {}


def read_answers(port: str, answers: dict[str, str]) -> ATModemReport:
    """The report from each command's answer (keys of :data:`COMMANDS`); what could not be read goes to problems."""
    problems = [f"{COMMANDS[key]}: no final result code within the time allowed"
                for key, text in answers.items() if chat.NO_FINAL in text]
    skipped = [command for key, command in COMMANDS.items() if key not in answers]
    if skipped:
        problems.append(f"the modem stopped answering, so {', '.join(skipped)} were not asked.")
    text = answers.get
    operator = [m for key in ("cops_name", "cops_code") for m in _try(parse_cops, text(key), problems)]
    regs = [m for key, cmd in (("cereg", "+CEREG"), ("creg", "+CREG"))
            for m in _try(functools.partial(parse_creg, command=cmd), text(key), problems)]
    regs.sort(key=lambda m: m.registration not in _REGISTERED)  # a registered domain speaks for the modem
    identity = replace(Modem(manufacturer=_info(text("cgmi", "")), model=_info(text("cgmm", "")),
                             firmware=_info(text("cgmr", "")), imei=_imei(text("cgsn", ""))), **_sim(text("cpin", "")))
    modem = merge(identity, *operator, *regs)
    raw = "".join(f"{COMMANDS[key]}\n{answer.strip()}\n" for key, answer in answers.items())
    modem = replace(modem, state=_state(modem), path=port, raw=raw)
    signal = _signal(answers, modem.access_technologies, problems)
    return ATModemReport(port=port, modem=modem, signal=signal, problems=tuple(problems))


def _imei(text: str) -> str | None:
    match = re.search(r"\b(\d{14,16})\b", text)
    return match.group(1) if match else None


def _state(modem: Modem) -> str | None:
    """ModemManager's state word, as far as AT answers tell it."""
    if modem.sim_locked:
        return "locked"
    if modem.registration in _REGISTERED:
        return "registered"
    if modem.registration == "searching":
        return "searching"
    return None if modem.registration is None else "enabled"


T = TypeVar("T")


def _try(parse: Callable[[str], T], text: str | None, problems: list[str]) -> list[T]:
    """[parse(text)], or [] with the parse error's words added to ``problems`` ([] too when not asked: None)."""
    if text is None:
        return []
    try:
        return [parse(text)]
    except ParseError as exc:
        problems.append(str(exc))
        return []


def _signal(answers: dict[str, str], technologies: tuple[str, ...], problems: list[str]) -> ModemSignal | None:
    """+CESQ's per-technology figures, with +CSQ's RSSI filed under the serving technology (from +COPS)."""
    tech = next((_TECH[t] for t in technologies if t in _TECH), None)
    readings = [*_try(parse_cesq, answers.get("cesq"), problems),
                *_try(functools.partial(parse_csq, technology=tech), answers.get("csq"), problems)]
    if not readings:
        return None
    merged = {name: _combine([r for r in (getattr(x, name) for x in readings) if r is not None])
              for name in ("gsm", "umts", "lte", "nr")}
    notes = tuple(p for r in readings for p in r.problems)
    if any(merged.values()):  # one technology's figures make "CESQ knows nothing" a non-problem
        notes = tuple(n for n in notes if "all 99/255" not in n)
    return ModemSignal(rssi=next((r.rssi for r in readings if r.rssi is not None), None), gsm=merged["gsm"],
                       umts=merged["umts"], lte=merged["lte"], nr=merged["nr"], problems=notes,
                       raw="".join(r.raw for r in readings))


def _combine(readings: list[SignalReading]) -> SignalReading | None:
    """One reading from several of one technology: the first known value of each figure."""
    if not readings:
        return None
    values: dict[str, float | None] = {}
    for field in ("rssi", "rsrp", "rsrq", "snr", "rscp", "ecio", "error_rate"):
        values[field] = next((getattr(r, field) for r in readings if getattr(r, field) is not None), None)
    return SignalReading(**values)
