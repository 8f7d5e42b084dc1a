"""Pure parsers for what the posture checks read: mounts, lsblk, cryptsetup, iptables/nft, sshd, openssl, date, NTP.

Each takes the tool's text and returns a typed value or raises ParseError with the reason in words;
nothing else escapes. The verdicts (pass / fail / unknown) are made from these in ``checks``.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from typing import Any

from siteline.api import ParseError

_HINT = "The raw output is shown beside the check."


@dataclass(frozen=True)
class Mount:
    source: str
    point: str
    fstype: str
    options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


_OCTAL = re.compile(r"\\([0-7]{3})")
# util-linux and busybox `mount`: "/dev/root on / type ext4 (rw,relatime)"
_MOUNT_LINE = re.compile(r"^(\S+) on (\S+) type (\S+) \(([^)]*)\)")


def _unescape(field: str) -> str:
    # /proc/mounts writes a space in a path as \040 (and tab, newline, backslash likewise).
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> tuple[Mount, ...]:
    """/proc/mounts (``src point type opts 0 0``) or ``mount`` output (``src on point type T (opts)``)."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        m = _MOUNT_LINE.match(line.strip())
        if m:
            mounts.append(Mount(m[1], m[2], m[3], tuple(m[4].split(","))))
            continue
        words = line.split()
        if len(words) in (4, 6) and words[1].startswith("/"):
            mounts.append(Mount(_unescape(words[0]), _unescape(words[1]), words[2], tuple(words[3].split(","))))
    if not mounts:
        raise ParseError("could not read the device's mounts: no line looked like /proc/mounts or `mount`", _HINT)
    return tuple(mounts)


@dataclass(frozen=True)
class BlockDev:
    name: str
    type: str | None  # disk, part, crypt, lvm, loop ...
    fstype: str | None  # crypto_LUKS on the partition that holds a LUKS volume
    mountpoints: tuple[str, ...]
    ancestors: tuple[BlockDev, ...] = ()  # nearest first: the partition under a crypt volume


