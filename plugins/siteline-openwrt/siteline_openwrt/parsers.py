"""Parsers for what an OpenWrt router prints about itself and its modem: `ubus call system` JSON, uqmi's JSON.

They take anything (truncated JSON, another release's keys, an error message instead of JSON) and return
typed snapshots whose ``problems`` say what could not be read; they never raise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from siteline.api import Modem, ModemSignal, Mount, OsRelease, SignalReading, System

MAX_INPUT = 1 << 20  # a network.interface dump of a big router is ~50 KB; more is garbage
LOAD_SCALE = 65536.0  # procd reports the load average as fixed point (SI_LOAD_SHIFT 16)


def load_json(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why): the JSON document in ``text``, or what was printed instead."""
    body = text[:MAX_INPUT].strip()
    if not body:
        return None, "it printed nothing"
    try:
        return json.loads(body), None
    except (ValueError, RecursionError):
        first = body.splitlines()[0][:120]
        return None, f"it printed {first!r}, not JSON"


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def string_of(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- system ------------------------------------------------------------------------------------------------


def _os_release(board: dict[str, Any]) -> OsRelease:
    release = as_dict(board.get("release"))
    model = string_of(board.get("model"))
    description = string_of(release.get("description")) or " ".join(
        w for w in (string_of(release.get("distribution")), string_of(release.get("version"))) if w)
    # The Overview shows the OS line: the router's model belongs there, a technician asks "which box" first.
    pretty = f"{description} on {model}" if description and model else description or model or ""
    extra = {key: value for key, value in (
        ("MODEL", model), ("BOARD_NAME", string_of(board.get("board_name"))),
        ("OPENWRT_TARGET", string_of(release.get("target"))),
        ("ROOTFS_TYPE", string_of(board.get("rootfs_type"))), ("CPU", string_of(board.get("system"))),
    ) if value}
    distribution = string_of(release.get("distribution")) or ""
    version = string_of(release.get("version")) or ""
    return OsRelease(id=distribution.lower(), name=distribution, pretty_name=pretty, version_id=version,
                     version=version, build_id=string_of(release.get("revision")) or "", extra=extra)


def _mount(point: str, figures: Any, fs_type: str | None) -> Mount | None:
    """procd's root/tmp figures (statvfs, in KiB) as a Mount; None when they are missing or nonsense."""
    got = as_dict(figures)
    total, used, avail = (as_int(got.get(k)) for k in ("total", "used", "avail"))
    if total is None or total <= 0 or used is None or avail is None or min(used, avail) < 0:
        return None
    percent = -(-used * 100 // (used + avail)) if used + avail else 0  # df rounds up
    return Mount(mountpoint=point, fs_type=fs_type, size=total * 1024, used=used * 1024, available=avail * 1024,
                 use_percent=float(percent), read_only=None, source=None)


def _load(info: dict[str, Any]) -> tuple[float, float, float] | None:
    raw = info.get("load")
    if not isinstance(raw, list) or len(raw) < 3:
        return None
    values = [num(v) for v in raw[:3]]
    if any(v is None or v < 0 for v in values):
        return None
    one, five, fifteen = (round(float(v or 0) / LOAD_SCALE, 2) for v in values)
    return (one, five, fifteen)


def parse_system(board_text: str, info_text: str) -> System:
    """`ubus call system board` + `ubus call system info` -> System (mounts: / and /tmp as procd sees them)."""
    problems: list[str] = []
    board, why = load_json(board_text)
    if not isinstance(board, dict):
        problems.append(f"could not read `ubus call system board`: {why or 'not a JSON object'}")
        board = {}
    info, why = load_json(info_text)
    if not isinstance(info, dict):
        problems.append(f"could not read `ubus call system info`: {why or 'not a JSON object'}")
        info = {}
    uptime = num(info.get("uptime"))
    rootfs_type = string_of(board.get("rootfs_type"))
    root_type = "squashfs+overlay" if rootfs_type == "squashfs" else rootfs_type
    mounts = tuple(m for m in (_mount("/", info.get("root"), root_type), _mount("/tmp", info.get("tmp"), "tmpfs"))
                   if m is not None)
    return System(
        hostname=string_of(board.get("hostname")), os=_os_release(board), kernel=string_of(board.get("kernel")),
        machine=string_of(as_dict(board.get("release")).get("target")), uname=None,
        uptime_seconds=uptime if uptime is not None and uptime >= 0 else None, load=_load(info),
        problems=tuple(problems), mounts=mounts or None, root_read_only=None, k8s=None,
    )


# --- modem (uqmi) ------------------------------------------------------------------------------------------

# uqmi --get-serving-system "registration" -> (ModemManager-like state, registration word the panel knows)
_REGISTRATION = {
    "registered": ("registered", None),
    "searching": ("searching", "searching"),
    "not_registered": ("enabled", "idle"),
    # The network refused the SIM: not registered (ModemManager's state stays "enabled", registration "denied").
    "registering_denied": ("enabled", "denied"),
    "unknown": (None, "unknown"),
}
_SIM_WORDS = ("uim uninitialized", "sim not inserted", "uim not initialized", "sim failure")


@dataclass(frozen=True)
class OpenWrtModemReport:
    """The modem area as uqmi tells it: the QMI control node, the modem, its signal (the Modem panel's shape)."""

    device: str | None
    modem: Modem
    signal: ModemSignal | None
    problems: tuple[str, ...] = ()
    source: str = "uqmi"


def _uqmi_error(value: Any, why: str | None, text: str) -> str | None:
    """uqmi prints a failure as a JSON string ("UIM uninitialized", "Failed to connect to service")."""
    if isinstance(value, str):
        return value.strip() or "an empty answer"
    if value is None:
        said = text.strip().splitlines()
        return said[-1][:160] if said and why and "not JSON" in why else why
    return None


def _lte_snr(value: Any) -> float | None:
    """uqmi's commands-nas.c prints the raw QMI figure (tenths of a dB) as an integer; builds that convert it
    print dB as a real number. An integer is taken as tenths, a real as dB."""
    snr = num(value)
    if snr is None:
        return None
    return round(snr / 10.0, 1) if isinstance(value, int) else snr


def _wcdma_ecio(value: Any) -> float | None:
    """uqmi prints QMI's raw WCDMA Ec/Io, a non-negative count of -0.5 dB steps (14 is -7 dB, as qmicli shows
    it); a negative or real figure was already converted to dB by the build that printed it."""
    ecio = num(value)
    if ecio is None:
        return None
    return -ecio / 2.0 if isinstance(value, int) and ecio >= 0 else ecio


def parse_signal_info(text: str) -> tuple[ModemSignal | None, str, str | None]:
    """`uqmi --get-signal-info` -> (signal, access technology, error). Newer uqmi may list several types."""
    value, why = load_json(text)
    error = _uqmi_error(value, why, text)
    if error is not None:
        return None, "", error
    items = value if isinstance(value, list) else [value]
    readings: dict[str, SignalReading] = {}
    tech = ""
    for item in (i for i in items if isinstance(i, dict)):
        kind = string_of(item.get("type")) or ""
        if kind == "lte":
            readings["lte"] = SignalReading(rssi=num(item.get("rssi")), rsrp=num(item.get("rsrp")),
                                            rsrq=num(item.get("rsrq")), snr=_lte_snr(item.get("snr")))
        elif kind in ("wcdma", "umts"):
            readings["umts"] = SignalReading(rssi=num(item.get("rssi")), ecio=_wcdma_ecio(item.get("ecio")))
        elif kind == "gsm":
            readings["gsm"] = SignalReading(rssi=num(item.get("signal", item.get("rssi"))))
        elif kind in ("5gnr", "nr5g"):
            readings["nr"] = SignalReading(rsrp=num(item.get("rsrp")), rsrq=num(item.get("rsrq")),
                                           snr=num(item.get("snr")))
        tech = tech or {"wcdma": "umts", "5gnr": "5gnr", "nr5g": "5gnr"}.get(kind, kind)
    signal = ModemSignal(refresh_rate=None, gsm=readings.get("gsm"), umts=readings.get("umts"),
                         lte=readings.get("lte"), nr=readings.get("nr"), raw=text[:4096])
    if not readings:
        return signal, "", "the modem reports no signal (no service)"
    return signal, tech, None


def parse_serving_system(text: str) -> tuple[dict[str, Any], str | None]:
    """`uqmi --get-serving-system` -> Modem fields (state, registration, operator, roaming) or an error."""
    value, why = load_json(text)
    error = _uqmi_error(value, why, text)
    if error is not None or not isinstance(value, dict):
        return {}, error or "not a JSON object"
    reg_word = string_of(value.get("registration")) or "unknown"
    state, registration = _REGISTRATION.get(reg_word, (None, "unknown"))
    roaming = value.get("roaming") if isinstance(value.get("roaming"), bool) else None
    if reg_word == "registered":
        registration = "roaming" if roaming else "home"
    mcc, mnc = as_int(value.get("plmn_mcc")), as_int(value.get("plmn_mnc"))
    code = f"{mcc:03d}{mnc:02d}" if mcc is not None and mnc is not None and 0 < mcc < 1000 and 0 <= mnc < 1000 \
        else None
    return {"state": state, "registration": registration, "roaming": roaming if reg_word == "registered" else None,
            "operator_name": string_of(value.get("plmn_description")), "operator_code": code}, None


def parse_identity(text: str) -> tuple[str | None, str | None]:
    """`uqmi --get-imei` / `--get-iccid`: a JSON string of digits -> (value, None) or (None, uqmi's error)."""
    value, why = load_json(text)
    if isinstance(value, str) and re.fullmatch(r"[0-9A-Fa-f]{6,22}", value.strip()):
        return value.strip(), None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value), None
    return None, _uqmi_error(value, why, text) or "not an identifier"


def _sim_state(errors: list[str]) -> dict[str, Any]:
    lowered = " ".join(errors).lower()
    if any(word in lowered for word in _SIM_WORDS):
        return {"sim_present": False, "state": "failed", "failed_reason": "sim-missing"}
    if "pin" in lowered and ("required" in lowered or "verify" in lowered):
        return {"sim_locked": True, "state": "locked", "unlock_required": "sim-pin"}
    return {}


@dataclass(frozen=True)
class UqmiOutputs:
    """What the modem round trip printed: the control node, each uqmi answer, and the wwan interface's status."""

    device: str = ""
    signal: str = ""
    serving: str = ""
    imei: str = ""
    iccid: str = ""
    wwan: str = ""


def parse_modem(outs: UqmiOutputs) -> OpenWrtModemReport:
    """The uqmi answers -> a report the Modem panel and the health line read like ModemManager's."""
    problems: list[str] = []
    signal, tech, signal_error = parse_signal_info(outs.signal)
    serving, serving_error = parse_serving_system(outs.serving)
    imei, imei_error = parse_identity(outs.imei)
    iccid, iccid_error = parse_identity(outs.iccid)
    errors = [e for e in (signal_error, serving_error, iccid_error) if e]
    fields: dict[str, Any] = {**serving}
    sim = _sim_state(errors)
    fields.update(sim)
    if iccid is not None:
        fields["sim_present"] = True
    wwan, _ = load_json(outs.wwan)
    if isinstance(wwan, dict) and wwan.get("up") is True and fields.get("state") == "registered":
        fields["state"] = "connected"  # netifd holds an address on the modem's interface
    if fields.get("registration") == "denied":
        problems.append("the network refused the SIM (registration denied): ask the operator whether the SIM's "
                        "subscription is active and allowed on this network")
    for what, error in (("signal", signal_error), ("registration", serving_error), ("IMEI", imei_error),
                        ("SIM (ICCID)", iccid_error)):
        if error and not (sim and what in ("signal", "registration")):
            problems.append(f"uqmi could not read the {what}: {error}")
    modem = Modem(path=outs.device or None, access_technologies=(tech,) if tech else (), imei=imei,
                  problems=tuple(problems), raw=_raw(outs), **fields)
    return OpenWrtModemReport(device=outs.device or None, modem=modem, signal=signal)


def _raw(outs: UqmiOutputs) -> str:
    parts = [("--get-signal-info", outs.signal), ("--get-serving-system", outs.serving),
             ("--get-iccid", outs.iccid)]
    return "\n".join(f"$ uqmi -d {outs.device or '?'} {flag}\n{text.strip()[:2000]}" for flag, text in parts)
