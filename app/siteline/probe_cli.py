"""`siteline probe TARGET [--only AREA,...] [--json]`: every area's snapshot, as text or as stable JSON.

The JSON schema is documented in docs/probe-json.md. An area whose tool is missing, whose command failed
or whose output could not be read is ``{"available": false, "reason": ...}``; the others are still
reported, and the exit status is 0 whenever the device was reached.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from siteline.api import Unavailable
from siteline.core.device.modem import ModemSignal, SignalReading, rsrp_band
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost, load_plugins
from siteline.core.transports.base import Result

log = logging.getLogger(__name__)

AREAS = ("system", "modem", "network", "slots", "posture")
SCHEMA = "siteline-probe/1"
TECHNOLOGIES = ("gsm", "umts", "lte", "nr")
_SKIPPED = {"raw"}  # the tools' own output stays out of the JSON: it is large and not a stable format
Run = Callable[[str, float], Awaitable[Result]]


def _areas(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    wrong = [n for n in names if n not in AREAS]
    if wrong or not names:
        raise argparse.ArgumentTypeError(
            f"unknown area {', '.join(wrong) or '(none)'}: choose from {','.join(AREAS)}"
        )
    return names


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only", type=_areas, default=AREAS, metavar="AREA[,AREA...]",
        help=f"probe only these areas (default: all of {','.join(AREAS)})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema in docs/probe-json.md)")


# -- JSON -----------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Dataclasses, tuples, dicts and datetimes as JSON values; the tools' raw output left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in _SKIPPED}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN is not JSON; unknown is null
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _reading(reading: SignalReading | None) -> dict[str, float | None] | None:
    if reading is None:
        return None
    return {"rssi": reading.rssi, "rsrp": reading.rsrp, "rsrq": reading.rsrq, "snr": reading.snr,
            "rscp": reading.rscp, "ecio": reading.ecio, "error_rate": reading.error_rate}


def signal_json(signal: ModemSignal | None) -> dict[str, Any] | None:
    if signal is None:
        return None
    techs = {"gsm": signal.gsm, "umts": signal.umts, "lte": signal.lte, "nr": signal.nr}
    out: dict[str, Any] = {name: _reading(techs[name]) for name in TECHNOLOGIES}
    best = signal.nr or signal.lte
    out.update(refresh_rate=signal.refresh_rate, rsrp_band=rsrp_band(best.rsrp if best else None),
               problems=list(signal.problems))
    return out


def modem_json(report: Any) -> dict[str, Any]:
    """A ModemReport (modem + signal) or a bare Modem, flattened: the modem's fields, then ``signal``."""
    modem = getattr(report, "modem", report)
    out: dict[str, Any] = plain(modem) if dataclasses.is_dataclass(modem) else {}
    out["imei"] = modem.masked_imei() if hasattr(modem, "masked_imei") else None
    out["index"] = getattr(report, "index", None)
    out["signal"] = signal_json(getattr(report, "signal", None))
    out["problems"] = [*out.get("problems", []), *getattr(report, "problems", ())] if report is not modem \
        else out.get("problems", [])
    return out


def area_json(kind: str, snapshot: Any) -> dict[str, Any]:
    if isinstance(snapshot, Unavailable):
        return {"available": False, "reason": snapshot.reason}
    body = modem_json(snapshot) if kind == "modem" else plain(snapshot)
    if not isinstance(body, dict):
        body = {"value": body}
    return {"available": True, **body}


# -- text -----------------------------------------------------------------------------------------------


def _figures(reading: SignalReading) -> str:
    units = (("rssi", "dBm"), ("rsrp", "dBm"), ("rsrq", "dB"), ("snr", "dB"), ("rscp", "dBm"), ("ecio", "dB"))
    shown = [f"{name.upper()} {getattr(reading, name):g} {unit}" for name, unit in units
             if getattr(reading, name) is not None]
    return ", ".join(shown) or "no figures"


