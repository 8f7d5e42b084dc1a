"""The refresh scheduler against real sessions on a local shell: who is read, how often, and never twice at once."""

from __future__ import annotations

import asyncio
from collections import Counter

from siteline.api import hookimpl
from siteline.core.device.network import DefaultRoute, NetDevice, derive_network
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.refresh_policy import RefreshSettings
from siteline.core.transports.base import Credentials
from siteline.ui.refresh_scheduler import RefreshScheduler
from tests.gui.conftest import close_window, until
from tests.gui.shell_transport import password_factory

# Tenths of a second instead of minutes: the same table, run fast.
FAST = RefreshSettings(shown_seconds=0.2, metered_seconds=30.0, tab_seconds=0.05, tab_metered_seconds=30.0,
                       slow_factor=2.0)


class Counting:
    """Probes of two kinds that run a real command on the device, count their rounds and their overlap."""

    def __init__(self, delay: float = 0.0) -> None:
        self.reads: Counter[tuple[str, str]] = Counter()
        self.inflight: Counter[str] = Counter()
        self.most_at_once = 0
        self.delay = delay

    @hookimpl
    def siteline_probes(self):
        return [_Probe(self, "system"), _Probe(self, "modem")]


class _Probe:
    def __init__(self, owner: Counting, kind: str) -> None:
        self.owner, self.kind, self.name = owner, kind, f"counting-{kind}"

    async def collect(self, ctx):
        owner = self.owner
        owner.inflight[ctx.name] += 1
        owner.most_at_once = max(owner.most_at_once, owner.inflight[ctx.name])
        try:
            result = await ctx.run(f"echo {self.kind}; sleep {owner.delay}", 10)
            owner.reads[(ctx.name, self.kind)] += 1
            return {"kind": self.kind, "out": result.stdout}
        finally:
            owner.inflight[ctx.name] -= 1


def _host(counting: Counting) -> PluginHost:
    host = PluginHost()
    host.register(counting, "counting")
    return host


def _devices(*names: str) -> list[tuple[DeviceEntry, Credentials]]:
    return [(DeviceEntry(n, "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root")) for n in names]


def test_only_the_shown_device_is_read_and_a_hidden_window_reads_nothing(make_window, aloop) -> None:
    counting = Counting()

    async def scenario() -> None:
        window = make_window(plugins=_host(counting))
        scheduler = RefreshScheduler(window.sessions, FAST, kinds=("system", "modem"), tick_ms=20)
        texts: list[tuple[str, str]] = []
        scheduler.sig_policy_changed.connect(lambda name, text: texts.append((name, text)))
        window.load_devices(_devices("a", "b"))
        await until(lambda: counting.reads[("b", "modem")] == 1 and counting.reads[("a", "modem")] == 1,
                    what="the link-up rounds")
        scheduler.set_shown("a", None)
        await asyncio.sleep(1.0)
        assert counting.reads[("a", "modem")] >= 3  # every 0.2 s (a loaded CI box gets fewer)
        assert counting.reads[("a", "system")] < counting.reads[("a", "modem")]  # system waits twice as long
        assert counting.reads[("b", "modem")] == 1  # nobody looks at b: only the round of its link coming up
        assert scheduler.describe("a") == "refreshing every 1 s: not metered"
        assert ("b", "paused: not shown (F5 refreshes now)") in texts
        assert scheduler.describe("b") == "paused: not shown (F5 refreshes now)"

        scheduler.set_window_visible(False)
        await until(lambda: not scheduler.running("a"), what="the round in flight to end")
        frozen = counting.reads.copy()
        await asyncio.sleep(0.5)
        assert counting.reads == frozen
        assert ("a", "paused: window hidden (F5 refreshes now)") in texts

        # Showing the window again reads the stale device at once, not a tick later.
        scheduler.set_window_visible(True)
        await until(lambda: counting.reads[("a", "modem")] > frozen[("a", "modem")], timeout=2.0, what="a read")
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())


def test_the_open_tab_is_read_faster(make_window, aloop) -> None:
    counting = Counting()

    async def scenario() -> None:
        window = make_window(plugins=_host(counting))
        settings = RefreshSettings(shown_seconds=0.6, metered_seconds=30.0, tab_seconds=0.05,
                                   tab_metered_seconds=30.0, slow_factor=2.0)
        scheduler = RefreshScheduler(window.sessions, settings, kinds=("system", "modem"), tick_ms=20)
        window.load_devices(_devices("a"))
        await until(lambda: counting.reads[("a", "system")] == 1, what="the link-up round")
        scheduler.set_shown("a", "modem")
        await asyncio.sleep(0.8)
        assert counting.reads[("a", "modem")] >= 4
        assert counting.reads[("a", "system")] <= 2
        assert scheduler.describe("a") == "refreshing every 1 s: not metered; modem every 1 s"
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())


