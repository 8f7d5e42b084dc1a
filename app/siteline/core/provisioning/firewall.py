"""Provisioning step 6: the firewall baseline from the profile, applied behind a dead-man switch, then verified.

The baseline drops outgoing traffic except loopback, replies (ESTABLISHED,RELATED), DNS/NTP/DHCP when the
profile says, the control plane on 443 and the broker on its port, and the profile's extra entries. Only
OUTPUT is touched: INPUT and every other table stay as they were. iptables gets its filter table reloaded
with OUTPUT replaced (one iptables-restore, atomic); nftables gets a table of its own (``inet siteline``,
replaced in one ``nft -f`` transaction), so the device's other tables keep working. The rendering is in
firewall_rules.py.

The dead-man switch, on the device, in the directory of the profile's provisioned marker (/etc/siteline):
the current rules are saved, a "pending.<token>" file is created and that apply's revert is ARMED before
anything changes (a systemd transient timer, or a detached ``sleep`` where there is no systemd). The new rules
are loaded; Siteline then logs in afresh (a new connection, not the old one the conntrack rule keeps alive)
and confirms by renaming "pending.<token>" away. The revert renames the same file before restoring, so a
confirm racing the timer has exactly one winner. The token keeps an earlier apply's timer (a cut run's) from
claiming a later apply's marker; its unit is stopped before anything else anyway. Once confirmed, what runs
is persisted for the next boot (iptables-save: every table; nft: our table only, in an include file).
A wrong rule can lock Siteline out for at most ``deadman_seconds``.
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
from dataclasses import dataclass, field

from siteline.core.errors import TransportError
from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome
from siteline.core.provisioning.firewall_rules import (
    NFT_CONF,
    NFT_INCLUDE,
    NFT_INCLUDE_LINE,
    NFT_REPLACE,
    NFT_TABLE,
    REVERT_UNIT,
    RULES_V4,
    RULES_V6,
    TOKEN,
    Allow,
    Backend,
    Files,
    allow_list,
    filter_output,
    iptables_rules,
    nft_script,
    nft_table,
    render_iptables,
    revert_script,
    same,
    same_set,
)

__all__ = ["NFT_CONF", "NFT_INCLUDE", "NFT_TABLE", "REVERT_UNIT", "RULES_V4", "RULES_V6", "Allow", "Files",
           "allow_list", "firewall_step", "iptables_rules", "nft_script", "nft_table", "render_iptables",
           "revert_script"]

RECONNECT_TIMEOUT = 30.0
_HINT = "Check the profile's [firewall] allow-list, then run the provisioning again (it resumes at this step)."
_NO_V6 = "not covered: the device has iptables but no ip6tables-restore"


# -- what the device has and needs -----------------------------------------------------------------------------
@dataclass
class Desired:
    backend: Backend
    systemd: bool
    rules: int  # allow rules (what the technician counts)
    loads: list[tuple[str, str, str]] = field(default_factory=list)  # (file to write, its text, restore command)
    saves: list[str] = field(default_factory=list)  # commands saving what the revert restores
    persist: list[str] = field(default_factory=list)  # commands persisting the live rules for the next boot
    live_ok: bool = False
    persisted_ok: bool = False
    ipv6: str = "covered"
    pending: list[str] = field(default_factory=list)  # tokens of applies loaded and not confirmed
    reverting: list[str] = field(default_factory=list)  # tokens of reverts cut short (claimed, not done)


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


def _reads(where: str) -> dict[str, str]:
    q = shlex.quote
    names = "nft iptables-restore ip6tables-restore systemd-run"
    reads = {"tools": f"for t in {names}; do command -v $t >/dev/null 2>&1 && echo $t; done; true",
             "pending": f"for f in {q(posixpath.join(where, 'firewall.pending.'))}* "
                        f"{q(posixpath.join(where, 'firewall.reverting.'))}*; do [ -e \"$f\" ] && "
                        "echo \"${f##*/firewall.}\"; done; true",
             "ruleset": "nft list ruleset", "table": f"nft list table inet {NFT_TABLE}",
             "nft_inc": f"cat {q(NFT_INCLUDE)}", "nft_conf": f"grep -qxF {q(NFT_INCLUDE_LINE)} {q(NFT_CONF)}"}
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


async def _desired(ctx: StepContext, files: Files) -> Desired:
    """What the baseline needs on this device (and the unconfirmed applies pending there)."""
    read = await _gather(ctx, _reads(files.where))
    tools = set(read["tools"][1].split())
    ruleset = read["ruleset"][1] if "nft" in tools and read["ruleset"][0] == 0 else ""
    backend = _backend(ctx, tools, ruleset)
    allows = allow_list(ctx.profile)
    want = Desired(backend, "systemd-run" in tools, len(allows))
    marks = [m.split(".", 1) for m in read["pending"][1].split() if m.count(".") == 1]
    want.pending = [t for kind, t in marks if kind == "pending" and TOKEN.match(t)]
    want.reverting = [t for kind, t in marks if kind == "reverting" and TOKEN.match(t)]
    if backend == "nft":
        _desired_nft(want, read, allows, files)
    else:
        _desired_iptables(want, read, allows, files, v6="ip6tables-restore" in tools)
    return want


def _desired_nft(want: Desired, read: dict[str, tuple[int, str]], allows: list[Allow], files: Files) -> None:
    q = shlex.quote
    if read["ruleset"][0] != 0:
        raise StepFailedError(f"`nft list ruleset` failed on the device (exit status {read['ruleset'][0]}).", _HINT)
    want.live_ok = read["table"][0] == 0 and same(read["table"][1], nft_table(allows))
    want.persisted_ok = read["nft_inc"][0] == 0 and same(read["nft_inc"][1], nft_script(allows)) and \
        read["nft_conf"][0] == 0
    # The revert touches our table only: delete it, or put back the one an earlier provisioning left.
    head = " ".join(q(line) for line in NFT_REPLACE.splitlines())
    want.saves = [f"{{ printf '%s\\n' {head}; nft list table inet {NFT_TABLE} 2>/dev/null || true; }} "
                  f"> {q(files.prev)}"]
    want.loads = [(files.new, nft_script(allows), f"nft -f {q(files.new)}")]
    inc, conf = q(NFT_INCLUDE), q(NFT_CONF)
    inc_tmp, conf_tmp = q(NFT_INCLUDE + ".siteline-tmp"), q(NFT_CONF + ".siteline-tmp")
    want.persist = [
        f"mkdir -p {q(posixpath.dirname(NFT_INCLUDE))} && cp {q(files.new)} {inc_tmp} && nft -c -f {inc_tmp} && "
        f"mv -f {inc_tmp} {inc} && sync",
        f"grep -qxF {q(NFT_INCLUDE_LINE)} {conf} 2>/dev/null || {{ {{ cat {conf} 2>/dev/null || echo "
        f"'#!/usr/sbin/nft -f'; printf '\\n%s\\n' {q(NFT_INCLUDE_LINE)}; }} > {conf_tmp} && mv -f {conf_tmp} {conf} "
        "&& sync; }"]


def _desired_iptables(want: Desired, read: dict[str, tuple[int, str]], allows: list[Allow], files: Files, *,
                      v6: bool) -> None:
    q = shlex.quote
    families = [(4, "iptables", files.prev, files.new, RULES_V4)]
    if v6:
        families.append((6, "ip6tables", files.prev6, files.new6, RULES_V6))
    else:
        want.ipv6 = _NO_V6  # IPv6 traffic is not filtered by the baseline: say so, never claim it is
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
        want.live_ok &= live[0] == 0 and same_set(live[1], "-P OUTPUT DROP", rules)
        booted = filter_output(persisted[1]) if persisted[0] == 0 else None
        want.persisted_ok &= booted is not None and same_set("\n".join(booted), "-P OUTPUT DROP", rules)
        want.saves.append(f"{tool}-save > {q(prev)}")
        want.loads.append((new, text, f"{tool}-restore -w 10 < {q(new)}"))
        tmp = q(boot + ".siteline-tmp")
        # What runs once confirmed, every table (nat, mangle, raw too): what iptables-persistent would save.
        want.persist.append(f"mkdir -p {q(posixpath.dirname(boot))} && {tool}-save > {tmp} && "
                            f"mv -f {tmp} {q(boot)} && sync")


# -- the step ---------------------------------------------------------------------------------------------------
async def firewall_step(ctx: StepContext) -> StepOutcome:
    """Apply the profile's firewall baseline with a dead-man switch, confirm over a fresh login, persist, verify."""
    fw = ctx.profile.firewall
    where = posixpath.dirname(ctx.profile.identity.marker) or "/etc/siteline"
    want = await _desired(ctx, Files.at(where))
    disarmed = False
    if want.pending or want.reverting:
        if want.live_ok and len(want.pending) == 1 and not want.reverting:
            # An earlier run applied the rules and lost the link before confirming; this login proves them.
            files = Files.at(where, want.pending[0])
            return await _finish(ctx, want, files, "confirmed the baseline an interrupted run applied")
        await _restore_interrupted(ctx, want, where)
        disarmed = True
        want = await _desired(ctx, Files.at(where))
    if want.live_ok and want.persisted_ok:
        ctx.job.data["firewall"] = {**_data(want), "confirmed": True}
        return StepOutcome(f"{want.backend} baseline already in place ({want.rules} allow rules){_v6_note(want)}",
                           {**_data(want), "rules": want.rules}, skipped=True)
    if want.live_ok:
        # Already live (a run lost the link after its confirm, before persisting): nothing to switch back from.
        return await _finish(ctx, want, Files.at(where), "already live", confirm=False)
    files = Files.at(where, secrets.token_hex(4))
    await _arm_and_apply(ctx, want, files, fw.deadman_seconds, disarmed=disarmed)
    if ctx.dry_run:
        await _confirm(ctx, want, files)
        for command in want.persist:
            await _change(ctx, command, "persist the rules for the next boot")
        return StepOutcome(f"dry run: would apply the {want.backend} baseline ({want.rules} allow rules) behind a "
                           f"{fw.deadman_seconds:g} s dead-man switch{_v6_note(want)}", _data(want))
    await _reconnect(ctx, fw.deadman_seconds)
    return await _finish(ctx, want, files, f"applied behind a {fw.deadman_seconds:g} s dead-man switch")