def _system_line(system: Any) -> str:
    os_name = system.os.pretty_name or system.os.name or "unknown OS"
    up = "" if system.uptime_seconds is None else f", up {_duration(system.uptime_seconds)}"
    load = "" if system.load is None else ", load " + " ".join(f"{v:.2f}" for v in system.load)
    return f"{system.hostname or '(no hostname)'}, {os_name}, kernel {system.kernel or 'unknown'}{up}{load}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def area_lines(kind: str, snapshot: Any) -> list[str]:
    """A few readable lines per area; the JSON form has everything."""
    if isinstance(snapshot, Unavailable):
        return [f"{kind}: unavailable: {snapshot.reason}"]
    lines: list[str] = []
    if kind == "system" and hasattr(snapshot, "os"):
        lines.append("system: " + _system_line(snapshot))
    elif kind == "network" and hasattr(snapshot, "summary"):
        lines.append(f"network: {snapshot.summary}")
    elif kind == "modem":
        data = modem_json(snapshot)
        who = " ".join(str(data.get(k)) for k in ("manufacturer", "model") if data.get(k)) or "modem"
        lines.append(f"modem: {who}, {data.get('state') or 'state unknown'}, operator "
                     f"{data.get('operator_name') or 'unknown'}, quality {_or_unknown(data.get('signal_quality'))}%")
        signal = getattr(snapshot, "signal", None)
        for name, reading in (signal.technologies().items() if signal is not None else ()):
            lines.append(f"  {name}: {_figures(reading)}")
    elif kind == "slots" and hasattr(snapshot, "slots"):
        lines.append(f"slots: booted {snapshot.booted or 'unknown'}, next boot {snapshot.primary or 'unknown'} "
                     f"({snapshot.source})")
        for slot in snapshot.slots:
            left = "" if slot.attempts_left is None else f", {slot.attempts_left} attempts left"
            lines.append(f"  {slot.name} ({slot.bootname or '-'}): {slot.health or 'unknown'}, "
                         f"version {slot.bundle_version or 'unknown'}{left}")
    elif kind == "posture" and hasattr(snapshot, "checks"):
        lines.append("posture:")
        lines += [f"  [{getattr(c, 'status', '?')}] {getattr(c, 'key', '?')}: {getattr(c, 'reason', '')}"
                  for c in snapshot.checks]
    else:
        lines.append(f"{kind}:")
        body = plain(snapshot)
        items = body.items() if isinstance(body, dict) else [("value", body)]
        lines += [f"  {key}: {value}" for key, value in items if key != "problems"]
    lines += [f"  problem: {p}" for p in getattr(snapshot, "problems", ())]
    return lines


# -- running ----------------------------------------------------------------------------------------------


async def collect_areas(host: PluginHost, areas: tuple[str, ...], target: str, run: Run) -> dict[str, Any]:
    """Each area's snapshot: the first probe of that kind that could read it, else why none could."""
    ctx = make_context(target, target, run, log)
    found: dict[str, Any] = {}
    for kind in areas:
        reasons: list[str] = []
        for entry in host.probes(kind):
            before = len(host.failures)
            snapshot = await host.run_probe(entry, ctx)
            if snapshot is None:
                failed = host.failures[before:]
                if failed:  # else the probe had nothing to say here (the AT probe where ModemManager runs)
                    reasons.append(failed[0].describe())
            elif isinstance(snapshot, Unavailable):
                reasons.append(snapshot.reason)
            else:
                found[kind] = snapshot
                break
        else:
            found[kind] = Unavailable(kind, "; ".join(reasons) or f"no installed plugin probes the {kind} area")
    return found


async def probe_command(args: argparse.Namespace, target_text: str, run: Run, *, host: PluginHost | None = None) -> int:
    """Print the areas asked for (``args.only``) as text or JSON (``args.json``); 0: the device was reached.

    ``host`` defaults to one loading the ``siteline.plugins`` entry points. A broken link raises (the caller
    turns it into exit 4); anything the device printed is reported per area instead.
    """
    if host is None:
        host = load_plugins()
    areas: tuple[str, ...] = getattr(args, "only", None) or AREAS
    started = datetime.now(UTC)
    found = await collect_areas(host, areas, target_text, run)
    if getattr(args, "json", False):
        when = started.isoformat(timespec="seconds")
        doc: dict[str, Any] = {"schema": SCHEMA, "target": target_text, "probed_at": when}
        doc.update({kind: area_json(kind, found[kind]) for kind in areas})
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        for kind in areas:
            print("\n".join(area_lines(kind, found[kind])))
    for failure in host.failures:
        print(f"siteline: {failure.describe()}", file=sys.stderr)
    return 0


def _or_unknown(value: object) -> object:
    return "?" if value is None else value
