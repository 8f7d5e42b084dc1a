"""Parsers for `nmcli -t` (NetworkManager 1.42) and `ip route` (iproute2): text in, typed values or ParseError out.

nmcli's terse mode separates fields with ':' and escapes a ':' or '\\' inside a value with a backslash
(`--escape yes`, the default); an empty value is printed as nothing, never as "--".

When the path changed comes from the profiles' TIMESTAMP (seconds since the epoch, by the device's clock).
NetworkManager stamps a profile when it becomes activated AND when it stops being activated
(nm_active_connection_set_state), and refreshes an active profile's stamp every few minutes — so the
active cellular profile's TIMESTAMP is "about now", but the inactive wired profile's TIMESTAMP is the moment
the wired link went down: that is when the device went onto its backup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from siteline.api import DefaultRoute, NetConnection, NetDevice, Network, ParseError, derive_network

MAX_INPUT = 256 * 1024  # a device with thousands of profiles is not an edge box; more is garbage

DEVICE_FIELDS = ("DEVICE", "TYPE", "STATE", "CONNECTION")
CONNECTION_FIELDS = ("NAME", "UUID", "TYPE", "DEVICE", "AUTOCONNECT", "AUTOCONNECT-PRIORITY")

# The commands whose output these parsers read; every field named here exists in nmcli 1.42
# (nmc_fields_con_show / metagen_device_status / metagen_device_detail_general).
DEVICE_STATUS_COMMAND = "nmcli -t -f " + ",".join(DEVICE_FIELDS) + " device status"
# The probe asks for TIMESTAMP too (last on the line, so outputs without it still read as CONNECTION_FIELDS).
TIMESTAMPED_FIELDS = (*CONNECTION_FIELDS, "TIMESTAMP")
CONNECTIONS_COMMAND = "nmcli -t -f " + ",".join(TIMESTAMPED_FIELDS) + " connection show"
DEVICE_SHOW_COMMAND = "nmcli -t -f GENERAL.DEVICE,GENERAL.IP-IFACE device show"
ROUTE_COMMAND = "ip route show default"

Devices = tuple[NetDevice, ...]
_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")
# A device clock before 2001-09-09 was not set yet (no RTC: boots in 1970); after 2100 the value is garbage.
_STAMP_RANGE = (1_000_000_000, 4_102_444_800)
_ROUTE_FLAGS = {"linkdown", "dead", "onlink", "pervasive", "offload", "trap", "notify", "unresolved", "rt_offload"}
_ROUTE_TYPES = {"unreachable", "blackhole", "prohibit", "throw"}  # default routes that carry nothing


def split_terse(line: str) -> list[str]:
    """One line of `nmcli -t` output -> its fields, with '\\:' and '\\\\' unescaped."""
    fields: list[str] = []
    current: list[str] = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def _check_text(text: str, what: str) -> list[str]:
    """The non-empty lines, or a ParseError for output that is not nmcli's terse form at all."""
    if len(text) > MAX_INPUT:
        raise ParseError(
            f"{what}: the output is {len(text)} characters, far more than any device prints.",
            "Check that the command on the device is really nmcli.",
        )
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Error:"):
        raise ParseError(f"{what}: nmcli said {lines[0][:200]!r}.", "Run the command on the device to see why.")
    return lines


