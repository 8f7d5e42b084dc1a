"""Parsers for 3GPP TS 27.007 AT responses: AT+CSQ, AT+CESQ, AT+COPS?, AT+CREG? / AT+CGREG? / AT+CEREG? / AT+C5GREG?.

They take what came back on the serial port (echo, blank lines, URCs and "OK" included) and return the
same snapshots as the ModemManager probe (siteline.core.device.modem), with the 27.007 index values
converted to dBm / dB. A reported level at the bottom of its range ("below -140 dBm") is given as the
step below the range (-141), as ModemManager does. "ERROR" / "+CME ERROR" answers raise ParseError
with the meaning in words; so does output without the expected response line. Nothing else is raised.
"""

from __future__ import annotations

import csv
import re
from dataclasses import fields, replace

from siteline.core.device.modem import Modem, ModemSignal, SignalReading
from siteline.core.errors import ParseError

MAX_INPUT = 16 * 1024
_CME = re.compile(r"\+CM[ES] ERROR:\s*(.*)")
# 27.007 9.2.1: the +CME ERROR codes a field technician meets, in words and with what to do.
_CME_WORDS = {
    "3": "operation not allowed", "4": "operation not supported", "10": "SIM not inserted",
    "11": "SIM PIN required", "12": "SIM PUK required", "13": "SIM failure", "14": "SIM busy",
    "15": "SIM wrong", "16": "incorrect password", "17": "SIM PIN2 required", "18": "SIM PUK2 required",
    "30": "no network service", "31": "network timeout", "100": "unknown error",
}
# <stat> of +CREG/+CGREG/+CEREG/+C5GREG in ModemManager's words (MMModem3gppRegistrationState).
_STAT = {0: "idle", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming", 6: "home-sms-only",
         7: "roaming-sms-only", 8: "emergency-only", 9: "home-csfb-not-preferred", 10: "roaming-csfb-not-preferred",
         11: "emergency-only"}
_ROAMING = {"roaming", "roaming-sms-only", "roaming-csfb-not-preferred"}
_HOME = {"home", "home-sms-only", "home-csfb-not-preferred"}
# <AcT> of +COPS/+CREG in ModemManager's access-technology words.
_ACT: dict[int, tuple[str, ...]] = {
    0: ("gsm",), 1: ("gsm-compact",), 2: ("umts",), 3: ("edge",), 4: ("hsdpa",), 5: ("hsupa",), 6: ("hspa",),
    7: ("lte",), 8: ("gsm",), 9: ("lte-nb-iot",), 10: ("lte",), 11: ("5gnr",), 12: ("5gnr",), 13: ("lte", "5gnr"),
}


def _response(text: str, prefix: str) -> tuple[list[str], str]:
    """The fields of the last ``<prefix>: ...`` line, and the raw text. ERROR answers become ParseError."""
    if not isinstance(text, str):
        raise ParseError("The modem's answer is not text.", "Check the serial port's settings.")
    raw = text[:MAX_INPUT]
    lines = [line.strip() for line in raw.replace("\r", "\n").split("\n") if line.strip()]
    found: str | None = None
    for line in lines:
        cme = _CME.match(line)
        if cme:
            code = cme.group(1).strip()
            words = _CME_WORDS.get(code, code)
            raise ParseError(f"The modem refused {prefix}: {words[:80]}.", _hint(words))
        if line == "ERROR":
            raise ParseError(f"The modem answered ERROR to {prefix}.", "It may not support this command.")
        if line.upper().startswith(prefix + ":"):
            found = line[len(prefix) + 1 :].strip()
    if found is None:
        shown = repr(raw.strip()[:60]) if raw.strip() else "nothing"
        raise ParseError(f"No {prefix} answer in what the modem printed ({shown}).",
                         "Check the port is the modem's AT port and the baud rate is right.")
    try:
        row = next(csv.reader([found], skipinitialspace=True), [])
    except csv.Error:
        row = found.split(",")
    return [cell.strip() for cell in row], raw


def _hint(words: str) -> str:
    if "PIN" in words or "PUK" in words:
        return "Unlock the SIM (AT+CPIN) before reading the network."
    if "SIM" in words:
        return "Check the SIM card is seated."
    return "Check the modem supports the command."


def _int(cell: str | None) -> int | None:
    if cell is None or not re.fullmatch(r"\d{1,5}", cell):
        return None
    return int(cell)


def _scaled(index: int | None, top: int, offset: float, step: float, unknown: int) -> float | None:
    """An index 0..top to a level (offset + step * index); ``unknown`` (99 or 255) and anything else to None."""
    if index is None or index == unknown or index > top:
        return None
    return offset + step * index


def parse_csq(text: str, technology: str | None = None) -> ModemSignal:
    """``+CSQ: <rssi>,<ber>``: rssi 0..31 -> -113..-51 dBm (2 dB steps), 99 unknown.

    ``technology`` (gsm, umts, lte, nr — e.g. from AT+COPS?) files the RSSI under it; without it the
    RSSI stays technology-less in ``ModemSignal.rssi``.
    """
    cells, raw = _response(text, "+CSQ")
    problems: list[str] = []
    index = _int(cells[0] if cells else None)
    rssi = _scaled(index, 31, -113.0, 2.0, 99)
    if rssi is None:
        problems.append("The modem does not know the signal strength (+CSQ: 99): no network, or not measured yet."
                        if index == 99 else f"+CSQ value {(cells[0] if cells else '')[:10]!r} is not 0-31 or 99.")
    techs: dict[str, SignalReading | None] = {"gsm": None, "umts": None, "lte": None, "nr": None}
    if technology in techs and rssi is not None:
        techs[technology] = SignalReading(rssi=rssi)
        rssi = None
    return ModemSignal(rssi=rssi, gsm=techs["gsm"], umts=techs["umts"], lte=techs["lte"], nr=techs["nr"],
                       problems=tuple(problems), raw=raw)


