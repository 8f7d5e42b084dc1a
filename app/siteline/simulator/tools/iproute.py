"""ip (iproute2): addr, link, route (show/get), and state-changing link set / route add|del on the state dir."""

from __future__ import annotations

import json
import time

from siteline.simulator import dynamics
from siteline.simulator.state import DeviceState
from siteline.simulator.store import update_json
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.netmodel import Link, NetView, view

USAGE = ("Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n"
         "where  OBJECT := { address | link | route | ... }\n"
         "       OPTIONS := { -4 | -6 | -o[neline] | -j[son] | -br[ief] ... }")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    opts: set[str] = set()
    rest: list[str] = []
    for arg in argv:
        if rest or not arg.startswith("-"):
            rest.append(arg)
        elif arg in ("-o", "-oneline", "-4", "-6", "-j", "-json", "-p", "-pretty", "-br", "-brief", "-d", "-s"):
            opts.add({"-oneline": "-o", "-json": "-j", "-pretty": "-p", "-brief": "-br"}.get(arg, arg))
        else:
            return fail(f'Option "{arg}" is unknown, try "ip -help".', 255)
    if not rest:
        return fail(USAGE, 255)
    obj, args = rest[0], rest[1:]
    v = view(state)
    for name, handler in (("address", _addr), ("link", _link), ("route", _route)):
        if name.startswith(obj):
            return handler(args, opts, v, state)
    return fail(f'Object "{obj}" is unknown, try "ip help".', 255)


def _flags(link: Link) -> str:
    if link.kind == "loopback":
        return "LOOPBACK,UP,LOWER_UP"
    if not link.up:
        return "NOARP" if link.kind == "can" else "BROADCAST,MULTICAST"
    return ("POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP" if link.kind == "none" else
            "BROADCAST,MULTICAST,UP,LOWER_UP" if link.carrier else "NO-CARRIER,BROADCAST,MULTICAST,UP")


def _oper(link: Link) -> str:
    if link.kind == "loopback":
        return "UNKNOWN"
    return "UP" if link.up and link.carrier else "DOWN"


def _link_line(link: Link) -> tuple[str, str]:
    qdisc = "noqueue" if link.kind == "loopback" else "pfifo_fast" if link.kind == "can" else "mq"
    head = f"{link.index}: {link.name}: <{_flags(link)}> mtu {link.mtu} qdisc {qdisc} state {_oper(link)} " \
           f"mode DEFAULT group default qlen 1000"
    tail = f"link/{link.kind} {link.mac} brd ff:ff:ff:ff:ff:ff" if link.kind == "ether" else \
        f"link/{link.kind} {link.mac or ''}".rstrip() + (" brd 00:00:00:00:00:00" if link.kind == "loopback" else "")
    return head, tail


def _selected(args: list[str], v: NetView) -> list[Link] | str:
    names = [a for a in args if a not in ("show", "list", "dev")]
    if not names:
        return v.links
    link = v.link(names[0])
    return [link] if link else f'Device "{names[0]}" does not exist.'


def _addr(args: list[str], opts: set[str], v: NetView, state: DeviceState) -> int:
    links = _selected(args, v)
    if isinstance(links, str):
        return fail(links, 1)
    if "-j" in opts:
        out(json.dumps([_addr_json(link) for link in links]) + "\n")
        return 0
    for link in links:
        head, tail = _link_line(link)
        addr = [] if "-6" in opts or not link.addr4 else [_inet(link)]
        if "-o" in opts:
            life = "\\       valid_lft forever preferred_lft forever\n"
            out("".join(f"{link.index}: {link.name}    {a}{life}" for a in addr))
            continue
        if "-4" not in opts:
            out(head.replace(" mode DEFAULT", "") + f"\n    {tail}\n")
        elif addr:
            out(head.split(" mode ")[0].replace(" qlen 1000", "") + " group default qlen 1000\n")
        out("".join(f"    {a}\n       valid_lft forever preferred_lft forever\n" for a in addr))
    return 0


