"""mmcli (ModemManager 1.20): -L, -m N [--output-keyvalue|--output-json], --signal-setup, --signal-get, -e/-d."""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from siteline.simulator import dynamics
from siteline.simulator.state import DeviceState
from siteline.simulator.store import update_json
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.mmcli_output import Field, as_json, human, keyvalue

MODEM_PATH = "/org/freedesktop/ModemManager1/Modem/0"
MANUFACTURER, MODEL = "Quectel", "EC25"
OPERATOR_NAME, OPERATOR_CODE = "Vodafone UK", "23415"
APN = "iot.northwind.example"
SYSFS_DEVICE = "/sys/devices/platform/soc@0/32c00000.bus/32e50000.usb/ci_hdrc.1/usb1/1-1"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    opts = _options(argv)
    if isinstance(opts, str):
        return fail(f"error: couldn't parse command line options: {opts}")
    form = opts.get("form", "human")
    if "list" in opts:
        return _list(form, state)
    if "modem" not in opts:
        return fail("error: no actions specified")
    if opts["modem"] not in ("0", "any", MODEM_PATH):
        return fail("error: couldn't find modem")
    modem = dynamics.advance(state.root)
    if "signal-setup" in opts:
        return _signal_setup(opts["signal-setup"], state)
    if "enable" in opts or "disable" in opts:
        return _enable(state, "enable" in opts)
    fields = _signal_fields(modem) if "signal-get" in opts else _modem_fields(modem, state)
    render = {"human": human, "keyvalue": keyvalue, "json": as_json}[form]
    out(render(fields))
    return 0


def _options(argv: list[str]) -> dict[str, str] | str:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-L", "--list-modems"):
            opts["list"] = ""
        elif arg in ("-m", "--modem") and i + 1 < len(argv):
            opts["modem"] = argv[i + 1]
            i += 1
        elif arg.startswith("--modem="):
            opts["modem"] = arg.split("=", 1)[1]
        elif arg in ("-J", "--output-json"):
            opts["form"] = "json"
        elif arg in ("-K", "--output-keyvalue"):
            opts["form"] = "keyvalue"
        elif arg.startswith("--signal-setup"):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 0 if "=" in arg else 1
            opts["signal-setup"] = value
        elif arg == "--signal-get":
            opts["signal-get"] = ""
        elif arg in ("-e", "--enable"):
            opts["enable"] = ""
        elif arg in ("-d", "--disable"):
            opts["disable"] = ""
        elif arg in ("-m", "--modem"):
            return f"Missing argument for {arg}"
        else:
            return f"Unknown option {arg}"
        i += 1
    return opts


def _list(form: str, state: DeviceState) -> int:
    if form == "json":
        out('{"modem-list":["' + MODEM_PATH + '"]}\n')
    elif form == "keyvalue":
        out(f"modem-list.length   : 1\nmodem-list.value[1] : {MODEM_PATH}\n")
    else:
        out(f"    {MODEM_PATH} [{MANUFACTURER}] {MODEL}\n")
    return 0


def _signal_setup(value: str, state: DeviceState) -> int:
    if not value.isdigit():
        return fail(f"error: invalid refresh rate value given: '{value}'")
    update_json(state.root, state.root / dynamics.MODEM_FILE, lambda m: m.__setitem__("signal_rate", int(value)))
    out("successfully setup signal quality information polling\n")
    return 0


def _enable(state: DeviceState, enable: bool) -> int:
    update_json(state.root, state.root / dynamics.MODEM_FILE, lambda m: m.__setitem__("enabled", enable))
    state.log(f"[{MODEM_PATH}] state changed ({'disabled -> enabled' if enable else 'connected -> disabled'})",
              "ModemManager")
    out(f"successfully {'enabled' if enable else 'disabled'} the modem\n")
    return 0


