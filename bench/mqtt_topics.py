"""MQTT topic model under a flood: Siteline's explorer path against a bare paho client, same broker, same run.

    .venv/bin/python bench/mqtt_topics.py [--seconds 5] [--topics 2000] [--rate 0] [--intake child|thread]

Starts its own Mosquitto on loopback and a publisher process that floods QoS 0 messages to
``--topics`` topics (``site/<n>/dev/<m>/metric``) for ``--seconds``, received by two consumers at once
(so the machine's other load weighs on both alike; each rate is its messages over its own first-to-last span):
  (a) a bare paho-mqtt 2.x client (a child process) whose on_message only counts, and at the same time
  (b) Siteline's path. ``--intake child`` (the explorer's, default): MqttSubscriber -> TopicTree in the
      intake child process (core/mqtt_intake.py), polled each tick by RemoteTreeModel in this process;
      ``--intake thread`` (the former path): MqttSubscriber -> (feeder thread) TopicTree -> MqttTreeModel
      in this process. Either way behind the explorer's sort proxy and a QTreeView, QApplication
      offscreen, the model's tick timer on the qasync loop, while LoopWatch measures the worst stall.
It prints both rates, the ratio (b)/(a) (goal >= 0.8), the worst stall (goal < 50 ms), the
peak RSS of (b), and the spread of the view's repaints (paint event to the next loop pass) and of
the model's ticks: the two things the UI thread does for the flood.
``--rate`` caps the publisher (messages/s; 0 = as fast as it can).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FILTERS = ["site/#"]
IDLE = 1.5  # seconds without a message after which a consumer has seen the whole flood


# ---- the publisher (a child process) ------------------------------------------------------------
# It writes prebuilt MQTT 3.1.1 packets to the socket: paho's per-message Python work would make the
# publisher, not the consumers, the bottleneck on a 2-core machine.

def _packet(kind: int, body: bytes) -> bytes:
    length, n = bytearray(), len(body)
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (128 if n else 0))
        if not n:
            return bytes([kind]) + bytes(length) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _topic(i: int) -> str:
    return f"site/{i // 20}/dev/{i % 20}/metric"


def publisher(port: int, seconds: float, topics: int, rate: float) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_packet(0x10, _string("MQTT") + bytes([4, 2, 0, 60]) + _string(f"flood-{os.getpid()}")))
    if sock.recv(4)[:2] != b"\x20\x02":
        raise SystemExit("the broker did not accept the publisher")
    chunk = 200
    blocks = [b"".join(_packet(0x30, _string(_topic((k + j) % topics)) + b'{"v": %d, "unit": "C"}' % j)
                       for j in range(chunk)) for k in range(0, topics, chunk)]
    sent, start = 0, time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        if rate and sent > rate * (now - start):
            time.sleep(0.002)
            continue
        sock.sendall(blocks[(sent // chunk) % len(blocks)])
        sent += chunk
    sock.sendall(b"\xe0\x00")
    sock.close()
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}))


def start_publisher(port: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--publisher", str(port), "--seconds", str(args.seconds),
                             "--topics", str(args.topics), "--rate", str(args.rate)], stdout=subprocess.PIPE, text=True)


# ---- (a) the bare paho client (a child process) -------------------------------------------------

def bare(port: int) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def on_message(_c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        now = time.time()
        if not seen["n"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bare-{os.getpid()}")
    c.on_message = on_message
    c.on_connect = lambda cl, _u, _f, _rc, _p: cl.subscribe([(f, 0) for f in FILTERS])
    c.connect("127.0.0.1", port)
    c.loop_start()
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (seen["n"] and time.time() - seen["last"] > IDLE):
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seen["cpu"] = usage.ru_utime + usage.ru_stime - cpu0
    print(json.dumps(seen), flush=True)


def start_bare(port: int) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, __file__, "--bare", str(port)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    child.stdout.readline()  # "ready": connected (its SUBSCRIBE follows at once)
    return child


def bare_result(child: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = child.communicate(timeout=120)
    seen = json.loads(out.strip().splitlines()[-1])
    return {"messages": seen["n"], "rate": seen["n"] / max(1e-6, seen["last"] - seen["first"]),
            "cpu_us": seen["cpu"] / max(1, seen["n"]) * 1e6}


# ---- (b) Siteline's path, in this process -------------------------------------------------------

async def measure(port: int, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """Both consumers on the same flood at the same time, so the machine's load weighs on both alike."""
    from PySide6.QtWidgets import QTreeView

    from siteline.core.loopwatch import LoopWatch
    from siteline.core.mqtt_subscriber import MqttSubscriber
    from siteline.ui.mqtt_tree_model import MqttTreeModel, TopicSortProxy, rows_on_screen

    sub = MqttSubscriber(f"mqtt://127.0.0.1:{port}", FILTERS)
    model = MqttTreeModel()
    proxy = TopicSortProxy()
    proxy.setSourceModel(model)
    view = QTreeView()
    view.setUniformRowHeights(True)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.resize(1200, 800)
    view.show()
    model.watched = set()  # as the explorer: each tick refreshes the rows on screen, an expand its new rows
    model.on_screen = rows_on_screen(view, model)
    view.expanded.connect(lambda index: model.set_watched(model.node(proxy.mapToSource(index)), True))
    paints = PaintTimer(view.viewport())
    ticks: list[float] = []
    real_tick = model.tick

    def timed_tick() -> None:
        t0 = time.perf_counter()
        real_tick()
        ticks.append(time.perf_counter() - t0)

    model.timer.timeout.disconnect(real_tick)
    model.timer.timeout.connect(timed_tick)
    first: list[float] = []
    last = [0.0]  # when the most recent message was absorbed

    def source(limit: int) -> list[tuple[str | bytes, bytes, int, bool, float]]:
        batch = sub.drain(limit)
        if batch:
            if not first:
                first.append(batch[0][4])
            last[0] = time.time()
        return batch

    def on_tick(_n: int) -> None:
        if proxy.rowCount() and not view.isExpanded(proxy.index(0, 0)):
            view.expand(proxy.index(0, 0))  # 'site' open, as a person would have it: its rows repaint every tick
        if last[0] and time.time() - last[0] > IDLE:
            done.set()

    await sub.connect()
    model.set_source(source)
    bare_child = start_bare(port)
    await asyncio.sleep(0.3)  # both SUBSCRIBEs reached the broker
    watch = LoopWatch(interval=0.01)
    watch.start()
    cpu0 = _cpu()
    pub = start_publisher(port, args)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    model.sig_tick_done.connect(on_tick)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), args.seconds + 60)
    end = last[0]
    cpu = _cpu() - cpu0
    await watch.stop()
    pub_out, _ = await loop.run_in_executor(None, pub.communicate)
    model.set_source(None)
    await sub.close()
    view.expandToDepth(1)
    stored = model.tree.messages
    a = await loop.run_in_executor(None, bare_result, bare_child)
    b = {"messages": stored, "rate": stored / max(1e-6, end - (first[0] if first else end)),
         "stall_ms": watch.worst_stall * 1000, "stalls_over_50ms": sum(watch.stats.histogram[2:]),
         "samples": watch.stats.samples, "cpu_us": cpu / max(1, stored) * 1e6, "dropped": sub.dropped,
         "topics": model.tree.nodes - 1,
         "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "sent": json.loads(pub_out)["sent"],
         "paint_ms": _spread(paints.times), "tick_ms": _spread(ticks)}
    return a, b


