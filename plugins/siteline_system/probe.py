"""The System probe: one round trip reads what the Overview tab shows."""

from __future__ import annotations

from siteline.api import DeviceContext, ProbeKind, System
from siteline_system.parsers import parse_loadavg, parse_os_release, parse_proc_uptime, parse_uname

# Sections are separated by markers so one command answers everything: round trips are what
# cost time on a cellular link or a 115200 baud console.
_MARK = "@@siteline-section@@"
_SECTIONS = ("os-release", "hostname", "uname", "uptime", "loadavg")
COMMAND = "; ".join(
    [
        f"echo {_MARK}os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null",
        f"echo {_MARK}hostname; cat /etc/hostname 2>/dev/null || hostname 2>/dev/null",
        f"echo {_MARK}uname; uname -a",
        f"echo {_MARK}uptime; cat /proc/uptime",
        f"echo {_MARK}loadavg; cat /proc/loadavg",
    ]
)


def split_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_MARK):
            name = line[len(_MARK) :].strip()
            current = sections.setdefault(name, []) if name in _SECTIONS else None
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def system_from_output(text: str) -> System:
    sections = split_sections(text)
    problems = [f"could not read {name}" for name in _SECTIONS if not sections.get(name, "").strip()]
    kernel, machine = parse_uname(sections.get("uname", ""))
    hostname_lines = sections.get("hostname", "").strip().splitlines()
    return System(
        hostname=hostname_lines[0].strip() if hostname_lines else None,
        os=parse_os_release(sections.get("os-release", "")),
        kernel=kernel,
        machine=machine,
        uname=sections.get("uname", "").strip() or None,
        uptime_seconds=parse_proc_uptime(sections.get("uptime", "")),
        load=parse_loadavg(sections.get("loadavg", "")),
        problems=tuple(problems),
    )


class SystemProbe:
    name = "system"
    kind: ProbeKind = "system"

    async def collect(self, ctx: DeviceContext) -> System:
        result = await ctx.run(COMMAND, 20.0)
        return system_from_output(result.stdout)
