"""A topic tree for the MQTT explorer: one node per topic level, fed in batches, bounded in memory.

Built for floods (thousands of messages per second): the per-message work is one dict lookup by
the full topic, a deque append and a counter; everything per-topic (counts up the tree, rates,
change tracking) is done once per topic per batch. The tree records what changed since the last
:meth:`TopicTree.drain_changes` so a view can announce exactly the new rows and the changed ones.

Limits keep a hostile or runaway broker from exhausting memory: at most ``max_nodes`` nodes (new
topics beyond that are counted in an overflow bucket and a warning), ``keep`` payloads per topic,
each cut to ``payload_cap`` bytes, and once ``payload_budget`` bytes are held, new payloads are
cut to ``SMALL_CAP`` bytes. Topics that are not valid MQTT topic names are counted, not stored.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

KEEP = 10
PAYLOAD_CAP = 64 * 1024
PAYLOAD_BUDGET = 256 * 1024 * 1024
SMALL_CAP = 256  # bytes kept per payload once the budget is used up: enough for a preview
MAX_NODES = 50_000
MAX_TOPIC_BYTES = 4096  # MQTT allows 65535; a longer name is almost certainly garbage
MAX_DEPTH = 128
RATE_WINDOW = 5  # seconds of history behind the rate column

#: What the subscriber hands over: (topic, payload, qos, retain, wall-clock time).
RawMessage = tuple[str | bytes, bytes, int, bool, float]


class Payload(NamedTuple):
    """One kept message. ``size`` is the size on the wire; ``data`` may be shorter (truncated)."""

    time: float
    data: bytes
    qos: int
    retain: bool
    size: int

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.size


class Rate:
    """Messages per second over the last ~RATE_WINDOW seconds, from one-second buckets in a ring."""

    __slots__ = ("_buckets", "_sec")
    _SLOTS = RATE_WINDOW + 1

    def __init__(self) -> None:
        self._buckets = [0] * self._SLOTS
        self._sec = 0

    def add(self, n: int, t: float) -> None:
        sec = int(t)
        if sec > self._sec:
            self._advance(sec)
        elif sec < self._sec:  # the clock went back: count into the current second, never into a stale bucket
            sec = self._sec
        self._buckets[sec % self._SLOTS] += n

    def _advance(self, sec: int) -> None:
        gap = sec - self._sec
        if gap >= self._SLOTS:
            self._buckets = [0] * self._SLOTS
        else:
            for k in range(1, gap + 1):
                self._buckets[(self._sec + k) % self._SLOTS] = 0
        self._sec = sec

    def per_second(self, now: float) -> float:
        sec = int(now)
        total = sum(self._buckets[x % self._SLOTS] for x in range(sec - RATE_WINDOW, sec + 1)
                    if self._sec - RATE_WINDOW <= x <= self._sec)
        return total / (RATE_WINDOW + (now - sec))


class TopicNode:
    """One topic level. ``topic`` is the full name up to here; ``payloads`` is None until a message arrives."""

    __slots__ = ("_index", "children", "count", "last_time", "name", "parent", "payloads", "rate", "retained",
                 "rows", "topic", "total")

    def __init__(self, name: str, parent: TopicNode | None, topic: str) -> None:
        self.name = name
        self.parent = parent
        self.topic = topic
        self.children: dict[str, TopicNode] = {}
        self.rows: list[TopicNode] = []  # children in arrival order: a child's row never changes
        self._index = 0
        self.count = 0  # messages on this exact topic
        self.total = 0  # messages on this topic and every topic below it
        self.payloads: deque[Payload] | None = None
        self.rate = Rate()  # of the whole subtree
        self.retained = False
        self.last_time = 0.0

    @property
    def row(self) -> int:
        """This node's position among its parent's children (stable: children are only appended)."""
        return self._index

    @property
    def is_topic(self) -> bool:
        """True when messages were published to exactly this name (not only below it)."""
        return self.payloads is not None

    @property
    def last(self) -> Payload | None:
        return self.payloads[-1] if self.payloads else None

    def ancestors(self) -> Iterator[TopicNode]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def __repr__(self) -> str:
        return f"TopicNode({self.topic!r}, total={self.total})"


@dataclass
class TreeChanges:
    """Since the last drain: ``added`` nodes (a parent always before its children) and other ``changed`` ones."""

    added: list[TopicNode] = field(default_factory=list)
    changed: list[TopicNode] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed)


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic name to publish to, or None if it is."""
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "wildcard in a published topic"
    if "\x00" in topic:
        return "NUL character in topic"
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"topic longer than {MAX_TOPIC_BYTES} bytes"
    if topic.count("/") >= MAX_DEPTH:
        return f"topic deeper than {MAX_DEPTH} levels"
    return None


