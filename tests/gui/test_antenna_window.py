"""The antenna-alignment window, sampling a simulated device's ModemManager through its real shell."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from siteline.core.device.modem import ModemSignal, SignalReading
from siteline.core.errors import TransportError
from siteline.core.plugin_api import DeviceContext, make_context
from siteline.core.transports.base import Result
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.ui.panels.antenna_window import BIG_POINTS, AntennaWindow, Point, serving, trend
from siteline_modemmanager.alignment import sample, start_alignment, stop_alignment
from tests.gui.conftest import Loop, until
from tests.peers.sim import make_state

log = logging.getLogger(__name__)


def device_context(state: DeviceState) -> DeviceContext:
    """Commands run by the device's own /bin/sh with its tools (mmcli, sim-scenario), as over any transport."""

    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(state, command, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))

    return make_context(state.root.name, "ssh://root@gw", run, log)


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    return make_state(tmp_path / "gw-01")


def test_alignment_follows_the_signal_and_restores_the_rate(qtbot, aloop: Loop, device: DeviceState) -> None:
    ctx = device_context(device)
    closed: list[bool] = []
    window = AntennaWindow(lambda: sample(ctx, 0), on_close=lambda: closed.append(True), device="gw-01",
                           interval=0.1)
    qtbot.addWidget(window)
    window.show()
    assert window.figure.font().pointSize() >= 72

    # One coroutine from start to end, as in the app, where the loop never stops between clicks.
    async def scenario() -> None:
        previous = await start_alignment(ctx, 0)
        window.start()
        await until(lambda: len(window.points) >= 3, what="three samples")
        assert window.band.text() in ("EXCELLENT", "GOOD", "FAIR")  # the simulated mast starts near -92 dBm
        assert window.figure.text().startswith("−")
        assert window.rsrq.text().startswith("RSRQ −")
        assert window.snr.text().endswith(" dB")
        assert window.tech.text() == "LTE"
        assert window.best is not None
        window.mark_button.click()
        assert "Marked:" in window.best_label.text()
        # Turn the antenna away: the cell fades and the window says so in words, not only in colour.
        assert (await ctx.run("sim-scenario signal-degrade", 10)).exit_code == 0
        await until(lambda: window.band.text() == "POOR", what="the poor band")
        await until(lambda: window.arrow.text() == "▼ falling", what="the falling arrow")
        assert "below" in window.best_label.text()
        assert window.failures == 0, window.status.text()
        window.grab().save(str(Path(device.root).parent / "antenna.png"))
        window.close()
        assert closed == [True]
        assert not window.sampling
        await window.wait_stopped()
        await stop_alignment(ctx, 0, previous)
        assert (await sample(ctx, 0)).refresh_rate == 0

    aloop.run(scenario(), timeout=40)


def test_a_failing_sample_says_why_and_keeps_trying(qtbot, aloop: Loop) -> None:
    calls: list[int] = []
    failed: list[str] = []

    async def flaky() -> ModemSignal:
        calls.append(1)
        if len(calls) <= 2:
            raise TransportError("gw-01 is not connected (retrying in 3 s).")
        return ModemSignal(refresh_rate=1, lte=SignalReading(rsrp=-78.0, rsrq=-8.0, snr=20.0))

    window = AntennaWindow(flaky, interval=0.05)
    qtbot.addWidget(window)
    window.sig_sample_failed.connect(failed.append)

    async def scenario() -> None:
        window.start_button.click()
        assert window.sampling
        await until(lambda: failed, what="a failure")
        assert "gw-01 is not connected" in window.status.text()
        assert "Still trying every 0.05 s." in window.status.text()
        assert window.figure.text() == "—"
        await until(lambda: window.band.text() == "EXCELLENT", what="a good sample after failures")
        assert window.figure.text() == "−78"
        assert "⚠" not in window.status.text()
        window.start_button.click()  # Stop
        assert not window.sampling
        await window.wait_stopped()
        assert window.start_button.text() == "&Start"
        count = len(calls)
        await asyncio.sleep(0.2)
        assert len(calls) == count

    aloop.run(scenario())


def test_a_modem_without_lte_rsrp_is_a_reason_not_a_zero(qtbot, aloop: Loop) -> None:
    async def umts_only() -> ModemSignal:
        return ModemSignal(refresh_rate=1, umts=SignalReading(rssi=-70.0, rscp=-80.0))

    window = AntennaWindow(umts_only, interval=0.05)
    qtbot.addWidget(window)

    async def scenario() -> None:
        window.start()
        await until(lambda: window.failures >= 1, what="a reason")
        assert "no LTE or 5G RSRP (umts)" in window.status.text()
        assert window.figure.text() == "—"
        window.close()
        await window.wait_stopped()

    aloop.run(scenario())


