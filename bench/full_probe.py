"""Full probe of a device over SSH: wall time, round trips and bytes on the wire, against one exec per command.

    .venv/bin/python bench/full_probe.py [-n 10] [--rtt 100]

A simulated device serves SSH on loopback; a counting TCP proxy (asyncio) sits between Siteline's SSH
client and it, so every byte both ways is counted, SSH framing, MACs and window adjusts included. A full
probe is what `siteline probe` does: each area's probes from the plugin host, the first that reads the area
wins. Two devices are probed: one with ModemManager (modem read by `mmcli`) and one AT-only (no mmcli; modem
read by AT commands on its simulated AT port).

Reference, measured in the same run on the same connection: the same commands, one SSH exec each (what a
script calling `ssh dev CMD` per command does, minus the connection set-up). The sections a probe batches
into one round trip are cut apart and run separately. Some sections use shell variables or functions that an
earlier one defines (the ModemManager probe's `mmcli -L` output, the AT chat's open port and reader),
so those are put in front of it (their output dropped), as such a script would have to. Ratio = batched /
reference. "On the device" runs the batched probes in the device's shell with no link at all: on this simulator
each tool is a Python shim started in the device's namespaces (tens of ms), which is most of the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.api import SECTION_MARK, Unavailable
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result, Transport
from siteline.core.transports.factory import open_transport
from siteline.simulator.at_modem import ATModem
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline_atmodem.chat import ANSWER

AREAS = ("system", "modem", "network", "slots", "posture")
PLUGINS = ("siteline_system", "siteline_modemmanager", "siteline_atmodem", "siteline_networkmanager",
           "siteline_slots", "siteline_posture")
log = logging.getLogger("bench.full_probe")
Run = Callable[[str, float], Awaitable[Result]]


# -- the counting proxy ---------------------------------------------------------------------------------------


@dataclass
class Meter:
    """Bytes through the proxy: ``up`` client -> device, ``down`` device -> client."""

    up: int = 0
    down: int = 0

    def total(self) -> int:
        return self.up + self.down


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None],
                delay: float) -> None:
    """Copy one direction, counting; with ``delay`` each chunk is held that long (half a link's round trip),
    in order, without holding up the reading (a link's latency, not its bandwidth)."""
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def deliver() -> None:
        while True:
            due, data = await held.get()
            if not data:
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(deliver())
    try:
        while data := await reader.read(65536):
            count(len(data))
            held.put_nowait((loop.time() + delay, data))
        held.put_nowait((loop.time() + delay, b""))
        await sender
    except (ConnectionError, OSError):
        pass
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        with contextlib.suppress(Exception):
            writer.close()
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def counting_proxy(port: int, meter: Meter, rtt: float = 0.0) -> AsyncIterator[int]:
    """A TCP proxy on 127.0.0.1 to ``port`` counting every byte (adding ``rtt`` s of round trip); yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        both = asyncio.gather(_pipe(reader, up_writer, lambda n: setattr(meter, "up", meter.up + n), rtt / 2),
                              _pipe(up_reader, writer, lambda n: setattr(meter, "down", meter.down + n), rtt / 2))
        task = asyncio.ensure_future(both)
        tasks.add(task)
        await asyncio.wait({task})  # not `await task`: its cancellation at shutdown is no error of this handler

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


# -- one full probe -------------------------------------------------------------------------------------------


@dataclass
class KindFigures:
    seconds: float = 0.0
    round_trips: int = 0
    up: int = 0
    down: int = 0
    available: bool = False


@dataclass
class Round:
    seconds: float
    kinds: dict[str, KindFigures] = field(default_factory=dict)

    def round_trips(self) -> int:
        return sum(k.round_trips for k in self.kinds.values())

    def bytes(self) -> tuple[int, int]:
        return sum(k.up for k in self.kinds.values()), sum(k.down for k in self.kinds.values())


_PART = re.compile(rf"echo {SECTION_MARK}(\S+); echo {SECTION_MARK}\1 >&2; \{{ (.*?) ; \}}; "
                   rf"echo {SECTION_MARK}rc \1 \$\?", re.DOTALL)


_DEFINES = re.compile(r"(?:^|[;{]\s*|then\s+)([A-Za-z_]\w*)=|([A-Za-z_]\w*)\(\)\s*\{")


def _uses(body: str, names: set[str]) -> bool:
    return any(re.search(rf"\$\{{?{n}\b|(?:^|[;&|{{]\s*){n}\s", body) for n in names)


def _defined(body: str) -> set[str]:
    return {a or b for a, b in _DEFINES.findall(body)}


def standalone(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each section with the earlier sections whose variables or functions it uses put in front (output dropped),
    so it runs on its own as a script calling `ssh dev CMD` per command would have to."""
    out = []
    for i, (name, body) in enumerate(parts):
        needed: list[str] = []
        own, text = _defined(body), body
        for _earlier, earlier_body in reversed(parts[:i]):
            names = _defined(earlier_body) - own
            if names and _uses(text, names):
                needed.insert(0, earlier_body)
                own |= _defined(earlier_body) - names  # what it defines for itself is no longer wanted
                text = earlier_body
        prefix = "".join(f"{{ {b} ; }} >/dev/null 2>&1; " for b in needed)
        out.append((name, prefix + body))
    return out


_AT_LIST = re.compile(r"for c in (.*?);do ")


async def _at_one_by_one(run: Run, script: str, timeout: float) -> Result:
    """The AT chat with one AT command per exec: each opens the port and tests it with ATE0 again."""
    listed = _AT_LIST.search(script)
    if listed is None:
        return await run(script, timeout)
    out, err, code = [], [], 0
    for command in shlex.split(listed.group(1)):
        result = await run(script.replace(listed.group(0), f"for c in {shlex.quote(command)};do ", 1), timeout)
        out.append(result.stdout)
        err.append(result.stderr)
        code = code or result.exit_code
    return Result(code, "\n".join(out), "\n".join(err))


def naive(run: Run) -> Run:
    """A runner that cuts a batched script back into its commands and runs each in its own exec."""
    async def one_by_one(command: str, timeout: float) -> Result:
        if ANSWER in command:  # the AT probe's chat: its own loop over AT commands
            return await _at_one_by_one(run, command, timeout)
        parts = _PART.findall(command)
        if not parts:
            return await run(command, timeout)
        out, err = [], []
        for name, body in standalone(parts):
            result = await run(body, timeout)
            out.append(f"{SECTION_MARK}{name}\n{result.stdout}\n{SECTION_MARK}rc {name} {result.exit_code}\n")
            err.append(f"{SECTION_MARK}{name}\n{result.stderr}\n")
        return Result(0, "".join(out), "".join(err))
    return one_by_one


async def full_probe(host: PluginHost, run: Run, meter: Meter, *, one_each: bool = False) -> Round:
    """`siteline probe`'s rounds (collect_areas), with time, round trips and bytes per area."""
    calls = 0

    async def counted(command: str, timeout: float) -> Result:
        nonlocal calls
        calls += 1
        return await run(command, timeout)

    ctx = make_context("bench", "bench", naive(counted) if one_each else counted, log)
    began = time.perf_counter()
    result = Round(0.0)
    for kind in AREAS:
        figures = result.kinds[kind] = KindFigures()
        up, down, calls, t0 = meter.up, meter.down, 0, time.perf_counter()
        for entry in host.probes(kind):
            snapshot = await host.run_probe(entry, ctx)
            if snapshot is not None and not isinstance(snapshot, Unavailable):
                figures.available = True
                break
        await asyncio.sleep(0.005)  # window adjusts and the like, sent just after the answer, belong to this area
        figures.seconds = time.perf_counter() - t0
        figures.round_trips, figures.up, figures.down = calls, meter.up - up, meter.down - down
    result.seconds = time.perf_counter() - began
    return result


# -- the run --------------------------------------------------------------------------------------------------


def plugin_host() -> PluginHost:
    host = PluginHost()
    for name in PLUGINS:
        try:
            module = __import__(name)
        except ImportError as exc:
            print(f"  (plugin {name} not importable, left out: {exc})", file=sys.stderr)
            continue
        host.register(module, name)
    return host


async def _connected(port: int, folder: Path) -> Transport:
    target = parse_target(f"ssh://root@127.0.0.1:{port}")
    transport = open_transport(target, Credentials(username="root", password=PASSWORD), folder / "known_hosts",
                               accept_new_host_key=True, connect_timeout=20)
    await transport.connect()
    return transport


async def _measure_device(state: DeviceState, folder: Path, n: int, at_only: bool,
                          rtt: float) -> dict[str, object]:
    meter = Meter()
    host = plugin_host()
    at = ATModem(state, modemmanager=not at_only) if at_only else None
    if at is not None:
        await at.start()
    try:
        async with running_device(state) as device, counting_proxy(device.ssh_port or 0, meter, rtt) as port:
            before = meter.total()
            t0 = time.perf_counter()
            transport = await _connected(port, folder)
            connect = (time.perf_counter() - t0, meter.total() - before)
            try:
                with _at_port(at):
                    await full_probe(host, transport.run, meter)  # warm-up: caches, first shims, signal setup
                    batched, one_each, local = [], [], []
                    for _ in range(n):  # interleaved, so a busy moment on this machine hits all three alike
                        batched.append(await full_probe(host, transport.run, meter))
                        one_each.append(await full_probe(host, transport.run, meter, one_each=True))
                        local.append(await full_probe(host, _on_device(state), Meter()))
            finally:
                await transport.close()
    finally:
        if at is not None:
            await at.stop()
    return {"connect": connect, "batched": batched, "naive": one_each, "local": local}


def _on_device(state: DeviceState) -> Run:
    """The device's own shell, no link: how much of a probe's time is the device's work (here, the simulator's
    per-command cost: every tool is a Python shim started in the device's namespaces)."""
    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(state, command, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))
    return run


@contextlib.contextmanager
def _at_port(at: ATModem | None) -> Iterator[None]:
    """Point the AT probe at the simulated modem's port for the plugin host's hook call."""
    import os

    import siteline_atmodem

    if at is not None:
        os.environ[siteline_atmodem.PORT_ENV] = str(at.line.link)
    try:
        yield None
    finally:
        os.environ.pop(siteline_atmodem.PORT_ENV, None)


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _report(label: str, figures: dict[str, object], n: int) -> list[str]:
    batched: list[Round] = figures["batched"]  # type: ignore[assignment]
    one_each: list[Round] = figures["naive"]  # type: ignore[assignment]
    connect_s, connect_b = figures["connect"]  # type: ignore[misc]
    local: list[Round] = figures["local"]  # type: ignore[assignment]
    l_med, l_p90 = _stats([r.seconds for r in local])
    b_med, b_p90 = _stats([r.seconds for r in batched])
    r_med, r_p90 = _stats([r.seconds for r in one_each])
    b_up, b_down = (statistics.median(v) for v in zip(*(r.bytes() for r in batched), strict=True))
    r_up, r_down = (statistics.median(v) for v in zip(*(r.bytes() for r in one_each), strict=True))
    lines = [
        f"== {label}  (n={n} full probes each; SSH connect once: {connect_s * 1000:.0f} ms, {connect_b} bytes)",
        f"{'':<14}{'wall med':>10}{'p90':>9}{'round trips':>13}{'bytes up':>10}{'bytes down':>12}{'total':>9}",
        f"{'batched':<14}{b_med * 1000:>8.0f}ms{b_p90 * 1000:>7.0f}ms{batched[0].round_trips():>13}"
        f"{b_up:>10.0f}{b_down:>12.0f}{b_up + b_down:>9.0f}",
        f"{'one exec each':<14}{r_med * 1000:>8.0f}ms{r_p90 * 1000:>7.0f}ms{one_each[0].round_trips():>13}"
        f"{r_up:>10.0f}{r_down:>12.0f}{r_up + r_down:>9.0f}",
        f"{'ratio':<14}{b_med / r_med:>10.2f}{b_p90 / r_p90:>9.2f}"
        f"{batched[0].round_trips() / max(1, one_each[0].round_trips()):>13.2f}"
        f"{b_up / r_up:>10.2f}{b_down / r_down:>12.2f}{(b_up + b_down) / (r_up + r_down):>9.2f}",
        f"{'on the device':<14}{l_med * 1000:>8.0f}ms{l_p90 * 1000:>7.0f}ms   (batched, the device's shell, no link)",
        f"per area (median; batched vs one exec each){'':<4}",
        f"  {'area':<9}{'ok':>4}{'ms':>8}{'trips':>7}{'bytes':>8}  |{'ms':>8}{'trips':>7}{'bytes':>8}"
        f"{'bytes ratio':>12}",
    ]
    for kind in AREAS:
        mine, theirs = [r.kinds[kind] for r in batched], [r.kinds[kind] for r in one_each]
        m_b = statistics.median(k.up + k.down for k in mine)
        t_b = statistics.median(k.up + k.down for k in theirs)
        lines.append(f"  {kind:<9}{'yes' if mine[0].available else 'no':>4}"
                     f"{statistics.median(k.seconds for k in mine) * 1000:>8.0f}{mine[0].round_trips:>7}{m_b:>8.0f}  |"
                     f"{statistics.median(k.seconds for k in theirs) * 1000:>8.0f}{theirs[0].round_trips:>7}"
                     f"{t_b:>8.0f}{m_b / t_b if t_b else float('nan'):>12.2f}")
    return lines


async def _measure(folder: Path, n: int, rtt: float) -> list[str]:
    lines: list[str] = []
    for label, at_only in (("device with ModemManager (modem via mmcli)", False),
                           ("AT-only device (modem via AT commands on its port)", True)):
        state = make_state(folder / ("at" if at_only else "mm"), name="gw-bench")
        figures = await _measure_device(state, folder, n, at_only, rtt)
        lines += [*_report(f"{label}, link round trip +{rtt * 1000:.0f} ms", figures, n), ""]
        print(f"  measured: {label}", file=sys.stderr, flush=True)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="full probes per device and mode (default 10)")
    ap.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                    help="add this round-trip time in the proxy, e.g. 100 for a cellular link (default 0: loopback)")
    args = ap.parse_args()
    if args.n < 1:
        ap.error("-n must be at least 1")
    with tempfile.TemporaryDirectory(prefix="siteline-bench-probe-") as tmp:
        lines = asyncio.run(_measure(Path(tmp), args.n, args.rtt / 1000))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
