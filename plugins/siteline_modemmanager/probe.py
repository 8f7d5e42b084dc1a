"""The ModemManager probe: `mmcli -L`, then `mmcli -m N` and its signal, in one round trip.

JSON (`-J`) is preferred, key-value (`-K`) is the fallback for an mmcli that refuses JSON or prints JSON
that cannot be read. Signal polling is switched on (`--signal-setup=10`) only when it is off, so a
running antenna-alignment mode (1 s) is not slowed down by a probe.
"""

from __future__ import annotations

from dataclasses import dataclass

from siteline.api import (
    DeviceContext,
    Modem,
    ModemList,
    ModemSignal,
    ParseError,
    ProbeKind,
    Section,
    Unavailable,
    run_sections,
)
from siteline_modemmanager.parsers import parse_modem, parse_modem_list, parse_signal

SIGNAL_RATE = 10  # seconds; ModemManager polls the modem this often once set up
TIMEOUT = 30.0
_FIRST = 'n=${L#*ModemManager1/Modem/}; n=${n%%[!0-9]*}'  # the first modem's index, POSIX sh only
_HAS_MODEM = 'case "$L" in *ModemManager1/Modem/[0-9]*) ' + _FIRST + "; "
COMMANDS = (
    ("list", 'L=$(mmcli -L 2>&1); rc=$?; printf "%s\\n" "$L"; (exit $rc)'),
    ("modem", _HAS_MODEM + 'mmcli -m "$n" -J || mmcli -m "$n" -K;; *) true;; esac'),
    (
        "signal",
        _HAS_MODEM + 'S=$(mmcli -m "$n" --signal-get -J 2>/dev/null); case "$S" in *\'"rate":"0"\'*|'
        f'*\'"rate": "0"\'*) mmcli -m "$n" --signal-setup={SIGNAL_RATE} >/dev/null 2>&1;; esac; '
        'mmcli -m "$n" --signal-get -J || mmcli -m "$n" --signal-get -K;; *) true;; esac',
    ),
)


@dataclass(frozen=True)
class ModemReport:
    """The modem area: which modem (``index`` for `mmcli -m N`), its status, and its signal when it could be read."""

    index: int
    modem: Modem
    signal: ModemSignal | None
    modems: ModemList
    problems: tuple[str, ...] = ()


def _unavailable(reason: str, raw: str = "") -> Unavailable:
    return Unavailable("modem", reason, raw)


def _modem_list(section: Section) -> ModemList | Unavailable:
    if section.missing:
        return _unavailable(f"ModemManager is not on this device: {section.failure('mmcli -L')}.")
    if not section.ok:
        return _unavailable(f"could not list the modems: {section.failure('mmcli -L')}. Is ModemManager running?",
                            section.stdout + section.stderr)
    try:
        found = parse_modem_list(section.stdout)
    except ParseError as exc:
        return _unavailable(f"could not read `mmcli -L`: {exc}", section.stdout)
    if not any(ref.index is not None for ref in found.modems):
        return _unavailable("ModemManager sees no modem: check the modem's power and USB cable, then `mmcli -L`.",
                            section.stdout)
    return found


def _signal(section: Section, problems: list[str]) -> ModemSignal | None:
    if not section.ok:
        problems.append(f"could not read the signal: {section.failure('mmcli -m N --signal-get')}")
        return None
    try:
        return parse_signal(section.stdout)
    except ParseError as exc:
        problems.append(f"could not read the signal: {exc}")
        return None


class ModemManagerProbe:
    name = "modemmanager"
    kind: ProbeKind = "modem"

    async def collect(self, ctx: DeviceContext) -> ModemReport | Unavailable:
        sections = await run_sections(ctx, COMMANDS, TIMEOUT)
        found = _modem_list(sections["list"])
        if isinstance(found, Unavailable):
            return found
        index = next(ref.index for ref in found.modems if ref.index is not None)
        modem = await self._modem(ctx, sections["modem"], index)
        if isinstance(modem, Unavailable):
            return modem
        problems: list[str] = []
        if len(found.modems) > 1:
            problems.append(f"ModemManager lists {len(found.modems)} modems; this shows modem {index}.")
        signal = _signal(sections["signal"], problems)
        return ModemReport(index=index, modem=modem, signal=signal, modems=found, problems=tuple(problems))

    async def _modem(self, ctx: DeviceContext, section: Section, index: int) -> Modem | Unavailable:
        if not section.ok:
            what = section.failure(f"mmcli -m {index} -J")
            return _unavailable(f"could not read modem {index}: {what}", section.stdout + section.stderr)
        try:
            return parse_modem(section.stdout)
        except ParseError as exc:
            if not section.stdout.lstrip().startswith("{"):
                return _unavailable(f"could not read `mmcli -m {index}`: {exc}", section.stdout)
        # The JSON could not be read: ask once more in the key-value form, which older mmcli print reliably.
        result = await ctx.run(f"mmcli -m {index} -K", TIMEOUT)
        try:
            return parse_modem(result.stdout)
        except ParseError as exc:
            return _unavailable(f"could not read `mmcli -m {index}` as JSON nor as key-value: {exc}", section.stdout)
