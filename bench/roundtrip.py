"""Command round trip (`true`) per transport, median and p99, each against a reference measured in the same run.

    .venv/bin/python bench/roundtrip.py [-n 200]

Peers are real and on loopback: OpenSSH sshd, bash on a pty through socat, the simulator's serial
console (paced at 115200 baud), and the simulator's MQTT device behind Mosquitto. References:
- SSH: OpenSSH ``ssh true`` over a persistent ControlMaster session (a new ssh process per command,
  but no new connection), the closest a shell script gets;
- serial: a bare pyserial write of ``true; echo M$?`` and a read up to ``M0``;
- MQTT: a bare paho client publishing the contract's request (QoS 1) and waiting for the reply.
The ratio is Siteline's figure divided by the reference's (1.0 = as fast; higher = slower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho
import serial
from paho.mqtt.enums import CallbackAPIVersion
from tests.peers.sim import PASSWORD, make_state, running_device
from tests.peers.sim_clients import Console
from tests.peers.socat_shell import start_socat_shell
from tests.peers.sshd import SshdHandle, start_sshd

from siteline.core.targets import parse_target
from siteline.core.transports import mqtt_contract as contract
from siteline.core.transports.base import Credentials, Transport
from siteline.core.transports.mqtt import MqttTransport
from siteline.core.transports.serial import SerialTransport
from siteline.core.transports.ssh import SshTransport
from siteline.simulator.broker import start_mosquitto

WARMUP = 5
MARKER = re.compile(rb"M0\r?\n")
Row = tuple[str, list[float], list[float]]


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def _siteline(t: Transport, n: int) -> list[float]:
    await t.connect()
    try:
        times: list[float] = []
        for i in range(WARMUP + n):
            began = time.perf_counter()
            result = await t.run("true")
            if i >= WARMUP:
                times.append(time.perf_counter() - began)
            assert result.exit_code == 0, result
        return times
    finally:
        await t.close()


# -- references (blocking, run in a thread: the simulator serves from this process's event loop) ----------


def _openssh(sshd: SshdHandle, folder: Path, n: int) -> list[float]:
    base = ["ssh", "-F", "/dev/null", "-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/cm-%C",
            "-o", "ControlPersist=120", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", str(sshd.client_key), "-p", str(sshd.port),
            f"{sshd.user}@127.0.0.1"]
    # DEVNULL, not pipes: the backgrounded master would hold a pipe open and make run() wait for it.
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    times: list[float] = []
    try:
        for i in range(WARMUP + n):
            began = time.perf_counter()
            subprocess.run([*base, "true"], check=True, timeout=30, **quiet)  # type: ignore[call-overload]
            if i >= WARMUP:
                times.append(time.perf_counter() - began)
    finally:
        subprocess.run([*base[:-1], "-O", "exit", base[-1]], check=False, timeout=30, **quiet)  # type: ignore
    return times


def _bare_serial(port: serial.Serial, n: int) -> list[float]:
    port.reset_input_buffer()
    times: list[float] = []
    for i in range(WARMUP + n):
        began = time.perf_counter()
        port.write(b"true; echo M$?\r")
        seen = b""
        while not MARKER.search(seen):  # the echo carries "M$?", only the output has "M0"
            piece = port.read(port.in_waiting or 1)
            if not piece and time.perf_counter() - began > 10:
                raise TimeoutError(f"no marker from the console: {seen[-200:]!r}")
            seen += piece
        if i >= WARMUP:
            times.append(time.perf_counter() - began)
    return times


def _socat_reference(path: Path, n: int) -> list[float]:
    with serial.Serial(str(path), 115200, timeout=0.5) as port:
        return _bare_serial(port, n)


def _paho_reference(host: str, port: int, prefix: str, n: int) -> list[float]:
    reply_to = contract.reply_topic(prefix, f"bench-{uuid.uuid4().hex[:8]}")
    got = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:12]}")
    client.on_message = lambda _c, _u, _m: got.set()
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe(reply_to, qos=1)[1]
        time.sleep(0.3)  # the SUBACK: a bare client does not wait for it either
        times: list[float] = []
        for i in range(WARMUP + n):
            got.clear()
            request = contract.CommandRequest(uuid.uuid4().hex, "true", 10.0, reply_to)
            began = time.perf_counter()
            client.publish(contract.request_topic(prefix), request.encode(), qos=1)
            if not got.wait(10):
                raise TimeoutError("the device did not answer the bare paho request")
            if i >= WARMUP:
                times.append(time.perf_counter() - began)
        return times
    finally:
        client.disconnect()
        client.loop_stop()


async def _sim_console_reference(link: Path, n: int) -> list[float]:
    console = Console(link, 115200)
    try:
        await console.login()
        await console.expect(rb"# ")
        times = await asyncio.to_thread(_bare_serial, console.port, n)
        await console.send("exit\r")  # back to the login prompt, where the transport starts
        await console.expect(rb"login: ")
        return times
    finally:
        console.close()


# -- the run --------------------------------------------------------------------------------------------


async def _measure(folder: Path, n: int) -> list[Row]:
    rows: list[Row] = []

    async def pair(label: str, mine: Awaitable[list[float]], theirs: Callable[[], Awaitable[list[float]]]) -> None:
        rows.append((label, await mine, await theirs()))
        print(f"  measured {label}", file=sys.stderr, flush=True)

    sshd = start_sshd(folder / "sshd")
    shell = start_socat_shell(folder / "socat")
    broker = start_mosquitto(folder / "mosquitto")
    try:
        ssh_target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}")
        creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
        await pair("ssh (OpenSSH sshd)", _siteline(SshTransport(ssh_target, creds, folder / "known_hosts",
                                                                accept_new_host_key=True), n),
                   lambda: asyncio.to_thread(_openssh, sshd, folder, n))
        socat = SerialTransport(parse_target(shell.url + "?baud=115200"), Credentials())
        await pair("serial (bash on a pty)", _siteline(socat, n),
                   lambda: asyncio.to_thread(_socat_reference, shell.path, n))
        link = folder / "ttySIM"
        async with running_device(make_state(folder / "device"), ssh=False, serial_link=link,
                                  mqtt_url=broker.url) as device:
            assert device.mqtt is not None
            await asyncio.wait_for(device.mqtt.connected.wait(), 10)
            reference = await _sim_console_reference(link, n)
            console = SerialTransport(parse_target(f"serial://{link}?baud=115200"), Credentials("root", PASSWORD))
            rows.append(("serial (sim console 115200)", await _siteline(console, n), reference))
            mqtt = MqttTransport(parse_target(device.mqtt.url), Credentials())
            await pair("mqtt (sim via Mosquitto)", _siteline(mqtt, n),
                       lambda: asyncio.to_thread(_paho_reference, broker.host, broker.port, device.mqtt.prefix, n))
    finally:
        broker.stop()
        shell.stop()
        sshd.stop()
    return rows


def _table(rows: list[Row], n: int) -> str:
    lines = [f"`true` round trip, n={n} each (ms; ratio = Siteline / reference, 1.0 = as fast)",
             f"{'transport':<28} {'siteline med':>12} {'p99':>8} {'reference med':>14} {'p99':>8} "
             f"{'ratio med':>9} {'ratio p99':>9}"]
    for label, mine, theirs in rows:
        (m_med, m_p99), (r_med, r_p99) = _stats(mine), _stats(theirs)
        lines.append(f"{label:<28} {m_med:>12.2f} {m_p99:>8.2f} {r_med:>14.2f} {r_p99:>8.2f} "
                     f"{m_med / r_med:>9.2f} {m_p99 / r_p99:>9.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="round trips per transport and reference (default 200)")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as one JSON line")
    args = ap.parse_args()
    if args.n < 1:
        ap.error("-n must be at least 1")
    with tempfile.TemporaryDirectory(prefix="siteline-bench-rt-") as tmp:
        rows = asyncio.run(_measure(Path(tmp), args.n))
    print(_table(rows, args.n))
    if args.json:
        figures = {label: {"siteline": _stats(m), "reference": _stats(r)} for label, m, r in rows}
        print("RESULT " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