def _modem_fields(m: dict[str, Any], state: DeviceState) -> list[Field]:
    enabled = bool(m.get("enabled", True))
    quality = dynamics.signal_quality(float(m.get("rsrp", -140.0))) if enabled else 0
    imei = str(m.get("imei", "350000000000000"))
    g, s = "modem.generic.", "Status"
    fields = [
        Field("modem.dbus-path", "General", "path", MODEM_PATH),
        Field(g + "device-identifier", "General", "device id", hashlib.sha1(imei.encode()).hexdigest()),
        Field(g + "manufacturer", "Hardware", "manufacturer", MANUFACTURER),
        Field(g + "model", "Hardware", "model", MODEL),
        Field(g + "revision", "Hardware", "firmware revision", "EC25EFAR06A06M4G"),
        Field(g + "carrier-configuration", "Hardware", "carrier config", "default"),
        Field(g + "carrier-configuration-revision", "Hardware", "carrier config revision", None),
        Field(g + "hardware-revision", "Hardware", "h/w revision", "10000"),
        Field(g + "supported-capabilities", "Hardware", "supported", ["gsm-umts, lte"]),
        Field(g + "current-capabilities", "Hardware", "current", ["gsm-umts, lte"]),
        Field(g + "equipment-identifier", "Hardware", "equipment id", imei),
        Field(g + "device", "System", "device", SYSFS_DEVICE),
        Field(g + "physdev", "System", "physdev", SYSFS_DEVICE),
        Field(g + "drivers", "System", "drivers", ["option", "qmi_wwan"]),
        Field(g + "plugin", "System", "plugin", "quectel"),
        Field(g + "primary-port", "System", "primary port", "cdc-wdm0"),
        Field(g + "ports", "System", "ports", ["cdc-wdm0 (qmi)", "ttyUSB0 (qcdm)", "ttyUSB1 (gps)", "ttyUSB2 (at)",
                                                "ttyUSB3 (at)", "wwan0 (net)"]),
        Field(g + "own-numbers", "Numbers", "own", []),
        Field(g + "unlock-required", s, "lock", "sim-pin2"),
        Field(g + "unlock-retries", s, "unlock retries",
              ["sim-pin (3)", "sim-puk (10)", "sim-pin2 (3)", "sim-puk2 (10)"]),
        Field(g + "state", s, "state", "connected" if enabled else "disabled"),
        Field(g + "state-failed-reason", s, "failed reason", None),
        Field(g + "power-state", s, "power state", "on"),
        Field(g + "access-technologies", s, "access tech", ["lte"] if enabled else []),
        Field(g + "signal-quality.value", s, "signal quality", str(quality), shown=f"{quality}% (recent)"),
        Field(g + "signal-quality.recent", s, None, "yes"),
        Field(g + "supported-modes", "Modes", "supported",
              ["allowed: 2g; preferred: none", "allowed: 3g; preferred: none", "allowed: 4g; preferred: none",
               "allowed: 2g, 3g, 4g; preferred: 4g"], multiline=True),
        Field(g + "current-modes", "Modes", "current", "allowed: 2g, 3g, 4g; preferred: 4g"),
        Field(g + "supported-bands", "Bands", "supported",
              ["egsm", "dcs", "utran-1", "utran-8", "eutran-1", "eutran-3", "eutran-7", "eutran-8", "eutran-20"]),
        Field(g + "current-bands", "Bands", "current",
              ["egsm", "dcs", "utran-1", "utran-8", "eutran-1", "eutran-3", "eutran-7", "eutran-8", "eutran-20"]),
        Field(g + "supported-ip-families", "IP", "supported", ["ipv4", "ipv6", "ipv4v6"]),
        *_three_gpp_fields(m, enabled, imei),
        *(Field("modem.cdma." + k, "CDMA", None, None) for k in
          ("meid", "esn", "sid", "nid", "cdma1x-registration-state", "evdo-registration-state", "activation-state")),
        Field(g + "sim", "SIM", "primary sim path", "/org/freedesktop/ModemManager1/SIM/0"),
        Field(g + "sim-slots", "SIM", "sim slot paths", []),
        Field(g + "bearers", "Bearer", "paths", ["/org/freedesktop/ModemManager1/Bearer/0"] if enabled else []),
    ]
    return fields