def parse_cesq(text: str) -> ModemSignal:
    """``+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>[,<ss_rsrq>,<ss_rsrp>,<ss_sinr>]`` (27.007 8.69).

    rxlev 0..63 -> -111..-48 dBm; rscp 0..96 -> -121..-25 dBm; ecno 0..49 -> -24.5..0 dB;
    rsrq 0..34 -> -20..-3 dB; rsrp 0..97 -> -141..-44 dBm; NR (Rel-15): ss_rsrq 0..127 -> -43.5..20 dB,
    ss_rsrp 0..126 -> -157..-31 dBm, ss_sinr 0..127 -> -23.5..40 dB. 99 / 255 mean "not known".
    """
    cells, raw = _response(text, "+CESQ")
    if len(cells) < 6:
        raise ParseError(f"+CESQ answered {len(cells)} values where 27.007 has at least 6 ({raw.strip()[:60]!r}).",
                         "Use AT+CSQ on this modem instead.")
    v = [_int(c) for c in cells[:9]] + [None] * (9 - min(9, len(cells)))
    problems = [f"+CESQ value {c[:10]!r} is not a number." for c in cells[:9] if c and _int(c) is None]
    gsm = SignalReading(rssi=_scaled(v[0], 63, -111.0, 1.0, 99))
    umts = SignalReading(rscp=_scaled(v[2], 96, -121.0, 1.0, 255), ecio=_scaled(v[3], 49, -24.5, 0.5, 255))
    lte = SignalReading(rsrq=_scaled(v[4], 34, -20.0, 0.5, 255), rsrp=_scaled(v[5], 97, -141.0, 1.0, 255))
    nr = SignalReading(rsrq=_scaled(v[6], 127, -43.5, 0.5, 255), rsrp=_scaled(v[7], 126, -157.0, 1.0, 255),
                       snr=_scaled(v[8], 127, -23.5, 0.5, 255))
    signal = ModemSignal(gsm=None if gsm.is_empty() else gsm, umts=None if umts.is_empty() else umts,
                         lte=None if lte.is_empty() else lte, nr=None if nr.is_empty() else nr,
                         problems=tuple(problems), raw=raw)
    if not signal.technologies():
        signal = replace(signal, problems=(*problems, "The modem reports no signal figure for any technology "
                                                      "(all 99/255): not registered, or +CESQ is not filled in."))
    return signal


def parse_cops(text: str) -> Modem:
    """``+COPS: <mode>[,<format>,<oper>[,<AcT>]]``: the operator (name or MCC+MNC) and technology."""
    cells, raw = _response(text, "+COPS")
    mode = _int(cells[0] if cells else None)
    problems: list[str] = []
    if mode is None or mode > 4:
        problems.append(f"+COPS mode {(cells[0] if cells else '')[:10]!r} is not 0-4.")
    fmt, oper, act = _int(cells[1]) if len(cells) > 1 else None, cells[2] if len(cells) > 2 else "", None
    if len(cells) > 3:
        act = _int(cells[3])
        if act not in _ACT:
            problems.append(f"+COPS access technology {cells[3][:10]!r} is not one 27.007 defines.")
    name = code = None
    if oper and fmt == 2:
        code = oper if re.fullmatch(r"\d{5,6}", oper) else None
        if code is None:
            problems.append(f"+COPS numeric operator {oper[:20]!r} is not an MCC+MNC.")
    elif oper:
        name = oper[:64]
    technologies = _ACT.get(act, ()) if act is not None else ()
    return Modem(operator_name=name, operator_code=code, access_technologies=technologies, problems=tuple(problems),
                 raw=raw)


def parse_creg(text: str, command: str = "+CREG") -> Modem:
    """``+CREG: <n>,<stat>[,<lac>,<ci>[,<AcT>]]`` (also +CGREG, +CEREG, +C5GREG, and the unsolicited form).

    Gives the registration in ModemManager's words, roaming, and the technology when it is there.
    """
    cells, raw = _response(text, command)
    # A query answer starts with <n>; the unsolicited form starts with <stat> and follows it with a quoted area code.
    unsolicited = len(cells) == 1 or (len(cells) > 1 and not re.fullmatch(r"\d+", cells[1]))
    stat = _int(cells[0] if unsolicited else cells[1]) if cells else None
    problems: list[str] = []
    registration = _STAT.get(stat) if stat is not None else None
    if registration is None:
        problems.append(f"{command} registration status is missing or unknown ({','.join(cells)[:30]!r}).")
    act_at = 3 if unsolicited else 4
    act = _int(cells[act_at]) if len(cells) > act_at else None
    return Modem(registration=registration,
                 roaming=True if registration in _ROAMING else False if registration in _HOME else None,
                 access_technologies=_ACT.get(act, ()) if act is not None else (),
                 problems=tuple(problems), raw=raw)


def merge(*parts: Modem) -> Modem:
    """One Modem from the partial ones the AT commands give: later parts fill what earlier ones left unknown."""
    merged = Modem()
    for part in parts:
        changes: dict[str, object] = {}
        for f in fields(Modem):
            value, current = getattr(part, f.name), getattr(merged, f.name)
            if f.name == "problems":
                changes[f.name] = (*current, *value)
            elif f.name == "raw":
                changes[f.name] = current + value
            elif current in (None, ()) and value not in (None, ()):
                changes[f.name] = value
        merged = replace(merged, **changes)  # type: ignore[arg-type]
    return merged