def parse_lsblk_json(text: str) -> tuple[BlockDev, ...]:
    """``lsblk -J -o NAME,TYPE,FSTYPE,MOUNTPOINT`` (or MOUNTPOINTS, util-linux 2.37+): every node, flattened."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"lsblk did not print JSON ({exc})", _HINT) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("blockdevices"), list):
        raise ParseError("lsblk's JSON has no 'blockdevices' list", _HINT)
    found: list[BlockDev] = []
    _walk(doc["blockdevices"], (), found, 0)
    return tuple(found)


def _walk(nodes: list[Any], ancestors: tuple[BlockDev, ...], found: list[BlockDev], depth: int) -> None:
    if depth > 32:  # a device stack is never this deep: stop rather than recurse on hostile input
        return
    for node in nodes:
        if not isinstance(node, dict):
            continue
        points = node.get("mountpoints", [node.get("mountpoint")])
        dev = BlockDev(
            name=str(node.get("name", "")),
            type=_text(node.get("type")),
            fstype=_text(node.get("fstype")),
            mountpoints=tuple(p for p in points if isinstance(p, str)) if isinstance(points, list) else (),
            ancestors=ancestors,
        )
        found.append(dev)
        children = node.get("children")
        if isinstance(children, list):
            _walk(children, (dev, *ancestors), found, depth + 1)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_cryptsetup_status(text: str) -> dict[str, str]:
    """``cryptsetup status NAME`` blocks -> {mapper name: type ("LUKS2", "PLAIN" ...)}; inactive ones left out."""
    result: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        head = re.match(r"^/dev/mapper/(\S+) is active", line)
        if head:
            name = head[1]
            result[name] = ""
        elif name is not None and re.match(r"^\s+type:\s*\S", line):
            result[name] = line.split(":", 1)[1].strip()
    return result


@dataclass(frozen=True)
class OutputChain:
    """A chain on the output hook: its policy and how many rules let traffic out."""

    source: str  # "iptables" or "nft"
    name: str
    policy: str | None  # "ACCEPT" / "DROP" in upper case; None for a chain without one
    accepts: int
    ends_in_drop: bool  # a last rule that drops everything left is a DROP policy in effect

    @property
    def drops_by_default(self) -> bool:
        return self.policy == "DROP" or self.ends_in_drop


def parse_iptables_s(text: str) -> OutputChain:
    """``iptables -S OUTPUT``: ``-P OUTPUT DROP`` then ``-A OUTPUT ... -j ACCEPT`` rules."""
    policy: str | None = None
    accepts, last = 0, ""
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["-P", "OUTPUT"] and len(words) >= 3:
            policy = words[2].upper()
        elif words[:2] == ["-A", "OUTPUT"]:
            accepts += _jump(words) == "ACCEPT"
            last = line
    if policy is None:
        raise ParseError("`iptables -S OUTPUT` printed no '-P OUTPUT' policy line", _HINT)
    words = last.split()
    # "-A OUTPUT -j DROP" (or REJECT --reject-with ...) last: whatever no rule above let out is dropped.
    matchers = [w for w in words[2:] if w.startswith("-") and w not in ("-j", "--reject-with")]
    final_drop = _jump(words) in ("DROP", "REJECT") and not matchers
    return OutputChain("iptables", "OUTPUT", policy, accepts, final_drop)


def _jump(words: list[str]) -> str:
    return words[words.index("-j") + 1].upper() if "-j" in words[:-1] else ""


def parse_nft_json(text: str) -> tuple[OutputChain, ...]:
    """``nft -j list ruleset``: chains hooked on output, with their policy and accept rules."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"nft did not print JSON ({exc})", _HINT) from None
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ParseError("nft's JSON has no 'nftables' list", _HINT)
    chains: dict[tuple[object, object, object], dict[str, Any]] = {}
    rules: dict[tuple[object, object, object], list[Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        chain, rule = item.get("chain"), item.get("rule")
        if isinstance(chain, dict) and chain.get("hook") == "output":
            chains[(chain.get("family"), chain.get("table"), chain.get("name"))] = chain
        elif isinstance(rule, dict):
            rules.setdefault((rule.get("family"), rule.get("table"), rule.get("chain")), []).append(rule.get("expr"))
    return tuple(_nft_chain(key, chain, rules.get(key, [])) for key, chain in chains.items())


def _nft_chain(key: tuple[object, object, object], chain: dict[str, Any], exprs: list[Any]) -> OutputChain:
    verdicts = [_verdict(e) for e in exprs]
    final = bool(exprs) and verdicts[-1] == "drop" and _unconditional(exprs[-1])
    policy = chain.get("policy")
    return OutputChain("nft", f"{key[0]} {key[1]} {key[2]}", policy.upper() if isinstance(policy, str) else None,
                       verdicts.count("accept"), final)


def _unconditional(expr: object) -> bool:
    # A rule with no "match" statement ("counter drop") applies to every packet that reaches it.
    return isinstance(expr, list) and all(isinstance(s, dict) and "match" not in s for s in expr)


def _verdict(expr: object) -> str:
    # The verdict is the statement {"accept": null} / {"drop": null} / {"reject": ...} at the end of a rule.
    if isinstance(expr, list) and expr and isinstance(expr[-1], dict):
        for word in ("accept", "drop", "reject"):
            if word in expr[-1]:
                return "drop" if word == "reject" else word
    return ""


_NFT_CHAIN = re.compile(r"^\s*chain\s+(\S+)\s*\{")
_NFT_HOOK = re.compile(r"\bhook\s+output\b")
_NFT_POLICY = re.compile(r"\bpolicy\s+(accept|drop)\b")


def parse_nft_text(text: str) -> tuple[OutputChain, ...]:
    """``nft list ruleset`` in its text form (older nft, or one built without JSON support)."""
    if "table" not in text:
        raise ParseError("`nft list ruleset` printed no table", _HINT)
    chains: list[OutputChain] = []
    name: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        start = _NFT_CHAIN.match(line)
        if start:
            name, body = start[1], []
        elif name is not None and line.strip() == "}":
            chains += _text_chain(name, body)
            name = None
        elif name is not None:
            body.append(line.strip())
    return tuple(chains)


def _text_chain(name: str, body: list[str]) -> list[OutputChain]:
    head = next((line for line in body if _NFT_HOOK.search(line)), None)
    if head is None:
        return []
    policy = _NFT_POLICY.search(head)
    rules = [line for line in body if line and line != head]
    final = bool(rules) and rules[-1] in ("drop", "reject", "counter drop", "counter reject")
    return [OutputChain("nft", name, policy[1].upper() if policy else None,
                        sum(1 for r in rules if r.split()[-1:] == ["accept"]), final)]


def parse_sshd_t(text: str) -> dict[str, str]:
    """``sshd -T``: the effective settings, one ``keyword value`` a line, keywords in lower case."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and re.fullmatch(r"[a-z0-9]+", words[0]):
            result.setdefault(words[0], words[1].strip().lower())
    if not result:
        raise ParseError("`sshd -T` printed no settings", _HINT)
    return result


def parse_sshd_config(text: str) -> dict[str, str]:
    """sshd_config text: the global settings (first value wins, as sshd reads them; Match blocks left out)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        words = line.strip().replace("=", " ", 1).split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        if key == "match":
            break  # everything after a Match line applies only to some connections
        if len(words) == 2:
            result.setdefault(key, words[1].split("#", 1)[0].strip().strip('"').lower())
    return result


def parse_dropbear(text: str) -> tuple[bool, str]:
    """Dropbear (Yocto, OpenWrt): whether password logins are off, and where that was read.

    Reads running servers' command lines (``cmdline: /usr/sbin/dropbear -s ...``: ``-s`` turns passwords
    off), then Yocto's /etc/default/dropbear (``DROPBEAR_EXTRA_ARGS="-s"``) and OpenWrt's
    /etc/config/dropbear (``option PasswordAuth 'off'``).
    """
    running = [line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("cmdline:")]
    if running:
        return all(_dropbear_flag(words[1:], "s") for words in running), "dropbear command line"
    extra = re.search(r"^\s*DROPBEAR_EXTRA_ARGS=[\"']?([^\"'\n]*)", text, re.MULTILINE)
    if extra:
        return _dropbear_flag(extra[1].split(), "s"), "/etc/default/dropbear"
    uci = re.search(r"^\s*option\s+PasswordAuth\s+['\"]?(\w+)", text, re.MULTILINE)
    if uci:
        return uci[1].lower() in ("off", "0", "no", "false"), "/etc/config/dropbear"
    raise ParseError("no dropbear command line or settings", _HINT)


_DROPBEAR_VALUE_OPTIONS = set("bcrpPWKITD")  # options that take a value: what follows is that value


def _dropbear_flag(args: list[str], flag: str) -> bool:
    # Dropbear takes grouped short flags ("-sg"); the letters after one that takes a value are that value.
    for arg in args:
        if not arg.startswith("-") or arg.startswith("--"):
            continue
        for letter in arg[1:]:
            if letter == flag:
                return True
            if letter in _DROPBEAR_VALUE_OPTIONS:
                break
    return False


_MONTHS = {name: n for n, name in enumerate(calendar.month_abbr) if name}
_ENDDATE = re.compile(r"notAfter=([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})\s+GMT")


def parse_openssl_enddate(text: str) -> float:
    """``openssl x509 -enddate -noout``: ``notAfter=Mar  5 10:12:01 2027 GMT`` -> seconds since the epoch."""
    m = _ENDDATE.search(text)
    if m is None or m[1] not in _MONTHS:
        raise ParseError("openssl printed no 'notAfter=' date", _HINT)
    try:
        fields = (int(m[6]), _MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4]), int(m[5]))
        if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] <= 60):
            raise ValueError(m[0])
        return float(calendar.timegm((*fields, 0, 0, 0)))
    except (ValueError, OverflowError):
        raise ParseError(f"openssl printed a date that does not exist: {m[0]!r}", _HINT) from None


