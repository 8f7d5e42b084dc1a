"""Provisioning step 6: the firewall baseline from the profile, applied behind a dead-man switch, then verified.

The baseline drops outgoing traffic except loopback, replies (ESTABLISHED,RELATED), DNS/NTP/DHCP when the
profile says, the control plane on 443 and the broker on its port, and the profile's extra entries. Only
OUTPUT is touched: INPUT and every other table stay as they were. iptables gets its filter table reloaded
with OUTPUT replaced (one iptables-restore, atomic); nftables gets a table of its own (``inet siteline``,
replaced in one ``nft -f`` transaction), so the device's other tables keep working.

The dead-man switch, on the device, in the directory of the profile's provisioned marker (/etc/siteline):
the current rules are saved, a "pending" file is created and a revert is ARMED before anything changes
(a systemd transient timer, or a detached ``sleep`` where there is no systemd). The new rules are loaded;
Siteline then logs in afresh (a new connection, not the old one the conntrack rule keeps alive) and
confirms by renaming "pending" away. The revert renames the same file before restoring, so a confirm
racing the timer has exactly one winner: either the rules stay and are persisted for the next boot, or the
device went back to its previous rules by itself and the step says so. A wrong rule can lock Siteline out
for at most ``deadman_seconds``.
"""

from __future__ import annotations

import ipaddress
import posixpath
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Literal

from siteline.core.errors import TransportError
from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome
from siteline.core.provisioning.profile import Profile

Backend = Literal["iptables", "nft"]
REVERT_UNIT = "siteline-firewall-revert"
NFT_TABLE = "siteline"  # inet family: one table filters IPv4 and IPv6
RULES_V4 = "/etc/iptables/rules.v4"  # where iptables-persistent / netfilter-persistent load rules at boot
RULES_V6 = "/etc/iptables/rules.v6"
NFT_CONF = "/etc/nftables.conf"  # what nftables.service loads at boot
RECONNECT_TIMEOUT = 30.0
_HINT = "Check the profile's [firewall] allow-list, then run the provisioning again (it resumes at this step)."


# -- the baseline, rendered (pure) ------------------------------------------------------------------------------
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


def render_iptables(saved: str, rules: list[str]) -> str:
    """An iptables-restore file: the filter table of ``saved`` (iptables-save) with OUTPUT replaced.

    INPUT, FORWARD and user chains keep their rules; other tables are not in the file, so iptables-restore
    leaves them alone. ValueError when ``saved`` is not iptables-save output."""
    heads: list[str] = []
    body: list[str] = []
    table, seen_filter = "", False
    for number, raw in enumerate(saved.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table, seen_filter = line[1:], seen_filter or line == "*filter"
        elif line == "COMMIT":
            table = ""
        elif not table:
            raise ValueError(f"line {number} of iptables-save is outside a table: {line[:80]!r}")
        elif table != "filter":
            continue
        elif line.startswith(":") and len(line.split()) >= 2:
            name, policy = line[1:].split()[:2]
            if name != "OUTPUT":
                heads.append(f":{name} {policy} [0:0]")
        elif line.startswith("-A ") and len(line.split()) >= 2:
            if line.split()[1] != "OUTPUT":
                body.append(line)
        else:
            raise ValueError(f"line {number} of iptables-save is not understood: {line[:80]!r}")
    if not seen_filter:
        heads = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]"]
    builtin = [h for h in heads if h.split()[0] in (":INPUT", ":FORWARD")]
    user = [h for h in heads if h not in builtin]
    return "\n".join(["*filter", *builtin, ":OUTPUT DROP [0:0]", *user, *body, *rules, "COMMIT", ""])


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


def nft_script(allows: list[Allow]) -> str:
    """What ``nft -f`` loads: our table replaced in one transaction (created first, so the delete cannot fail)."""
    return f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n" + nft_table(allows)


def _same(live: str, wanted: str) -> bool:
    """Rule listings equal line by line, ignoring indentation, blank lines and nft's handle comments."""
    def norm(text: str) -> list[str]:
        return [" ".join(line.split("# handle")[0].split()) for line in text.splitlines() if line.strip()]
    return norm(live) == norm(wanted)


