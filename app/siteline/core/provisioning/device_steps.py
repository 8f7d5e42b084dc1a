"""Wizard steps 1, 2 and 5: identify the device, set its names, write its MQTT client configuration.

identify only reads (one round trip over SSH; a few over a serial console, whose lines are short), checks the
device is of the profile's family and not provisioned already, and names it. names and mqtt read what the
device has and change only what differs, through ``ctx.change`` / ``ctx.write_file`` (so a dry run lists
exactly that), then read it back.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import posixpath
import re
import shlex
from collections.abc import Mapping
from typing import Any

from siteline.api import MAX_ROUND_TRIP, Section, batches, sections_command, split_sections
from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome, StepRefusedError
from siteline.core.provisioning.profile import (
    Profile,
    ProfileError,
    load_profile,
    profile_folders,
    render,
    telemetry_interval,
)

TIMEOUT = 30.0
SERIAL_FILES = ("/proc/device-tree/serial-number", "/sys/firmware/devicetree/base/serial-number",
                "/sys/class/dmi/id/product_serial")
# What firmware writes where it has no serial number: not an identity.
_NO_SERIAL = {"", "none", "n/a", "na", "not specified", "not applicable", "to be filled by o.e.m.", "default string",
              "system serial number", "0123456789", "unknown"}
_LINK = re.compile(r"^\d+:\s+([^:@\s]+)(?:@\S+)?:.*?link/(\w+)\s+((?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})", re.M)
_SYS_MAC = re.compile(r"^/sys/class/net/([^/\s]+)/address\s+((?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})\s*$", re.M)
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# Device text goes to the technician's terminal, the audit trail and the record: no control characters (C0, DEL,
# C1: an escape sequence rewrites a terminal), each value bounded, the whole answer bounded before parsing.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_FACT = 256  # characters kept of one value (PRETTY_NAME, hostname, compatible, an interface name)
MAX_ANSWER = 64 * 1024  # characters of one section parsed at all
MAX_LINE = 1024  # characters of one os-release line given to shlex (which is slow on huge input)


# -- 1. identify ------------------------------------------------------------------------------------------------
def identify_commands(profile: Profile) -> list[tuple[str, str]]:
    """(section, sh command) pairs: read-only, POSIX sh and BusyBox ash alike."""
    q = shlex.quote
    serial = " || ".join(f"cat {f} 2>/dev/null" for f in SERIAL_FILES)
    return [
        ("serial", f"{serial}; echo"),
        ("links", "ip -o link 2>/dev/null || for f in /sys/class/net/*/address; do echo \"$f $(cat \"$f\")\"; done"),
        ("imei", "mmcli -m any -K 2>/dev/null | grep -i 'modem.3gpp.imei'"),
        ("os", "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"),
        ("rauc", "grep -i '^compatible' /etc/rauc/system.conf 2>/dev/null"),
        ("hostname", "hostname 2>/dev/null || cat /etc/hostname"),
        ("marker", f"cat {q(profile.identity.marker)} 2>/dev/null"),
    ]


async def read_sections(ctx: StepContext, commands: list[tuple[str, str]]) -> dict[str, Section]:
    """All commands in one round trip over SSH; in round trips of a console line's length over serial."""
    groups = batches(commands, MAX_ROUND_TRIP) if ctx.link.kind == "serial" else [commands]
    found: dict[str, Section] = {}
    for group in groups:
        found.update(split_sections(group, await ctx.read(sections_command(group), TIMEOUT)))
    return found


def parse_serial(text: str) -> str:
    """The serial number from a device-tree or DMI file: NULs, control bytes and placeholders taken out."""
    line = next((ln.strip() for ln in re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text).splitlines() if ln.strip()), "")
    clean = re.sub(r"[^A-Za-z0-9._-]", "", line)[:64]
    if line.lower() in _NO_SERIAL or not clean or set(clean) <= {"0"} or set(clean) <= {"F", "f"}:
        return ""
    return clean


def printable(text: str, limit: int = MAX_FACT) -> str:
    """``text`` without control characters, cut to ``limit``: safe to print, record and show."""
    return _CONTROLS.sub("", text[:limit * 4])[:limit].strip()


