"""The device's links and routes as NetworkManager and the kernel would report them.

eth0 (wired, primary, route metric 100) and the cellular modem cdc-wdm0 with its IP interface
wwan0 (backup, metric 700) are both normally up, so the lower metric wins; when the wired link
fails, only wwan0 keeps a default route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from siteline.simulator import dynamics
from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json


@dataclass
class Link:
    index: int
    name: str
    kind: str  # ip link type
    mac: str
    up: bool
    carrier: bool
    mtu: int
    addr4: str | None = None  # "a.b.c.d/len"
    brd: str | None = None
    gateway: str | None = None
    metric: int = 0
    flags: list[str] = field(default_factory=list)


@dataclass
class NetView:
    links: list[Link]
    modem_enabled: bool
    wired_failed: bool
    extra_routes: list[str]
    # When each link last went up or down (epoch seconds; 0 = not since the device was made): NetworkManager
    # stamps a profile's TIMESTAMP at both moments.
    wired_changed_at: float = 0.0
    cellular_changed_at: float = 0.0

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def default_routes(self) -> list[Link]:
        found = [link for link in self.links if link.gateway and link.up and link.carrier and link.addr4]
        return sorted(found, key=lambda link: link.metric)


def view(state: DeviceState) -> NetView:
    net = state.network()
    modem = read_json(state.root / dynamics.MODEM_FILE)
    wired_ok = not net.get("wired_failed")
    cell_ok = bool(net.get("cellular_enabled", True)) and bool(modem.get("enabled", True))
    seed = state.config.seed
    mac = f"00:1f:7b:{seed >> 16 & 0xFF:02x}:{seed >> 8 & 0xFF:02x}:{seed & 0xFF:02x}"
    host = 20 + seed % 200
    links = [
        Link(1, "lo", "loopback", "00:00:00:00:00:00", True, True, 65536, "127.0.0.1/8"),
        Link(2, "eth0", "ether", mac, True, wired_ok, 1500,
             f"192.168.10.{host}/24" if wired_ok else None, "192.168.10.255", "192.168.10.1", 100),
        Link(3, "can0", "can", "", False, False, 16),
        Link(4, "wwan0", "none", "", cell_ok, cell_ok, 1430,
             "10.64.12.201/30" if cell_ok else None, "10.64.12.203", "10.64.12.202", 700),
    ]
    extra = read_json(state.root / "admin" / "ip.json").get("routes", [])
    wired_at, cell_at = _changed_at(state, net)
    return NetView(links, cell_ok, not wired_ok, [str(r) for r in extra] if isinstance(extra, list) else [],
                   wired_at, cell_at)


def _changed_at(state: DeviceState, net: dict[str, Any]) -> tuple[float, float]:
    """When the wired and the cellular link last changed: the times the scenario recorded, else when network.json
    (which only the link scenarios write) was last written — exact while one link at a time is switched."""
    try:
        written = (state.root / dynamics.NETWORK_FILE).stat().st_mtime
    except OSError:
        written = 0.0
    wired = net.get("wired_changed_at", written)
    cellular = net.get("cellular_changed_at", written if net.get("cellular_enabled", True) is False else 0.0)
    return (float(wired) if isinstance(wired, int | float) else written,
            float(cellular) if isinstance(cellular, int | float) else 0.0)


def nm_devices(v: NetView) -> list[dict[str, Any]]:
    """NetworkManager's devices: the modem appears as cdc-wdm0 (type gsm) with IP interface wwan0."""
    eth = v.link("eth0")
    wired = bool(eth and eth.carrier)
    rows: list[dict[str, Any]] = [
        {"DEVICE": "eth0", "TYPE": "ethernet", "STATE": "connected" if wired else "unavailable",
         "CONNECTION": "Wired connection 1" if wired else "", "IP-IFACE": "eth0", "STATE_CODE": 100 if wired else 20,
         "GATEWAY": eth.gateway if wired and eth else "", "ADDRESS": eth.addr4 if wired and eth else ""},
        {"DEVICE": "cdc-wdm0", "TYPE": "gsm", "STATE": "connected" if v.modem_enabled else "unavailable",
         "CONNECTION": "cellular" if v.modem_enabled else "", "IP-IFACE": "wwan0",
         "STATE_CODE": 100 if v.modem_enabled else 20, "GATEWAY": "10.64.12.202" if v.modem_enabled else "",
         "ADDRESS": "10.64.12.201/30" if v.modem_enabled else ""},
        {"DEVICE": "lo", "TYPE": "loopback", "STATE": "connected (externally)", "CONNECTION": "lo",
         "IP-IFACE": "lo", "STATE_CODE": 100, "GATEWAY": "", "ADDRESS": "127.0.0.1/8"},
        {"DEVICE": "can0", "TYPE": "can", "STATE": "unmanaged", "CONNECTION": "", "IP-IFACE": "",
         "STATE_CODE": 10, "GATEWAY": "", "ADDRESS": ""},
    ]
    uuids = {p[0]: p[1] for p in _PROFILES}
    for number, row in enumerate(rows, 1):
        connected = int(row["STATE_CODE"]) == 100
        managed = row["STATE"] != "unmanaged"
        # Connectivity as NetworkManager's per-device check reports it; no IPv6 is configured here.
        row["IP4-CONNECTIVITY"] = ("none" if row["DEVICE"] == "lo" else "full") if connected else \
            "none" if managed else "unknown"
        row["IP6-CONNECTIVITY"] = "none" if managed else "unknown"
        row["DBUS-PATH"] = f"/org/freedesktop/NetworkManager/Devices/{number}"
        name = str(row["CONNECTION"])
        row["CON-UUID"] = uuids.get(name, "")
        row["CON-PATH"] = f"/org/freedesktop/NetworkManager/ActiveConnection/{number}" if name else ""
    return rows