_EPOCH = re.compile(r"^\s*(-?\d{1,12})(?:\.(\d{1,9}))?")


def parse_epoch(text: str) -> float:
    """``date -u +%s.%N`` (busybox prints ``%N`` literally, or no fraction with ``+%s``) -> seconds."""
    m = _EPOCH.match(text)
    if m is None:
        raise ParseError(f"the device's date printed no seconds count: {text[:60]!r}", _HINT)
    return int(m[1]) + (int(m[2]) / 10 ** len(m[2]) if m[2] else 0.0)


def parse_ntp_sync(text: str) -> tuple[bool | None, str]:
    """Whether the clock is synchronised, and which tool said so.

    ``timedatectl show -p NTPSynchronized`` (``NTPSynchronized=yes``), ``timedatectl status``
    ("System clock synchronized: yes"; systemd < 239 says "NTP synchronized"), or ``chronyc tracking``
    ("Leap status     : Normal" when synchronised, "Not synchronised" otherwise).
    """
    patterns = (
        (r"^NTPSynchronized=(yes|no)\s*$", "timedatectl"),
        (r"^\s*(?:System clock|NTP) synchronized:\s*(yes|no)\s*$", "timedatectl"),
    )
    for pattern, tool in patterns:
        m = re.search(pattern, text, re.MULTILINE)
        if m:
            return m[1] == "yes", tool
    leap = re.search(r"^Leap status\s*:\s*(.+?)\s*$", text, re.MULTILINE)
    if leap:
        return leap[1] != "Not synchronised", "chronyc"
    raise ParseError("no synchronisation state in timedatectl's or chronyc's output", _HINT)