def parse_macs(text: str) -> dict[str, str]:
    """{interface: mac} from `ip -o link` (or /sys/class/net/*/address lines); loopback and all-zero left out."""
    text = re.sub(r"\n[ \t]+", " ", text)  # `ip link` without -o (BusyBox) puts link/... on the next line
    found = {printable(name, 64): mac.lower() for name, kind, mac in _LINK.findall(text) if kind != "loopback"}
    found.update({printable(name, 64): mac.lower() for name, mac in _SYS_MAC.findall(text) if name not in found})
    return {name: mac for name, mac in found.items() if name and name != "lo" and mac != "00:00:00:00:00:00"}


def parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines()[:200]:
        key, sep, value = line[:MAX_LINE].strip().partition("=")
        if sep and re.fullmatch(r"[A-Z0-9_]{1,64}", key):
            try:
                value = " ".join(shlex.split(value)) if value else ""
            except ValueError:
                value = value.strip("\"'")
            fields[key] = printable(value)
    return fields


def parse_imei(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "modem.3gpp.imei":
            digits = value.strip()
            return digits if re.fullmatch(r"\d{14,16}", digits) else ""
    return ""


def parse_compatible(text: str) -> str:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "compatible":
            return printable(value)
    return ""


def read_facts(sections: Mapping[str, Section]) -> dict[str, Any]:
    def out(name: str) -> str:
        section = sections.get(name)
        return section.stdout[:MAX_ANSWER] if section is not None else ""

    serial = parse_serial(out("serial"))
    macs = parse_macs(out("links"))
    mac = next(iter(macs.values()), "")
    tail_source = serial or mac.replace(":", "")
    hostname = next((printable(ln) for ln in out("hostname").splitlines() if printable(ln)), "")
    return {"serial": serial, "serial_tail": tail_source[-6:].lower(), "macs": macs, "mac": mac,
            "imei": parse_imei(out("imei")), "os_release": parse_os_release(out("os")),
            "compatible": parse_compatible(out("rauc")), "hostname": hostname}


def family_of(facts: Mapping[str, Any]) -> list[str]:
    """What the device says it is: its RAUC compatible, then its os-release ID."""
    found = [str(facts.get("compatible") or ""), str(facts.get("os_release", {}).get("ID", ""))]
    return [f for f in found if f]


def fits(profile: Profile, facts: Mapping[str, Any]) -> bool:
    return any(fnmatch.fnmatchcase(kind, pattern) for kind in family_of(facts) for pattern in profile.family)


def _fitting_profiles(facts: Mapping[str, Any]) -> list[str]:
    """Names of the profiles (the technician's and the examples) that would fit this device."""
    names: list[str] = []
    for folder in profile_folders():
        for path in sorted(folder.glob("*.toml"))[:50]:
            try:
                if fits(load_profile(path), facts) and path.stem not in names:
                    names.append(path.stem)
            except ProfileError:
                continue
    return names


def _marker_text(doc: object) -> str:
    """When and by which job a device was provisioned, from its marker's JSON (garbage: said so)."""
    if not isinstance(doc, dict):
        return "its provisioning marker is unreadable"
    when = doc.get("when") or doc.get("time") or ""
    if isinstance(when, int | float) and not isinstance(when, bool) and 0 < when < 1e11:
        when = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"on {printable(str(when), 40)}" if when else "",
             f"by job {printable(str(doc.get('job', '')), 40)}" if doc.get("job") else "",
             f"(technician {printable(str(doc.get('technician')), 40)})" if doc.get("technician") else "",
             f"with profile {printable(str(doc.get('profile')), 60)}" if doc.get("profile") else ""]
    return "it was provisioned " + " ".join(p for p in parts if p) if any(parts) else "it carries a marker"


def _check_not_provisioned(ctx: StepContext, marker: Section | None) -> dict[str, Any] | None:
    """The marker's document when the device is provisioned already (and re-provisioning was confirmed)."""
    if marker is None or not marker.ok or not marker.stdout.strip():
        return None
    try:
        doc = json.loads(marker.stdout)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("job") == ctx.job.id:
        return None  # this job's own marker: a resumed run, not a second provisioning
    if not ctx.job.data.get("identify", {}).get("reprovision"):
        raise StepRefusedError(
            f"This device is provisioned already: {_marker_text(doc)} ({ctx.profile.identity.marker}).",
            "Re-provisioning replaces its passwords and identity: confirm it (--reprovision / the wizard's "
            "re-provision box) only if that is what you mean.")
    return doc if isinstance(doc, dict) else {"unreadable": True}


