"""The MQTT topic models (checked by qtmodeltester) and the explorer window against a real Mosquitto flood.

The explorer runs its intake in a child process and shows it through RemoteTreeModel; MqttTreeModel (the
in-process path) is kept for bench/mqtt_topics.py --intake thread and is tested below too."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PySide6.QtCore import QModelIndex, Qt

from siteline.core.loopwatch import LoopWatch
from siteline.core.mqtt_intake import TopicStats
from siteline.core.mqtt_topics import RawMessage, TopicTree
from siteline.core.transports.base import ConnState
from siteline.simulator.broker import BrokerHandle
from siteline.ui import mqtt_remote_model, mqtt_tree_model
from siteline.ui.mqtt_explorer import MqttExplorer
from siteline.ui.mqtt_remote_model import RemoteTreeModel, topic_of
from siteline.ui.mqtt_tree_model import COL_COUNT, COL_PAYLOAD, COL_RATE, COL_TOPIC, MqttTreeModel, TopicSortProxy
from tests.gui.conftest import Loop, until
from tests.peers import free_port

T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _restore_switch_interval() -> Iterator[None]:
    """The model lowers the GIL switch interval when it starts draining; other tests keep the default."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.fixture(autouse=True)
def _build_whole_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """MqttTreeModel builds new rows for at most BUILD_BUDGET (8 ms) per tick: on a loaded machine a tick of these
    tests would then show only part of what they check. Tests of the budget itself set it again."""
    monkeypatch.setattr(mqtt_tree_model, "BUILD_BUDGET", 5.0)


class FakeBuffer:
    """Stands in for the subscriber's buffer: the model only needs drain(limit)."""

    def __init__(self) -> None:
        self.items: deque[RawMessage] = deque()

    def put(self, topic: str, payload: bytes = b"1", t: float = T0) -> None:
        self.items.append((topic, payload, 0, False, t))

    def drain(self, limit: int) -> list[RawMessage]:
        # Called from the model's feeder thread too: popleft is thread-safe, the length check alone is not enough.
        out: list[RawMessage] = []
        for _ in range(limit):
            try:
                out.append(self.items.popleft())
            except IndexError:
                break
        return out


def test_model_passes_qtmodeltester_while_growing(qtmodeltester) -> None:
    model = MqttTreeModel(clock=lambda: T0 + 1)
    buf = FakeBuffer()
    model._source = buf.drain  # ticks driven by hand, no timer
    buf.put("first/topic")
    model.tick()
    qtmodeltester.check(model, force_py=True)  # stays connected: every later signal is checked as it comes
    for step in range(3):
        for i in range(8):
            buf.put(f"site/{i % 3}/dev/{(i + step) % 4}/m{step}", b'{"v": %d}' % i)
        buf.put("/lead/empty")
        model.tick()
    assert model.rowCount() == 3
    assert model.data(model.index(1, COL_TOPIC)) == "site"
    assert model.data(model.index(1, COL_COUNT)) == "24"
    assert model.data(model.index(2, COL_TOPIC)) == "(empty)"


def test_model_emits_one_insert_per_parent_and_ranged_changes(qtbot) -> None:
    model = MqttTreeModel(clock=lambda: T0 + 1)
    buf = FakeBuffer()
    model._source = buf.drain
    inserts: list[tuple[int, int]] = []
    changes: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserts.append((first, last)))
    model.dataChanged.connect(lambda tl, br, _r: changes.append((tl.row(), br.row())))
    for i in range(50):
        buf.put(f"a/{i}/x")
    model.tick()
    assert inserts == [(0, 0)]  # 'a' arrives with its whole subtree in one signal
    a = model.index(0, 0)
    assert model.rowCount(a) == 50
    assert model.rowCount(model.index(7, 0, a)) == 1
    inserts.clear()
    changes.clear()
    for i in range(50, 53):
        buf.put(f"a/{i}/x")
    buf.put("a/3/x")
    model.tick()
    assert inserts == [(50, 50), (51, 51), (52, 52)]  # one per new subtree, never one per message
    assert (0, 49) in changes  # one range for all changed siblings under 'a' (rates of the last tick move too)
    assert len(changes) <= 1 + 1 + 50  # 'a', its children, one per a/<i>: never one per message or per cell