class TopicTree:
    """The tree of topics seen, with per-topic history and per-subtree counts and rates."""

    def __init__(self, *, keep: int = KEEP, payload_cap: int = PAYLOAD_CAP, payload_budget: int = PAYLOAD_BUDGET,
                 max_nodes: int = MAX_NODES) -> None:
        self.root = TopicNode("", None, "")
        self.keep, self.payload_cap, self.payload_budget, self.max_nodes = keep, payload_cap, payload_budget, max_nodes
        self.nodes = 1
        self.messages = 0
        self.payload_bytes = 0  # bytes of payload data held (approximate: evictions are counted)
        self.overflow_messages = 0  # messages on new topics refused because the tree is full
        self.overflow_topic = ""  # the latest of them, for the warning
        self.rejected: dict[str, int] = {}  # reason -> messages with an invalid topic
        self._index: dict[str | bytes, TopicNode] = {}  # full topic (as received) -> its node
        self._added: list[TopicNode] = []
        self._changed: dict[TopicNode, None] = {}  # ordered set

    # ---- feeding -------------------------------------------------------------------------------

    def ingest_batch(self, messages: Iterable[RawMessage]) -> int:
        """Add messages; returns how many were stored (the rest were rejected or overflowed)."""
        hits: dict[TopicNode, int] = {}
        index, keep = self._index, self.keep
        stored = 0
        for topic, payload, qos, retain, ts in messages:
            node = index.get(topic)
            if node is None:
                node = self._new_topic(topic)
                if node is None:
                    continue
            # The hot path, inlined: at thousands of messages a second a method call per message shows.
            payloads = node.payloads
            if payloads is None:
                payloads = node.payloads = deque(maxlen=keep)
            elif len(payloads) == keep:
                self.payload_bytes -= len(payloads[0].data)
            size = len(payload)
            cap = self.payload_cap if self.payload_bytes < self.payload_budget else SMALL_CAP
            if size > cap:
                payload = payload[:cap]
            payloads.append(Payload(ts, payload, qos, retain, size))
            self.payload_bytes += len(payload)
            hits[node] = hits.get(node, 0) + 1
            stored += 1
        self._account(hits)
        return stored

    def _account(self, hits: dict[TopicNode, int]) -> None:
        """Counts, rates and change marks, once per node per batch (not per message)."""
        up: dict[TopicNode, int] = {}  # ancestors and their share of this batch
        latest = 0.0
        for node, n in hits.items():
            last = node.payloads[-1] if node.payloads else None
            now = last.time if last is not None else time.time()
            latest = max(latest, now)
            node.count += n
            node.retained = bool(last and last.retain)
            node.last_time = now
            node.total += n
            node.rate.add(n, now)
            parent = node.parent
            if parent is not None:
                up[parent] = up.get(parent, 0) + n
        self.messages += sum(hits.values())
        changed = self._changed
        changed.update(dict.fromkeys(hits))
        while up:  # one level at a time, merging siblings' shares before going further up (additive: a node
            # reached twice, from leaves at different depths, just adds twice)
            higher: dict[TopicNode, int] = {}
            for node, n in up.items():
                node.total += n
                node.rate.add(n, latest)
                changed[node] = None
                if node.parent is not None:
                    higher[node.parent] = higher.get(node.parent, 0) + n
            up = higher

    def _new_topic(self, raw: str | bytes) -> TopicNode | None:
        if isinstance(raw, bytes):
            try:
                topic = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._reject("topic is not valid UTF-8")
                return None
        else:
            topic = raw
        problem = topic_problem(topic)
        if problem is not None:
            self._reject(problem)
            return None
        node = self._insert(topic)
        if node is not None:
            self._index[raw] = node
        return node

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _insert(self, topic: str) -> TopicNode | None:
        levels = topic.split("/")
        node = self.root
        depth = 0
        while depth < len(levels):
            child = node.children.get(levels[depth])
            if child is None:
                break
            node, depth = child, depth + 1
        else:
            return node
        if self.nodes + len(levels) - depth > self.max_nodes:
            self.overflow_messages += 1
            self.overflow_topic = topic[:200]
            return None
        for level in levels[depth:]:
            child = TopicNode(level, node, f"{node.topic}/{level}" if node is not self.root else level)
            child._index = len(node.rows)
            node.children[level] = child
            node.rows.append(child)
            self._added.append(child)
            self.nodes += 1
            node = child
        return node

    # ---- reading -------------------------------------------------------------------------------

    def find(self, topic: str) -> TopicNode | None:
        node = self.root
        for level in topic.split("/"):
            found = node.children.get(level)
            if found is None:
                return None
            node = found
        return node

    def drain_changes(self) -> TreeChanges:
        """What was added and what changed since the previous call (the root is never reported)."""
        added = self._added
        new = set(added)
        changed = [n for n in self._changed if n not in new and n is not self.root]
        self._added, self._changed = [], {}
        return TreeChanges(added, changed)

    def take_added(self) -> list[TopicNode]:
        """Only the nodes added since the previous call (parents first); forgets what changed.

        For a reader that refreshes what is on its screen anyway: cheaper than building the changed list.
        """
        added, self._added, self._changed = self._added, [], {}
        return added

    @property
    def warnings(self) -> list[str]:
        """Sentences for a person about what was not stored."""
        out: list[str] = []
        if self.overflow_messages:
            out.append(f"The topic tree is full ({self.max_nodes} nodes): {self.overflow_messages} messages on new "
                       f"topics such as '{self.overflow_topic}' were counted but not shown. "
                       "Narrow the subscription filters and reconnect.")
        if self.payload_bytes >= self.payload_budget:
            out.append(f"Payload memory budget reached ({self.payload_budget // (1024 * 1024)} MiB): new payloads "
                       f"are kept only to their first {SMALL_CAP} bytes.")
        for reason, n in sorted(self.rejected.items()):
            out.append(f"{n} messages were dropped: {reason}.")
        return out


