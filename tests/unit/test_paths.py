"""The path book: order of tries, the words a technician reads, and a session moving between fake links.

The fake links here only stand in for timing-sensitive orderings; the same behaviour runs against real
sshd and a real serial console in tests/integration/test_failover.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from siteline.core.backoff import Backoff
from siteline.core.errors import AuthError, TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.paths import PathBook, PathEvent, path_name, retry_order
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnState, Credentials, Result, StatefulLink, Transport


def test_retry_order_after_a_drop_tries_the_others_first() -> None:
    assert retry_order(3, None, set()) == [0, 1, 2]
    assert retry_order(3, 0, set()) == [1, 2]
    assert retry_order(3, 1, set()) == [2, 0]
    assert retry_order(3, 2, {0}) == [1]
    assert retry_order(1, 0, set()) == []


def test_path_names_read_like_speech() -> None:
    assert path_name(parse_target("ssh://root@10.0.0.5:2222?jump=ops@bastion.example:22")) == "SSH via bastion.example"
    assert path_name(parse_target("ssh://root@10.0.0.5")) == "SSH to 10.0.0.5"
    assert path_name(parse_target("ssh://root@10.0.0.5:2200")) == "SSH to 10.0.0.5:2200"
    assert path_name(parse_target("serial:///dev/ttyUSB0?baud=115200")) == "serial /dev/ttyUSB0"
    assert path_name(parse_target("mqtt://broker/edge/site-a/gw1")) == "MQTT edge/site-a/gw1 at broker"


def test_book_keeps_last_change_while_only_the_reason_moves() -> None:
    book = PathBook([parse_target("ssh://root@h"), parse_target("serial:///dev/ttyUSB0")])
    assert [p.role for p in book.paths] == ["preferred", "fallback"]
    assert book.set(0, ConnState.RETRYING, "connection refused")
    first = book[0].last_change
    time.sleep(0.01)
    assert not book.set(0, ConnState.RETRYING, "connection refused")
    assert book.set(0, ConnState.RETRYING, "timed out")
    assert book[0].last_change == first
    book.set(1, ConnState.UP, "in use")
    assert book.fallback_reason(1) == "on fallback serial:///dev/ttyUSB0 (preferred ssh://root@h down: timed out)"
    assert book.summary([0, 1]) == "no path answers (SSH to h: timed out; serial /dev/ttyUSB0: in use)"


def test_a_failing_listener_does_not_stop_the_others() -> None:
    book = PathBook([parse_target("ssh://h")])
    heard: list[PathEvent] = []

    def broken(_event: PathEvent) -> None:
        raise RuntimeError("ui bug")

    book.add_listener(broken)
    remove = book.add_listener(heard.append)
    book.tell("connected", 0, "connected on the preferred path ssh://h", 0)
    assert heard[0].message == "connected on the preferred path ssh://h"
    assert heard[0].active == "ssh://h"
    remove()
    book.tell("dropped", 0, "gone", None)
    assert len(heard) == 1


class _Link(StatefulLink):
    """A link whose reachability the test switches: ``world[target]`` is None (answers) or an error."""

    def __init__(self, target: str, world: dict[str, Exception | None], opened: list[_Link]) -> None:
        super().__init__()
        self.target, self._world = target, world
        self.release = asyncio.Event()
        self.release.set()
        opened.append(self)

    async def connect(self) -> None:
        await asyncio.sleep(0.001)
        error = self._world[self.target]
        if error is not None:
            raise error
        self._state.set(ConnState.UP)

    def drop(self, reason: str) -> None:
        self._state.set(ConnState.DOWN, reason)

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        await self.release.wait()
        if self.state.state is ConnState.DOWN:
            raise TransportError("the link closed under the command")
        return Result(0, self.target)

    async def close(self) -> None:
        if self.state.state is not ConnState.DOWN:
            self._state.set(ConnState.DOWN, "closed")

    async def open_shell(self, cols: int, rows: int) -> _Shell:
        return _Shell(self)


class _PortLink(_Link):
    """A serial port is exclusive: a second link to the same target cannot connect while the first holds it."""

    def __init__(self, target: str, world: dict[str, Exception | None], opened: list[_Link]) -> None:
        self.others = list(opened)
        super().__init__(target, world, opened)

    async def connect(self) -> None:
        if any(o.target == self.target and o.state.state is not ConnState.DOWN for o in self.others):
            raise TransportError("The serial port is busy: another program holds it.")
        await super().connect()


class _Shell:
    """An interactive shell on a fake link: tells its closed listeners once."""

    def __init__(self, link: _Link) -> None:
        self.link, self.closed = link, False
        self._listeners: list[Callable[[str], None]] = []

    def add_closed_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            for listener in self._listeners:
                listener("closed")


async def _until(pred: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def _session(
    world: dict[str, Exception | None], opened: list[_Link], preferred_retry: float = 0.05, link: type[_Link] = _Link
) -> DeviceSession:
    first, *rest = world
    entry = DeviceEntry("dev", first, fallbacks=tuple(rest))

    def factory(target: Target, _creds: Credentials) -> Transport:
        return link(str(target), world, opened)

    backoff = Backoff(0.01, maximum=0.02)
    return DeviceSession(entry, factory, Credentials(), PluginHost(), backoff, preferred_retry=preferred_retry)


@pytest.mark.asyncio
async def test_moves_to_fallback_and_back_closing_the_old_link_last() -> None:
    world: dict[str, Exception | None] = {"ssh://a": None, "ssh://b": None}
    opened: list[_Link] = []
    session = _session(world, opened)
    events: list[PathEvent] = []
    session.add_path_listener(events.append)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.UP)
        assert str(session.active_target) == "ssh://a"
        world["ssh://a"] = TransportError("connection refused")
        opened[0].drop("connection reset")
        await _until(lambda: str(session.active_target) == "ssh://b")
        assert session.state.reason == "on fallback ssh://b (preferred ssh://a down: connection reset)"
        # the background try of the preferred path updates why it is down, without leaving the fallback
        await _until(lambda: "connection refused" in session.state.reason)
        assert session.state.reason == "on fallback ssh://b (preferred ssh://a down: connection refused)"
        assert (await session.run("x")).stdout == "ssh://b"
        assert any(e.message == "SSH to a dropped (connection reset); continuing on ssh://b" for e in events)
        world["ssh://a"] = None
        await _until(lambda: str(session.active_target) == "ssh://a")
        assert events[-1].kind == "back"
        assert events[-1].message == "back on the preferred path ssh://a"
        await _until(lambda: opened[1].state.state is ConnState.DOWN)  # the fallback closed after the switch
        assert session.state.reason == ""
        assert [p.state for p in session.paths] == [ConnState.UP, ConnState.DOWN]
    finally:
        await session.stop()
    assert all(link.state.state is ConnState.DOWN for link in opened)
    assert session.active_target is None


@pytest.mark.asyncio
async def test_every_path_needing_a_person_goes_down_with_the_first_reason() -> None:
    world: dict[str, Exception | None] = {
        "ssh://a": AuthError("The device refused the password."),
        "ssh://b": AuthError("The serial login was refused."),
    }
    session = _session(world, [])
    seen = []
    session.add_state_listener(seen.append)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.DOWN and session.state.reason)
        assert session.state.reason == "The device refused the password."
        assert [p.state for p in session.paths] == [ConnState.DOWN, ConnState.DOWN]
        assert ConnState.RETRYING not in [s.state for s in seen]
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_path_needing_a_person_is_not_retried_while_others_are() -> None:
    world: dict[str, Exception | None] = {"ssh://a": AuthError("wrong password"), "ssh://b": TransportError("refused")}
    opened: list[_Link] = []
    session = _session(world, opened)
    session.start()
    try:
        await _until(lambda: len(opened) >= 6)
        assert session.state.state in (ConnState.RETRYING, ConnState.CONNECTING)
        assert [link.target for link in opened].count("ssh://a") == 1
        world["ssh://b"] = None
        await _until(lambda: session.state.state is ConnState.UP)
        assert "preferred ssh://a down: wrong password" in session.state.reason
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_command_running_on_the_old_path_finishes_there_before_it_closes() -> None:
    world: dict[str, Exception | None] = {"ssh://a": TransportError("refused"), "ssh://b": None}
    opened: list[_Link] = []
    session = _session(world, opened)
    session.start()
    try:
        await _until(lambda: str(session.active_target) == "ssh://b")
        fallback = opened[-1]
        fallback.release.clear()  # a long copy over the serial line
        running = asyncio.ensure_future(session.run("copy"))
        await asyncio.sleep(0.01)
        world["ssh://a"] = None
        await _until(lambda: str(session.active_target) == "ssh://a")
        assert (await session.run("x")).stdout == "ssh://a"  # new commands take the preferred path
        await asyncio.sleep(0.05)
        assert fallback.state.state is ConnState.UP  # kept while its command runs
        fallback.release.set()
        assert (await running).stdout == "ssh://b"
        await _until(lambda: fallback.state.state is ConnState.DOWN)
    finally:
        await session.stop()


SERIAL = "serial:///dev/ttyUSB0"
STAYING = "staying on serial while the console is open"


@pytest.mark.asyncio
async def test_an_open_console_keeps_the_session_on_its_path_until_it_closes() -> None:
    world: dict[str, Exception | None] = {"ssh://a": TransportError("refused"), SERIAL: None}
    opened: list[_Link] = []
    session = _session(world, opened, preferred_retry=0.8)
    events: list[PathEvent] = []
    session.add_path_listener(events.append)
    session.start()
    try:
        await _until(lambda: str(session.active_target) == SERIAL)
        serial = opened[-1]
        shell = await session.open_shell(80, 24)  # the technician works in vi on the serial fallback
        world["ssh://a"] = None
        await _until(lambda: any(e.kind == "held" for e in events))
        assert events[-1].message == f"SSH to a answers again; {STAYING}"
        assert session.paths[0].reason == f"answers again; {STAYING}"
        assert session.state.reason == f"on fallback {SERIAL} (preferred ssh://a answers again; {STAYING})"
        assert str(session.active_target) == SERIAL
        assert serial.state.state is ConnState.UP
        assert opened[-1].target == "ssh://a"
        assert opened[-1].state.state is ConnState.DOWN  # the try was closed
        # The console closes: the move back does not wait for the next round (0.8 s).
        await shell.close()
        await _until(lambda: str(session.active_target) == "ssh://a", timeout=0.6)
        assert events[-1].message == "back on the preferred path ssh://a"
        await _until(lambda: serial.state.state is ConnState.DOWN)
        assert [e.kind for e in events].count("held") == 1
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_reconnect_closes_the_link_on_the_same_path_before_opening_it_again() -> None:
    world: dict[str, Exception | None] = {SERIAL: None}
    opened: list[_Link] = []
    session = _session(world, opened, link=_PortLink)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.UP)
        session.reconnect()
        await _until(lambda: len(opened) == 2 and session.state.state is ConnState.UP)
        assert opened[0].state.state is ConnState.DOWN
        assert opened[1].state.state is ConnState.UP
        assert "busy" not in str(session.paths)
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_console_holds_a_link_let_go_until_it_closes_or_its_path_reopens() -> None:
    world: dict[str, Exception | None] = {"ssh://a": TransportError("refused"), SERIAL: None}
    opened: list[_Link] = []
    session = _session(world, opened, preferred_retry=30.0, link=_PortLink)
    session.start()
    try:
        await _until(lambda: str(session.active_target) == SERIAL)
        serial = opened[-1]
        shell = await session.open_shell(80, 24)
        world["ssh://a"] = None
        session.reconnect()  # the person asked for it: make-before-break onto the preferred path
        await _until(lambda: str(session.active_target) == "ssh://a")
        await asyncio.sleep(0.05)
        assert serial.state.state is ConnState.UP  # still under the console
        assert not shell.closed
        world["ssh://a"] = TransportError("refused")
        opened[-1].drop("connection reset")  # the serial path must reopen: the held link gives the port up
        await _until(lambda: str(session.active_target) == SERIAL)
        assert serial.state.state is ConnState.DOWN
        assert opened[-1] is not serial
        assert opened[-1].state.state is ConnState.UP
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_console_let_go_closes_its_link_when_it_closes() -> None:
    world: dict[str, Exception | None] = {"ssh://a": TransportError("refused"), SERIAL: None}
    opened: list[_Link] = []
    session = _session(world, opened, preferred_retry=30.0)
    session.start()
    try:
        await _until(lambda: str(session.active_target) == SERIAL)
        serial = opened[-1]
        shell = await session.open_shell(80, 24)
        world["ssh://a"] = None
        session.reconnect()
        await _until(lambda: str(session.active_target) == "ssh://a")
        await asyncio.sleep(0.05)
        assert serial.state.state is ConnState.UP
        await shell.close()
        await _until(lambda: serial.state.state is ConnState.DOWN)
    finally:
        await session.stop()
