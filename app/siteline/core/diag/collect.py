"""What a diagnostics bundle holds, gathered over one open link: probes, recent logs, config, the cost of it all.

Everything goes through one ``run(command, timeout)`` (a transport's or an open session's: no second login).
Each command is timed and its output counted, so the bundle says what it cost a metered link. A command
that fails or times out leaves a "not collected: why" entry and the rest goes on; a link that drops ends
the collection with what was gathered so far, marked partial, and so does a device that stops answering
(:data:`SILENT_LIMIT` commands in a row timed out). A probe that never returns costs its area only
(:data:`PROBE_TIMEOUT`), and what a device prints is bounded (:data:`MAX_TEXT_BYTES` per member). Nothing
here redacts: archive.py does, on every member, just before it is written.

Posture is the posture probe's reading only: the factory-password check (which tries to log in with the
passwords printed in manuals) is never run for a bundle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from siteline.core.device.unavailable import Unavailable
from siteline.core.errors import CommandTimeout, SitelineError, TransportError
from siteline.core.logs.follow import read_recent
from siteline.core.logs.parsers import parse_chunk
from siteline.core.logs.sources import LogQuery
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost
from siteline.core.transports.base import Result

log = logging.getLogger(__name__)

Run = Callable[[str, float], Awaitable[Result]]
Progress = Callable[[str, str], None]  # (area, what happened: "collecting", "done", "not collected: ...")

PROBE_AREAS = ("system", "modem", "network", "slots", "posture")
AREAS = (*PROBE_AREAS, "logs", "config")
DEFAULT_LOG_LINES = 500
MAX_LOG_LINES = 5000
CONFIG_BYTES = 8192  # per file: enough to read a config, bounded for a metered link
COMMAND_TIMEOUT = 30.0
PROBE_TIMEOUT = 90.0  # one probe, all its commands (as the device session bounds it)
SILENT_LIMIT = 2  # commands in a row without an answer: the device is taken as gone silent
MAX_TEXT_BYTES = 512 * 1024  # per text member: a device that ignores `head -c` must not send megabytes on
# Which core plugin reads which area: an area whose plugin the person switched off says so (and how back).
AREA_PLUGINS = {"system": ("system",), "modem": ("modemmanager", "atmodem"), "network": ("networkmanager",),
                "slots": ("slots",), "posture": ("posture",)}
# Config files a support person asks for first. Read with `head` (a tool, so a device that maps its files
# answers too); each is redacted before it is written.
CONFIG_FILES = ("/etc/os-release", "/etc/fw_env.config", "/etc/rauc/system.conf", "/etc/hostapd/hostapd.conf",
                "/etc/wpa_supplicant/wpa_supplicant.conf", "/etc/mosquitto/mosquitto.conf",
                "/etc/siteline/agent.conf", "/etc/ssh/sshd_config")
NM_CONNECTIONS = "/etc/NetworkManager/system-connections"
FILE_MARK = "==> "


@dataclass(frozen=True)
class CommandCost:
    """One command the bundle ran: how it ended and what it cost (bytes received, seconds)."""

    area: str
    command: str
    exit_code: int | None
    seconds: float
    bytes: int
    error: str = ""


@dataclass
class Collected:
    target: str
    device: str
    started: float
    finished: float = 0.0
    snapshots: dict[str, Any] = field(default_factory=dict)  # probe area -> snapshot
    texts: dict[str, str] = field(default_factory=dict)  # member stem -> text (logs, config, raw counters)
    missing: dict[str, str] = field(default_factory=dict)  # area -> why it was not collected
    commands: list[CommandCost] = field(default_factory=list)
    partial: str = ""  # why the collection stopped early (the link dropped); empty when it ran to the end
    plugin_failures: list[str] = field(default_factory=list)

    @property
    def bytes_received(self) -> int:
        return sum(c.bytes for c in self.commands)


class LinkLostError(TransportError):
    """The link dropped during the collection (not one command failing). A TransportError, so the plugin host
    passes it on instead of blaming the probe that was running."""


class _Recorder:
    """``run`` for probes and the log reader: times and counts every command; after a drop, or once the device
    left :data:`SILENT_LIMIT` commands in a row unanswered, it refuses at once (the bundle is then partial)."""

    def __init__(self, run: Run, collected: Collected) -> None:
        self._run, self._collected = run, collected
        self.area = ""
        self.lost: str = ""
        self.gone = "the link dropped"  # or "the device stopped answering": how the collection ended early
        self._silent = 0

    async def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> Result:
        if self.lost:
            raise LinkLostError(self.lost)
        started = time.monotonic()
        try:
            result = await self._run(command, min(timeout, COMMAND_TIMEOUT * 3))
        except CommandTimeout as exc:
            self._note(command, None, started, 0, f"timed out: {exc}")
            self._silent += 1
            if self._silent >= SILENT_LIMIT:  # not one slow command: the device stopped answering altogether
                self.gone = "the device stopped answering"
                self.lost = f"{self._silent} commands in a row timed out"
                raise LinkLostError(self.lost) from exc
            raise
        except (TransportError, OSError, TimeoutError) as exc:
            self.lost = str(exc) or type(exc).__name__
            self._note(command, None, started, 0, f"link lost: {self.lost}")
            raise LinkLostError(self.lost) from exc
        self._silent = 0
        size = len(result.stdout.encode("utf-8", "replace")) + len(result.stderr.encode("utf-8", "replace"))
        self._note(command, result.exit_code, started, size, "")
        return result

    def _note(self, command: str, code: int | None, started: float, size: int, error: str) -> None:
        self._collected.commands.append(CommandCost(self.area, command[:500], code, time.monotonic() - started,
                                                    size, error[:300]))


async def _probe(host: PluginHost, kind: str, rec: _Recorder, target: str, device: str) -> Any:
    """The area's snapshot from the first probe that reads it (as probe_cli does), else an Unavailable."""
    ctx = make_context(device, target, rec.run, log)
    reasons: list[str] = []
    for entry in host.probes(kind):
        before = len(host.failures)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):  # a probe that awaits forever costs its area only
                snapshot = await host.run_probe(entry, ctx)
        except TimeoutError:
            if rec.lost:
                raise LinkLostError(rec.lost) from None
            reasons.append(f"the {getattr(entry.item, 'name', kind)} probe did not finish within "
                           f"{PROBE_TIMEOUT:.0f} s")
            continue
        if snapshot is None:
            reasons += [f.describe() for f in host.failures[before:][:1]]
        elif isinstance(snapshot, Unavailable):
            reasons.append(snapshot.reason)
        else:
            return snapshot
    return Unavailable(kind, "; ".join([*_switched_off(host, kind), *reasons])
                       or f"no installed plugin probes the {kind} area")


