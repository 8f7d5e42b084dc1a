"""The OpenWrt probes: System (ubus system), Modem (uqmi), Network (netifd + mwan3).

Each probe is ONE round trip. Every device Siteline reaches is asked, most of them are not OpenWrt, and a
metered link pays for each command: so the round trip starts with `command -v ubus` and, where there is no
ubus, prints one word and nothing else; the probe then returns None (nothing to say on this device). The three
probes share a memory of the targets that answered so (NotOpenWrt): for some hours after, they return None
without asking — on a 5-minute cellular refresh that is three commands a round less on every other device.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from siteline.api import (
    DeviceContext,
    Network,
    ProbeKind,
    Section,
    System,
    Unavailable,
    sections_command,
    split_sections,
)

from .netifd import parse_network
from .parsers import OpenWrtModemReport, UqmiOutputs, parse_modem, parse_system

TIMEOUT = 20.0
NO_UBUS = "siteline-openwrt:no-ubus"
PART = "@@owrt"

SYSTEM_COMMANDS = (("board", "ubus call system board"), ("info", "ubus call system info"))
# The modem's netifd interface I: the first with proto qmi (LuCI lets it be named anything: wwan, lte, 4g), else
# wwan. Its QMI control node D: I's device, else the first cdc-wdm (uqmi needs one; -s: no cached ids).
_DEVICE = ("I=$(uci -q show network | grep -m 1 \"\\.proto='qmi'$\" | cut -d. -f2); I=${I:-wwan}; "
           'D=$(uci -q get network.$I.device); [ -e "$D" ] || D=$(ls /dev/cdc-wdm* 2>/dev/null | head -n 1); '
           'echo "$D"; [ -n "$D" ] && command -v uqmi >/dev/null')
# uqmi's answers (and the modem interface's status, as part "wwan") in one section, each after "@@owrt NAME".
UQMI_ASKS = ("signal-info", "serving-system", "imei", "iccid")
_UQMI = (f'[ -n "$D" ] && command -v uqmi >/dev/null && for a in {" ".join(UQMI_ASKS)}; do '
         f'echo "{PART} $a"; uqmi -s -d "$D" --get-$a 2>&1; done; '
         f'echo "{PART} wwan"; ubus call network.interface.$I status 2>&1; true')
MODEM_COMMANDS = (("device", _DEVICE), ("uqmi", _UQMI))
NETWORK_COMMANDS = (
    ("dump", "ubus call network.interface dump"),
    ("mwan3", "! command -v mwan3 >/dev/null || mwan3 status"),
)


def guarded(commands: tuple[tuple[str, str], ...]) -> str:
    """The sections, run only where ubus is; elsewhere the one word NO_UBUS (one short command in all)."""
    return f"if command -v ubus >/dev/null 2>&1; then {sections_command(commands)}; else echo {NO_UBUS}; fi"


class NotOpenWrt:
    """The targets that said they have no ubus, and when; asked again after ``remember`` seconds (a box may be
    reflashed with OpenWrt while Siteline runs)."""

    def __init__(self, remember: float = 6 * 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.remember = remember
        self._clock = clock
        self._said: dict[str, float] = {}

    def known(self, target: str) -> bool:
        said = self._said.get(target)
        return said is not None and self._clock() - said < self.remember

    def note(self, target: str) -> None:
        self._said[target] = self._clock()


async def _ask(ctx: DeviceContext, commands: tuple[tuple[str, str], ...],
               not_openwrt: NotOpenWrt) -> dict[str, Section] | None:
    if not_openwrt.known(ctx.target):
        return None
    result = await ctx.run(guarded(commands), TIMEOUT)
    if any(line.strip() == NO_UBUS for line in result.stdout.splitlines()):
        not_openwrt.note(ctx.target)
        return None
    return split_sections(commands, result)


class _OpenWrtProbe:
    def __init__(self, not_openwrt: NotOpenWrt | None = None) -> None:
        self.not_openwrt = not_openwrt or NotOpenWrt()


def _failed(section: Section, label: str) -> str | None:
    return None if section.ok else section.failure(label)


class OpenWrtSystemProbe(_OpenWrtProbe):
    name = "openwrt-system"
    kind: ProbeKind = "system"

    async def collect(self, ctx: DeviceContext) -> System | Unavailable | None:
        sections = await _ask(ctx, SYSTEM_COMMANDS, self.not_openwrt)
        if sections is None:
            return None
        board, info = sections["board"], sections["info"]
        why = _failed(board, "ubus call system board")
        if why is not None and not board.stdout.strip():
            return Unavailable("system", f"{why}. Is procd running (`ubus list system`)?", board.stderr)
        return parse_system(board.stdout, info.stdout)


class OpenWrtModemProbe(_OpenWrtProbe):
    name = "openwrt-uqmi"
    kind: ProbeKind = "modem"

    async def collect(self, ctx: DeviceContext) -> OpenWrtModemReport | Unavailable | None:
        sections = await _ask(ctx, MODEM_COMMANDS, self.not_openwrt)
        if sections is None:
            return None
        device = sections["device"]
        node = device.stdout.strip().splitlines()[0] if device.stdout.strip() else ""
        if not node:
            return Unavailable("modem", "no QMI modem on this router: no uci network interface with proto qmi "
                               "names its device, and there is no /dev/cdc-wdm*. Check the modem's USB connection "
                               "(`dmesg | grep qmi`).")
        if not device.ok:
            return Unavailable("modem", f"uqmi is not installed on this router, so its QMI modem {node} cannot be "
                               "read: `opkg install uqmi`.")
        parts = split_parts(sections["uqmi"].stdout)
        return parse_modem(UqmiOutputs(
            device=node, signal=parts.get("signal-info", ""), serving=parts.get("serving-system", ""),
            imei=parts.get("imei", ""), iccid=parts.get("iccid", ""), wwan=parts.get("wwan", "")))


def split_parts(text: str) -> dict[str, str]:
    """The uqmi section cut at its "@@owrt NAME" lines (uqmi's errors went to stdout with 2>&1)."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(PART + " "):
            current = parts.setdefault(line[len(PART) + 1 :].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in parts.items()}


class OpenWrtNetworkProbe(_OpenWrtProbe):
    name = "openwrt-netifd"
    kind: ProbeKind = "network"

    async def collect(self, ctx: DeviceContext) -> Network | Unavailable | None:
        sections = await _ask(ctx, NETWORK_COMMANDS, self.not_openwrt)
        if sections is None:
            return None
        dump = sections["dump"]
        if not dump.ok and not dump.stdout.strip():
            return Unavailable("network", f"{dump.failure('ubus call network.interface dump')}. Is netifd running "
                               "(`/etc/init.d/network status`)?", dump.stderr)
        mwan3 = sections["mwan3"]
        return parse_network(dump.stdout, mwan3.stdout if mwan3.ok else "")
