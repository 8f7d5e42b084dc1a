"""The System probe: one round trip reads what the Overview tab shows."""

from __future__ import annotations

from siteline.api import DeviceContext, ProbeKind, System
from siteline_system.mounts import merge_mounts, parse_df, parse_proc_mounts, root_read_only
from siteline_system.parsers import parse_k8s, parse_loadavg, parse_os_release, parse_proc_uptime, parse_uname

# Sections are separated by markers so one command answers everything: round trips are what
# cost time on a cellular link or a 115200 baud console.
_MARK = "@@siteline-section@@"
_SECTIONS = ("os-release", "hostname", "uname", "uptime", "loadavg", "df", "mounts", "k8s", "k8s-status")
# k3s or MicroK8s (`command -v a b` stops at the first missing name in dash and BusyBox ash, hence the loop) asks
# for the nodes with kubectl's own timeout, so a dead API server cannot hold the probe. A bare kubectl is left
# alone: on a device it talks to some remote cluster, not about this node.
_K8S = (
    "for t in k3s microk8s; do command -v $t >/dev/null 2>&1 && break; t=; done; echo \"$t\"; "
    "[ -n \"$t\" ] && $t kubectl get nodes -o json --request-timeout=5s 2>&1"
)
COMMAND = "; ".join(
    [
        f"echo {_MARK}os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null",
        f"echo {_MARK}hostname; cat /etc/hostname 2>/dev/null || hostname 2>/dev/null",
        f"echo {_MARK}uname; uname -a",
        f"echo {_MARK}uptime; cat /proc/uptime",
        f"echo {_MARK}loadavg; cat /proc/loadavg",
        # -P: one line per filesystem, the same columns on GNU coreutils and BusyBox; -k: 1024-byte blocks.
        f"echo {_MARK}df; df -P -k 2>/dev/null",
        f"echo {_MARK}mounts; cat /proc/mounts",
        f"echo {_MARK}k8s; {_K8S}",
        f"echo {_MARK}k8s-status; [ \"$t\" != microk8s ] || microk8s status --format yaml 2>&1",  # exit 0 if none
    ]
)


_REQUIRED = ("os-release", "hostname", "uname", "uptime", "loadavg", "df", "mounts")  # k8s is absent on most


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
    problems = [f"could not read {name}" for name in _REQUIRED if not sections.get(name, "").strip()]
    kernel, machine = parse_uname(sections.get("uname", ""))
    hostname_lines = sections.get("hostname", "").strip().splitlines()
    hostname = hostname_lines[0].strip() if hostname_lines else None
    df_text, mounts_text = sections.get("df", ""), sections.get("mounts", "")
    mounts = merge_mounts(parse_df(df_text), parse_proc_mounts(mounts_text))
    if df_text.strip() and not any(m.size is not None for m in mounts):
        problems.append("could not understand df's answer")
    tool, _, nodes = sections.get("k8s", "").strip().partition("\n")
    return System(
        hostname=hostname,
        os=parse_os_release(sections.get("os-release", "")),
        kernel=kernel,
        machine=machine,
        uname=sections.get("uname", "").strip() or None,
        uptime_seconds=parse_proc_uptime(sections.get("uptime", "")),
        load=parse_loadavg(sections.get("loadavg", "")),
        problems=tuple(problems),
        mounts=mounts if df_text.strip() or mounts_text.strip() else None,
        root_read_only=root_read_only(mounts),
        k8s=parse_k8s(tool, nodes, sections.get("k8s-status", ""), hostname),
    )


class SystemProbe:
    name = "system"
    kind: ProbeKind = "system"

    async def collect(self, ctx: DeviceContext) -> System:
        result = await ctx.run(COMMAND, 20.0)
        return system_from_output(result.stdout)