def test_payload_preview_column(qtbot) -> None:
    model = MqttTreeModel(TopicTree(), clock=lambda: T0)
    model.tree.ingest_batch([("bin", bytes(range(10)), 0, False, T0), ("txt", b"line1\nline2", 0, True, T0)])
    model.tick()
    assert model.data(model.index(0, COL_PAYLOAD)).startswith("0x0001")
    assert model.data(model.index(1, COL_PAYLOAD)) == "[retained] line1 line2"
    assert model.data(QModelIndex()) is None


@pytest.mark.parametrize("role", [Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.TextAlignmentRole])
def test_model_roles_never_raise(qtbot, role: Qt.ItemDataRole) -> None:
    model = MqttTreeModel(clock=lambda: T0)
    model.tree.ingest_batch([("a/b", b"x", 0, False, T0)])
    model.tick()
    for col in range(4):
        model.data(model.index(0, col), role)


def test_topics_sort_naturally_and_numbers_as_numbers(qtbot) -> None:
    model = MqttTreeModel(clock=lambda: T0)
    model.tree.ingest_batch([(f"dev/{n}", b"", 0, False, T0) for n in (10, 2, 1, 33, 3) for _ in range(n % 7)])
    model.tick()
    proxy = TopicSortProxy()
    proxy.setSourceModel(model)
    proxy.sort(COL_TOPIC, Qt.SortOrder.AscendingOrder)
    dev = proxy.index(0, 0)

    def column(col: int) -> list[object]:
        return [proxy.index(r, col, dev).data() for r in range(proxy.rowCount(dev))]

    assert column(COL_TOPIC) == ["1", "2", "3", "10", "33"]
    proxy.sort(COL_COUNT, Qt.SortOrder.DescendingOrder)
    assert column(COL_COUNT) == ["5", "3", "3", "2", "1"]  # 33 % 7, then 10 and 3, 2, 1: numerically


def test_search_matches_the_full_topic_and_keeps_parents(qtbot) -> None:
    model = MqttTreeModel(clock=lambda: T0)
    model.tree.ingest_batch([(f"site/{s}/dev/{d}/m", b"", 0, False, T0) for s in range(3) for d in range(12)])
    model.tick()
    proxy = TopicSortProxy()
    proxy.setSourceModel(model)
    proxy.setFilterFixedString("1/DEV/11")
    site = proxy.index(0, 0)
    assert proxy.rowCount() == 1
    assert proxy.rowCount(site) == 1  # site/1 only
    dev = proxy.index(0, 0, proxy.index(0, 0, site))
    assert [proxy.index(r, 0, dev).data() for r in range(proxy.rowCount(dev))] == ["11"]


def test_collapsed_rows_are_refreshed_when_expanded(qtbot) -> None:
    model = MqttTreeModel(clock=lambda: T0)
    model.watched = set()
    buf = FakeBuffer()
    model._source = buf.drain
    buf.put("a/b/c")
    model.tick()
    b = model.index(0, 0, model.index_for(model.tree.find("a") or model.tree.root))
    for _ in range(4):
        buf.put("a/b/c")
    model.tick()
    assert model.data(model.index(0, COL_COUNT)) == "5"  # a top-level row: always refreshed
    assert model.data(b.siblingAtColumn(COL_COUNT)) != "5"  # under a collapsed 'a': left alone
    model.set_watched(model.tree.find("a") or model.tree.root, True)
    assert model.data(b.siblingAtColumn(COL_COUNT)) == "5"


def test_a_burst_of_new_topics_shows_over_several_ticks(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt_tree_model, "BUILD_BUDGET", 0.0)  # one row per tick at least, never all at once
    model = MqttTreeModel(clock=lambda: T0)
    model.tree.ingest_batch([(f"s/{i}/x", b"", 0, False, T0) for i in range(5)])
    inserts: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserts.append((first, last)))
    ticks = 0
    while model.index_of("s/4/x") == QModelIndex() and ticks < 50:
        model.tick()
        ticks += 1
    assert 3 < ticks < 50
    s = model.index(0, 0)
    assert [model.index(r, 0, s).data() for r in range(model.rowCount(s))] == ["0", "1", "2", "3", "4"]
    assert model.node(model.index_of("s/4/x")).topic == "s/4/x"


