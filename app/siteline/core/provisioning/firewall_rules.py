"""The firewall baseline rendered from a profile (pure: no device, no I/O).

iptables-restore text (the filter table with OUTPUT replaced), the nft table of our own (``inet siteline``),
the dead-man switch's file names and revert script, and the comparisons that tell whether what a device
runs with (or boots with) already is the baseline. firewall.py drives the device with these.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Literal

from siteline.core.provisioning.api import StepFailedError
from siteline.core.provisioning.profile import Profile

Backend = Literal["iptables", "nft"]
REVERT_UNIT = "siteline-firewall-revert"
NFT_TABLE = "siteline"  # inet family: one table filters IPv4 and IPv6
RULES_V4 = "/etc/iptables/rules.v4"  # where iptables-persistent / netfilter-persistent load rules at boot
RULES_V6 = "/etc/iptables/rules.v6"
NFT_CONF = "/etc/nftables.conf"  # what nftables.service loads at boot
NFT_INCLUDE = "/etc/nftables.d/siteline.nft"  # our table only, included from NFT_CONF
NFT_INCLUDE_LINE = f'include "{NFT_INCLUDE}"'
TOKEN = re.compile(r"^[0-9a-f]{4,32}$")


@dataclass(frozen=True)
class Allow:
    """One allowed kind of outgoing traffic, for either family (family 0) or one (4 or 6)."""

    what: str
    proto: str = ""  # tcp | udp | "" (any)
    port: str = ""  # "53", "67:68"; "" for any
    address: str = ""  # a network in canonical form (203.0.113.10/32); "" for anywhere
    family: int = 0


def allow_list(profile: Profile) -> list[Allow]:
    """The baseline's allow rules from the profile (after loopback and replies, which are always allowed)."""
    fw, mqtt = profile.firewall, profile.mqtt
    allows: list[Allow] = []
    if fw.dns:
        allows += [Allow("DNS", "udp", "53"), Allow("DNS", "tcp", "53")]
    if fw.ntp:
        allows.append(Allow("NTP", "udp", "123"))
    if fw.dhcp:
        allows += [Allow("DHCP", "udp", "67:68", family=4), Allow("DHCPv6", "udp", "546:547", family=6)]
    allows += [_to("control plane", "tcp", 443, net) for net in fw.control_plane]
    broker = mqtt.broker_ip or mqtt.broker
    if broker:
        allows.append(_to("MQTT broker", "tcp", mqtt.port, broker))
    allows += [_to(extra.name, extra.proto, extra.port, extra.address) for extra in fw.extra]
    return allows


def _to(what: str, proto: str, port: int, address: str) -> Allow:
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise StepFailedError(f"The firewall entry {what!r} has {address[:80]!r}, which is not an address.",
                              "Give an IP address or network (CIDR) in the profile.") from None
    return Allow(what, proto, str(port), str(net), net.version)


