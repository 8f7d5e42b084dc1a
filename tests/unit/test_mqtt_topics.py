"""TopicTree: counts, history, rates, change reports, limits and garbage topics."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.mqtt_topics import SMALL_CAP, Rate, RawMessage, TopicNode, TopicTree, topic_problem, walk

T0 = 1_700_000_000.0


def msg(topic: str | bytes, payload: bytes = b"x", t: float = T0, retain: bool = False, qos: int = 0) -> RawMessage:
    return (topic, payload, qos, retain, t)


def test_levels_become_nodes_with_counts_up_the_tree() -> None:
    tree = TopicTree()
    tree.ingest_batch([msg("a/b/c"), msg("a/b/c"), msg("a/d"), msg("a")])
    a = tree.find("a")
    assert a is not None
    assert a.total == 4
    assert a.count == 1
    assert a.is_topic
    b = tree.find("a/b")
    assert b is not None
    assert b.total == 2
    assert b.count == 0
    assert not b.is_topic
    c = tree.find("a/b/c")
    assert c is not None
    assert c.topic == "a/b/c"
    assert c.count == 2
    assert c.parent is b
    assert tree.root.total == 4
    assert tree.messages == 4
    assert [n.name for n in a.rows] == ["b", "d"]
    assert [n.row for n in a.rows] == [0, 1]


def test_history_keeps_the_last_n_with_retain_flag() -> None:
    tree = TopicTree(keep=3)
    tree.ingest_batch([msg("t", str(i).encode(), T0 + i, retain=(i == 4)) for i in range(5)])
    node = tree.find("t")
    assert node is not None
    assert node.payloads is not None
    assert [p.data for p in node.payloads] == [b"2", b"3", b"4"]
    assert node.retained
    assert node.last_time == T0 + 4
    assert node.last is not None
    assert node.last.data == b"4"


def test_changes_report_new_nodes_parent_first_then_only_changed() -> None:
    tree = TopicTree()
    tree.ingest_batch([msg("x/y/z"), msg("q")])
    changes = tree.drain_changes()
    assert [n.topic for n in changes.added] == ["x", "x/y", "x/y/z", "q"]
    assert changes.changed == []
    assert not tree.drain_changes()
    tree.ingest_batch([msg("x/y/z")])
    changes = tree.drain_changes()
    assert changes.added == []
    assert [n.topic for n in changes.changed] == ["x/y/z", "x/y", "x"]


def test_take_added_reports_only_new_nodes_and_forgets_changes() -> None:
    tree = TopicTree()
    tree.ingest_batch([msg("x/y"), msg("q")])
    assert [n.topic for n in tree.take_added()] == ["x", "x/y", "q"]
    tree.ingest_batch([msg("x/y"), msg("x/z")])
    assert [n.topic for n in tree.take_added()] == ["x/z"]
    assert not tree.drain_changes()  # the changes were forgotten with the take


def test_rate_over_the_window() -> None:
    rate = Rate()
    for s in range(10):
        rate.add(100, T0 + s)
    assert 90 <= rate.per_second(T0 + 9.999) <= 120
    assert rate.per_second(T0 + 30) == 0
    rate.add(5, T0 + 3)  # the clock went back: counted, never crashes
    assert rate.per_second(T0 + 9.5) > 0


def test_payloads_are_capped_and_the_budget_shrinks_them() -> None:
    tree = TopicTree(payload_cap=1000, payload_budget=3000)
    tree.ingest_batch([msg("big", b"a" * 5000)])
    node = tree.find("big")
    assert node is not None
    assert node.last is not None
    assert len(node.last.data) == 1000
    assert node.last.size == 5000
    assert node.last.truncated
    tree.ingest_batch([msg(f"t{i}", b"b" * 1000) for i in range(5)])
    assert tree.payload_bytes <= 3000 + 1000 + 3 * SMALL_CAP
    assert any("budget" in w for w in tree.warnings)


def test_topic_cap_counts_overflow_and_warns() -> None:
    tree = TopicTree(max_nodes=10)
    tree.ingest_batch([msg(f"d/{i}") for i in range(20)])
    assert tree.nodes == 10
    assert tree.overflow_messages == 12  # root + 'd' + 8 topics fit
    assert "tree is full" in tree.warnings[0]
    tree.ingest_batch([msg("d/0")])  # known topics still count
    node = tree.find("d/0")
    assert node is not None
    assert node.count == 2


def test_garbage_topics_are_counted_not_stored() -> None:
    tree = TopicTree()
    stored = tree.ingest_batch([msg(""), msg("a/+/b"), msg("a/#"), msg(b"\xff\xfe"), msg("x" * 70_000),
                                msg("a\x00b"), msg("/".join(["l"] * 200)), msg("ok")])
    assert stored == 1
    assert sum(tree.rejected.values()) == 7
    assert tree.nodes == 2
    assert any("UTF-8" in w for w in tree.warnings)


def test_empty_levels_are_real_levels() -> None:
    tree = TopicTree()
    tree.ingest_batch([msg("/a"), msg("a//b"), msg("a/")])
    assert [n.name for n in tree.root.rows] == ["", "a"]
    a = tree.find("a")
    assert a is not None
    assert [n.name for n in a.rows] == [""]
    assert tree.find("a//b") is not None
    assert tree.find("/a") is not None


def test_bytes_and_str_topics_share_a_node() -> None:
    tree = TopicTree()
    tree.ingest_batch([msg(b"s/\xc3\xa9"), msg("s/é")])
    node = tree.find("s/é")
    assert node is not None
    assert node.count == 2
    assert tree.nodes == 3


def _check_invariants(tree: TopicTree) -> None:
    seen = 0
    for node in walk(tree.root):
        seen += 1
        assert node.total == node.count + sum(c.total for c in node.rows)
        assert all(c.row == i and c.parent is node for i, c in enumerate(node.rows))
        if node.payloads is not None:
            assert len(node.payloads) <= tree.keep
            assert all(len(p.data) <= tree.payload_cap for p in node.payloads)
    assert seen == tree.nodes <= tree.max_nodes


level = st.text(alphabet="ab+#/\x00é", max_size=4)
topics = st.one_of(level, st.binary(max_size=8), st.lists(level, max_size=5).map("/".join))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(topics, st.binary(max_size=40)), max_size=30), max_size=5))
def test_any_input_keeps_the_tree_consistent(batches: list[list[tuple[str | bytes, bytes]]]) -> None:
    tree = TopicTree(keep=3, payload_cap=16, max_nodes=25)
    reported: set[TopicNode] = set()
    total = 0
    for batch in batches:
        total += tree.ingest_batch([msg(t, p) for t, p in batch])
        changes = tree.drain_changes()
        for node in changes.added:  # a parent is reported before its children
            assert node.parent is tree.root or node.parent in reported
            reported.add(node)
    assert tree.root.total == total == tree.messages
    assert len(reported) == tree.nodes - 1
    _check_invariants(tree)


@given(st.text(max_size=50))
def test_topic_problem_never_raises(text: str) -> None:
    problem = topic_problem(text)
    assert problem is None or isinstance(problem, str)