async def measure_child(port: int, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """(b) with the intake in its child process: this process only applies one small snapshot per tick."""
    from PySide6.QtWidgets import QTreeView

    from siteline.core.loopwatch import LoopWatch
    from siteline.core.mqtt_intake import Snapshot
    from siteline.core.mqtt_intake_client import IntakeClient
    from siteline.ui.mqtt_remote_model import RemoteTreeModel, topics_on_screen
    from siteline.ui.mqtt_tree_model import TopicSortProxy

    client = IntakeClient(f"mqtt://127.0.0.1:{port}", FILTERS)
    model = RemoteTreeModel()
    proxy = TopicSortProxy()
    proxy.setSourceModel(model)
    view = QTreeView()
    view.setUniformRowHeights(True)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.resize(1200, 800)
    view.show()
    model.on_screen = topics_on_screen(view)
    paints = PaintTimer(view.viewport())
    applies: list[float] = []
    latest: list[Snapshot] = []
    real_apply = model.apply

    def timed_apply(snapshot: Snapshot) -> None:
        t0 = time.perf_counter()
        real_apply(snapshot)
        applies.append(time.perf_counter() - t0)
        latest[:] = [snapshot]
        if proxy.rowCount() and not view.isExpanded(proxy.index(0, 0)):
            view.expand(proxy.index(0, 0))  # 'site' open, as a person would have it: its rows repaint every tick
        t = snapshot.totals
        if t.last and time.time() - t.last > IDLE and not snapshot.more:
            done.set()

    await client.connect()
    model.set_client(client)
    client.on_snapshot = timed_apply
    bare_child = start_bare(port)
    await asyncio.sleep(0.3)  # both SUBSCRIBEs reached the broker
    watch = LoopWatch(interval=0.01)
    watch.start()
    cpu0, child_cpu0 = _cpu(), _proc_cpu(client.pid)
    pub = start_publisher(port, args)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), args.seconds + 60)
    cpu, child_cpu = _cpu() - cpu0, _proc_cpu(client.pid) - child_cpu0
    child_rss = _proc_rss_mib(client.pid)
    await watch.stop()
    pub_out, _ = await loop.run_in_executor(None, pub.communicate)
    model.set_client(None)
    await client.close()
    t = latest[0].totals if latest else None
    stored = t.messages if t else 0
    a = await loop.run_in_executor(None, bare_result, bare_child)
    b = {"messages": stored, "rate": stored / max(1e-6, t.last - t.first) if t else 0.0,
         "stall_ms": watch.worst_stall * 1000, "stalls_over_50ms": sum(watch.stats.histogram[2:]),
         "samples": watch.stats.samples, "cpu_us": (cpu + child_cpu) / max(1, stored) * 1e6,
         "ui_cpu_us": cpu / max(1, stored) * 1e6, "dropped": t.dropped if t else 0,
         "topics": t.topics if t else 0, "rows": model.topic_count,
         "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "child_rss_mib": child_rss,
         "sent": json.loads(pub_out)["sent"], "paint_ms": _spread(paints.times), "tick_ms": _spread(applies)}
    return a, b