def iptables_rules(allows: list[Allow], family: int) -> list[str]:
    """The OUTPUT rules as ``iptables -S OUTPUT`` (or ip6tables) prints them."""
    rules = ["-A OUTPUT -o lo -j ACCEPT", "-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    if family == 6:
        rules.append("-A OUTPUT -p ipv6-icmp -j ACCEPT")  # neighbour discovery: IPv6 dies without it
    for a in allows:
        if a.family not in (0, family):
            continue
        words = ["-A", "OUTPUT"]
        if a.address:
            words += ["-d", a.address]
        if a.proto:
            words += ["-p", a.proto, "-m", a.proto]
            words += ["--dport", a.port] if a.port else []
        rules.append(" ".join([*words, "-j", "ACCEPT"]))
    return rules


def _save_lines(saved: str) -> list[tuple[str, str]]:
    """iptables-save output as (table, line) for the lines inside a table; ValueError when it is not that."""
    found: list[tuple[str, str]] = []
    table = ""
    for number, raw in enumerate(saved.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
        elif line == "COMMIT":
            table = ""
        elif not table:
            raise ValueError(f"line {number} of iptables-save is outside a table: {line[:80]!r}")
        elif (line.startswith((":", "-A ")) and len(line.split()) >= 2) or table != "filter":
            found.append((table, line))
        else:
            raise ValueError(f"line {number} of iptables-save is not understood: {line[:80]!r}")
    return found


def render_iptables(saved: str, rules: list[str]) -> str:
    """An iptables-restore file: the filter table of ``saved`` (iptables-save) with OUTPUT replaced.

    INPUT, FORWARD and user chains keep their rules; other tables are not in the file, so iptables-restore
    leaves them alone. ValueError when ``saved`` is not iptables-save output."""
    lines = _save_lines(saved)
    seen_filter = any(line.strip() == "*filter" for line in saved.splitlines())
    heads: list[str] = []
    body: list[str] = []
    for table, line in lines:
        if table != "filter":
            continue
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if name != "OUTPUT":
                heads.append(f":{name} {policy} [0:0]")
        elif line.split()[1] != "OUTPUT":
            body.append(line)
    if not seen_filter:
        heads = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]"]
    builtin = [h for h in heads if h.split()[0] in (":INPUT", ":FORWARD")]
    user = [h for h in heads if h not in builtin]
    return "\n".join(["*filter", *builtin, ":OUTPUT DROP [0:0]", *user, *body, *rules, "COMMIT", ""])


def filter_output(saved: str) -> list[str] | None:
    """The filter table's OUTPUT chain of an iptables-save file as ``iptables -S OUTPUT`` prints it
    (policy first); None when the text is not iptables-save output or has no filter OUTPUT chain."""
    try:
        lines = _save_lines(saved)
    except ValueError:
        return None
    policy = [f"-P OUTPUT {line.split()[1]}" for table, line in lines if table == "filter" and
              line.startswith(":OUTPUT ")]
    rules = [line for table, line in lines if table == "filter" and line.split()[:2] == ["-A", "OUTPUT"]]
    return [*policy[:1], *rules] if policy else None


def nft_table(allows: list[Allow]) -> str:
    """The ``inet siteline`` table as ``nft list table inet siteline`` prints it."""
    rules = ['oifname "lo" accept', "ct state established,related accept", "meta l4proto ipv6-icmp accept"]
    for a in allows:
        words = []
        if a.address:
            words += ["ip" if a.family == 4 else "ip6", "daddr", a.address.removesuffix("/32").removesuffix("/128")]
        elif a.family:
            words += ["meta", "nfproto", "ipv4" if a.family == 4 else "ipv6"]
        if a.proto:
            words += [a.proto, "dport", a.port.replace(":", "-")] if a.port else ["meta", "l4proto", a.proto]
        rules.append(" ".join([*words, "accept"]))
    lines = [f"table inet {NFT_TABLE} {{", "\tchain output {",
             "\t\ttype filter hook output priority filter; policy drop;", *(f"\t\t{r}" for r in rules), "\t}", "}"]
    return "\n".join(lines) + "\n"


NFT_REPLACE = f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"  # create (no-op if there), then delete


def nft_script(allows: list[Allow]) -> str:
    """What ``nft -f`` loads: our table replaced in one transaction (created first, so the delete cannot fail)."""
    return NFT_REPLACE + nft_table(allows)


def same(live: str, wanted: str) -> bool:
    """Rule listings equal line by line, ignoring indentation, blank lines and nft's handle comments."""
    def norm(text: str) -> list[str]:
        return [" ".join(line.split("# handle")[0].split()) for line in text.splitlines() if line.strip()]
    return norm(live) == norm(wanted)


def same_set(live: str, policy: str, rules: list[str]) -> bool:
    lines = {" ".join(line.split()) for line in live.splitlines() if line.strip()}
    return lines == {policy, *rules}


@dataclass(frozen=True)
class Files:
    """The dead-man switch's files, beside the provisioned marker (a writable place the profile names).

    prev/prev6: what restores the rules before (the whole filter table for iptables, our previous table or
    none for nft); new/new6: what was loaded. pending.<token>: present while one apply's rules are loaded and
    not confirmed, renamed to confirmed (by Siteline) or, through reverting.<token>, to reverted (by that
    apply's own revert script, which knows only its token: a stale timer of an earlier apply finds nothing)."""

    where: str
    token: str = ""
    prev: str = ""
    prev6: str = ""
    new: str = ""
    new6: str = ""
    pending: str = ""
    reverting: str = ""
    confirmed: str = ""
    reverted: str = ""
    script: str = ""

    @classmethod
    def at(cls, where: str, token: str = "") -> Files:
        names = {"prev": "firewall.prev", "prev6": "firewall.prev6", "new": "firewall.new", "new6": "firewall.new6",
                 "pending": f"firewall.pending.{token}", "reverting": f"firewall.reverting.{token}",
                 "confirmed": "firewall.confirmed", "reverted": "firewall.reverted",
                 "script": f"firewall-revert.{token}.sh"}
        return cls(where, token, **{key: posixpath.join(where, name) for key, name in names.items()})

    def leftovers(self) -> str:
        """Shell words for every apply's markers and scripts (cleared before a new apply)."""
        q = shlex.quote
        return " ".join([*(q(posixpath.join(self.where, n)) + "*" for n in ("firewall.pending.",
                          "firewall.reverting.", "firewall-revert.")), q(self.confirmed), q(self.reverted)])


def revert_script(backend: Backend, files: Files, v6: bool) -> str:
    """One apply's half of the switch: claim its "pending" (atomic rename), restore the saved rules, and only
    then call it reverted; a failed restore puts the claim back (a rerun or the next Siteline run retries)."""
    q = shlex.quote
    if backend == "nft":
        restore = f"nft -f {q(files.prev)}"
    else:
        restore = f"iptables-restore -w 10 < {q(files.prev)}" + (
            f" && ip6tables-restore -w 10 < {q(files.prev6)}" if v6 else "")
    return ("#!/bin/sh\n# Siteline firewall dead-man switch: unless Siteline confirmed the new rules (renamed the\n"
            f"# pending file away), restore the rules saved before them. Apply {files.token}. Argument: seconds "
            "to wait first.\n"
            '[ -n "$1" ] && sleep "$1"\n'
            f"mv {q(files.pending)} {q(files.reverting)} 2>/dev/null || exit 0\n"
            f"if {restore}; then\n\tmv -f {q(files.reverting)} {q(files.reverted)}\nelse\n"
            f"\tmv -f {q(files.reverting)} {q(files.pending)}\n"
            f"\techo 'siteline: could not restore the previous firewall rules; {files.pending} is left for a "
            "retry' >&2\n\texit 1\nfi\n")