def test_the_feeder_thread_drains_the_source_and_stops(qtbot) -> None:
    model = MqttTreeModel(interval_ms=20, clock=lambda: T0)
    buf = FakeBuffer()
    for i in range(3000):
        buf.put(f"t/{i % 30}", b"%d" % i)
    with qtbot.waitSignal(model.sig_tick_done, timeout=5000, check_params_cb=lambda n: n > 0):
        model.set_source(buf.drain)
    qtbot.waitUntil(lambda: model.tree.messages == 3000, timeout=5000)
    feeder = model._feeder
    assert feeder is not None
    model.set_source(None)
    assert not feeder._thread.is_alive()
    model.tick()
    assert model.absorbed == 3000
    assert model.data(model.index(0, COL_COUNT)) == "3,000"


# ---- RemoteTreeModel: the explorer's model, fed by the intake child -------------------------------

def _paths(*topics: str) -> list[str]:
    """Topic paths as the intake sends them: every new level, a parent before its children."""
    out: list[str] = []
    for topic in topics:
        levels = topic.split("/")
        for i in range(1, len(levels) + 1):
            path = "/".join(levels[:i])
            if path not in out:
                out.append(path)
    return out


def test_remote_model_passes_qtmodeltester_while_growing(qtmodeltester) -> None:
    model = RemoteTreeModel()
    model.add_topics(_paths("first/topic"), budget=1)
    qtmodeltester.check(model, force_py=True)  # stays connected: every later signal is checked as it comes
    for step in range(3):
        topics = [f"site/{i % 3}/dev/{(i + step) % 4}/m{step}" for i in range(8)]
        model.add_topics([p for p in _paths(*topics, "/lead/empty") if not model.has(p)], budget=1)
        model.set_stats({"site": TopicStats(24, 2.5, '{"v": 1}'), "": TopicStats(1, 0, "")})
    assert model.rowCount() == 3
    assert model.data(model.index(1, COL_TOPIC)) == "site"
    assert model.data(model.index(1, COL_COUNT)) == "24"
    assert model.data(model.index(1, COL_RATE)) == "2.5"
    assert model.data(model.index(2, COL_TOPIC)) == "(empty)"
    assert topic_of(model.index(0, 0, model.index(2, 0))) == "/lead"


def test_remote_model_inserts_one_subtree_at_a_time_and_ranges_changes(qtbot) -> None:
    model = RemoteTreeModel()
    inserts: list[tuple[int, int]] = []
    changes: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserts.append((first, last)))
    model.dataChanged.connect(lambda tl, br, _r: changes.append((tl.row(), br.row())))
    model.add_topics(_paths(*(f"a/{i}/x" for i in range(50))), budget=1)
    assert inserts == [(0, 0)]  # 'a' arrives with its whole subtree in one signal
    a = model.index(0, 0)
    assert model.rowCount(a) == 50
    inserts.clear()
    model.add_topics(["a/50", "a/50/x", "a/51", "a/51/x"], budget=1)
    assert inserts == [(50, 50), (51, 51)]  # one per new subtree, never one per level
    model.set_stats({f"a/{i}": TopicStats(i, 0.0, "") for i in (3, 7, 40)} | {"a": TopicStats(9, 0, "")})
    assert sorted(changes) == [(0, 0), (3, 40)]  # one range per parent
    assert model.data(model.index(7, COL_COUNT, a)) == "7"
    model.add_topics(["orphan/child"])  # a parent never announced: skipped, not a crash
    assert not model.has("orphan/child")


def test_remote_model_builds_a_burst_over_several_passes(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt_remote_model, "MORE_SOON_MS", 1)
    model = RemoteTreeModel()
    inserts: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserts.append((first, last)))
    assert model.add_topics(_paths(*(f"s/{i}/x" for i in range(5))), budget=0) == 1  # one row per pass at least
    qtbot.waitUntil(lambda: model.has("s/4/x"), timeout=5000)
    assert len(inserts) > 3
    s_index = model.index_of("s")
    assert [model.index(r, 0, s_index).data() for r in range(model.rowCount(s_index))] == ["0", "1", "2", "3", "4"]
    assert topic_of(model.index_of("s/4/x")) == "s/4/x"


