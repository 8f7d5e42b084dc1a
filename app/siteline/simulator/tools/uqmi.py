"""uqmi of the OpenWrt family: the same Quectel EC25 that the gateway's mmcli shows, spoken to over QMI.

`uqmi [-s] -d /dev/cdc-wdm0 --get-signal-info | --get-serving-system | --get-imei | --get-iccid | --get-imsi
| --get-data-status`. The figures come from the modem's random walk (dynamics.advance), so they move with the
signal scenarios; a disabled modem (`sim-scenario`, mmcli -d on a gateway) has no service. LTE SNR is printed
as the raw QMI figure (tenths of a dB, an integer), as openwrt/uqmi's commands-nas.c does. Each answer is one
JSON document indented with tabs; errors are JSON strings, as uqmi prints them.
"""

from __future__ import annotations

import json
from typing import Any

from siteline.simulator import dynamics, rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.mmcli import OPERATOR_CODE, OPERATOR_NAME

USAGE = ("No device given\nUsage: uqmi <options|actions>\nOptions:\n  --single, -s:  Print output as a single line "
         "(for scripts)\n  --device=NAME, -d NAME:  Set device name to NAME (required)\nActions:\n"
         "  --get-signal-info, --get-serving-system, --get-imei, --get-iccid, --get-imsi, --get-data-status")
ACTIONS = ("--get-signal-info", "--get-serving-system", "--get-imei", "--get-iccid", "--get-imsi",
           "--get-data-status")


def _answer(action: str, modem: dict[str, Any], connected: bool) -> Any:
    enabled = bool(modem.get("enabled", True))
    if action == "--get-signal-info":
        if not enabled:
            return {}
        return {"type": "lte", "rssi": round(float(modem["rssi"])), "rsrq": round(float(modem["rsrq"])),
                "rsrp": round(float(modem["rsrp"])), "snr": round(float(modem["snr"]) * 10)}
    if action == "--get-serving-system":
        if not enabled:
            return {"registration": "not_registered"}
        return {"registration": "registered", "plmn_mcc": int(OPERATOR_CODE[:3]), "plmn_mnc": int(OPERATOR_CODE[3:]),
                "plmn_description": OPERATOR_NAME, "roaming": False}
    if action == "--get-data-status":
        return "connected" if connected and enabled else "disconnected"
    key = action.removeprefix("--get-")
    return str(modem.get(key, ""))


def _options(argv: list[str]) -> tuple[str | None, list[str]] | str:
    device: str | None = None
    actions: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-s", "--single"):
            pass
        elif arg in ("-d", "--device", "-t", "--timeout") and i + 1 < len(argv):
            device = argv[i + 1] if arg in ("-d", "--device") else device
            i += 1
        elif arg.startswith("--device="):
            device = arg.split("=", 1)[1]
        elif arg in ACTIONS:
            actions.append(arg)
        else:
            return f"Invalid option: {arg}\n{USAGE}"
        i += 1
    return device, actions


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    parsed = _options(argv)
    if isinstance(parsed, str):
        return fail(parsed, 1)
    device, actions = parsed
    if not device or not actions:
        return fail(USAGE, 1)
    if not device.startswith("/dev/cdc-wdm") or not rootfs.device_file(state.root, device).exists():
        return fail("Failed to connect to service", 2)
    modem = dynamics.advance(state.root)
    connected = dynamics.network(state.root).get("cellular_enabled", True) is not False
    for action in actions:
        out(json.dumps(_answer(action, modem, connected), indent="\t") + "\n")
    return 0