# NetworkManager's profiles: (NAME, UUID, TYPE, the device it runs on when active, AUTOCONNECT, PRIORITY).
_PROFILES = (
    ("Wired connection 1", "3f1c2a4e-8b1d-4c55-9a7e-1f2b3c4d5e6f", "802-3-ethernet", "eth0", "yes", "100"),
    ("cellular", "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "gsm", "cdc-wdm0", "yes", "10"),
    ("lo", "0e7f6d5c-4b3a-4291-8f0e-d1c2b3a49586", "loopback", "lo", "no", "0"),
)
TIMESTAMP_PERIOD = 300  # NetworkManager refreshes an active profile's timestamp every 5 minutes


def profile_timestamp(active: bool, changed_at: float, now: float, booted_at: float) -> int:
    """A profile's TIMESTAMP as NetworkManager keeps it (nm_active_connection_set_state + the periodic refresh).

    Stamped when it becomes activated and when it stops being activated; while active, refreshed every
    TIMESTAMP_PERIOD. So an inactive profile keeps the moment it went down (or the boot, if it never changed).
    """
    if not active:
        return int(changed_at or booted_at)
    activated = max(booted_at, changed_at)
    refreshes = max(0.0, now - activated) // TIMESTAMP_PERIOD
    return int(activated + refreshes * TIMESTAMP_PERIOD)


def nm_connections(v: NetView, now: float, booted_at: float) -> list[dict[str, Any]]:
    """`nmcli connection show` rows: an inactive profile has no DEVICE, no STATE and ACTIVE "no", as in nmcli 1.42."""
    active_on = {d["DEVICE"] for d in nm_devices(v) if d["CONNECTION"]}
    changed = {"eth0": v.wired_changed_at, "cdc-wdm0": v.cellular_changed_at}
    rows = []
    for number, (name, uuid, kind, device, autoconnect, priority) in enumerate(_PROFILES, 1):
        active = device in active_on
        active_path = f"/org/freedesktop/NetworkManager/ActiveConnection/{number}" if active else ""
        stamp = profile_timestamp(active, changed.get(device, 0.0), now, booted_at)
        rows.append({"NAME": name, "UUID": uuid, "TYPE": kind, "DEVICE": device if active else "",
                     "AUTOCONNECT": autoconnect, "AUTOCONNECT-PRIORITY": priority, "ACTIVE": "yes" if active else "no",
                     "STATE": "activated" if active else "", "TIMESTAMP": str(stamp),
                     # nmcli: strftime("%c", localtime()), "never" for 0 (nmc_generic_info_type ..._TIMESTAMP_REAL)
                     "TIMESTAMP-REAL": time.strftime("%c", time.localtime(stamp)) if stamp else "never",
                     "READONLY": "no",
                     "DBUS-PATH": f"/org/freedesktop/NetworkManager/Settings/{number}", "ACTIVE-PATH": active_path,
                     "SLAVE": "", "FILENAME": f"/etc/NetworkManager/system-connections/{name}.nmconnection"})
    return sorted(rows, key=lambda row: row["ACTIVE"] != "yes")  # nmcli lists active profiles first