def _inet(link: Link) -> str:
    brd = f" brd {link.brd}" if link.brd else ""
    scope = "host" if link.kind == "loopback" else "global noprefixroute"
    return f"inet {link.addr4}{brd} scope {scope} {link.name}"


def _addr_json(link: Link) -> dict[str, object]:
    info = []
    if link.addr4:
        ip, plen = link.addr4.split("/")
        info.append({"family": "inet", "local": ip, "prefixlen": int(plen), "scope": "host" if link.kind == "loopback"
                     else "global", "label": link.name, "valid_life_time": 4294967295,
                     "preferred_life_time": 4294967295})
    return {"ifindex": link.index, "ifname": link.name, "flags": _flags(link).split(","), "mtu": link.mtu,
            "operstate": _oper(link), "link_type": link.kind, "address": link.mac, "addr_info": info}


def _link(args: list[str], opts: set[str], v: NetView, state: DeviceState) -> int:
    if args[:1] == ["set"]:
        return _link_set(args[1:], v, state)
    links = _selected(args, v)
    if isinstance(links, str):
        return fail(links, 1)
    if "-j" in opts:  # `ip -j link`: the address JSON without addr_info, plus what `ip link` shows
        rows = [{k: val for k, val in _addr_json(link).items() if k != "addr_info"} for link in links]
        out(json.dumps(rows, separators=(",", ":")) + "\n")
        return 0
    for link in links:
        head, tail = _link_line(link)
        out(f"{head}\\    {tail}\n" if "-o" in opts else f"{head}\n    {tail}\n")
    return 0


def _link_set(args: list[str], v: NetView, state: DeviceState) -> int:
    names = [a for a in args if a not in ("dev", "up", "down")]
    if not names or not ({"up", "down"} & set(args)):
        return fail('Not enough information: "dev" argument is required.', 255)
    if v.link(names[0]) is None:
        return fail(f'Cannot find device "{names[0]}"', 1)
    down = "down" in args
    if names[0] == "eth0":
        state.fail_wired(down)  # an administratively downed eth0 behaves as a failed wired link
    elif names[0] == "wwan0":
        update_json(state.root, state.root / dynamics.NETWORK_FILE,
                    lambda n: n.update(cellular_enabled=not down, cellular_changed_at=time.time()))
    return 0


def _route(args: list[str], opts: set[str], v: NetView, state: DeviceState) -> int:
    verb = args[0] if args else "show"
    if verb in ("add", "del", "delete", "replace"):
        return _route_change(verb, args[1:], state)
    if verb == "get":
        best = v.default_routes()
        if not best or len(args) < 2:
            return fail("RTNETLINK answers: Network is unreachable", 2)
        link = best[0]
        out(f"{args[1]} via {link.gateway} dev {link.name} src {str(link.addr4).split('/')[0]} uid 0 \n    cache \n")
        return 0
    return _route_show(args[1:] if args[:1] in (["show"], ["list"], ["ls"], ["lst"]) else args, opts, v)


# iproute2's own names for the text keywords, as `ip -j route` prints them (print_route in iproute/iproute.c).
_JSON_KEYS = {"via": "gateway", "dev": "dev", "proto": "protocol", "scope": "scope", "src": "prefsrc",
              "metric": "metric"}