def _same_set(live: str, policy: str, rules: list[str]) -> bool:
    lines = {" ".join(line.split()) for line in live.splitlines() if line.strip()}
    return lines == {policy, *rules}


# -- the files on the device ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Files:
    """The dead-man switch's files, beside the provisioned marker (a writable place the profile names).

    prev/prev6: the rules before; new/new6: what was loaded (copied to the boot files on confirm); pending:
    present while loaded and not confirmed, renamed to confirmed (by Siteline) or reverted (by the switch)."""

    where: str
    prev: str = ""
    prev6: str = ""
    new: str = ""
    new6: str = ""
    pending: str = ""
    confirmed: str = ""
    reverted: str = ""
    script: str = ""

    @classmethod
    def at(cls, where: str) -> Files:
        names = {"prev": "firewall.prev", "prev6": "firewall.prev6", "new": "firewall.new", "new6": "firewall.new6",
                 "pending": "firewall.pending", "confirmed": "firewall.confirmed", "reverted": "firewall.reverted",
                 "script": "firewall-revert.sh"}
        return cls(where, **{key: posixpath.join(where, name) for key, name in names.items()})


def revert_script(backend: Backend, files: Files, v6: bool) -> str:
    """The device's half of the switch: claim "pending" (atomic rename), then restore the saved rules."""
    q = shlex.quote
    if backend == "nft":
        restore = f"nft -f {q(files.prev)}"
    else:
        restore = f"iptables-restore < {q(files.prev)}" + (f"\nip6tables-restore < {q(files.prev6)}" if v6 else "")
    return ("#!/bin/sh\n# Siteline firewall dead-man switch: unless Siteline confirmed the new rules (renamed the\n"
            "# pending file away), restore the rules saved before them. Argument: seconds to wait first.\n"
            '[ -n "$1" ] && sleep "$1"\n'
            f"mv {q(files.pending)} {q(files.reverted)} 2>/dev/null || exit 0\n{restore}\n")


# -- what the device has and needs -----------------------------------------------------------------------------
@dataclass
class Desired:
    backend: Backend
    systemd: bool
    rules: int  # allow rules (what the technician counts)
    loads: list[tuple[str, str, str]] = field(default_factory=list)  # (file to write, its text, restore command)
    saves: list[str] = field(default_factory=list)  # commands saving the current rules
    persist: list[str] = field(default_factory=list)  # commands persisting the loaded rules for the next boot
    live_ok: bool = False
    persisted_ok: bool = False


GATHER_LIMIT = 600  # characters of one gathered read: a serial console line holds 1000 with its framing (~250)