def _device_name(ctx: StepContext, facts: Mapping[str, Any]) -> str:
    kinds = family_of(facts)
    values = {"serial": facts["serial"] or facts["mac"].replace(":", ""), "serial_tail": facts["serial_tail"],
              "mac": facts["mac"].replace(":", ""), "imei": facts["imei"], "family": kinds[0] if kinds else ""}
    try:
        name = render(ctx.profile.identity.name_template, values)
    except ProfileError as exc:
        raise StepFailedError(exc.message, exc.hint) from None
    if not _DEVICE_NAME.fullmatch(name):
        raise StepFailedError(f"The device's name {name[:80]!r} (from identity.name_template "
                              f"{ctx.profile.identity.name_template!r}) is not usable as a name.",
                              "Use placeholders the device has (this one has no IMEI?) and letters, digits, - . _")
    return name


async def identify_step(ctx: StepContext) -> StepOutcome:
    sections = await read_sections(ctx, identify_commands(ctx.profile))
    facts = read_facts(sections)
    if not facts["serial"] and not facts["mac"]:
        raise StepFailedError("The device shows neither a serial number nor a network interface's MAC address, so "
                              "it cannot be told apart from others.", "Check the device booted fully (ip link); "
                              "provision it with a profile for its family.")
    if not fits(ctx.profile, facts):
        kinds = " / ".join(family_of(facts)) or "of an unknown family (no RAUC compatible, no os-release ID)"
        others = _fitting_profiles(facts)
        raise StepRefusedError(
            f"This device is {kinds}; the profile {ctx.profile.name} is for {', '.join(ctx.profile.family)}.",
            f"Use the profile {' or '.join(others)}." if others else
            "Write a profile for this family (copy an example from resources/profiles and set its family).")
    previous = _check_not_provisioned(ctx, sections.get("marker"))
    earlier = ctx.job.facts
    if earlier and not _same_box(earlier, facts):
        raise _other_device(ctx, facts)
    name = _device_name(ctx, facts)
    # The hostname is what names changes: a resumed run reads another one from the same device.
    same = {**earlier, "hostname": ""} == {**facts, "hostname": ""} and ctx.job.device == name
    ctx.job.facts, ctx.job.device = facts, name
    ctx.job.data.setdefault("identify", {}).setdefault("reprovision", False)
    evidence: dict[str, Any] = {"device": name, "serial": facts["serial"], "mac": facts["mac"],
                                "imei": facts["imei"], "family": family_of(facts),
                                "os": facts["os_release"].get("PRETTY_NAME", ""), "hostname": facts["hostname"]}
    if previous is not None:
        evidence["reprovision_of"] = {k: printable(str(previous.get(k, "")), 80) for k in ("job", "when", "profile")}
    what = f"{name}: serial {facts['serial'] or '-'}, MAC {facts['mac'] or '-'}, " \
           f"{evidence['os'] or ' / '.join(family_of(facts))}"
    return StepOutcome(what + (" (re-provisioning)" if previous is not None else ""), evidence, skipped=same)