def _routes(v: NetView) -> list[dict[str, object]]:
    """Every route in the main table, as iproute2's JSON objects, in the kernel's order."""
    routes: list[dict[str, object]] = []
    for link in v.default_routes():
        route: dict[str, object] = {"dst": "default", "gateway": link.gateway, "dev": link.name,
                                    "protocol": "dhcp" if link.name == "eth0" else "static"}
        if link.name == "eth0":
            route["prefsrc"] = str(link.addr4).split("/")[0]
        routes.append({**route, "metric": link.metric, "flags": []})
    for link in v.links:
        if link.addr4 and link.kind != "loopback" and link.up and link.carrier:
            routes.append({"dst": _network(link.addr4), "dev": link.name, "protocol": "kernel", "scope": "link",
                           "prefsrc": link.addr4.split("/")[0], "metric": link.metric, "flags": []})
    for line in v.extra_routes:  # added with `ip route add`: kept as typed, read back into fields
        words = line.split()
        route = {"dst": words[0] if words else ""}
        for key, value in zip(words[1::2], words[2::2], strict=False):
            if key in _JSON_KEYS:
                route[_JSON_KEYS[key]] = int(value) if key == "metric" and value.isdigit() else value
        routes.append({**route, "flags": []})
    return routes


def _route_text(route: dict[str, object], hide_dev: bool) -> str:
    words = [str(route["dst"])]
    for key, name in (("gateway", "via"), ("dev", "dev"), ("protocol", "proto"), ("scope", "scope"),
                      ("prefsrc", "src"), ("metric", "metric")):
        if key in route and not (key == "dev" and hide_dev) and not (key == "metric" and route[key] == 0):
            words += [name, str(route[key])]
    return " ".join(words) + " "  # iproute2 ends every route with a space


def _route_show(selector: list[str], opts: set[str], v: NetView) -> int:
    """`ip [-j] route [show] [default | PREFIX] [dev NAME]`: the selector filters, as iproute2's does."""
    dst: str | None = None
    dev: str | None = None
    i = 0
    while i < len(selector):
        word = selector[i]
        if word == "dev" and i + 1 < len(selector):
            dev, i = selector[i + 1], i + 2
            if v.link(dev) is None:
                return fail(f'Cannot find device "{dev}"', 1)
            continue
        if word in ("table", "proto", "scope", "type") and i + 1 < len(selector):
            i += 2  # accepted; the simulated main table has nothing else to filter out
            continue
        if dst is not None or not (word in ("default", "all") or word[:1].isdigit()):
            return fail(f'Error: any valid prefix is expected rather than "{word}".', 1)
        dst, i = word, i + 1
    chosen = [r for r in _routes(v) if (dst in (None, "all") or r["dst"] == dst) and (dev is None or r["dev"] == dev)]
    if dev is not None:  # iproute2 leaves out what the filter already says
        chosen = [{k: val for k, val in r.items() if k != "dev"} for r in chosen]
    if "-j" in opts:
        out(json.dumps(chosen, indent=4 if "-p" in opts else None, separators=None if "-p" in opts else (",", ":"))
            + "\n")
    else:
        out("".join(_route_text(r, dev is not None) + "\n" for r in chosen))
    return 0


def _network(cidr: str) -> str:
    import ipaddress

    return str(ipaddress.ip_interface(cidr).network)


def _route_change(verb: str, spec: list[str], state: DeviceState) -> int:
    if not spec:
        return fail('Error: "prefix" argument is required.', 255)
    line = " ".join(spec)

    def change(doc: dict[str, object]) -> None:
        stored = doc.get("routes")
        routes = [r for r in stored if isinstance(r, str)] if isinstance(stored, list) else []
        if verb in ("add", "replace"):
            routes = [r for r in routes if r.split()[0] != spec[0]] if verb == "replace" else routes
            routes.append(line)
        else:
            routes = [r for r in routes if r.split()[0] != spec[0]]
        doc["routes"] = routes

    (state.root / "admin").mkdir(exist_ok=True)
    existing = view(state).extra_routes
    if verb == "add" and any(r.split()[0] == spec[0] for r in existing):
        return fail("RTNETLINK answers: File exists", 2)
    if verb in ("del", "delete") and not any(r.split()[0] == spec[0] for r in existing):
        return fail("RTNETLINK answers: No such process", 2)
    update_json(state.root, state.root / "admin" / "ip.json", change)
    return 0