def _three_gpp_fields(m: dict[str, Any], enabled: bool, imei: str) -> list[Field]:
    p, s = "modem.3gpp.", "3GPP"
    return [
        Field(p + "imei", s, "imei", imei),
        Field(p + "enabled-locks", s, "enabled locks", ["fixed-dialing"]),
        Field(p + "operator-code", s, "operator id", OPERATOR_CODE if enabled else None),
        Field(p + "operator-name", s, "operator name", OPERATOR_NAME if enabled else None),
        Field(p + "registration-state", s, "registration", "home" if enabled else "idle"),
        Field(p + "packet-service-state", s, "packet service state", "attached" if enabled else "detached"),
        Field(p + "pco", s, "pco", None),
        Field(p + "eps.ue-mode-operation", "3GPP EPS", "ue mode of operation", "csps-2"),
        Field(p + "eps.initial-bearer.dbus-path", "3GPP EPS", "initial bearer path",
              "/org/freedesktop/ModemManager1/Bearer/1"),
        Field(p + "eps.initial-bearer.settings.apn", "3GPP EPS", "initial bearer apn", APN),
        Field(p + "eps.initial-bearer.settings.ip-type", "3GPP EPS", "initial bearer ip type", "ipv4"),
        Field(p + "eps.initial-bearer.settings.user", "3GPP EPS", "initial bearer user", None),
        Field(p + "eps.initial-bearer.settings.password", "3GPP EPS", "initial bearer password", None),
    ]


def _fading(m: dict[str, Any], key: str, rate: int) -> float:
    """Fast fading between the simulator's 5 s steps: a modem polled every second (antenna alignment)
    reads a slightly different figure each time, as a real one does; the same within one polling period."""
    if not 0 < rate < dynamics.STEP_SECONDS:
        return 0.0
    period = int(time.time() // rate)
    return random.Random(f"{m.get('seed', 0)}:{key}:{period}").gauss(0.0, 0.8)


def _signal_fields(m: dict[str, Any]) -> list[Field]:
    rate = int(m.get("signal_rate", 0))
    live = rate > 0 and bool(m.get("enabled", True))

    def val(key: str, unit: str) -> dict[str, Any]:
        if not live or key not in m:
            return {"value": None}
        text = f"{float(m[key]) + _fading(m, key, rate):.2f}"
        return {"value": text, "shown": f"{text} {unit}"}

    sig = "modem.signal."
    fields = [
        Field(sig + "refresh.rate", "Signal", "refresh rate", str(rate), shown=f"{rate} seconds"),
        Field(sig + "threshold.rssi", "Signal", "rssi threshold", None),
        Field(sig + "threshold.error-rate", "Signal", "error rate threshold", None),
        *(Field(sig + k, "CDMA1x" if "cdma" in k else "EV-DO", None, None) for k in
          ("cdma1x.rssi", "cdma1x.ecio", "evdo.rssi", "evdo.ecio", "evdo.sinr", "evdo.io")),
        Field(sig + "gsm.rssi", "GSM", "rssi", None),
        Field(sig + "gsm.error-rate", "GSM", "error rate", None),
        Field(sig + "umts.rssi", "UMTS", "rssi", None),
        Field(sig + "umts.rscp", "UMTS", "rscp", None),
        Field(sig + "umts.ecio", "UMTS", "ecio", None),
        Field(sig + "umts.error-rate", "UMTS", "error rate", None),
        Field(sig + "lte.rssi", "LTE", "rssi", **val("rssi", "dBm")),
        Field(sig + "lte.rsrq", "LTE", "rsrq", **val("rsrq", "dB")),
        Field(sig + "lte.rsrp", "LTE", "rsrp", **val("rsrp", "dBm")),
        Field(sig + "lte.snr", "LTE", "s/n", **val("snr", "dB")),
        Field(sig + "lte.error-rate", "LTE", "error rate", None),
        Field(sig + "5g.rsrq", "5G", "rsrq", None),
        Field(sig + "5g.rsrp", "5G", "rsrp", None),
        Field(sig + "5g.snr", "5G", "s/n", None),
        Field(sig + "5g.error-rate", "5G", "error rate", None),
    ]
    return fields
