"""ubus and uci of the OpenWrt family: procd's `system` object, netifd's interfaces, the network config.

`ubus call system board|info`, `ubus call network.interface dump`, `ubus call network.interface.NAME status`,
`ubus list`; `uci [-q] get|show network...`. The links are the gateway's (tools/netmodel.py) renamed as
netifd names them: wan on eth0, wwan (proto qmi, /dev/cdc-wdm0) on wwan0, lan on br-lan; so a wired failure or
a disabled modem shows here as it does in `ip route`. Output is ubus's: JSON indented with tabs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from siteline.simulator import dynamics, family, rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.netmodel import Link, NetView, view

UBUS_USAGE = "Usage: ubus [<options>] <command> [arguments...]\nCommands:\n - list [<path>]\n" \
             " - call <path> <method> [<message>]"
NOT_FOUND, INVALID = 4, 2  # ubus exits with the UBUS_STATUS_* of the failed call
UCI: dict[str, str] = {
    "network.lan": "interface", "network.lan.device": "br-lan", "network.lan.proto": "static",
    "network.lan.ipaddr": "192.168.1.1", "network.lan.netmask": "255.255.255.0",
    "network.wan": "interface", "network.wan.device": "eth0", "network.wan.proto": "dhcp",
    "network.wan.metric": "100",
    "network.wwan": "interface", "network.wwan.device": f"/dev/{family.QMI_NODE}", "network.wwan.proto": "qmi",
    "network.wwan.apn": "iot.northwind.example", "network.wwan.pdptype": "ipv4", "network.wwan.metric": "700",
}


def board(state: DeviceState) -> dict[str, Any]:
    return {
        "kernel": rootfs.KERNEL_RELEASE, "hostname": state.hostname(), "system": "ARMv8 Processor rev 4",
        "model": family.OPENWRT_MODEL, "board_name": family.OPENWRT_BOARD, "rootfs_type": "squashfs",
        "release": {"distribution": "OpenWrt", "version": family.OPENWRT_VERSION,
                    "revision": family.OPENWRT_REVISION, "target": family.OPENWRT_TARGET,
                    "description": f"OpenWrt {family.OPENWRT_VERSION} {family.OPENWRT_REVISION}"},
    }


def info(state: DeviceState) -> dict[str, Any]:
    now = time.time()
    load = dynamics.cpu_load(state.config.seed, now)
    return {
        "localtime": int(now), "uptime": int(state.uptime(now)),
        "load": [int(v * 65536) for v in load],  # procd: fixed point, SI_LOAD_SHIFT 16
        "memory": {"total": 508559360, "free": 371171328, "shared": 1437696, "buffered": 0,
                   "available": 362602496, "cached": 28336128},
        "root": {"total": 7744, "free": 6364, "used": 1380, "avail": 6364},
        "tmp": {"total": 248320, "free": 246908, "used": 1412, "avail": 246908},
        "swap": {"total": 0, "free": 0},
    }


def _interface(name: str, proto: str, device: str, link: Link | None, since: float, now: float) -> dict[str, Any]:
    up = bool(link and link.up and link.carrier and link.addr4)
    doc: dict[str, Any] = {"interface": name, "up": up, "pending": False, "available": True, "autostart": True,
                           "dynamic": False}
    if up and link is not None:
        doc.update(uptime=int(max(0.0, now - since)), l3_device=link.name)
    doc.update(proto=proto, device=device, updated=["addresses", "routes"] if up else [],
               metric=link.metric if link else 0, dns_metric=0, delegation=True)
    address, _, mask = (link.addr4 or "").partition("/") if up and link else ("", "", "")
    doc["ipv4-address"] = [{"address": address, "mask": int(mask or 32)}] if address else []
    doc.update({"ipv6-address": [], "ipv6-prefix": [], "ipv6-prefix-assignment": []})
    gateway = link.gateway if up and link else None
    doc["route"] = [{"target": "0.0.0.0", "mask": 0, "nexthop": gateway, "source": f"{address}/32"}] \
        if gateway else []
    doc.update({"dns-server": [gateway] if gateway else [], "dns-search": [], "neighbors": [], "data": {}})
    return doc


def interfaces(state: DeviceState) -> list[dict[str, Any]]:
    now = time.time()
    booted = now - state.uptime(now)
    v: NetView = view(state)
    lan = Link(90, "br-lan", "bridge", "", True, True, 1500, "192.168.1.1/24")
    lo = v.link("lo")
    found = [
        _interface("lan", "static", "br-lan", lan, booted, now),
        _interface("loopback", "static", "lo", lo, booted, now),
        _interface("wan", "dhcp", "eth0", v.link("eth0"), max(booted, v.wired_changed_at), now),
        _interface("wwan", "qmi", f"/dev/{family.QMI_NODE}", v.link("wwan0"), max(booted, v.cellular_changed_at),
                   now),
    ]
    return found


def _call(path: str, method: str, state: DeviceState) -> dict[str, Any] | int:
    if path == "system" and method == "board":
        return board(state)
    if path == "system" and method == "info":
        return info(state)
    if path == "network.interface" and method == "dump":
        return {"interface": interfaces(state)}
    if path.startswith("network.interface."):
        wanted = path.split(".", 2)[2]
        found = next((i for i in interfaces(state) if i["interface"] == wanted), None)
        if found is None:
            return NOT_FOUND
        if method != "status":
            return 3  # UBUS_STATUS_METHOD_NOT_FOUND
        return {k: v for k, v in found.items() if k != "interface"}
    if path in ("system", "network.interface"):
        return 3
    return NOT_FOUND


_OBJECTS = ("network", "network.device", "network.interface", "network.interface.lan", "network.interface.loopback",
            "network.interface.wan", "network.interface.wwan", "service", "system", "uci")
_STATUS_WORDS = {2: "Invalid argument", 3: "Method not found", 4: "Not found"}


def ubus(argv: list[str], state: DeviceState) -> int:
    args = [a for a in argv if a not in ("-v", "-S")]
    while args[:1] == ["-t"] and len(args) > 1:
        args = args[2:]  # -t TIMEOUT: every answer here is immediate
    if not args:
        return fail(UBUS_USAGE, 1)
    if args[0] == "list":
        prefix = args[1] if len(args) > 1 else ""
        names = [o for o in _OBJECTS if not prefix or o == prefix or o.startswith(prefix.rstrip("*"))]
        out("".join(n + "\n" for n in names))
        return 0 if names else NOT_FOUND
    if args[0] != "call" or len(args) < 3:
        return fail(UBUS_USAGE, 1)
    if len(args) > 3:
        try:
            json.loads(args[3])
        except ValueError:
            return fail("Failed to parse message data", 1)
    answer = _call(args[1], args[2], state)
    if isinstance(answer, int):
        return fail(f"Command failed: {_STATUS_WORDS.get(answer, 'Unknown error')}", answer)
    out(json.dumps(answer, indent="\t") + "\n")
    return 0


def uci(argv: list[str], state: DeviceState) -> int:
    quiet = "-q" in argv
    args = [a for a in argv if a != "-q"]
    if not args or args[0] not in ("get", "show"):
        return fail("Usage: uci [<options>] <command> [<arguments>]\n\nCommands:\n\tget     <config>.<section>"
                    "[.<option>]\n\tshow    [<config>[.<section>[.<option>]]]", 1)
    config = {**UCI, "system.@system[0]": "system", "system.@system[0].hostname": state.hostname()}
    key = args[1] if len(args) > 1 else ""
    if args[0] == "get" and key in config:
        out(config[key] + "\n")
        return 0
    shown = [k for k in config if not key or k == key or k.startswith(key + ".")]
    if args[0] == "show" and shown:
        out("".join(f"{k}={config[k]}\n" if config[k] in ("interface", "system") else f"{k}='{config[k]}'\n"
                    for k in shown))
        return 0
    return 1 if quiet else fail("uci: Entry not found", 1)


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    return uci(argv, state) if tool == "uci" else ubus(argv, state)