async def _gather(ctx: StepContext, commands: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Several reads in few round trips (a serial console makes each slow): name -> (exit status, stdout)."""
    token = secrets.token_hex(3)
    parts = {name: f"echo '@{token} {name}@'; {{ {command}; }} 2>/dev/null; printf '\\n@{token} rc %s@\\n' $?"
             for name, command in commands.items()}
    found: dict[str, tuple[int, str]] = {}
    batch: list[str] = []
    for name in [*parts, ""]:
        if batch and (not name or len("; ".join([*(parts[b] for b in batch), parts[name]])) > GATHER_LIMIT):
            out = (await ctx.read("; ".join(parts[b] for b in batch), timeout=60.0)).stdout.replace("\r\n", "\n")
            found |= {b: _section(out, token, b) for b in batch}
            batch = []
        if name:
            batch.append(name)
    return found


def _section(out: str, token: str, name: str) -> tuple[int, str]:
    head = out.find(f"@{token} {name}@\n")
    end = out.find(f"\n@{token} rc ", head)
    if head < 0 or end < 0:
        raise StepFailedError(f"The device's answer to the firewall reads was cut short (no {name!r} part).", _HINT)
    code = out[end + len(f"\n@{token} rc "):].split("@", 1)[0]
    return int(code) if code.isdigit() else 255, out[head + len(f"@{token} {name}@\n"):end]


def _reads(files: Files) -> dict[str, str]:
    q = shlex.quote
    names = "nft iptables-restore ip6tables-restore systemd-run"
    reads = {"tools": f"for t in {names}; do command -v $t >/dev/null 2>&1 && echo $t; done; true",
             "pending": f"test -e {q(files.pending)}", "ruleset": "nft list ruleset",
             "table": f"nft list table inet {NFT_TABLE}", "nft_conf": f"cat {q(NFT_CONF)}"}
    for tool, boot in (("iptables", RULES_V4), ("ip6tables", RULES_V6)):
        reads |= {f"{tool}-save": f"{tool}-save", f"{tool}-S": f"{tool} -S OUTPUT", f"{tool}-boot": f"cat {q(boot)}"}
    return reads


def _nft_in_use(ruleset: str) -> bool:
    """nft has tables of its own (not only the ones iptables-nft keeps there, which iptables manages)."""
    tables = [line for line in ruleset.splitlines() if line.startswith("table ")]
    managed = ruleset.count("managed by iptables-nft")
    return len(tables) > managed


def _backend(ctx: StepContext, tools: set[str], ruleset: str) -> Backend:
    kept = (ctx.job.data.get("firewall") or {}).get("backend")
    if kept == "nft" and "nft" in tools:
        return "nft"  # a resume keeps the backend the first run chose
    if kept == "iptables" and "iptables-restore" in tools:
        return "iptables"
    if "nft" in tools and (_nft_in_use(ruleset) or "iptables-restore" not in tools):
        return "nft"
    if "iptables-restore" in tools:
        return "iptables"
    raise StepFailedError("The device has neither nft nor iptables-restore, so no firewall baseline can be applied.",
                          "Install nftables or iptables in the device's image, or remove firewall_output from the "
                          "profile's required posture checks.")


async def _desired(ctx: StepContext, files: Files) -> tuple[Desired, bool]:
    """What the baseline needs on this device, and whether an unconfirmed apply is pending there."""
    read = await _gather(ctx, _reads(files))
    tools = set(read["tools"][1].split())
    ruleset = read["ruleset"][1] if "nft" in tools and read["ruleset"][0] == 0 else ""
    backend = _backend(ctx, tools, ruleset)
    allows = allow_list(ctx.profile)
    want = Desired(backend, "systemd-run" in tools, len(allows))
    pending = read["pending"][0] == 0
    q = shlex.quote
    if backend == "nft":
        if read["ruleset"][0] != 0:
            raise StepFailedError(f"`nft list ruleset` failed on the device (exit status {read['ruleset'][0]}).", _HINT)
        want.live_ok = read["table"][0] == 0 and _same(read["table"][1], nft_table(allows))
        conf = read["nft_conf"]
        want.persisted_ok = conf[0] == 0 and _same(conf[1], f"#!/usr/sbin/nft -f\nflush ruleset\n{ruleset}")
        want.saves = [f"{{ echo 'flush ruleset'; nft list ruleset; }} > {q(files.prev)}"]
        want.loads = [(files.new, nft_script(allows), f"nft -f {q(files.new)}")]
        tmp = q(NFT_CONF + ".siteline-tmp")
        want.persist = [f"{{ printf '%s\\n' '#!/usr/sbin/nft -f' 'flush ruleset'; nft list ruleset; }} > {tmp} && "
                        f"mv -f {tmp} {q(NFT_CONF)} && sync"]
        return want, pending
    families = [(4, "iptables", files.prev, files.new, RULES_V4)]
    if "ip6tables-restore" in tools:
        families.append((6, "ip6tables", files.prev6, files.new6, RULES_V6))
    want.live_ok = want.persisted_ok = True
    for family, tool, prev, new, boot in families:
        code, saved = read[f"{tool}-save"]
        rules = iptables_rules(allows, family)
        try:
            if code != 0:
                raise ValueError(f"exit status {code}")
            text = render_iptables(saved, rules)
        except ValueError as exc:
            raise StepFailedError(f"The device's {tool}-save output cannot be read: {exc}.", _HINT) from None
        live, persisted = read[f"{tool}-S"], read[f"{tool}-boot"]
        want.live_ok &= live[0] == 0 and _same_set(live[1], "-P OUTPUT DROP", rules)
        want.persisted_ok &= persisted[0] == 0 and _same(persisted[1], text)
        want.saves.append(f"{tool}-save > {q(prev)}")
        want.loads.append((new, text, f"{tool}-restore < {q(new)}"))
        tmp = q(boot + ".siteline-tmp")
        want.persist.append(f"mkdir -p {q(posixpath.dirname(boot))} && cp {q(new)} {tmp} && "
                            f"mv -f {tmp} {q(boot)} && sync")
    return want, pending


# -- the step ---------------------------------------------------------------------------------------------------
async def firewall_step(ctx: StepContext) -> StepOutcome:
    """Apply the profile's firewall baseline with a dead-man switch, confirm over a fresh login, persist, verify."""
    fw = ctx.profile.firewall
    files = Files.at(posixpath.dirname(ctx.profile.identity.marker) or "/etc/siteline")
    want, pending = await _desired(ctx, files)
    if pending:
        if want.live_ok:
            # An earlier run applied the rules and lost the link before confirming; this login proves them.
            return await _finish(ctx, want, files, "confirmed the baseline an interrupted run applied")
        # Half-done and not ours to keep: put the saved rules back now (the switch would anyway), then start over.
        await ctx.change(f"/bin/sh {shlex.quote(files.script)}", what="restore the rules saved by an interrupted run")
        want, _pending = await _desired(ctx, files)
    if want.live_ok and want.persisted_ok:
        ctx.job.data["firewall"] = {**_data(want), "confirmed": True}
        return StepOutcome(f"{want.backend} baseline already in place ({want.rules} allow rules)",
                           {"backend": want.backend, "rules": want.rules}, skipped=True)
    if want.live_ok:
        # Already live (a run lost the link after its confirm, before persisting): nothing to switch back from.
        for path, text, _load in want.loads:
            await ctx.write_file(path, text.encode(), mode=0o600, what=f"write the rules to {path}")
        return await _finish(ctx, want, files, "already live", confirm=False)
    await _arm_and_apply(ctx, want, files, fw.deadman_seconds)
    if ctx.dry_run:
        await _confirm(ctx, want, files)
        for command in want.persist:
            await _change(ctx, command, "persist the rules for the next boot")
        return StepOutcome(f"dry run: would apply the {want.backend} baseline ({want.rules} allow rules) behind a "
                           f"{fw.deadman_seconds:g} s dead-man switch", {"backend": want.backend, "rules": want.rules})
    await _reconnect(ctx, fw.deadman_seconds)
    return await _finish(ctx, want, files, f"applied behind a {fw.deadman_seconds:g} s dead-man switch")


def _data(want: Desired) -> dict[str, object]:
    return {"backend": want.backend, "rules": want.rules, "switch": "systemd-run" if want.systemd else "sleep"}


async def _arm_and_apply(ctx: StepContext, want: Desired, files: Files, seconds: float) -> None:
    """Save the current rules, write the new ones, arm the revert, then load the new rules atomically."""
    q = shlex.quote
    await ctx.change(f"mkdir -p {q(files.where)} && rm -f {q(files.pending)} {q(files.confirmed)} "
                     f"{q(files.reverted)}", what="prepare the dead-man switch's folder")
    for command in want.saves:
        await _change(ctx, command, "save the current rules (the dead-man switch restores them)")
    for path, text, _ in want.loads:
        await ctx.write_file(path, text.encode(), mode=0o600, what=f"write the new rules to {path}")
    await ctx.write_file(files.script, revert_script(want.backend, files, len(want.loads) > 1).encode(), mode=0o700,
                         what="write the dead-man switch's revert script")
    await _change(ctx, f": > {q(files.pending)}", "mark the new rules pending confirmation")
    delay = max(1, round(seconds))
    if want.systemd:
        unit = REVERT_UNIT
        await _change(ctx, f"systemctl stop {unit}.timer {unit}.service >/dev/null 2>&1; "
                      f"systemctl reset-failed {unit}.service >/dev/null 2>&1; "
                      f"systemd-run --on-active={delay}s --unit={unit} --description='Siteline firewall dead-man "
                      f"switch' /bin/sh {q(files.script)}", f"arm the revert in {delay} s (systemd timer)")
    else:
        await _change(ctx, f"(setsid nohup /bin/sh {q(files.script)} {delay} </dev/null >/dev/null 2>&1 &)",
                      f"arm the revert in {delay} s (a detached sleep)")
    for _path, _text, load in want.loads:
        result = await ctx.change(load, what="load the new rules (one atomic transaction)")
        if not result.ok:
            await ctx.change(f"/bin/sh {q(files.script)}", what="restore the previous rules now")
            why = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.exit_code}"]
            raise StepFailedError(f"The device refused the new firewall rules ({load}): {why[0][:200]}; its previous "
                                  "rules are back in place.", _HINT)