def walk(node: TopicNode) -> Iterator[TopicNode]:
    """``node`` and everything below it, depth first, in row order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.rows))


def payload_preview(data: bytes, limit: int = 80) -> str:
    """One line for a table cell: the text if it is UTF-8 (control characters shown as spaces), else hex."""
    head = data[: limit * 4]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4 or len(head) == len(data):  # a real binary payload, not a cut character
            return "0x" + data[: limit // 2].hex() + ("…" if len(data) > limit // 2 else "")
        text = head[: exc.start].decode("utf-8")
    if _looks_binary(text):
        return "0x" + data[: limit // 2].hex() + ("…" if len(data) > limit // 2 else "")
    flat = "".join(c if c.isprintable() else " " for c in text[:limit])
    return flat + ("…" if len(data) > len(flat.encode()) else "")


def payload_text(data: bytes) -> tuple[str, str]:
    """(kind, text) for the payload pane: ``json`` pretty-printed, ``text``, or a ``binary`` hex dump."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", hex_dump(data)
    if _looks_binary(text):
        return "binary", hex_dump(data)
    stripped = text.strip()
    if stripped[:1] in ("{", "[") or stripped in ("true", "false", "null"):
        try:
            return "json", json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            pass
    return "text", text


_CONTROL = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r"}


def _looks_binary(text: str) -> bool:
    """Valid UTF-8 can still be binary (counters, protobuf): control characters other than whitespace say so."""
    return not _CONTROL.isdisjoint(text[:1024])


def hex_dump(data: bytes, limit: int = 4096) -> str:
    """Offset, 16 bytes in hex, and the printable ASCII, per line (like ``xxd``), up to ``limit`` bytes."""
    lines = []
    for off in range(0, min(len(data), limit), 16):
        chunk = data[off:off + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {chunk.hex(' '):<47}  {ascii_}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes")
    return "\n".join(lines)
