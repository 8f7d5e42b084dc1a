"""The NetworkManager probe: devices, connection priorities, the default route — one round trip.

"Since" (the panel says "running on cellular backup since 14:02") comes first from the device itself:
the connections' TIMESTAMP, read in the same round trip, says when the wired profile stopped being
activated (parsers.path_changed_at), so a technician who connects after the failover still sees the time.
It is the device's clock, as the device reports it: the posture probe's clock offset is not known here, so a
wrong device clock gives a wrong time.

When the TIMESTAMPs cannot tell (an older or odd nmcli, 0, a clock never set), the probe's own observation is
used: the probe object lives as long as the plugin host and remembers which interface carried traffic at the
previous probe of each device; when that changes, "since" is when this probe first saw the new path. It is
never guessed before a change is seen.
"""

from __future__ import annotations

from datetime import datetime

from siteline.api import DeviceContext, Network, ParseError, ProbeKind, Section, Unavailable, run_sections
from siteline_networkmanager.parsers import (
    CONNECTIONS_COMMAND,
    DEVICE_SHOW_COMMAND,
    DEVICE_STATUS_COMMAND,
    ROUTE_COMMAND,
    network_from_outputs,
)

TIMEOUT = 30.0
COMMANDS = (
    ("devices", DEVICE_STATUS_COMMAND),
    ("connections", CONNECTIONS_COMMAND),
    ("routes", ROUTE_COMMAND),
    ("device-show", DEVICE_SHOW_COMMAND),
)


def _text(section: Section) -> str:
    """The output to parse; a failed command becomes words no parser takes for an (empty) answer."""
    if section.ok:
        return section.stdout
    # An empty `ip route` means "offline"; a failed one must not: this line makes the parser report it instead.
    return f"{section.failure()}\n"


def network_from_sections(sections: dict[str, Section], since: datetime | None = None) -> Network | Unavailable:
    devices = sections["devices"]
    if devices.missing:
        return Unavailable("network", f"NetworkManager is not on this device: {devices.failure()}.")
    if not devices.ok:
        return Unavailable("network", f"could not read NetworkManager's devices: {devices.failure()}. "
                           "Is NetworkManager running (`nmcli general`)?", devices.stdout + devices.stderr)
    show = sections["device-show"]
    try:
        return network_from_outputs(
            devices.stdout,
            _text(sections["connections"]),
            _text(sections["routes"]),
            show.stdout if show.ok else None,
            since,
        )
    except ParseError as exc:
        return Unavailable("network", str(exc), devices.stdout)


class NetworkManagerProbe:
    name = "networkmanager"
    kind: ProbeKind = "network"

    def __init__(self) -> None:
        # target -> (interface holding the default route, when this probe first saw it hold it)
        self._paths: dict[str, tuple[str | None, datetime | None]] = {}

    async def collect(self, ctx: DeviceContext) -> Network | Unavailable:
        sections = await run_sections(ctx, COMMANDS, TIMEOUT)
        found = network_from_sections(sections)
        if isinstance(found, Unavailable):
            return found
        observed = self._since(ctx.target, found.active_iface)  # remembered even when the device knows better
        if found.since is not None or observed is None:
            return found
        return network_from_sections(sections, observed)

    def _since(self, target: str, iface: str | None) -> datetime | None:
        previous = self._paths.get(target)
        if previous is not None and previous[0] == iface:
            return previous[1]
        since = datetime.now().astimezone() if previous is not None else None
        self._paths[target] = (iface, since)
        return since