async def _change(ctx: StepContext, command: str, what: str) -> None:
    result = await ctx.change(command, what=what)
    if not result.ok:
        why = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit status {result.exit_code}"]
        raise StepFailedError(f"The device could not {what}: {why[0][:200]}", _HINT)


async def _reconnect(ctx: StepContext, seconds: float) -> None:
    """A fresh login proves the new rules let Siteline in; a failure leaves the device to revert by itself.

    Raised as a TransportError so the job is saved "interrupted": the next run resumes here and either
    confirms the rules (still pending, and that run's login is the proof) or, if the device reverted, applies
    them again."""
    try:
        await ctx.link.reconnect(min(RECONNECT_TIMEOUT, max(5.0, seconds / 2)))
    except TransportError as exc:
        raise TransportError(
            f"After the new firewall rules were loaded Siteline could not log in again ({exc.message}). Unless a "
            f"later login confirms them, the device restores its previous rules by itself within {seconds:g} s.",
            "Check the cable or link and run again; if the login keeps failing, the profile's allow-list keeps this "
            "laptop out: fix it, wait for the device to revert, run again.") from exc


async def _confirm(ctx: StepContext, want: Desired, files: Files) -> None:
    """Claim "pending" (the revert's rename then finds nothing), stop the timer."""
    q = shlex.quote
    claimed = await ctx.change(f"mv {q(files.pending)} {q(files.confirmed)}", what="confirm the new rules")
    if not claimed.ok:
        reverted = (await ctx.read(f"test -e {q(files.reverted)}")).ok
        raise StepFailedError(
            "The device had already restored its previous firewall rules: the dead-man switch fired before Siteline "
            "could confirm." if reverted else "The new firewall rules could not be confirmed: the pending marker "
            f"{files.pending} is gone.",
            "Run again; if it keeps happening, raise the profile's firewall.deadman_seconds.")
    if want.systemd:
        await ctx.change(f"systemctl stop {REVERT_UNIT}.timer >/dev/null 2>&1; true", what="stop the revert timer")