def _switched_off(host: PluginHost, kind: str) -> list[str]:
    """Why an area is off when the person disabled its plugin, and how to switch it back on."""
    out = []
    for name in AREA_PLUGINS.get(kind, ()):
        info = host.info(name)
        if info is not None and info.disabled_by_user:
            out.append(f"the '{name}' plugin that reads it is disabled (switch it on: siteline plugins enable {name})")
    return out


def bounded(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` cut to about ``limit`` bytes of UTF-8 at a line end, saying how much was left out."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].rsplit(b"\n", 1)[0] if b"\n" in data[:limit] else data[:limit]
    cut = kept.decode("utf-8", "ignore")
    return f"{cut}\n[... {len(data) - len(kept):,} more bytes left out: the bundle keeps {limit:,} at most]\n"


def _log_text(lines: list[str], source: Any, boot_time: float | None) -> str:
    records = parse_chunk(lines, source, boot_time=boot_time)
    out = []
    for r in records:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.time)) if r.time is not None else "-"
        pid = f"[{r.pid}]" if r.pid is not None else ""
        prio = f" <{r.priority}>" if r.priority is not None else ""
        out.append(f"{when} {r.host or '-'} {r.unit or '-'}{pid}{prio}: {r.message}")
    return "\n".join(out) + ("\n" if out else "")


async def _logs(rec: _Recorder, lines: int) -> tuple[str, str]:
    """(readable text, source name) of the newest ``lines`` records."""
    kind, batch = await read_recent(rec, LogQuery(lines=max(1, min(lines, MAX_LOG_LINES))), timeout=COMMAND_TIMEOUT)
    return _log_text(batch.lines, batch.source, batch.boot_time), str(kind)


def config_command() -> str:
    """One round trip: each config file that exists, after a '==> PATH' line, cut to CONFIG_BYTES."""
    files = " ".join(CONFIG_FILES)
    return (f"for f in {files}; do if head -c 0 \"$f\" >/dev/null 2>&1; then echo \"{FILE_MARK}$f\"; "
            f"head -c {CONFIG_BYTES} \"$f\"; echo; fi; done; "
            f"for n in $(ls {NM_CONNECTIONS} 2>/dev/null); do echo \"{FILE_MARK}{NM_CONNECTIONS}/$n\"; "
            f"head -c {CONFIG_BYTES} \"{NM_CONNECTIONS}/$n\"; echo; done")


def _slot_raw(snapshot: Any) -> str:
    """The raw boot counters and RAUC's own words, as the device printed them."""
    parts = []
    env = getattr(snapshot, "env", None)
    if getattr(env, "raw", ""):
        parts.append(f"# bootloader environment ({getattr(snapshot, 'source', '?')})\n{env.raw}")  # type: ignore[union-attr]
    if getattr(snapshot, "raw", ""):
        parts.append(f"# slot status as printed\n{snapshot.raw}")
    return "\n\n".join(parts)


async def _area(host: PluginHost, kind: str, rec: _Recorder, out: Collected, log_lines: int) -> None:
    if kind in PROBE_AREAS:
        snapshot = await _probe(host, kind, rec, out.target, out.device)
        out.snapshots[kind] = snapshot
        if isinstance(snapshot, Unavailable):
            out.missing[kind] = snapshot.reason
        elif kind == "slots" and (raw := _slot_raw(snapshot)):
            out.texts["slots-raw"] = bounded(raw)
    elif kind == "logs":
        text, source = await _logs(rec, log_lines)
        out.texts["logs"] = bounded(f"# source: {source}, newest {log_lines} records, times in UTC\n{text}",
                                    MAX_TEXT_BYTES * 4)
    elif kind == "config":
        result = await rec.run(config_command(), COMMAND_TIMEOUT)
        if FILE_MARK not in result.stdout:
            out.missing[kind] = "none of the usual config files could be read"
        else:
            out.texts["config"] = bounded(result.stdout)


async def _guarded(host: PluginHost, kind: str, rec: _Recorder, out: Collected, log_lines: int) -> None:
    """One area; what goes wrong becomes its "not collected" reason (a dropped link also marks the bundle partial)."""
    try:
        await _area(host, kind, rec, out, log_lines)
    except LinkLostError as exc:
        out.partial = f"{rec.gone} while collecting {kind}: {exc.message}"
        out.missing[kind] = out.partial
    except CommandTimeout as exc:
        out.missing[kind] = f"a command timed out ({exc.message})"
    except SitelineError as exc:  # NoLogToolError, LogReadError and the like: said in words already
        out.missing[kind] = exc.message


async def collect(run: Run, host: PluginHost, *, target: str, device: str, log_lines: int = DEFAULT_LOG_LINES,
                  areas: tuple[str, ...] = AREAS, progress: Progress | None = None) -> Collected:
    """Every area in turn over ``run``; never raises for what the device does (see the module doc)."""
    out = Collected(target=target, device=device, started=time.time())
    rec = _Recorder(run, out)
    tell = progress or (lambda _area, _what: None)
    failures_before = len(host.failures)
    for kind in areas:
        if rec.lost:
            out.missing[kind] = f"{rec.gone} before it ({rec.lost})"
        else:
            rec.area = kind
            tell(kind, "collecting")
            await _guarded(host, kind, rec, out, log_lines)
        tell(kind, f"not collected: {out.missing[kind]}" if kind in out.missing else "done")
    out.plugin_failures = [f.describe() for f in host.failures[failures_before:]]
    out.finished = time.time()
    return out