async def _restore_interrupted(ctx: StepContext, want: Desired, where: str) -> None:
    """Half-done and not ours to keep: disarm its timer first (it must not fire into what follows), then put
    the saved rules back by hand (a revert cut short, its unit stopped, runs again from the start)."""
    q = shlex.quote
    await _disarm(ctx, want)
    for token in [*want.reverting, *want.pending]:
        old = Files.at(where, token)
        back = f"mv -f {q(old.reverting)} {q(old.pending)}; " if token in want.reverting else ""
        await _change(ctx, f"{back}/bin/sh {q(old.script)}", "restore the rules saved by an interrupted run")


def _data(want: Desired) -> dict[str, object]:
    return {"backend": want.backend, "rules": want.rules, "switch": "systemd-run" if want.systemd else "sleep",
            "ipv6": want.ipv6}


def _v6_note(want: Desired) -> str:
    return "" if want.ipv6 == "covered" else f"; IPv6 {want.ipv6}"


async def _disarm(ctx: StepContext, want: Desired) -> None:
    """Stop an earlier apply's revert unit (its timer and service) and forget it, so the name is free again."""
    if want.systemd:
        unit = REVERT_UNIT
        await ctx.change(f"systemctl stop {unit}.timer {unit}.service >/dev/null 2>&1; "
                         f"systemctl reset-failed {unit}.service >/dev/null 2>&1; true",
                         what="stop an earlier apply's revert timer")


