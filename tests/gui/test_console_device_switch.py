"""The Console tab while the selection moves between devices: a shell still opening for the device left
behind is cancelled, and one that arrives anyway is hung up, never shown under the other device's name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.ui.console_tab import ConsoleTab
from tests.gui.conftest import Loop, until

A = parse_target("ssh://root@10.0.0.1")
B = parse_target("serial:///dev/ttyUSB1")


class FakeChannel:
    """Stands in for a shell channel; only the tab's side of the protocol matters here."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def resize(self, cols: int, rows: int) -> None: ...

    def add_output_listener(self, listener: Callable[[bytes], None]) -> Callable[[], None]:
        return lambda: None

    def add_closed_listener(self, listener: Callable[[str], None]) -> None: ...

    async def close(self) -> None:
        self.closed = True


def _tab(qtbot) -> ConsoleTab:
    tab = ConsoleTab()
    qtbot.addWidget(tab)
    return tab


def test_switching_device_cancels_the_shell_still_opening(qtbot, aloop: Loop) -> None:
    gate = asyncio.Event()
    cancelled: list[str] = []

    async def slow_open_a(cols: int, rows: int) -> FakeChannel:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append("A")
            raise
        return FakeChannel("A")

    async def open_b(cols: int, rows: int) -> FakeChannel:
        return FakeChannel("B")

    tab = _tab(qtbot)
    tab.set_device(A, slow_open_a, name="gw-a")
    tab.start_shell()
    assert not tab.connect_button.isEnabled()  # opening

    async def scenario() -> None:
        await asyncio.sleep(0.01)  # A's opener is waiting on the device
        tab.set_device(B, open_b, name="gw-b")
        await until(lambda: cancelled == ["A"], what="A's opening cancelled")
        gate.set()
        await asyncio.sleep(0.05)
        assert tab.channel is None
        assert tab.device_name == "gw-b"
        assert tab.connect_button.isEnabled()  # B's Connect is not stuck behind A's opening
        assert tab.status.text() == "Press Connect shell to open a shell on the device."
        tab.start_shell()
        await until(lambda: tab.channel is not None, what="B's shell")
        assert tab.channel.name == "B"  # type: ignore[union-attr]
        await tab.close_shell()

    aloop.run(scenario())


def test_a_shell_arriving_for_a_device_no_longer_shown_is_hung_up(qtbot, aloop: Loop) -> None:
    gate = asyncio.Event()
    late: list[FakeChannel] = []

    async def make_a() -> FakeChannel:
        await gate.wait()
        late.append(FakeChannel("A"))
        return late[0]

    async def stubborn_open_a(cols: int, rows: int) -> FakeChannel:
        # Opening cannot be stopped half-way (a handshake under a shield): the cancel only lands after it.
        inner = asyncio.ensure_future(make_a())
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            return await inner

    tab = _tab(qtbot)
    tab.set_device(A, stubborn_open_a, name="gw-a")
    tab.start_shell()

    async def scenario() -> None:
        await asyncio.sleep(0.01)
        tab.set_device(B, None, name="gw-b")
        gate.set()
        await until(lambda: bool(late) and late[0].closed, what="A's late shell hung up")
        assert tab.channel is None
        assert tab.status.text() == "Press Connect shell to open a shell on the device."
        await tab.close_shell()

    aloop.run(scenario())


def test_a_late_failure_of_the_device_left_behind_is_not_shown(qtbot, aloop: Loop) -> None:
    gate = asyncio.Event()

    async def failing_open_a(cols: int, rows: int) -> FakeChannel:
        await asyncio.shield(gate.wait())
        raise TransportError("gw-a is not connected.")

    tab = _tab(qtbot)
    tab.set_device(A, failing_open_a, name="gw-a")
    tab.start_shell()

    async def scenario() -> None:
        await asyncio.sleep(0.01)
        tab.set_device(B, None, name="gw-b")
        gate.set()
        await asyncio.sleep(0.05)
        assert "gw-a" not in tab.status.text()
        tab.set_device(A, failing_open_a, name="gw-a")  # back to A: its own failure shows
        tab.start_shell()
        await until(lambda: "Cannot open a shell: gw-a is not connected." in tab.status.text(), what="A's error")
        assert tab.connect_button.isEnabled()
        await tab.close_shell()

    aloop.run(scenario())


def test_selecting_the_same_device_again_keeps_its_shell(qtbot, aloop: Loop) -> None:
    async def open_a(cols: int, rows: int) -> FakeChannel:
        return FakeChannel("A")

    tab = _tab(qtbot)
    tab.set_device(A, open_a, name="gw-a")
    tab.start_shell()

    async def scenario() -> None:
        await until(lambda: tab.channel is not None, what="A's shell")
        channel = tab.channel
        tab.set_device(A, open_a, name="gw-a")
        assert tab.channel is channel
        tab.set_device(A, open_a, name="gw-a2")  # another device on the same path: not its shell
        assert tab.channel is None
        await tab.close_shell()
        assert channel.closed  # type: ignore[union-attr]

    aloop.run(scenario())
