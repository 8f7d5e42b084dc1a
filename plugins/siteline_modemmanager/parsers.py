"""Parsers for ModemManager's mmcli: ``-L``, ``-m N`` and ``-m N --signal-get`` in all three output forms.

Every form is first flattened to mmcli's own dotted keys (``modem.generic.state`` ...), the keys of
``--output-keyvalue`` (see ModemManager's cli/mmcli-output.c); one builder then turns the keys into a
snapshot. So JSON, key-value and the human table all give the same result. "--" is mmcli's unknown.
The functions return a snapshot (with ``problems`` for what was odd) or raise ParseError, nothing else.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from siteline.api import Modem, ModemList, ModemRef, ModemSignal, ParseError, SignalReading

MAX_INPUT = 256 * 1024  # a real `mmcli -m 0 -J` is about 3 KiB
MAX_DEPTH = 8
MODEM_PATH = re.compile(r"/org/freedesktop/ModemManager1/Modem/(\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # mmcli colours the state in a terminal
_KV_LINE = re.compile(r"^\s*([A-Za-z0-9][\w.\-]*(?:\[\d+\])?)\s+:(?: (.*))?$")
_LIST_ITEM = re.compile(r"^(.*)\.value\[(\d+)\]$")
_LIST_ROW = re.compile(r"^\s*(/org/freedesktop/ModemManager1/Modem/(\d+))(?:\s+\[([^\]]*)\])?\s*(.*)$")
_UNKNOWN = {"", "--"}

Flat = dict[str, "str | list[str]"]

# The human table's (section, name) -> the key-value key. Names as mmcli 1.14-1.22 prints them.
_G, _3 = "modem.generic.", "modem.3gpp."
_HUMAN_MODEM = {
    ("general", "path"): "modem.dbus-path",
    ("general", "dbus path"): "modem.dbus-path",  # mmcli before 1.12
    ("hardware", "manufacturer"): _G + "manufacturer",
    ("hardware", "model"): _G + "model",
    ("hardware", "firmware revision"): _G + "revision",
    ("hardware", "revision"): _G + "revision",  # mmcli before 1.10
    ("hardware", "equipment id"): _G + "equipment-identifier",
    ("status", "lock"): _G + "unlock-required",
    ("status", "state"): _G + "state",
    ("status", "failed reason"): _G + "state-failed-reason",
    ("status", "power state"): _G + "power-state",
    ("status", "access tech"): _G + "access-technologies",
    ("status", "signal quality"): _G + "signal-quality.value",
    ("3gpp", "imei"): _3 + "imei",
    ("3gpp", "operator id"): _3 + "operator-code",
    ("3gpp", "operator name"): _3 + "operator-name",
    ("3gpp", "registration"): _3 + "registration-state",
    ("sim", "primary sim path"): _G + "sim",
    ("sim", "dbus path"): _G + "sim",  # mmcli before 1.16
}
_SIGNAL_TECHS = {"gsm": "gsm", "umts": "umts", "lte": "lte", "5g": "5g"}
_SIGNAL_NAMES = {"rssi": "rssi", "rsrp": "rsrp", "rsrq": "rsrq", "s/n": "snr", "snr": "snr", "rscp": "rscp",
                 "ecio": "ecio", "error rate": "error-rate"}
# Locks that stop the modem; SIM-PIN2/PUK2 only guard some SIM files, ModemManager treats them as unlocked.
_NOT_LOCKING = {"none", "sim-pin2", "sim-puk2", "unknown"}
_PAST_LOCK = {"disabled", "disabling", "enabling", "enabled", "searching", "registered", "disconnecting",
              "connecting", "connected"}
_ROAMING = {"roaming", "roaming-sms-only", "roaming-csfb-not-preferred"}
_HOME = {"home", "home-sms-only", "home-csfb-not-preferred"}
# Plausible ranges: outside them a modem is reporting a placeholder (0, -32768 ...), not a measurement.
_RANGES = {"rssi": (-130.0, -10.0), "rsrp": (-160.0, -30.0), "rsrq": (-45.0, 20.0), "snr": (-30.0, 60.0),
           "rscp": (-130.0, -10.0), "ecio": (-40.0, 0.0), "error-rate": (0.0, 100.0)}
_TECH_LABEL = {"gsm": "GSM", "umts": "UMTS", "lte": "LTE", "5g": "5G NR"}


# -- the three forms, flattened to key-value keys --------------------------------------------------------


def flatten(text: str) -> tuple[Flat, list[str]]:
    """Any mmcli output form -> (dotted keys, problems). ParseError when it is none of them."""
    if not isinstance(text, str):
        raise ParseError("mmcli output is not text.", "Check the transport's decoding.")
    problems: list[str] = []
    if len(text) > MAX_INPUT:
        problems.append(f"mmcli printed {len(text)} characters; only the first {MAX_INPUT} were read.")
        text = text[:MAX_INPUT]
    text = _ANSI.sub("", text).replace("\r", "")
    stripped = text.strip()
    if not stripped:
        raise ParseError("mmcli printed nothing.", "Check that ModemManager is running (systemctl status "
                         "ModemManager) and that the modem index is right (mmcli -L).")
    if stripped.startswith(("{", "[")):
        return _flatten_json(stripped), problems
    if any(_KV_LINE.match(line) for line in stripped.splitlines()[:5]):
        return _flatten_keyvalue(stripped, problems), problems
    if "|" in stripped:
        return _flatten_human(stripped), problems
    raise ParseError(f"mmcli printed something that is not one of its output forms: {_excerpt(stripped)}",
                     "Run the command by hand on the device to see what it says.")


def _flatten_json(text: str) -> Flat:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"mmcli's JSON output is cut off or malformed ({exc}).",
                         "Refresh; if it persists, check the link to the device.") from None
    if not isinstance(doc, dict):
        raise ParseError("mmcli's JSON output is not an object.", "Check the ModemManager version on the device.")
    flat: Flat = {}
    _walk(doc, "", flat, 0)
    return flat


def _walk(node: dict[str, Any], prefix: str, flat: Flat, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _walk(value, path + ".", flat, depth + 1)
        elif isinstance(value, list):
            flat[path] = [str(v) for v in value if isinstance(v, str | int | float)]
        elif value is None:
            flat[path] = "--"
        else:
            flat[path] = str(value)


def _flatten_keyvalue(text: str, problems: list[str]) -> Flat:
    flat: Flat = {}
    lengths: dict[str, str] = {}
    for line in text.splitlines():
        m = _KV_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), _unescape((m.group(2) or "").strip())
        item = _LIST_ITEM.match(key)
        if item:
            existing = flat.get(item.group(1))
            items = existing if isinstance(existing, list) else []
            items.append(value)
            flat[item.group(1)] = items
        elif key.endswith(".length"):
            lengths[key[: -len(".length")]] = value
            if value == "0":  # `mmcli -L -K` with no modem prints only "modem-list.length : 0"
                flat.setdefault(key[: -len(".length")], [])
        else:
            flat[key] = value
    for key, length in lengths.items():
        got = flat.get(key)
        if not isinstance(got, list) or str(len(got)) != length:
            problems.append(f"mmcli's list {key} says {length} values but "
                            f"{len(got) if isinstance(got, list) else 0} were printed (output cut off?).")
    return flat


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), value)


def _human_rows(text: str) -> list[tuple[str, str | None, str]]:
    """The human table as (section, name or None for a continuation line, value)."""
    bodies: list[tuple[str, str]] = []
    for line in text.splitlines():
        if "|" not in line:
            continue
        section, _, rest = line.partition("|")
        bodies.append((section.strip(), rest[1:] if rest.startswith(" ") else rest))
    # Names are right-aligned, so ": " sits in one column on every name line (the majority).
    columns = Counter(rest.find(": ") for _, rest in bodies if rest.find(": ") > 0)
    colon = columns.most_common(1)[0][0] if columns else -1
    rows: list[tuple[str, str | None, str]] = []
    for section, rest in bodies:
        if colon > 0 and rest[: colon + 2].strip() == "":
            rows.append((section, None, rest.strip()))
        elif colon > 0 and rest[colon : colon + 2] == ": ":
            rows.append((section, rest[:colon].strip(), rest[colon + 2 :].strip()))
        elif ": " in rest:
            name, _, value = rest.partition(": ")
            rows.append((section, name.strip(), value.strip()))
    return rows


def _flatten_human(text: str) -> Flat:
    flat: Flat = {}
    section, key = "", None
    for row_section, name, value in _human_rows(text):
        section = row_section.lower() or section
        if name is None:
            if key is not None:
                previous = flat.get(key, "")
                # a wrapped list line ends in ", " (stripped to ","); a multi-line list does not
                flat[key] = f"{str(previous).rstrip(',')}, {value}" if previous else value
            continue
        key = _human_key(section, name.lower())
        if key is None:
            continue
        if key.endswith("signal-quality.value"):
            m = re.match(r"^(\d+)\s*%\s*(?:\((\w+)\))?", value)
            flat[key] = m.group(1) if m else value
            if m and m.group(2):
                flat[_G + "signal-quality.recent"] = "yes" if m.group(2) == "recent" else "no"
        else:
            flat[key] = value
    return flat


def _human_key(section: str, name: str) -> str | None:
    if section in _SIGNAL_TECHS and name in _SIGNAL_NAMES:
        return f"modem.signal.{_SIGNAL_TECHS[section]}.{_SIGNAL_NAMES[name]}"
    if (section, name) in {("refresh", "rate"), ("signal", "refresh rate")}:
        return "modem.signal.refresh.rate"
    return _HUMAN_MODEM.get((section, name))


# -- the snapshots ---------------------------------------------------------------------------------------


def parse_modem_list(text: str) -> ModemList:
    """``mmcli -L`` in any form. "No modems were found" is an empty list, not an error."""
    if isinstance(text, str) and "no modems were found" in text.lower():
        return ModemList(modems=(), raw=text[:MAX_INPUT])
    stripped = text.strip() if isinstance(text, str) else ""
    if stripped and not stripped.startswith("{") and "modem-list" not in stripped:
        return _human_list(text)
    flat, problems = flatten(text)
    paths = flat.get("modem-list")
    if paths is None:
        raise ParseError("mmcli -L printed no modem-list.", "Check the ModemManager version on the device.")
    refs = tuple(ModemRef(path=p, index=_index(p)) for p in ([] if isinstance(paths, str) else paths))
    return ModemList(modems=refs, problems=tuple(problems), raw=text[:MAX_INPUT])


def _human_list(text: str) -> ModemList:
    refs = []
    for line in _ANSI.sub("", text[:MAX_INPUT]).splitlines():
        m = _LIST_ROW.match(line)
        if m:
            refs.append(ModemRef(path=m.group(1), index=int(m.group(2)), manufacturer=m.group(3) or None,
                                 model=m.group(4).strip() or None))
    if not refs:
        raise ParseError(f"mmcli -L printed no modem paths: {_excerpt(text)}",
                         "Check that ModemManager is running on the device.")
    return ModemList(modems=tuple(refs), raw=text[:MAX_INPUT])


def parse_modem(text: str) -> Modem:
    """``mmcli -m N`` in the human, ``--output-keyvalue`` or ``--output-json`` form."""
    flat, problems = flatten(text)
    if not any(k.startswith(("modem.generic.", "modem.3gpp.", "modem.dbus-path")) for k in flat):
        raise ParseError(f"mmcli printed no modem fields: {_excerpt(text)}",
                         "Check the modem index (mmcli -L) and the ModemManager version.")
    state = _text(flat, _G + "state")
    if state is None:
        problems.append("mmcli did not say the modem's state.")
    registration = _text(flat, _3 + "registration-state")
    unlock = _text(flat, _G + "unlock-required")
    return Modem(
        path=_text(flat, "modem.dbus-path"),
        manufacturer=_text(flat, _G + "manufacturer"),
        model=_text(flat, _G + "model"),
        firmware=_text(flat, _G + "revision"),
        state=state,
        failed_reason=_text(flat, _G + "state-failed-reason"),
        power_state=_text(flat, _G + "power-state"),
        access_technologies=_list(flat, _G + "access-technologies"),
        operator_name=_text(flat, _3 + "operator-name"),
        operator_code=_checked(flat, _3 + "operator-code", r"\d{5,6}", "operator code", problems),
        registration=registration,
        roaming=True if registration in _ROAMING else False if registration in _HOME else None,
        sim_present=_sim_present(flat),
        sim_locked=_sim_locked(state, unlock),
        unlock_required=unlock,
        imei=_checked(flat, _3 + "imei", r"\d{14,16}", "IMEI", problems),
        signal_quality=_quality(flat, problems),
        signal_recent={"yes": True, "no": False}.get(_text(flat, _G + "signal-quality.recent") or ""),
        problems=tuple(problems),
        raw=text[:MAX_INPUT],
    )


def parse_signal(text: str) -> ModemSignal:
    """``mmcli -m N --signal-get`` in any form: GSM RSSI, UMTS RSSI/RSCP/Ec/Io, LTE and 5G NR RSSI/RSRP/RSRQ/SNR."""
    flat, problems = flatten(text)
    if not any(k.startswith("modem.signal.") for k in flat):
        raise ParseError(f"mmcli printed no signal fields: {_excerpt(text)}",
                         "Check that the modem supports extended signal information (mmcli -m N --signal-get).")
    readings = {tech: _reading(flat, tech, problems) for tech in _SIGNAL_TECHS}
    rate_text = _text(flat, "modem.signal.refresh.rate")
    rate_match = re.match(r"^(\d+)", rate_text or "")
    rate = int(rate_match.group(1)) if rate_match else None
    if not any(readings.values()):
        if rate == 0:
            problems.append("Signal polling is off, so every figure is unknown; "
                            "run `mmcli -m N --signal-setup=10` (Siteline does this before reading).")
        else:
            problems.append("The modem reported no signal figures for any technology.")
    return ModemSignal(refresh_rate=rate, gsm=readings["gsm"], umts=readings["umts"], lte=readings["lte"],
                       nr=readings["5g"], problems=tuple(problems), raw=text[:MAX_INPUT])


# -- small helpers ---------------------------------------------------------------------------------------


def _text(flat: Flat, key: str) -> str | None:
    value = flat.get(key)
    if isinstance(value, list):
        value = ", ".join(value)
    if value is None or value.strip() in _UNKNOWN:
        return None
    return value.strip()


def _list(flat: Flat, key: str) -> tuple[str, ...]:
    value = flat.get(key)
    items = value if isinstance(value, list) else (value or "").split(",")
    return tuple(v.strip() for v in items if v.strip() not in _UNKNOWN)


def _checked(flat: Flat, key: str, pattern: str, label: str, problems: list[str]) -> str | None:
    value = _text(flat, key)
    if value is not None and not re.fullmatch(pattern, value):
        problems.append(f"The modem reported an {label} that is not valid: {value[:40]!r}.")
        return None
    return value


def _quality(flat: Flat, problems: list[str]) -> int | None:
    value = _text(flat, _G + "signal-quality.value")
    if value is None:
        return None
    if not value.isdigit() or int(value) > 100:
        problems.append(f"Signal quality {value[:20]!r} is not a percentage; treated as unknown.")
        return None
    return int(value)


def _sim_present(flat: Flat) -> bool | None:
    if _text(flat, _G + "state-failed-reason") == "sim-missing":
        return False
    if _G + "sim" not in flat:
        return None
    return _text(flat, _G + "sim") is not None


def _sim_locked(state: str | None, unlock: str | None) -> bool | None:
    if state == "locked":
        return True
    if unlock is not None:
        return unlock not in _NOT_LOCKING
    return False if state in _PAST_LOCK else None


def _reading(flat: Flat, tech: str, problems: list[str]) -> SignalReading | None:
    values: dict[str, float | None] = {}
    for name in ("rssi", "rsrp", "rsrq", "snr", "rscp", "ecio", "error-rate"):
        values[name] = _figure(_text(flat, f"modem.signal.{tech}.{name}"), f"{_TECH_LABEL[tech]} {name}", name,
                               problems)
    reading = SignalReading(rssi=values["rssi"], rsrp=values["rsrp"], rsrq=values["rsrq"], snr=values["snr"],
                            rscp=values["rscp"], ecio=values["ecio"], error_rate=values["error-rate"])
    return None if reading.is_empty() else reading


def _figure(text: str | None, label: str, name: str, problems: list[str]) -> float | None:
    if text is None:
        return None
    m = re.match(r"^(-?\d+(?:\.\d+)?)\s*(?:dBm|dB|%)?$", text)
    if not m:
        problems.append(f"{label} {text[:20]!r} is not a number; treated as unknown.")
        return None
    value = float(m.group(1))
    low, high = _RANGES[name]
    if not low <= value <= high:
        problems.append(f"{label} of {value:.2f} is outside what a radio can measure; treated as unknown.")
        return None
    return value


def _index(path: str) -> int | None:
    m = MODEM_PATH.fullmatch(path.strip())
    return int(m.group(1)) if m else None


def _excerpt(text: str) -> str:
    first = text.strip()[:80].replace("\n", " ")
    return repr(first)