def test_remote_rows_sort_naturally_numbers_as_numbers_and_filter_on_the_topic(qtbot) -> None:
    model = RemoteTreeModel()
    model.add_topics(_paths(*(f"dev/{n}" for n in (10, 2, 1, 33, 3))), budget=1)
    model.set_stats({f"dev/{n}": TopicStats(n % 7, 0.0, "") for n in (10, 2, 1, 33, 3)})
    proxy = TopicSortProxy()
    proxy.setSourceModel(model)
    proxy.sort(COL_TOPIC, Qt.SortOrder.AscendingOrder)
    dev = proxy.index(0, 0)

    def column(col: int) -> list[object]:
        return [proxy.index(r, col, dev).data() for r in range(proxy.rowCount(dev))]

    assert column(COL_TOPIC) == ["1", "2", "3", "10", "33"]
    proxy.sort(COL_COUNT, Qt.SortOrder.DescendingOrder)
    assert column(COL_COUNT) == ["5", "3", "3", "2", "1"]
    proxy.setFilterFixedString("DEV/3")
    assert column(COL_TOPIC) == ["33", "3"]


# ---- the explorer against a real broker ---------------------------------------------------------

def _flood(broker: BrokerHandle, topics: int, per_topic: int, stop: threading.Event) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{time.monotonic_ns()}")
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        for n in range(per_topic):
            for t in range(topics):
                if stop.is_set():
                    return
                c.publish(f"site/{t % 10}/dev/{t}/metric", b'{"n": %d, "ok": true}' % n)
            time.sleep(0.01)
        c.publish("done", b"1", qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def _messages(win: MqttExplorer) -> int:
    return win.last.totals.messages if win.last is not None else 0


def test_explorer_absorbs_a_flood_and_shows_payloads(qtbot, aloop: Loop, mosquitto: BrokerHandle) -> None:
    win = MqttExplorer(mosquitto.url, "site/#, done")
    qtbot.addWidget(win)
    win.show()
    watch = LoopWatch(interval=0.01)

    async def scenario() -> None:
        assert await win.connect_broker()
        assert win.client is not None
        assert win.client.state.state is ConnState.UP
        watch.start()
        stop = threading.Event()
        flood = threading.Thread(target=_flood, args=(mosquitto, 200, 20, stop))
        flood.start()
        try:
            await until(lambda: win.model.has("done"), timeout=20, what="the flood")
        finally:
            stop.set()
            flood.join()
        await until(lambda: _messages(win) >= 4001, what="every message")
        await watch.stop()
        assert "4,001 messages on" in win.stats.text()
        await until(lambda: win.select_topic("site/3/dev/13/metric"), what="the row")
        await until(lambda: "\n  " in win.payload_view.toPlainText(), what="pretty JSON")
        assert '"ok": true' in win.payload_view.toPlainText()
        assert win.history.count() == 10
        assert "20 messages here" in win.topic_label.text()
        win.pub_topic.setText("site/echo")
        win.pub_payload.setText("hi")
        win._on_publish_clicked()
        await until(lambda: win.model.has("site/echo"), what="our own message")
        assert win.stats.text().startswith(("Published to site/echo", "4,002 messages on"))
        win.pub_topic.setText("bad/#")
        win._on_publish_clicked()
        assert "wildcard" in win.stats.text()
        await win.disconnect_broker()

    aloop.run(scenario(), timeout=40)
    assert win.client is None
    assert win.connect_button.text() == "Connect"
    assert win.model.has("site/echo")  # what was received stays shown
    # A loose bound: this checks that nothing blocks the loop for long; bench/mqtt_topics.py measures the stall.
    assert watch.worst_stall < 1.0, watch.stats.describe()


def test_explorer_explains_a_refused_connection(qtbot, aloop: Loop) -> None:
    win = MqttExplorer(f"mqtt://127.0.0.1:{free_port()}", "#")
    qtbot.addWidget(win)
    assert not aloop.run(win.connect_broker())
    assert "refused" in win.stats.text()
    assert win.url_edit.isEnabled()
    win.url_edit.setText("ssh://host")
    assert not aloop.run(win.connect_broker())
    assert "MQTT" in win.stats.text()
    win.url_edit.setText("mqtt://127.0.0.1:1")
    win.filters_edit.setText("a/#/b")
    assert not aloop.run(win.connect_broker())
    assert "'#' must be" in win.stats.text()


def test_closing_the_window_ends_the_intake_process(qtbot, aloop: Loop, mosquitto: BrokerHandle) -> None:
    win = MqttExplorer(mosquitto.url, "#")
    qtbot.addWidget(win)
    assert aloop.run(win.connect_broker())
    client = win.client
    assert client is not None
    pid = client.pid
    win.close()
    aloop.run(until(lambda: client.state.state is ConnState.DOWN, what="the link closed"))
    assert client.pid is None
    assert not Path(f"/proc/{pid}").exists()
