"""The plugin API: everything a Siteline plugin may import, and nothing else.

A plugin is a module or package registered in the ``siteline.plugins`` entry-point group that
implements some of the hooks below with ``@hookimpl``::

    from siteline.api import hookimpl

    @hookimpl
    def siteline_probes():
        return [MyProbe()]

A probe returns its area's snapshot, or :class:`Unavailable` when the device cannot answer for that
area (the tool is missing, the command failed, the output could not be read). It never raises for
what a device prints; only a broken link (TransportError, OSError, TimeoutError) propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from siteline.core.device.modem import Modem, ModemList, ModemRef, ModemSignal, SignalReading, rsrp_band
from siteline.core.device.network import DefaultRoute, NetConnection, NetDevice, Network, derive_network
from siteline.core.device.posture import CheckKey, CheckStatus, Clock, Posture, PostureCheck
from siteline.core.device.slots import BootEnv, Health, Slot, Slots
from siteline.core.device.system import K8sNode, Mount, OsRelease, System
from siteline.core.device.unavailable import Unavailable
from siteline.core.errors import ParseError
from siteline.core.flash.job import HealthCheck
from siteline.core.plugin_api import (
    DeviceContext,
    HealthSpec,
    PanelSpec,
    Probe,
    ProbeKind,
    UpdateBackend,
    hookimpl,
)
from siteline.core.transports.base import Result

# Sections are separated by marker lines so one round trip answers many commands: round trips are what cost
# time on a cellular link or a 115200 baud console. The marker goes to stdout and stderr alike, so the split
# also works on a console that merges the two streams.
SECTION_MARK = "@@siteline-section@@"
_RC = "rc "


@dataclass(frozen=True)
class Section:
    """One command's share of a marker-separated round trip; ``exit_code`` is None when the output was cut off."""

    name: str
    command: str
    stdout: str
    stderr: str
    exit_code: int | None

    @property
    def missing(self) -> bool:
        """The tool is not installed: the shell's 127, or its "not found" words on a console without codes."""
        return self.exit_code == 127 or (self.exit_code != 0 and "not found" in self.stderr.lower())

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def failure(self, label: str | None = None) -> str:
        """Why this command gave nothing usable, in words (for a snapshot's problems or an Unavailable reason).

        ``label`` names the command as a person would type it, when ``command`` is a piece of shell script.
        """
        shown = label or self.command
        tool = shown.split()[0] if shown.split() else shown
        if self.missing:
            return f"{tool} is not installed on the device (`{shown}`: command not found)"
        said = (self.stderr.strip() or self.stdout.strip()).splitlines()
        detail = f": {said[-1][:200]}" if said else ""
        if self.exit_code is None:
            return f"`{shown}` did not finish (output cut off){detail}"
        return f"`{shown}` failed with exit status {self.exit_code}{detail}"


def sections_command(commands: Sequence[tuple[str, str]]) -> str:
    """One shell line running each (name, command) in turn, each framed by markers and its exit status."""
    parts = []
    for name, command in commands:
        parts.append(
            f"echo {SECTION_MARK}{name}; echo {SECTION_MARK}{name} >&2; {{ {command} ; }}; "
            f"echo {SECTION_MARK}{_RC}{name} $?"
        )
    return "; ".join(parts)


def _split(text: str, names: set[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    lines: dict[str, list[str]] = {}
    codes: dict[str, int] = {}
    current: list[str] | None = None
    for whole in text.splitlines():
        # Output without a final newline puts the next marker at the end of its last line.
        before, mark, word = whole.partition(SECTION_MARK)
        if current is not None and (before or not mark):
            current.append(before)
        if not mark:
            continue
        word = word.strip()
        if word.startswith(_RC):
            name, _, code = word[len(_RC) :].partition(" ")
            if name in names and code.strip().isdigit():
                codes[name] = int(code.strip())
            current = None
        else:
            current = lines.setdefault(word, []) if word in names else None
    return lines, codes


def split_sections(commands: Sequence[tuple[str, str]], result: Result) -> dict[str, Section]:
    """The output of :func:`sections_command` cut back into one Section per command."""
    names = {name for name, _ in commands}
    out, codes = _split(result.stdout, names)
    err, _ = _split(result.stderr, names)
    return {
        name: Section(name, command, "\n".join(out.get(name, [])), "\n".join(err.get(name, [])), codes.get(name))
        for name, command in commands
    }


# A serial console types a command line, and BusyBox ash cuts a line at 1023 bytes (the serial transport
# refuses more than 1000 with its framing): longer scripts go in several round trips of at most this.
MAX_ROUND_TRIP = 800


def batches(commands: Sequence[tuple[str, str]], limit: int = MAX_ROUND_TRIP) -> list[list[tuple[str, str]]]:
    """The commands grouped, in order, into as few round trips as fit ``limit`` characters each."""
    groups: list[list[tuple[str, str]]] = []
    for pair in commands:
        if groups and len(sections_command([*groups[-1], pair])) <= limit:
            groups[-1].append(pair)
        else:
            groups.append([pair])
    return groups


async def run_sections(ctx: DeviceContext, commands: Sequence[tuple[str, str]], timeout: float, *,
                       max_chars: int | None = None) -> dict[str, Section]:
    """Run the commands and return each one's output and exit status: in one round trip (sections may then share
    shell variables), or with ``max_chars`` in as few round trips of at most that as it takes (independent
    sections only: a long script that must also go over a serial console)."""
    found: dict[str, Section] = {}
    for group in batches(commands, max_chars) if max_chars else [list(commands)]:
        result = await ctx.run(sections_command(group), timeout)
        found.update(split_sections(group, result))
    return found


__all__ = [
    "MAX_ROUND_TRIP",
    "SECTION_MARK",
    "BootEnv",
    "CheckKey",
    "CheckStatus",
    "Clock",
    "DefaultRoute",
    "DeviceContext",
    "Health",
    "HealthCheck",
    "HealthSpec",
    "K8sNode",
    "Modem",
    "ModemList",
    "ModemRef",
    "ModemSignal",
    "Mount",
    "NetConnection",
    "NetDevice",
    "Network",
    "OsRelease",
    "PanelSpec",
    "ParseError",
    "Posture",
    "PostureCheck",
    "Probe",
    "ProbeKind",
    "Result",
    "Section",
    "SignalReading",
    "Slot",
    "Slots",
    "System",
    "Unavailable",
    "UpdateBackend",
    "derive_network",
    "hookimpl",
    "rsrp_band",
    "run_sections",
    "sections_command",
    "split_sections",
]
