"""Parsers for an OpenWrt router's links: netifd's `ubus call network.interface dump` and `mwan3 status`.

They take anything and never raise: what could not be read becomes words in the Network's ``problems``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from siteline.api import DefaultRoute, NetConnection, NetDevice, Network, derive_network

from .parsers import MAX_INPUT, as_dict, as_int, load_json, num, string_of

_CELLULAR_PROTOS = {"qmi", "mbim", "ncm", "3g", "wwan", "modemmanager", "directip", "uqmi"}
_CELLULAR_IFACES = ("wwan", "rmnet", "ppp", "usb", "mhi")
_UPLINK_PROTOS = {"dhcp", "pppoe", "pppoa", "pptp", "l2tp", *_CELLULAR_PROTOS}


@dataclass(frozen=True)
class Mwan3:
    """`mwan3 status`: each interface's state ("online", "offline", "disabled" ...) and the policies' members."""

    states: dict[str, str]
    policies: dict[str, tuple[str, ...]]

    def active(self) -> str | None:
        """The interface traffic leaves by: the first member of the first policy that has one."""
        return next((members[0] for members in self.policies.values() if members), None)


_MWAN3_IFACE = re.compile(r"^\s*interface (\S+) is (\w+)")
_MWAN3_MEMBER = re.compile(r"^\s+(\S+) \((\d+)%\)")


def parse_mwan3(text: str) -> Mwan3 | None:
    """mwan3 2.x `status`: "interface wan is online ..." lines, then "Current ipv4 policies:" blocks."""
    states: dict[str, str] = {}
    policies: dict[str, tuple[str, ...]] = {}
    section = ""
    policy: str | None = None
    for line in text[:MAX_INPUT].splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            heading = line.strip().rstrip(":")
            if heading.lower().startswith(("interface status", "current ipv4 policies", "current ipv6 policies")):
                section, policy = heading.lower(), None
                continue
            if section == "current ipv4 policies":
                policy = heading
                policies[policy] = ()
                continue
            section, policy = heading.lower(), None
        iface = _MWAN3_IFACE.match(line)
        member = _MWAN3_MEMBER.match(line)
        if section.startswith("interface status") and iface:
            states[iface.group(1)] = iface.group(2)
        elif policy is not None and member and int(member.group(2)) > 0:
            policies[policy] = (*policies[policy], member.group(1))
    return Mwan3(states, policies) if states or policies else None


@dataclass(frozen=True)
class Interface:
    """One netifd interface from `ubus call network.interface dump`."""

    name: str
    proto: str
    up: bool
    device: str | None  # the L3 device carrying IP (wwan0, eth1, br-lan)
    autostart: bool | None
    metric: int
    uptime: float | None
    address: str | None
    default_gateway: str | None
    has_default: bool
    errors: tuple[str, ...]

    def uplink(self, mwan3: Mwan3 | None) -> bool:
        """A way out (wan, wwan), not the LAN: it has (or, down, would get) a default route, or mwan3 tracks it."""
        return (self.has_default or self.proto in _UPLINK_PROTOS or self.kind == "gsm"
                or (mwan3 is not None and self.name in mwan3.states))

    @property
    def kind(self) -> str:
        """nmcli's device type words, so the shared Network logic knows which link is which."""
        dev = self.device or ""
        if self.proto in _CELLULAR_PROTOS or dev.startswith(_CELLULAR_IFACES):
            return "gsm"
        if dev == "lo":
            return "loopback"
        if dev.startswith(("wlan", "phy", "wl")):
            return "wifi"
        return "ethernet"


def _default_route(routes: Any) -> tuple[bool, str | None]:
    for route in routes if isinstance(routes, list) else []:
        r = as_dict(route)
        if r.get("target") == "0.0.0.0" and r.get("mask") == 0:
            return True, string_of(r.get("nexthop"))
    return False, None


def _interface(item: dict[str, Any]) -> Interface | None:
    name = string_of(item.get("interface"))
    if name is None:
        return None
    addresses = [as_dict(a) for a in item.get("ipv4-address") or [] if isinstance(a, dict)]
    first = addresses[0] if addresses else {}
    address = f"{first['address']}/{first.get('mask', 32)}" if string_of(first.get("address")) else None
    has_default, gateway = _default_route(item.get("route"))
    errors = tuple(str(as_dict(e).get("code") or e)[:80] for e in item.get("errors") or [] if e)
    uptime = num(item.get("uptime"))
    return Interface(
        name=name, proto=string_of(item.get("proto")) or "none", up=item.get("up") is True,
        device=string_of(item.get("l3_device")) or string_of(item.get("device")),
        autostart=item.get("autostart") if isinstance(item.get("autostart"), bool) else None,
        metric=as_int(item.get("metric")) or 0, uptime=uptime, address=address, default_gateway=gateway,
        has_default=has_default, errors=errors)


def parse_interfaces(text: str) -> tuple[list[Interface], str | None]:
    """`ubus call network.interface dump` -> the IPv4-relevant interfaces (loopback and DHCPv6 ones left out)."""
    value, why = load_json(text)
    items = as_dict(value).get("interface")
    if not isinstance(items, list):
        return [], f"could not read `ubus call network.interface dump`: {why or 'no interface list in it'}"
    found = [i for i in (_interface(item) for item in items if isinstance(item, dict)) if i is not None]
    return [i for i in found if i.kind != "loopback" and i.proto not in ("dhcpv6", "6in4", "6rd")], None


def _state(iface: Interface) -> str:
    if iface.up:
        return "connected"
    return "unavailable" if iface.errors else "disconnected"


def parse_network(dump_text: str, mwan3_text: str = "", now: datetime | None = None) -> Network:
    """netifd's interfaces (and mwan3's choice, when it runs) -> the shared Network snapshot."""
    interfaces, error = parse_interfaces(dump_text)
    problems = [error] if error else []
    mwan3 = parse_mwan3(mwan3_text)
    # The LAN bridge is listed (it is a device) but plays no uplink role: "bridge" is neither wired nor cellular.
    devices = tuple(NetDevice(name=i.device or i.name, type=i.kind if i.uplink(mwan3) else "bridge", state=_state(i),
                              connection=i.name if i.up else None, ip_iface=i.device) for i in interfaces)
    connections = tuple(NetConnection(name=i.name, uuid=None, type=i.kind, device=i.device if i.up else None,
                                      autoconnect=i.autostart, priority=None, active=i.up)
                        for i in interfaces if i.uplink(mwan3))
    routes = [i for i in interfaces if i.up and i.has_default]
    active = mwan3.active() if mwan3 else None
    # mwan3 steers traffic by policy routing, not by metric: its choice goes first.
    routes.sort(key=lambda i: (i.name != active, i.metric))
    default_routes = tuple(DefaultRoute(dev=i.device, gateway=i.default_gateway, metric=i.metric, proto=i.proto)
                           for i in routes)
    for iface in interfaces:
        if iface.errors:
            problems.append(f"interface {iface.name} reports errors: {', '.join(iface.errors)}")
        if mwan3 and mwan3.states.get(iface.name, "online") not in ("online", "disabled"):
            problems.append(f"mwan3 reports interface {iface.name} {mwan3.states[iface.name]}")
    since = None
    if routes and routes[0].uptime is not None and routes[0].kind == "gsm":
        since = (now or datetime.now().astimezone()) - timedelta(seconds=routes[0].uptime)
    raw = dump_text[:8192] + (f"\n$ mwan3 status\n{mwan3_text[:4096]}" if mwan3_text.strip() else "")
    return derive_network(devices, connections, default_routes if not error else None, since, tuple(problems), raw)
