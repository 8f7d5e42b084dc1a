"""The sync loop's decisions with a scripted link in place of the broker: the window is never overrun, a
refusal the broker may lift (quota) is retried after a back-off, a new HIGH item overtakes waiting LOW ones.
(The broker's real behaviour is in tests/integration/test_outbox_sync*.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from siteline.core.outbox import sync as sync_module
from siteline.core.outbox.envelope import WireMessage, decode
from siteline.core.outbox.link import LinkDropped, PublishOutcome
from siteline.core.outbox.model import NewItem, State
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import Syncer

pytestmark = pytest.mark.asyncio
SETTINGS = ControlPlaneSettings(url="mqtts://cp.example:8883", technician="tech1")


class ScriptedLink:
    """Answers each publish after ``delay`` with what ``answer(message, n)`` says (n: the publish count);
    an answer of None drops the link, as a broker that hangs up on a message does."""

    answer: Callable[[WireMessage, int], PublishOutcome | None] = staticmethod(
        lambda _m, _n: PublishOutcome(True, "", False, 100))
    delay = 0.001
    published: list[WireMessage] = []  # noqa: RUF012 (shared by the instances of one test, reset per test)
    max_inflight = 0

    def __init__(self, _settings: ControlPlaneSettings, **kwargs: Any) -> None:
        self.window = kwargs["window"]
        self.alive = False
        self.drop_reason = ""
        self.inflight = 0
        self.on_drop = kwargs["on_drop"]
        self.pending: set[asyncio.Future[PublishOutcome]] = set()

    async def connect(self) -> None:
        self.alive = True

    async def subscribe(self, _topics: list[str]) -> None:
        return None

    def session_bytes(self, _topics: list[str]) -> int:
        return 50

    def publish(self, message: WireMessage) -> asyncio.Future[PublishOutcome]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PublishOutcome] = loop.create_future()
        cls = type(self)
        cls.published.append(message)
        self.inflight += 1
        cls.max_inflight = max(cls.max_inflight, self.inflight)
        outcome = cls.answer(message, len(cls.published))
        self.pending.add(fut)

        def done() -> None:
            if fut.done():
                return
            self.inflight -= 1
            self.pending.discard(fut)
            if outcome is not None:
                fut.set_result(outcome)
                return
            self.alive = False
            for other in [fut, *self.pending]:
                if not other.done():
                    other.set_exception(LinkDropped("Lost the control plane (hung up).", "Retry."))
            self.on_drop("hung up")

        loop.call_later(cls.delay, done)
        return fut

    async def close(self) -> None:
        self.alive = False


@pytest.fixture
def link(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedLink]:
    class Link(ScriptedLink):
        published: list[WireMessage] = []  # noqa: RUF012
        max_inflight = 0

    monkeypatch.setattr(sync_module, "ControlLink", Link)
    return Link


def _ids(messages: list[WireMessage]) -> list[str]:
    return [e["id"] for m in messages for e in decode(m.payload)]


async def test_the_window_is_never_overrun(tmp_path: Path, link: type[ScriptedLink]) -> None:
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        outbox.put_many(NewItem("note", "s", "d", {"n": i}) for i in range(200))
        result = await Syncer(outbox, SETTINGS, window=7).drain(timeout=10)
        assert result.sent == 200
        assert link.max_inflight == 7
        assert result.bytes == 200 * 100


async def test_a_quota_refusal_is_retried_after_a_back_off(tmp_path: Path, link: type[ScriptedLink]) -> None:
    link.answer = staticmethod(lambda _m, n: PublishOutcome(n > 1, "" if n > 1 else "Quota exceeded (0x97)",
                                                            False, 100))
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        item = outbox.put(NewItem("audit", "s", "d", {"action": "flash"}))
        result = await Syncer(outbox, SETTINGS).drain(timeout=10)
        assert result.sent == 1
        assert [a.outcome for a in outbox.attempts(item.id)] == ["retry", "sent"]
        assert outbox.attempts(item.id)[0].error == "Quota exceeded (0x97)"
        assert outbox.usage() == 200  # the refused publish crossed the wire too


async def test_a_permanent_refusal_fails_the_item_and_the_rest_goes(tmp_path: Path,
                                                                   link: type[ScriptedLink]) -> None:
    link.answer = staticmethod(lambda m, _n: PublishOutcome("/telemetry" not in m.topic, "not authorised (0x87)",
                                                            "/telemetry" in m.topic, 100))
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        outbox.put_many([NewItem("telemetry", "s", "d", {"n": 1}), NewItem("note", "s", "d", {"n": 2})])
        result = await Syncer(outbox, SETTINGS).drain(timeout=10)
        assert result.sent == 1
        status = outbox.status()
        assert (status.pending, status.sent, status.failed) == (0, 1, 1)
        assert len(link.published) == 2  # not retried


async def test_a_new_high_item_overtakes_the_low_ones_still_waiting(tmp_path: Path,
                                                                    link: type[ScriptedLink]) -> None:
    link.delay = 0.005
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        outbox.put_many(NewItem("telemetry", "s", "d", {"n": i}) for i in range(100))
        syncer = Syncer(outbox, SETTINGS, window=1)
        task = asyncio.create_task(syncer.drain(timeout=20))
        while len(link.published) < 10:  # noqa: ASYNC110 (the scripted link has no event to wait on)
            await asyncio.sleep(0.005)
        urgent = outbox.put(NewItem("audit", "s", "d", {"action": "rollback"}))
        syncer.wake()
        await task
        order = _ids(link.published)
        assert len(order) == 101
        assert order.index(urgent.id) < 20  # not behind the 90 telemetry items that were still waiting
        assert outbox.status().sent == 101
        assert outbox.get(urgent.id).state is State.SENT  # type: ignore[union-attr]


async def test_an_item_the_broker_hangs_up_on_backs_off_and_the_rest_still_goes(tmp_path: Path,
                                                                                link: type[ScriptedLink]) -> None:
    link.answer = staticmethod(lambda m, _n: None if b'"poison"' in m.payload else PublishOutcome(True, "", False, 9))
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        poison = outbox.put(NewItem("audit", "s", "d", {"x": "poison"}))
        outbox.put_many(NewItem("note", "s", "d", {"n": i}) for i in range(30))
        with pytest.raises(sync_module.SyncError) as err:
            await Syncer(outbox, SETTINGS, window=4).drain(timeout=2)
        assert err.value.kind == "timeout"
        status = outbox.status()
        assert (status.pending, status.sent) == (1, 30)  # the others went around it
        assert outbox.get(poison.id).attempts >= 3  # type: ignore[union-attr]
        assert "hung up" in outbox.get(poison.id).last_error  # type: ignore[union-attr]