def _proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _proc_rss_mib(pid: int | None) -> float:
    """Peak RSS of a live process, from /proc."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _spread(times: list[float]) -> dict[str, float]:
    """Median, p90 and max in milliseconds (and how many)."""
    if not times:
        return {"n": 0, "median": 0.0, "p90": 0.0, "max": 0.0}
    ordered = sorted(times)
    return {"n": len(ordered), "median": ordered[len(ordered) // 2] * 1000,
            "p90": ordered[int(len(ordered) * 0.9)] * 1000, "max": ordered[-1] * 1000}


def PaintTimer(widget: Any) -> Any:  # noqa: N802  (a factory: the QObject subclass needs PySide6, imported late)
    """Times every paint event of ``widget`` (the view's viewport): the repaint cost the stall is made of."""
    from PySide6.QtCore import QEvent, QObject

    class _Timer(QObject):
        def __init__(self) -> None:
            super().__init__(widget)
            self.times: list[float] = []
            self._t0 = 0.0
            widget.installEventFilter(self)

        def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Paint:
                # The filter runs before the paint: time from here to the next event loop pass.
                self._t0 = time.perf_counter()
                QTimer.singleShot(0, self._done)
            return False

        def _done(self) -> None:
            if self._t0:
                self.times.append(time.perf_counter() - self._t0)
                self._t0 = 0.0

    from PySide6.QtCore import QTimer

    return _Timer()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_measure(port: int, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete((measure_child if args.intake == "child" else measure)(port, args))
    finally:
        loop.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="flood length (default 5)")
    ap.add_argument("--topics", type=int, default=2000, help="distinct topics (default 2000)")
    ap.add_argument("--rate", type=float, default=0.0, help="publisher cap in messages/s (default 0: no cap)")
    ap.add_argument("--intake", choices=["child", "thread"], default="child",
                    help="where the intake runs: a child process (the explorer's path) or a thread in the UI process")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--publisher", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publisher:
        publisher(args.publisher, args.seconds, args.topics, args.rate)
        return 0
    if args.bare:
        bare(args.bare)
        return 0
    from siteline.simulator.broker import start_mosquitto

    with tempfile.TemporaryDirectory(prefix="siteline-bench-mqtt-") as tmp:
        broker = start_mosquitto(Path(tmp) / "mosquitto")
        try:
            a, b = run_measure(broker.port, args)
        finally:
            broker.stop()
    ratio = b["rate"] / a["rate"] if a["rate"] else 0.0
    print(f"MQTT topic model: {args.topics} topics, QoS 0 flood of {b['sent']:,} messages in {args.seconds:g} s"
          f"{f' (capped at {args.rate:,.0f}/s)' if args.rate else ' (uncapped)'}, both consumers at once")
    print(f"  (a) bare paho on_message     {a['rate']:>10,.0f} msg/s  ({a['messages']:,} received, "
          f"{a['cpu_us']:.1f} µs CPU per message)")
    print(f"  (b) Siteline tree + Qt model {b['rate']:>10,.0f} msg/s  ({b['messages']:,} absorbed, "
          f"{b['cpu_us']:.1f} µs CPU per message, {b['topics']:,} tree nodes, {b['dropped']:,} dropped in the buffer)"
          f"  [intake: {args.intake}]")
    if "ui_cpu_us" in b:
        print(f"      UI process {b['ui_cpu_us']:.1f} µs CPU per message, {b['rows']:,} rows; intake child peak RSS "
              f"{b['child_rss_mib']:.0f} MiB")
    print(f"  ratio (b)/(a) {ratio:.2f} (goal >= 0.8)   worst event-loop stall {b['stall_ms']:.0f} ms (goal < 50)   "
          f"({b['stalls_over_50ms']} of {b['samples']} samples over 50 ms)   peak RSS {b['rss_mib']:.0f} MiB")
    for name in ("paint_ms", "tick_ms"):
        d = b[name]
        print(f"  {name[:-3]:>5}: {d['n']} times, median {d['median']:.1f} ms, p90 {d['p90']:.1f} ms, "
              f"max {d['max']:.1f} ms")
    if args.json:
        print("RESULT " + json.dumps({"bare": a, "siteline": b, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
