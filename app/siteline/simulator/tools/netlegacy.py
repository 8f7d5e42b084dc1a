"""ifconfig and route (net-tools): read-only views of the device's links and routes."""

from __future__ import annotations

from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.netmodel import Link, view


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    return ifconfig(argv, state) if tool == "ifconfig" else route(argv, state)


def _mask(prefix: int) -> str:
    bits = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return ".".join(str(bits >> s & 0xFF) for s in (24, 16, 8, 0))


def _block(link: Link) -> str:
    flags = ["UP"] if link.up else []
    flags += ["LOOPBACK"] if link.kind == "loopback" else ["BROADCAST"] if link.kind == "ether" else ["POINTOPOINT"]
    flags += ["RUNNING"] if link.up and link.carrier else []
    lines = [f"{link.name}: flags=4163<{','.join(flags)}>  mtu {link.mtu}"]
    if link.addr4:
        addr, prefix = link.addr4.split("/")
        brd = f"  broadcast {link.brd}" if link.brd else ""
        lines.append(f"        inet {addr}  netmask {_mask(int(prefix))}{brd}")
    if link.kind == "ether":
        lines.append(f"        ether {link.mac}  txqueuelen 1000  (Ethernet)")
    return "\n".join(lines) + "\n\n"


def ifconfig(argv: list[str], state: DeviceState) -> int:
    links = view(state).links
    names = [a for a in argv if not a.startswith("-")]
    if len(names) > 1:
        return fail("SIOCSIFFLAGS: Operation not permitted (the simulated device's links are changed with ip or nmcli)")
    shown = [lk for lk in links if (lk.name in names if names else (lk.up or "-a" in argv))]
    if names and not shown:
        return fail(f"{names[0]}: error fetching interface information: Device not found")
    out("".join(_block(lk) for lk in shown))
    return 0


def route(argv: list[str], state: DeviceState) -> int:
    if any(a in ("add", "del") for a in argv):
        return fail("SIOCADDRT: Operation not permitted (use `ip route` on the simulated device)")
    out("Kernel IP routing table\nDestination     Gateway         Genmask         Flags Metric Ref    Use Iface\n")
    for lk in view(state).links:
        if lk.gateway and lk.addr4:
            out(f"{'0.0.0.0':<15} {lk.gateway:<15} {'0.0.0.0':<15} UG    {lk.metric:<6} 0        0 {lk.name}\n")
    for lk in view(state).links:
        if lk.addr4 and lk.kind != "loopback":
            addr, prefix = lk.addr4.split("/")
            net = ".".join(addr.split(".")[:3]) + ".0" if prefix == "24" else addr
            out(f"{net:<15} {'0.0.0.0':<15} {_mask(int(prefix)):<15} U     {lk.metric:<6} 0        0 {lk.name}\n")
    return 0