def test_closing_while_a_sample_hangs_ends_within_the_sample_timeout(qtbot, aloop: Loop) -> None:
    started = asyncio.Event()

    async def hangs() -> ModemSignal:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    closed: list[int] = []
    window = AntennaWindow(hangs, on_close=lambda: closed.append(1), sample_timeout=0.3)
    qtbot.addWidget(window)
    window.show()

    async def scenario() -> None:
        window.start()
        await started.wait()
        window.close()
        assert not window.sampling  # at once for the person; the command in flight is let end
        began = time.monotonic()
        await window.wait_stopped()
        assert time.monotonic() - began < 2
        assert window.status.text().startswith("Stopped.")  # the timed-out last sample is not shown as a failure

    aloop.run(scenario())
    window.close()  # a second close calls back only once
    assert closed == [1]
    window.start()  # a closed window does not start again
    assert not window.sampling


@pytest.mark.parametrize(
    ("values", "expected"),
    [([-95, -94, -93, -92, -91], "rising"), ([-80, -82, -85, -88, -90], "falling"),
     ([-90, -90.4, -89.8, -90.2, -90], "steady"), ([-90], None)],
)
def test_trend(values: list[float], expected: str | None) -> None:
    points = [Point(float(i), v) for i, v in enumerate(values)]
    assert trend(points, now=float(len(values) - 1)) == expected


def test_trend_only_looks_at_the_last_seconds() -> None:
    points = [Point(0.0, -120.0), Point(1.0, -119.0)] + [Point(t, -80.0) for t in (10.0, 11.0, 12.0, 13.0)]
    assert trend(points, now=13.0) == "steady"


def test_serving_prefers_nr_with_rsrp() -> None:
    lte, nr = SignalReading(rsrp=-90.0), SignalReading(rsrp=-85.0)
    assert serving(ModemSignal(lte=lte, nr=nr)) == ("5G NR", nr)
    assert serving(ModemSignal(lte=lte, nr=SignalReading(snr=3.0))) == ("LTE", lte)
    assert serving(ModemSignal()) is None
    assert BIG_POINTS > 72


async def open_alignment(window, name: str) -> AntennaWindow:
    """What the lead's "Antenna alignment…" button does (the report's wiring snippet), over the real session."""
    session = window.sessions.get(name)
    index = getattr(session.snapshots.get("modem"), "index", None)
    assert index is not None, "the modem must have been read once"
    previous = await start_alignment(session.context(), index)
    stopped: list[asyncio.Task[None]] = []

    def on_close() -> None:
        stopped.append(asyncio.ensure_future(stop_alignment(session.context(), index, previous)))

    antenna = AntennaWindow(lambda: sample(session.context(), index), on_close=on_close, device=name)
    antenna.stopped = stopped  # type: ignore[attr-defined]
    antenna.show()
    antenna.start()
    return antenna


def test_alignment_through_a_real_session_over_ssh(make_window, aloop: Loop, qtbot, device: DeviceState,
                                                   tmp_path: Path) -> None:
    from siteline.core.inventory import DeviceEntry
    from siteline.core.transports.base import Credentials
    from siteline.ui.sessions import default_factory
    from tests.gui.conftest import close_window
    from tests.peers.sim import PASSWORD, running_device

    async def scenario() -> None:
        async with running_device(device) as sim:
            window = make_window(factory=default_factory(tmp_path / "known_hosts", accept_new_host_key=True))
            entry = DeviceEntry("gw-01", f"ssh://root@127.0.0.1:{sim.ssh_port}", "Tower 7")
            window.load_devices([(entry, Credentials("root", PASSWORD))])
            session = window.sessions.get("gw-01")
            await until(lambda: "modem" in session.snapshots, timeout=30, what="the modem read once")
            antenna = await open_alignment(window, "gw-01")
            qtbot.addWidget(antenna)
            await until(lambda: len(antenna.points) >= 2, what="samples over SSH")
            assert antenna.tech.text() == "LTE"
            assert (await sample(session.context(), 0)).refresh_rate == 1
            antenna.close()
            await antenna.wait_stopped()
            await asyncio.gather(*antenna.stopped)
            assert (await sample(session.context(), 0)).refresh_rate == 10  # the probe's rate, as before
            await close_window(window)

    aloop.run(scenario(), timeout=60)