async def _finish(ctx: StepContext, want: Desired, files: Files, how: str, *, confirm: bool = True) -> StepOutcome:
    if confirm:
        await _confirm(ctx, want, files)
    for command in want.persist:
        await _change(ctx, command, "persist the rules for the next boot")
    digest = await ctx.read(f"sha256sum {shlex.quote(files.prev)}")
    previous = digest.stdout.split()[0] if digest.ok and digest.stdout.split() else ""
    await _verify(ctx, want)
    evidence = {**_data(want), "confirmed": True, "previous_sha256": previous, "persisted": _boot_files(want)}
    ctx.job.data["firewall"] = dict(evidence)
    return StepOutcome(f"{want.backend} baseline {how}: OUTPUT policy DROP with {want.rules} allow rules, "
                       "persisted and verified", evidence)


def _boot_files(want: Desired) -> list[str]:
    return [NFT_CONF] if want.backend == "nft" else [RULES_V4, RULES_V6][:len(want.loads)]


async def _verify(ctx: StepContext, want: Desired) -> None:
    """Read the live rules back: policy DROP and exactly the baseline's rules."""
    allows = allow_list(ctx.profile)
    if want.backend == "nft":
        code, live = (await _gather(ctx, {"table": f"nft list table inet {NFT_TABLE}"}))["table"]
        good = code == 0 and _same(live, nft_table(allows))
    else:
        families = ((4, "iptables"), (6, "ip6tables"))[:len(want.loads)]
        read = await _gather(ctx, {tool: f"{tool} -S OUTPUT" for _, tool in families})
        good = all(read[tool][0] == 0 and _same_set(read[tool][1], "-P OUTPUT DROP", iptables_rules(allows, family))
                   for family, tool in families)
    if not good:
        raise StepFailedError(f"The {want.backend} rules read back from the device are not the baseline "
                              "(policy DROP with the profile's allow rules).",
                              "Something on the device changed them; check `iptables -S OUTPUT` / `nft list "
                              "ruleset` there, then run again.")
