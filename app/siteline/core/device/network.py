"""The Network snapshot: NetworkManager's devices and connections, the default route, and which link carries traffic.

``derive_network`` turns the parsed parts into one answer, in ``Network.summary``: "on wired primary
('Wired connection 1' on eth0)" or "running on cellular backup ('cellular' on cdc-wdm0) since 14:02; wired eth0
is unavailable". It lives here, not in a plugin, so any network plugin (NetworkManager, connman, networkd) can
share it. Unknown values are None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

LinkKind = Literal["wired", "cellular", "wifi", "loopback", "other"]

# nmcli's device TYPE (nm_device_get_type_description) and connection TYPE (setting name, or the
# short alias nmcli prints outside terse mode) -> the role a link can play on an edge device.
_KINDS: dict[str, LinkKind] = {
    "ethernet": "wired",
    "802-3-ethernet": "wired",
    "gsm": "cellular",
    "cdma": "cellular",
    "modem": "cellular",
    "wifi": "wifi",
    "802-11-wireless": "wifi",
    "loopback": "loopback",
}


# Kernel names of a modem's IP interface: QMI/MBIM (wwan), PPP, Qualcomm rmnet, MHI, cdc_ether/RNDIS (usb).
_CELLULAR_IFACES = ("wwan", "ppp", "rmnet", "mhi", "usb")


def link_kind(nm_type: str) -> LinkKind:
    return _KINDS.get(nm_type.strip().lower(), "other")


@dataclass(frozen=True)
class NetDevice:
    """One row of `nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device status`."""

    name: str  # NetworkManager's device: eth0, cdc-wdm0 (a modem's control port)
    type: str  # nmcli's words: ethernet, gsm, wifi, loopback, can ...
    state: str  # nmcli's words: connected, unavailable, "connecting (getting IP configuration)" ...
    connection: str | None  # the active connection's name; None when nothing is active
    ip_iface: str | None = None  # the kernel interface that carries IP (wwan0 for cdc-wdm0), when known

    @property
    def kind(self) -> LinkKind:
        return link_kind(self.type)

    @property
    def connected(self) -> bool:
        # "connected (externally)" and "connected (site only)" still carry packets.
        return self.state.startswith("connected")

    def owns_interface(self, iface: str) -> bool:
        return iface in (self.name, self.ip_iface)


@dataclass(frozen=True)
class NetConnection:
    """One row of `nmcli -t -f NAME,UUID,TYPE,DEVICE,AUTOCONNECT,AUTOCONNECT-PRIORITY connection show`."""

    name: str
    uuid: str | None
    type: str  # 802-3-ethernet, gsm ... (terse mode prints the setting name)
    device: str | None  # set only while the connection is active
    autoconnect: bool | None
    priority: int | None  # AUTOCONNECT-PRIORITY; NetworkManager's default is 0
    active: bool | None = None  # from the ACTIVE field when asked for, else inferred from ``device``

    @property
    def kind(self) -> LinkKind:
        return link_kind(self.type)


@dataclass(frozen=True)
class DefaultRoute:
    """A default route from `ip route show default` or `ip -j route show default`."""

    dev: str | None  # None only for a multipath route whose hops are in ``nexthops``
    gateway: str | None
    metric: int  # `ip route` leaves out "metric 0", so a missing metric is 0, not unknown
    proto: str | None = None
    src: str | None = None
    linkdown: bool = False  # the kernel keeps the route but the link has no carrier
    nexthops: tuple[tuple[str, str | None], ...] = ()  # (dev, gateway) of a multipath route


@dataclass(frozen=True)
class Network:
    devices: tuple[NetDevice, ...]
    connections: tuple[NetConnection, ...]
    default_routes: tuple[DefaultRoute, ...]  # best (lowest metric, usable) first
    primary: NetConnection | None  # the wired uplink (highest autoconnect priority)
    backup: NetConnection | None  # the cellular uplink (lower autoconnect priority)
    active_iface: str | None  # the kernel interface holding the best default route
    active_device: NetDevice | None  # the NetworkManager device behind it, when it could be matched
    on_backup: bool | None  # None when it cannot be told
    since: datetime | None  # when the path last changed, if the caller knows
    summary: str  # one line in words for the overview
    problems: tuple[str, ...] = ()  # what could not be read or looks wrong, in words
    raw: str = ""  # the tools' output, one click away in the panel


# --- Derived: which link is primary, which is backup, which carries traffic now -----------------------------


def _pick(conns: tuple[NetConnection, ...], kind: str) -> NetConnection | None:
    """The active connection of that kind, else the one NetworkManager would try first (highest priority)."""
    candidates = [c for c in conns if c.kind == kind]
    lowest = -(2**31)
    return max(
        candidates, key=lambda c: (bool(c.active), c.priority if c.priority is not None else lowest), default=None
    )


def _device_for(devs: tuple[NetDevice, ...], iface: str) -> NetDevice | None:
    exact = [d for d in devs if d.owns_interface(iface)]
    if exact:
        return exact[0]
    # A modem's NetworkManager device (cdc-wdm0) routes through another interface (wwan0, ppp0 ...); without
    # `device show` the only connected cellular device whose IP interface is unknown must be it.
    if not iface.startswith(_CELLULAR_IFACES):
        return None
    guess = [d for d in devs if d.kind == "cellular" and d.connected and d.ip_iface is None]
    return guess[0] if len(guess) == 1 else None


def _priority_problems(primary: NetConnection | None, backup: NetConnection | None) -> list[str]:
    problems: list[str] = []
    if (
        primary
        and backup
        and primary.priority is not None
        and backup.priority is not None
        and backup.priority >= primary.priority
    ):
        problems.append(
            f"the cellular backup {backup.name!r} has autoconnect priority {backup.priority}, not lower "
            f"than the wired primary {primary.name!r} ({primary.priority}): set the cellular profile's "
            "connection.autoconnect-priority lower."
        )
    for conn, role in ((primary, "wired primary"), (backup, "cellular backup")):
        if conn and conn.autoconnect is False:
            problems.append(f"the {role} {conn.name!r} does not autoconnect: it will not come back by itself.")
    return problems


def derive_network(
    devs: tuple[NetDevice, ...],
    conns: tuple[NetConnection, ...],
    routes: tuple[DefaultRoute, ...] | None,
    since: datetime | None,
    problems: tuple[str, ...],
    raw: str,
) -> Network:
    """Primary (wired) and backup (cellular) links, which one carries traffic now, and the words for it.

    ``routes`` is None when they could not be read; ``problems`` and ``raw`` come from the parsers.
    """
    primary, backup = _pick(conns, "wired"), _pick(conns, "cellular")
    best = next((r for r in routes or () if not r.linkdown), None)
    iface = (best.dev or (best.nexthops[0][0] if best.nexthops else None)) if best else None
    device = _device_for(devs, iface) if iface else None
    on_backup: bool | None = None
    if routes is not None and best is None:
        on_backup = False  # offline is not "on backup"
    elif device is not None:
        on_backup = device.kind == "cellular"
    more = _priority_problems(primary, backup)
    if iface and device is None and devs:
        more.append(f"the default route uses {iface}, which NetworkManager does not list among its devices.")
    summary = _summary(devs, routes, iface, device, since)
    return Network(
        devices=devs,
        connections=conns,
        default_routes=routes or (),
        primary=primary,
        backup=backup,
        active_iface=iface,
        active_device=device,
        on_backup=on_backup,
        since=since,
        summary=summary,
        problems=problems + tuple(more),
        raw=raw,
    )


def _state_of(devs: tuple[NetDevice, ...], kind: str) -> str | None:
    """E.g. "wired eth0 is unavailable" for the first device of that kind that is not connected."""
    for d in devs:
        if d.kind == kind and not d.connected:
            return f"{kind} {d.name} is {d.state}"
    return None


def _clock_words(since: datetime) -> str:
    """14:02 today; with the date before that (NetworkManager's timestamp survives reboots and days)."""
    local = since.astimezone() if since.tzinfo is not None else since
    today = datetime.now(local.tzinfo).date() if local.tzinfo is not None else datetime.now().date()
    return f"{local:%H:%M}" if local.date() == today else f"{local:%d %b %H:%M}"


def _summary(
    devs: tuple[NetDevice, ...],
    routes: tuple[DefaultRoute, ...] | None,
    iface: str | None,
    device: NetDevice | None,
    since: datetime | None,
) -> str:
    when = f" since {_clock_words(since)}" if since else ""
    if routes is None:
        head = "the default route could not be read"
    elif iface is None:
        head = "offline: no default route" + when
    elif device is None:
        head = f"traffic goes through {iface}"
    else:
        via = f"{device.connection!r} on {device.name}" if device.connection else device.name
        head = {"cellular": f"running on cellular backup ({via}){when}", "wired": f"on wired primary ({via})"}.get(
            device.kind, f"traffic goes through {device.kind} ({via})"
        )
    down = [s for s in (_state_of(devs, "wired"), _state_of(devs, "cellular")) if s]
    return "; ".join([head, *down])