def test_never_two_rounds_of_one_device_at_once(make_window, aloop) -> None:
    counting = Counting(delay=0.15)

    async def scenario() -> None:
        window = make_window(plugins=_host(counting))
        scheduler = RefreshScheduler(window.sessions, FAST, kinds=("system", "modem"), tick_ms=10)
        window.load_devices(_devices("a"))
        await until(lambda: counting.reads[("a", "modem")] == 1, what="the link-up round")
        scheduler.set_shown("a", "modem")
        await until(lambda: scheduler.running("a"), what="a scheduled round")
        assert scheduler.refresh_now("a") is scheduler._rounds["a"]  # F5 joins the round in flight
        await asyncio.sleep(1.0)
        assert counting.reads[("a", "modem")] >= 4
        assert counting.most_at_once == 1
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())


def test_metered_is_slow_and_said(make_window, aloop) -> None:
    counting = Counting()

    async def scenario() -> None:
        window = make_window(plugins=_host(counting))
        scheduler = RefreshScheduler(window.sessions, FAST.with_link_choice("a", "metered"),
                                     kinds=("system", "modem"), tick_ms=20)
        window.load_devices(_devices("a"))
        await until(lambda: counting.reads[("a", "modem")] == 1, what="the link-up round")
        texts: list[str] = []
        scheduler.sig_policy_changed.connect(lambda _name, text: texts.append(text))
        scheduler.set_shown("a", "modem")
        assert texts == ["refreshing every 30 s: marked metered in the settings"]
        await asyncio.sleep(0.5)
        assert counting.reads[("a", "modem")] == 1  # the link-up round was recent enough
        scheduler.set_settings(FAST)  # the person unmarks it: the table changes at once
        assert texts[-1] == "refreshing every 1 s: not metered; modem every 1 s"
        await until(lambda: counting.reads[("a", "modem")] >= 3, what="fast reads")
        # F5 handled elsewhere: every area counts as read now.
        scheduler.note_manual_refresh("a")
        assert scheduler.due("a") == []
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())


def test_a_device_that_is_not_up_is_skipped(make_window, aloop) -> None:
    counting = Counting()

    async def scenario() -> None:
        window = make_window(plugins=_host(counting), factory=password_factory("s3cret"))
        scheduler = RefreshScheduler(window.sessions, FAST, kinds=("system", "modem"), tick_ms=20)
        window.load_devices(_devices("locked"))
        scheduler.set_shown("locked", "modem")
        await asyncio.sleep(0.3)
        assert not counting.reads
        assert scheduler.describe("locked") == "paused: not connected (F5 refreshes now)"
        assert scheduler.refresh_now("locked") is None
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())


def test_a_removed_device_stops_being_read(make_window, aloop) -> None:
    counting = Counting(delay=0.2)

    async def scenario() -> None:
        window = make_window(plugins=_host(counting))
        scheduler = RefreshScheduler(window.sessions, FAST, kinds=("system", "modem"), tick_ms=10)
        window.load_devices(_devices("a"))
        await until(lambda: counting.reads[("a", "modem")] == 1, what="the link-up round")
        scheduler.set_shown("a", "modem")
        await until(lambda: scheduler.running("a"), what="a scheduled round")
        await window.remove_now("a")
        assert not scheduler.running("a")
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())


class OnCellular:
    """A network probe whose device routes through its modem, as after the wired uplink failed."""

    @hookimpl
    def siteline_probes(self):
        return [_CellularNetwork()]


class _CellularNetwork:
    name, kind = "cellular-network", "network"

    async def collect(self, ctx):
        modem = NetDevice("cdc-wdm0", "gsm", "connected", "cellular", ip_iface="wwan0")
        return derive_network((modem,), (), (DefaultRoute("wwan0", "10.64.0.1", 700),), None, (), "")


def test_a_device_on_cellular_is_read_slowly(make_window, aloop) -> None:
    counting = Counting()
    host = _host(counting)
    host.register(OnCellular(), "on-cellular")

    async def scenario() -> None:
        window = make_window(plugins=host)
        scheduler = RefreshScheduler(window.sessions, FAST, kinds=("system", "modem", "network"), tick_ms=20)
        texts: list[str] = []
        scheduler.sig_policy_changed.connect(lambda _name, text: texts.append(text))
        scheduler.set_shown("a", None)
        window.load_devices(_devices("a"))
        await until(lambda: "refreshing every 30 s: on cellular (metered)" in texts, what="the metered words")
        reads = counting.reads[("a", "modem")]
        await asyncio.sleep(0.5)
        assert counting.reads[("a", "modem")] == reads
        await scheduler.close()
        await close_window(window)

    aloop.run(scenario())