async def _arm_and_apply(ctx: StepContext, want: Desired, files: Files, seconds: float, *, disarmed: bool) -> None:
    """Save the current rules, write the new ones, arm this apply's revert, then load the new rules atomically."""
    q = shlex.quote
    if not disarmed:
        await _disarm(ctx, want)  # before the new marker exists: no earlier timer may fire into this apply
    await _change(ctx, f"mkdir -p {q(files.where)} && rm -f {files.leftovers()}",
                  "prepare the dead-man switch's folder")
    for command in want.saves:
        await _change(ctx, command, "save the current rules (the dead-man switch restores them)")
    for path, text, _ in want.loads:
        await ctx.write_file(path, text.encode(), mode=0o600, what=f"write the new rules to {path}")
    await ctx.write_file(files.script, revert_script(want.backend, files, len(want.loads) > 1).encode(), mode=0o700,
                         what="write the dead-man switch's revert script")
    await _change(ctx, f": > {q(files.pending)}", "mark the new rules pending confirmation")
    delay = max(1, round(seconds))
    if want.systemd:
        await _change(ctx, f"systemd-run --on-active={delay}s --unit={REVERT_UNIT} --description='Siteline firewall "
                      f"dead-man switch' /bin/sh {q(files.script)}", f"arm the revert in {delay} s (systemd timer)")
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
    """Claim this apply's "pending" (its revert's rename then finds nothing), stop the timer."""
    q = shlex.quote
    claimed = await ctx.change(f"mv {q(files.pending)} {q(files.confirmed)}", what="confirm the new rules")
    if not claimed.ok:
        reverted = (await ctx.read(f"test -e {q(files.reverted)} || test -e {q(files.reverting)}")).ok
        raise StepFailedError(
            "The device had already restored its previous firewall rules: the dead-man switch fired before Siteline "
            "could confirm." if reverted else "The new firewall rules could not be confirmed: the pending marker "
            f"{files.pending} is gone.",
            "Run again; if it keeps happening, raise the profile's firewall.deadman_seconds.")
    stop = f"systemctl stop {REVERT_UNIT}.timer >/dev/null 2>&1; " if want.systemd else ""
    # The confirmed apply's revert script has nothing left to claim: drop it (a sleeping switch holds it open).
    await ctx.change(f"{stop}rm -f {q(files.script)}; true", what="stop the revert timer")


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
                       f"persisted and verified{_v6_note(want)}", evidence)


def _boot_files(want: Desired) -> list[str]:
    return [NFT_INCLUDE, NFT_CONF] if want.backend == "nft" else [RULES_V4, RULES_V6][:len(want.loads)]


async def _verify(ctx: StepContext, want: Desired) -> None:
    """Read the live rules back: policy DROP and exactly the baseline's rules."""
    allows = allow_list(ctx.profile)
    if want.backend == "nft":
        code, live = (await _gather(ctx, {"table": f"nft list table inet {NFT_TABLE}"}))["table"]
        good = code == 0 and same(live, nft_table(allows))
    else:
        families = ((4, "iptables"), (6, "ip6tables"))[:len(want.loads)]
        read = await _gather(ctx, {tool: f"{tool} -S OUTPUT" for _, tool in families})
        good = all(read[tool][0] == 0 and same_set(read[tool][1], "-P OUTPUT DROP", iptables_rules(allows, family))
                   for family, tool in families)
    if not good:
        raise StepFailedError(f"The {want.backend} rules read back from the device are not the baseline "
                              "(policy DROP with the profile's allow rules).",
                              "Something on the device changed them; check `iptables -S OUTPUT` / `nft list "
                              "ruleset` there, then run again.")
