"""Parsers for an OpenWrt router's links: netifd's `ubus call network.interface dump` and `mwan3 status`.

They take anything and never raise: what could not be read becomes words in the Network's ``problems``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from siteline.api import DefaultRoute, NetConnection, NetDevice, Network, derive_network

from .parsers import MAX_INPUT, as_dict, as_int, load_json, num, string_of

_CELLULAR_PROTOS = {"qmi", "mbim", "ncm", "3g", "wwan", "modemmanager", "directip", "uqmi"}
_CELLULAR_IFACES = ("wwan", "rmnet", "ppp", "usb", "mhi")
_UPLINK_PROTOS = {"dhcp", "dhcpv6", "pppoe", "pppoa", "pptp", "l2tp", *_CELLULAR_PROTOS}
_MWAN3_USABLE = ("online", "disabled")  # "disabled": mwan3 does not track it, so it does not veto it either


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
    default_v4: bool  # the default route is IPv4's 0.0.0.0/0 (not only IPv6's ::/0)
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


def _default_route(routes: Any) -> tuple[bool, str | None, bool]:
    """(has a default route, its gateway, it is IPv4's): an IPv6-only uplink (wan6, ::/0) is still a way out."""
    found: tuple[bool, str | None, bool] = (False, None, False)
    for route in routes if isinstance(routes, list) else []:
        r = as_dict(route)
        if r.get("mask") != 0 or r.get("target") not in ("0.0.0.0", "::"):
            continue
        if r.get("target") == "0.0.0.0":
            return True, string_of(r.get("nexthop")), True
        found = found if found[0] else (True, string_of(r.get("nexthop")), False)
    return found


def _address(item: dict[str, Any]) -> str | None:
    """The first IPv4 address, else the first IPv6 one (an IPv6-only wan6), as ADDRESS/MASK."""
    for key, full in (("ipv4-address", 32), ("ipv6-address", 128)):
        found = [as_dict(a) for a in item.get(key) or [] if isinstance(a, dict) and string_of(a.get("address"))]
        if found:
            return f"{found[0]['address']}/{found[0].get('mask', full)}"
    return None


def _interface(item: dict[str, Any]) -> Interface | None:
    name = string_of(item.get("interface"))
    if name is None:
        return None
    has_default, gateway, default_v4 = _default_route(item.get("route"))
    errors = tuple(str(as_dict(e).get("code") or e)[:80] for e in item.get("errors") or [] if e)
    uptime = num(item.get("uptime"))
    return Interface(
        name=name, proto=string_of(item.get("proto")) or "none", up=item.get("up") is True,
        device=string_of(item.get("l3_device")) or string_of(item.get("device")),
        autostart=item.get("autostart") if isinstance(item.get("autostart"), bool) else None,
        metric=as_int(item.get("metric")) or 0, uptime=uptime, address=_address(item), default_gateway=gateway,
        has_default=has_default, default_v4=default_v4, errors=errors)


def parse_interfaces(text: str) -> tuple[list[Interface], str | None]:
    """`ubus call network.interface dump` -> the interfaces, loopback left out (IPv6 ones kept: wan6 may be the
    only way out)."""
    value, why = load_json(text)
    items = as_dict(value).get("interface")
    if not isinstance(items, list):
        return [], f"could not read `ubus call network.interface dump`: {why or 'no interface list in it'}"
    found = [i for i in (_interface(item) for item in items if isinstance(item, dict)) if i is not None]
    return [i for i in found if i.kind != "loopback"], None


def _state(iface: Interface) -> str:
    if iface.up:
        return "connected"
    return "unavailable" if iface.errors else "disconnected"


def _rank(iface: Interface) -> tuple[bool, bool, bool, bool]:
    return (iface.up and iface.has_default, iface.up, iface.default_v4, iface.address is not None)


def _per_device(interfaces: list[Interface]) -> list[Interface]:
    """One interface per L3 device (wan and wan6 share eth1): the one carrying traffic speaks for the device."""
    best: dict[str, Interface] = {}
    for iface in interfaces:
        key = iface.device or iface.name
        if key not in best or _rank(iface) > _rank(best[key]):
            best[key] = iface
    return list(best.values())


def _vetoed(iface: Interface, mwan3: Mwan3 | None) -> bool:
    """mwan3's tracking finds no way out through it: its default route is there but carries nothing."""
    return mwan3 is not None and mwan3.states.get(iface.name, "online") not in _MWAN3_USABLE


def parse_network(dump_text: str, mwan3_text: str = "", now: datetime | None = None) -> Network:
    """netifd's interfaces (and mwan3's choice, when it runs) -> the shared Network snapshot."""
    interfaces, error = parse_interfaces(dump_text)
    problems = [error] if error else []
    mwan3 = parse_mwan3(mwan3_text)
    # The LAN bridge is listed (it is a device) but plays no uplink role: "bridge" is neither wired nor cellular.
    devices = tuple(NetDevice(name=i.device or i.name, type=i.kind if i.uplink(mwan3) else "bridge", state=_state(i),
                              connection=i.name if i.up else None, ip_iface=i.device)
                    for i in _per_device(interfaces))
    connections = tuple(NetConnection(name=i.name, uuid=None, type=i.kind, device=i.device if i.up else None,
                                      autoconnect=i.autostart, priority=None, active=i.up)
                        for i in interfaces if i.uplink(mwan3))
    usable = [i for i in interfaces if i.up and i.has_default]
    routes = [i for i in usable if not _vetoed(i, mwan3)]
    active = mwan3.active() if mwan3 else None
    # mwan3 steers traffic by policy routing, not by metric: its choice goes first; IPv4's way out before IPv6's.
    routes.sort(key=lambda i: (i.name != active, not i.default_v4, i.metric))
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
    network = derive_network(devices, connections, default_routes if not error else None, since, tuple(problems),
                             raw)
    if usable and not routes:  # netifd has ways out, mwan3 finds none of them working
        names = ", ".join(i.name for i in usable)
        network = replace(network, summary=network.summary.replace(
            "offline: no default route", f"offline: mwan3 tracking finds every uplink offline ({names})", 1))
    return network