def _same_box(earlier: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """The serial numbers agree and the job's first MAC is still the device's first (what identify named it by)."""
    return (str(earlier.get("serial") or ""), str(earlier.get("mac") or "")) == (now["serial"], now["mac"])


def _other_device(ctx: StepContext, now: Mapping[str, Any]) -> StepRefusedError:
    earlier = ctx.job.facts
    return StepRefusedError(
        f"A different device is connected: this job started on {ctx.job.device or 'a device'} (serial "
        f"{earlier.get('serial') or '-'}, MAC {earlier.get('mac') or '-'}), this one has serial "
        f"{now['serial'] or '-'}, MAC {now['mac'] or '-'}.",
        "Reconnect the device this job is for, or start a new provisioning for this one.")


async def check_same_device(ctx: StepContext) -> None:
    """Before a resumed job changes anything: the box connected is the one identify read (its serial and MACs).

    A serial target is a port, the same for every box plugged into the adapter, so the job found for it may be
    another box's. One cheap read; StepRefusedError naming both boxes when they differ, and when this one shows
    neither a serial number nor a MAC (it cannot be told apart). A job not identified yet has nothing to compare."""
    earlier = ctx.job.facts
    if not earlier or not (earlier.get("serial") or earlier.get("mac")):
        return
    sections = await read_sections(ctx, identify_commands(ctx.profile)[:2])
    serial = sections.get("serial")
    links = sections.get("links")
    now = {"serial": parse_serial(serial.stdout[:MAX_ANSWER] if serial else "")}
    now["mac"] = next(iter(parse_macs(links.stdout[:MAX_ANSWER] if links else "").values()), "")
    if not now["serial"] and not now["mac"]:
        raise StepRefusedError(
            f"The device connected shows neither a serial number nor a MAC address, so it cannot be checked to be "
            f"the one this job started on ({ctx.job.device or 'a device'}, serial {earlier.get('serial') or '-'}, "
            f"MAC {earlier.get('mac') or '-'}).",
            "Check the device booted fully (ip link) and is the one this job is for, then run the same command again.")
    if not _same_box(earlier, now):
        raise _other_device(ctx, now)


# -- 2. names ---------------------------------------------------------------------------------------------------
def valid_hostname(name: str) -> bool:
    """One RFC 1123 label: letters, digits and '-', not at either end, 1 to 63 characters."""
    return _HOSTNAME.fullmatch(name) is not None


def site_file(profile: Profile) -> str:
    """site.json sits beside the provisioning marker (/etc/siteline, or /data/... on a read-only root)."""
    return posixpath.join(posixpath.dirname(profile.identity.marker), "site.json")


def _template_values(ctx: StepContext) -> dict[str, str]:
    if not ctx.job.device:
        raise StepFailedError(f"The {ctx.step or 'names'} step needs the device identified first.",
                              "Run the provisioning from the start (identify reads the device's serial and MAC).")
    facts = ctx.job.facts
    mac = str(facts.get("mac", "")).replace(":", "")
    return {"device": ctx.job.device, "site": ctx.job.site, "serial": str(facts.get("serial") or mac),
            "serial_tail": str(facts.get("serial_tail", "")), "mac": mac}


async def _read_json(ctx: StepContext, path: str) -> object:
    result = await ctx.read(f"cat {shlex.quote(path)} 2>/dev/null", TIMEOUT)
    try:
        return json.loads(result.stdout) if result.ok else None
    except ValueError:
        return None


def _json_bytes(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


async def _set_hostname(ctx: StepContext, hostname: str) -> None:
    q = shlex.quote(hostname)
    result = await ctx.change(f"hostnamectl set-hostname {q}", what=f"set the hostname to {hostname}")
    if not result.ok:  # no systemd (BusyBox): the running name, and the file read at boot
        fallback = await ctx.change(f"hostname {q}", what=f"set the running hostname to {hostname}")
        if not fallback.ok:
            raise StepFailedError(f"The device refused the hostname {hostname}: "
                                  f"{(fallback.stderr or result.stderr).strip()[:200]}",
                                  "Check the account is root (or may set the hostname).")
        await ctx.write_file("/etc/hostname", f"{hostname}\n".encode(), what=f"write {hostname} to /etc/hostname")
    if ctx.dry_run:
        return
    now = (await ctx.read("hostname 2>/dev/null || cat /etc/hostname", TIMEOUT)).stdout.strip()
    if now != hostname:
        raise StepFailedError(f"The hostname was set to {hostname}, but the device now says {now[:80]!r}.",
                              "Something on the device (a DHCP hook, a hostname service) changes it back: check it.")


async def _write_checked(ctx: StepContext, path: str, doc: Mapping[str, Any], what: str) -> None:
    """Write ``doc`` as JSON at ``path`` (0644) and read it back."""
    await ctx.write_file(path, _json_bytes(doc), mode=0o644, what=what)
    if not ctx.dry_run and await _read_json(ctx, path) != doc:
        raise StepFailedError(f"{path} on the device does not read back as written.",
                              "Check the device's storage (df, dmesg) and run the provisioning again.")


async def names_step(ctx: StepContext) -> StepOutcome:
    try:
        hostname = render(ctx.profile.identity.hostname_template, _template_values(ctx))
    except ProfileError as exc:
        raise StepFailedError(exc.message, exc.hint) from None
    if not valid_hostname(hostname):
        raise StepFailedError(f"{hostname[:80]!r} (from identity.hostname_template "
                              f"{ctx.profile.identity.hostname_template!r}) is not a valid hostname.",
                              "A hostname is letters, digits and '-', at most 63: choose another site name or "
                              "change the profile's template.")
    changed: list[str] = []
    current = (await ctx.read("hostname 2>/dev/null || cat /etc/hostname", TIMEOUT)).stdout.strip()
    if current != hostname:
        await _set_hostname(ctx, hostname)
        changed.append(f"hostname {current or '-'} -> {hostname}")
    path = site_file(ctx.profile)
    doc = {"site": ctx.job.site, "tags": sorted(set(ctx.job.tags)), "device": ctx.job.device}
    if await _read_json(ctx, path) != doc:
        await _write_checked(ctx, path, doc, f"write the site and tags to {path}")
        changed.append(f"{path} written")
    ctx.job.data["names"] = {"hostname": hostname, "site_file": path}
    evidence = {"hostname": hostname, "previous_hostname": current, "site": ctx.job.site, "tags": doc["tags"],
                "site_file": path, "changed": changed}
    detail = f"hostname {hostname}, site {ctx.job.site}" + (f", tags {', '.join(doc['tags'])}" if doc["tags"] else "")
    return StepOutcome(detail, evidence, skipped=not changed)


# -- 5. mqtt ----------------------------------------------------------------------------------------------------
def mqtt_config(ctx: StepContext) -> dict[str, Any]:
    """The device agent's MQTT client settings: no secret (the key stays in its own file, named here)."""
    m, t, c = ctx.profile.mqtt, ctx.profile.telemetry, ctx.profile.certificate
    values = _template_values(ctx)
    try:
        client_id = render(m.client_id, values)
        topics = {name: render(topic, values) for name, topic in sorted(m.topics.items())}
    except ProfileError as exc:
        raise StepFailedError(exc.message, exc.hint) from None
    return {
        "broker": m.broker, "broker_ip": m.broker_ip or m.broker, "port": m.port, "client_id": client_id,
        "topics": topics, "tls": {"key": c.key_path, "cert": c.cert_path, "ca": c.chain_path},
        "telemetry": {"interval": telemetry_interval(t), "plan": {
            "data_plan_mib": t.data_plan_mib, "share": t.share, "message_bytes": t.message_bytes,
            "min_interval": t.min_interval, "max_interval": t.max_interval}},
        "site": ctx.job.site, "device": ctx.job.device,
    }


async def mqtt_step(ctx: StepContext) -> StepOutcome:
    config = mqtt_config(ctx)
    data = _json_bytes(config)
    if any(secret and secret in data.decode() for secret in ctx.secrets):
        raise StepFailedError("The MQTT settings would contain a secret; nothing was written.",
                              "Check the profile's MQTT templates do not use a password.")
    path = ctx.profile.mqtt.config_path
    same = await _read_json(ctx, path) == config
    if not same:
        await _write_checked(ctx, path, config, f"write the MQTT client settings to {path}")
    interval = config["telemetry"]["interval"]
    ctx.job.data["mqtt"] = {"config_path": path, "client_id": config["client_id"], "interval": interval}
    evidence = {"config_path": path, "broker": config["broker"], "port": config["port"],
                "client_id": config["client_id"], "topics": config["topics"], "telemetry": config["telemetry"],
                "written": not same}
    plan = ctx.profile.telemetry.data_plan_mib
    sized = f"sized to a {plan:g} MiB plan" if plan else "unmetered"
    return StepOutcome(f"{config['broker']}:{config['port']} as {config['client_id']}, telemetry every "
                       f"{interval} s ({sized})", evidence, skipped=same)