def _rows(text: str, fields: Sequence[str], what: str) -> tuple[list[dict[str, str]], list[str]]:
    lines = _check_text(text, what)
    rows: list[dict[str, str]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        values = split_terse(line)
        if len(values) != len(fields):
            problems.append(f"{what}: line {number} has {len(values)} fields, not {len(fields)}: {line[:80]!r}")
            continue
        rows.append(dict(zip(fields, values, strict=True)))
    if lines and not rows:
        if lines[0].split()[:2] == list(fields[:2]):
            raise ParseError(f"{what}: this is nmcli's table, not its terse output.", "Run nmcli with -t.")
        raise ParseError(
            f"{what}: none of the {len(lines)} lines has the {len(fields)} fields asked for "
            f"({','.join(fields)}); first line: {lines[0][:80]!r}.",
            "The device may run another nmcli version, or the output is not terse (-t).",
        )
    return rows, problems


def parse_device_status(text: str, fields: Sequence[str] = DEVICE_FIELDS) -> tuple[Devices, tuple[str, ...]]:
    """`nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device status` -> (devices, problems)."""
    what = "nmcli device status"
    if not text.strip():
        raise ParseError(f"{what} printed nothing.", "Check that NetworkManager runs on the device: `nmcli general`.")
    rows, problems = _rows(text, fields, what)
    devices: list[NetDevice] = []
    for row in rows:
        name = row.get("DEVICE", "")
        if not name:
            problems.append(f"{what}: a row without a device name was skipped.")
            continue
        devices.append(
            NetDevice(
                name=name,
                type=row.get("TYPE", "") or "unknown",
                state=row.get("STATE", "") or "unknown",
                connection=row.get("CONNECTION") or None,
            )
        )
    return tuple(devices), tuple(problems)


def _yes_no(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((value or "").strip().lower())


def _int(value: str | None) -> int | None:
    # Not int() alone: it also takes "1_000" and non-ASCII digits, which no tool prints.
    text = (value or "").strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def parse_connections(
    text: str, fields: Sequence[str] = CONNECTION_FIELDS
) -> tuple[tuple[NetConnection, ...], tuple[str, ...]]:
    """`nmcli -t -f NAME,UUID,TYPE,DEVICE,AUTOCONNECT,AUTOCONNECT-PRIORITY connection show` -> (connections, problems).

    An ACTIVE column is read too when it is among ``fields``; without it a connection is active when it has a device.
    """
    what = "nmcli connection show"
    rows, problems = _rows(text, fields, what)
    connections: list[NetConnection] = []
    for row in rows:
        name = row.get("NAME", "")
        if not name:
            problems.append(f"{what}: a connection without a name was skipped.")
            continue
        device = row.get("DEVICE") or None
        priority = _int(row.get("AUTOCONNECT-PRIORITY"))
        if "AUTOCONNECT-PRIORITY" in row and priority is None:
            problems.append(
                f"{what}: {name!r} has autoconnect priority {row['AUTOCONNECT-PRIORITY'][:20]!r}, not a number."
            )
        active = _yes_no(row["ACTIVE"]) if "ACTIVE" in row else (device is not None)
        connections.append(
            NetConnection(
                name=name,
                uuid=row.get("UUID") or None,
                type=row.get("TYPE", "") or "unknown",
                device=device,
                autoconnect=_yes_no(row.get("AUTOCONNECT")),
                priority=priority,
                active=active,
            )
        )
    return tuple(connections), tuple(problems)


def connection_fields(text: str) -> tuple[str, ...]:
    """The fields a `connection show` output has: with TIMESTAMP (the probe's command) or without (older callers)."""
    if len(text) > MAX_INPUT:
        return TIMESTAMPED_FIELDS
    lines = (line for line in text.splitlines() if line.strip())
    return TIMESTAMPED_FIELDS if any(len(split_terse(line)) == len(TIMESTAMPED_FIELDS) for line in lines) \
        else CONNECTION_FIELDS


def connection_key(conn: NetConnection) -> str:
    return conn.uuid or conn.name


def parse_timestamps(text: str, fields: Sequence[str] = TIMESTAMPED_FIELDS) -> dict[str, int]:
    """`nmcli -t -f ...,TIMESTAMP connection show` -> {UUID (or name): TIMESTAMP}.

    0 (never activated), a clock that was not set yet, and anything that is not a number are left out: unknown.
    """
    if "TIMESTAMP" not in fields:
        return {}
    rows, _ = _rows(text, fields, "nmcli connection show")
    stamps: dict[str, int] = {}
    for row in rows:
        stamp = _int(row.get("TIMESTAMP"))
        key = row.get("UUID") or row.get("NAME")
        if key and stamp is not None and _STAMP_RANGE[0] <= stamp < _STAMP_RANGE[1]:
            stamps[key] = stamp
    return stamps


def device_time(stamp: int | None) -> datetime | None:
    """A device epoch -> an aware datetime in the laptop's zone (the same instant; the device clock's error is kept)."""
    if stamp is None or not _STAMP_RANGE[0] <= stamp < _STAMP_RANGE[1]:
        return None
    return datetime.fromtimestamp(stamp, tz=UTC).astimezone()


def path_changed_at(net: Network, stamps: Mapping[str, int]) -> datetime | None:
    """When the device went onto its backup (or offline), by NetworkManager's own record; None when it cannot tell.

    On the backup: the latest TIMESTAMP of an inactive wired profile, i.e. when wired stopped being activated.
    Offline: the latest TIMESTAMP of any inactive uplink profile. On the primary there is nothing to say.
    A wired profile that was last active before this boot still shows that older time (nmcli cannot tell).
    """
    if net.on_backup:
        kinds: tuple[str, ...] = ("wired",)
    elif net.on_backup is False and net.active_iface is None:  # offline (no usable default route)
        kinds = ("wired", "cellular", "wifi")
    else:
        return None
    found = [stamps.get(connection_key(c)) for c in net.connections if c.kind in kinds and c.active is False]
    return device_time(max((s for s in found if s is not None), default=None))


def parse_device_show(text: str) -> dict[str, str]:
    """`nmcli -t -f GENERAL.DEVICE,GENERAL.IP-IFACE device show` -> {device: IP interface}.

    Terse multi-line output is one ``KEY:value`` per line, devices separated by blank lines.
    Devices without an IP interface (unmanaged, unavailable) are left out.
    """
    what = "nmcli device show"
    lines = _check_text(text, what)
    ifaces: dict[str, str] = {}
    device: str | None = None
    seen_key = False
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        seen_key = True  # multi-line terse output is not escaped (nmcli's print_required_fields): keep value as is
        if key == "GENERAL.DEVICE":
            device = value or None
        elif key == "GENERAL.IP-IFACE" and device and value:
            ifaces[device] = value
    if lines and not seen_key:
        raise ParseError(
            f"{what}: no KEY:value lines; first line: {lines[0][:80]!r}.",
            "Run the command with -t on the device to compare.",
        )
    return ifaces


def parse_default_routes(text: str) -> tuple[DefaultRoute, ...]:
    """`ip route show default` or `ip -j route show default` -> the default routes, best first.

    Other routes in the output (an `ip route` without the filter) are ignored; no default route is a
    valid answer (the device is offline). Routes whose link is down sort last: the kernel skips them.
    """
    if len(text) > MAX_INPUT:
        raise ParseError(f"ip route: the output is {len(text)} characters, far more than any device prints.")
    stripped = text.strip()
    routes = _json_routes(stripped) if stripped.startswith(("[", "{")) else _text_routes(stripped)
    return tuple(sorted(routes, key=lambda r: (r.linkdown, r.metric)))


def _text_routes(text: str) -> list[DefaultRoute]:
    routes: list[DefaultRoute] = []
    lines = text.splitlines()
    bad = 0
    for index, line in enumerate(lines):
        words = line.split()
        if not words or line[0].isspace():
            continue  # a nexthop line belongs to the route above it
        if words[0] in _ROUTE_TYPES or words[0] != "default":
            bad += words[0] not in _ROUTE_TYPES and not _looks_like_route(words[0])
            continue
        hops = [w.split() for w in _continuations(lines, index)]
        routes.append(_route_from_words(words[1:], [h[1:] for h in hops if h[:1] == ["nexthop"]]))
    if bad and not routes and bad == len([line for line in lines if line and not line[0].isspace()]):
        raise ParseError(
            f"ip route: no line looks like a route; first line: {text.splitlines()[0][:80]!r}.",
            "Run `ip route show default` on the device to compare.",
        )
    return routes


def _looks_like_route(word: str) -> bool:
    """A destination (10.0.0.0/8, 192.168.1.7, fe80::/64), a route type or a table keyword."""
    return word[:1].isdigit() or ":" in word or word in ("broadcast", "local", "multicast", "anycast", "nat")


def _continuations(lines: list[str], index: int) -> list[str]:
    following: list[str] = []
    for line in lines[index + 1 :]:
        if not line[:1].isspace():
            break
        following.append(line)
    return following


def _route_from_words(words: list[str], nexthops: list[list[str]]) -> DefaultRoute:
    values: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(words):
        word = words[i]
        if word in _ROUTE_FLAGS:
            flags.add(word)
            i += 1
        elif i + 1 < len(words):
            values.setdefault(word, words[i + 1])
            i += 2
        else:
            i += 1
    hops = tuple(
        (h[h.index("dev") + 1], h[h.index("via") + 1] if "via" in h[:-1] else None) for h in nexthops if "dev" in h[:-1]
    )
    hop_down = bool(hops) and all("linkdown" in h or "dead" in h for h in nexthops)
    metric = _int(values.get("metric")) or 0
    return DefaultRoute(
        dev=values.get("dev"),
        gateway=values.get("via"),
        metric=max(metric, 0),
        proto=values.get("proto"),
        src=values.get("src"),
        linkdown=bool(flags & {"linkdown", "dead"}) or hop_down,
        nexthops=hops,
    )


def _json_routes(text: str) -> list[DefaultRoute]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"ip -j route: the JSON is broken ({exc}).", "It was probably cut off; retry.") from None
    if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
        raise ParseError("ip -j route: expected a list of route objects.", "The device may run another iproute2.")
    routes: list[DefaultRoute] = []
    for item in doc:
        if item.get("dst") != "default" or item.get("type", "unicast") != "unicast":
            continue
        flags = item.get("flags") if isinstance(item.get("flags"), list) else []
        hops_raw = item.get("nexthops") if isinstance(item.get("nexthops"), list) else []
        hops = tuple((str(h["dev"]), _str(h.get("gateway"))) for h in hops_raw if isinstance(h, dict) and "dev" in h)
        metric = item.get("metric", 0)
        routes.append(
            DefaultRoute(
                dev=_str(item.get("dev")),
                gateway=_str(item.get("gateway")),
                metric=metric if isinstance(metric, int) and not isinstance(metric, bool) and metric >= 0 else 0,
                proto=_str(item.get("protocol")),
                src=_str(item.get("prefsrc")),
                linkdown=bool({"linkdown", "dead"} & {str(f) for f in flags}),
                nexthops=hops,
            )
        )
    return routes


def _str(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


# --- The whole snapshot: which link is primary, which is backup, which carries traffic now ---------------------


def network_from_outputs(
    device_status: str, connections: str, routes: str, device_show: str | None = None, since: datetime | None = None
) -> Network:
    """The four commands' outputs -> one Network snapshot; a part that cannot be read becomes a problem.

    ``since`` is when NetworkManager's TIMESTAMPs say the path changed (see ``path_changed_at``); when they
    cannot tell, the ``since`` given (when the probe saw the path change) is used; it is never guessed.
    Raises ParseError only when neither the devices nor the routes could be read.
    """
    problems: list[str] = []
    devs: Devices = ()
    conns: tuple[NetConnection, ...] = ()
    found: tuple[DefaultRoute, ...] | None = None
    ifaces: dict[str, str] = {}
    failures: list[str] = []
    try:
        devs, more = parse_device_status(device_status)
        problems += more
    except ParseError as exc:
        failures.append(f"could not read the devices: {exc}")
    stamps: dict[str, int] = {}
    try:
        fields = connection_fields(connections)
        conns, more = parse_connections(connections, fields)
        stamps = parse_timestamps(connections, fields)
        problems += more
    except ParseError as exc:
        problems.append(f"could not read the connection priorities: {exc}")
    try:
        found = parse_default_routes(routes)
    except ParseError as exc:
        failures.append(f"could not read the default route: {exc}")
    if device_show is not None:
        try:
            ifaces = parse_device_show(device_show)
        except ParseError as exc:
            problems.append(f"could not match devices to interfaces: {exc}")
    if len(failures) == 2:
        raise ParseError("could not read the network: " + "; ".join(failures))
    devs = tuple(replace(d, ip_iface=ifaces.get(d.name, d.ip_iface)) for d in devs)
    raw = "\n".join(
        f"$ {cmd}\n{text.rstrip()}"
        for cmd, text in (
            (DEVICE_STATUS_COMMAND, device_status),
            (CONNECTIONS_COMMAND, connections),
            (ROUTE_COMMAND, routes),
            (DEVICE_SHOW_COMMAND, device_show),
        )
        if text is not None
    )
    said = tuple(failures + problems)
    net = derive_network(devs, conns, found, since, said, raw)
    changed = path_changed_at(net, stamps)  # the device's own record beats the caller's observation
    return net if changed is None else derive_network(devs, conns, found, changed, said, raw)
