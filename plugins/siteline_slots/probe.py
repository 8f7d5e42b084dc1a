"""The A/B slots probe: RAUC's view and the bootloader's raw counters, in one round trip.

`rauc status` alone can call every slot "bad" when it could not read the bootloader environment, so the
counters are read beside it (U-Boot `fw_printenv`, else GRUB `grub-editenv list`, else barebox
`barebox-state -d`) and merged. /proc/cmdline names the booted slot when RAUC is absent.
"""

from __future__ import annotations

import re
from dataclasses import replace

from siteline.api import BootEnv, DeviceContext, ParseError, ProbeKind, Section, Slots, Unavailable, run_sections
from siteline_slots.parsers import merge, parse_barebox_state, parse_fw_printenv, parse_grub_editenv, parse_rauc_status

TIMEOUT = 30.0
_ONLY_WITHOUT_UBOOT = "if command -v fw_printenv >/dev/null 2>&1; then true; else {}; fi"
COMMANDS = (
    ("rauc", "rauc status --detailed --output-format=json"),
    ("uboot", "fw_printenv"),
    # GRUB and barebox envs are only looked for on a device without U-Boot's tools.
    ("grub", _ONLY_WITHOUT_UBOOT.format("grub-editenv list")),
    ("barebox", _ONLY_WITHOUT_UBOOT.format("barebox-state -d")),
    ("cmdline", "cat /proc/cmdline"),
)
_ENV_PARSERS = (("uboot", parse_fw_printenv), ("grub", parse_grub_editenv), ("barebox", parse_barebox_state))
_BOOTED = re.compile(r"(?:^|\s)rauc\.slot=(\S+)")


def _rauc(section: Section, failures: list[str]) -> Slots | None:
    if section.missing:
        return None
    if not section.ok:
        failures.append(f"RAUC: {section.failure()}")
        return None
    try:
        return parse_rauc_status(section.stdout)
    except ParseError as exc:
        failures.append(f"RAUC: {exc}")
        return None


def _env(sections: dict[str, Section], failures: list[str]) -> BootEnv | None:
    for name, parse in _ENV_PARSERS:
        section = sections[name]
        if section.missing or (section.ok and not section.stdout.strip()):
            continue  # not this bootloader
        if not section.ok:
            failures.append(f"bootloader environment: {section.failure()}")
            continue
        try:
            return parse(section.stdout)
        except ParseError as exc:
            failures.append(f"bootloader environment: {exc}")
    return None


def slots_from_sections(sections: dict[str, Section]) -> Slots | Unavailable:
    failures: list[str] = []
    rauc = _rauc(sections["rauc"], failures)
    env = _env(sections, failures)
    cmdline = sections["cmdline"].stdout if sections["cmdline"].ok else ""
    booted = m.group(1) if (m := _BOOTED.search(cmdline)) else None
    raw = "\n".join(s.stdout for s in sections.values() if s.stdout.strip() and s.name != "cmdline")
    if rauc is None and env is None:
        reason = "; ".join(failures) or (
            "no A/B update tool found: neither RAUC nor fw_printenv, grub-editenv or barebox-state is installed"
        )
        return Unavailable("slots", reason, raw)
    try:
        slots = merge(rauc, env, booted)
    except ParseError as exc:
        return Unavailable("slots", str(exc), raw)
    return replace(slots, problems=slots.problems + tuple(failures))


class SlotsProbe:
    name = "slots"
    kind: ProbeKind = "slots"

    async def collect(self, ctx: DeviceContext) -> Slots | Unavailable:
        return slots_from_sections(await run_sections(ctx, COMMANDS, TIMEOUT))
