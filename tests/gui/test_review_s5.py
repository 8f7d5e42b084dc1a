"""Review of the lead's session-5 integration: the factory-password check, window close, the app's exit path."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from siteline import paths
from siteline.core.inventory import DeviceEntry
from siteline.core.targets import Target
from siteline.core.transports.base import Credentials
from siteline.core.transports.known_hosts import KnownHosts
from tests.gui.conftest import close_window, show, until
from tests.gui.test_slot_actions_gui import SimShellTransport
from tests.peers.sim import make_state, running_device


def _sim_factory(state):
    def factory(target: Target, credentials: Credentials) -> SimShellTransport:
        transport = SimShellTransport(target, credentials)
        transport.device = state
        return transport

    return factory


async def _posture_panel_asking(window, name: str):
    """Show ``name``'s Posture tab, confirm the factory check without a modal box, and press the button."""
    window._select(name)
    tab = window.page.panel_tabs["posture"]
    await until(lambda: window.page.device == name and tab.latest is not None, timeout=30, what="posture probed")
    window.page.tabs.setCurrentWidget(tab)
    await until(lambda: tab.panel is not None, what="posture panel built")
    panel = tab.panel
    panel.confirm = lambda _text: True
    panel.factory_button.click()
    await until(lambda: bool(window.controls._tasks), what="factory check started")
    return panel


def _scenario_devices(port: int):
    return [(DeviceEntry(name="gw-a", target=f"ssh://root@127.0.0.1:{port}", site="Roof 7"),
             Credentials(username="root")),
            (DeviceEntry(name="gw-b", target=f"ssh://root@127.0.0.1:{port}", site="Roof 7"),
             Credentials(username="root"))]


def test_factory_check_survives_switching_device_and_is_audited(make_window, aloop, tmp_path: Path) -> None:
    """The technician starts the check on gw-a, then looks at gw-b while it runs (a check takes ~10 s).

    The Posture panel the check was started from is deleted by the switch (PanelTab.reset): the result must
    not be written into a deleted widget, and the audit record of the logins tried must still be written."""
    state = make_state(tmp_path / "dev", name="gw-a")
    reported: list[BaseException] = []
    previous_hook = sys.excepthook
    sys.excepthook = lambda _t, exc, _tb: reported.append(exc)

    async def scenario() -> None:
        async with running_device(state) as device:
            KnownHosts(paths.data_dir() / "known_hosts").pin(
                "127.0.0.1", device.ssh_port, (state.root / "ssh_host_ed25519_key.pub").read_text())
            window = make_window(factory=_sim_factory(state))
            window.controls.factory_pause = 0.2  # the real 2 s between logins only makes the test slow
            window.load_devices(_scenario_devices(device.ssh_port))
            await show(window)
            await _posture_panel_asking(window, "gw-a")
            await asyncio.sleep(0.5)  # the first login is refused; the check pauses 2 s before the next
            window._select("gw-b")
            await until(lambda: not window.controls._tasks, timeout=40, what="factory check ended")
            keep = window.keep_ui.keep
            assert keep.flush_records()
            actions = [r.action for r in keep.audit.records(device="gw-a")]
            await close_window(window)
            assert "factory-password-check" in actions, f"no audit record; the check's end failed: {reported!r}"
            assert not reported, f"the check's end failed: {reported!r}"

    try:
        aloop.run(scenario(), timeout=60)
    finally:
        sys.excepthook = previous_hook


def test_closing_the_window_does_not_wait_for_a_factory_check(make_window, aloop, tmp_path: Path) -> None:
    """Closing the window while the check runs: the window's end must not wait out 5 paced SSH logins."""
    state = make_state(tmp_path / "dev", name="gw-a")

    async def scenario() -> float:
        async with running_device(state) as device:
            KnownHosts(paths.data_dir() / "known_hosts").pin(
                "127.0.0.1", device.ssh_port, (state.root / "ssh_host_ed25519_key.pub").read_text())
            window = make_window(factory=_sim_factory(state))
            window.controls.factory_pause = 0.2  # the real 2 s between logins only makes the test slow
            window.load_devices(_scenario_devices(device.ssh_port))
            await show(window)
            await _posture_panel_asking(window, "gw-a")
            started = time.monotonic()
            await close_window(window)
            return time.monotonic() - started

    took = aloop.run(scenario(), timeout=60)
    assert took < 2.0, f"closing the window took {took:.1f} s: it waited for the factory check to finish"


def test_run_gui_leaves_no_task_behind(qapp, home, monkeypatch) -> None:
    """The app's own exit path (SitelineLoop, no trailing processEvents): with the Logs tab following and a
    refresh just asked for, nothing of the window's is still pending when the loop closes."""
    from siteline.ui.app import run_gui
    from siteline.ui.qt_loop import SitelineLoop
    from tests.gui.shell_transport import local_shell_factory

    leftover: list[str] = []
    real_close = SitelineLoop.close

    def close(loop) -> None:
        leftover.extend(repr(t) for t in asyncio.all_tasks(loop) if not t.done())
        real_close(loop)

    monkeypatch.setattr(SitelineLoop, "close", close)
    seen: dict[str, object] = {}

    def on_ready(window) -> None:
        async def drive() -> None:
            await until(lambda: window.sessions.all_up(), timeout=20, what="up")
            window._select("gw-01")
            window.page.tabs.setCurrentWidget(window.page.logs)
            await until(lambda: window.page.logs.following, what="following")
            window.controls.refresh_now("gw-01")
            seen["following"] = window.page.logs.following
            window.close()

        asyncio.get_running_loop().create_task(drive())

    devices = [(DeviceEntry("gw-01", "ssh://root@127.0.0.1:22", "Demo site"), Credentials("root"))]
    assert run_gui(devices, on_ready=on_ready, factory=local_shell_factory) == 0
    assert seen["following"] is True
    assert leftover == [], leftover


def test_closing_the_window_while_antenna_alignment_starts(make_window, aloop, tmp_path: Path) -> None:
    """Alignment asked for, window closed before the modem answered: no alignment window may open afterwards
    (its sampling task would outlive the window and its session), and the modem's rate is put back."""
    from PySide6.QtWidgets import QApplication

    from siteline.ui.panels.antenna_window import AntennaWindow

    state = make_state(tmp_path / "dev", name="gw-a")

    async def scenario() -> list[str]:
        window = make_window(factory=_sim_factory(state))
        window.load_devices(_scenario_devices(22)[:1])
        await show(window)
        window._select("gw-a")
        session = window.sessions.get("gw-a")
        await until(lambda: getattr(session.snapshots.get("modem"), "index", None) is not None, timeout=30,
                    what="modem probed")
        window.controls.open_antenna_window()
        await close_window(window)
        await asyncio.sleep(0.3)
        opened = [w for w in QApplication.topLevelWidgets() if isinstance(w, AntennaWindow) and w.isVisible()]
        shown = [f"{w.windowTitle()} (sampling={w.sampling})" for w in opened]
        for w in opened:
            w.close()  # else its sampling task outlives the test (the aloop fixture's leftover check)
        await asyncio.sleep(0.3)
        return shown

    opened = aloop.run(scenario(), timeout=60)
    assert opened == [], f"an alignment window opened after the main window closed: {opened}"


def test_logs_tab_slows_down_when_the_uplink_becomes_cellular(make_window, aloop, tmp_path: Path) -> None:
    """A polled log (no stream on this link) while the device's wired uplink fails over to cellular: once the
    window itself says the link is metered, the Logs tab must poll every 60 s, not keep its 5 s."""
    state = make_state(tmp_path / "dev", name="gw-a")

    async def scenario() -> tuple[bool, list[str]]:
        window = make_window(factory=_sim_factory(state))
        window.load_devices(_scenario_devices(22)[:1])
        await show(window)
        window._select("gw-a")
        logs = window.page.logs
        said: list[str] = []
        real = logs.view.set_status
        logs.view.set_status = lambda text: (said.append(text), real(text))
        window.page.tabs.setCurrentWidget(logs)
        await until(lambda: any("every 5 s" in s for s in said), timeout=30, what="polling at 5 s")
        state.fail_wired(True)
        window.controls.refresh_now("gw-a")
        await until(lambda: window.controls.is_metered("gw-a"), timeout=20, what="the window knows: cellular")
        await asyncio.sleep(1.0)
        seen = [s for s in said if "every" in s]
        metered = window.controls.is_metered("gw-a")
        await close_window(window)
        return metered, seen

    metered, said = aloop.run(scenario(), timeout=60)
    assert metered
    assert "every 60 s" in said[-1], f"still polling fast on a metered link: {said}"


def test_minimised_or_hidden_window_stops_polling_and_the_log(make_window, aloop) -> None:
    """The window's own show/hide/minimise reach the refresh schedule and the Logs tab (DeviceControls' filter)."""
    from tests.gui.shell_transport import local_shell_factory

    async def scenario() -> list[tuple[str, bool, bool]]:
        window = make_window(factory=local_shell_factory)
        window.load_devices(_scenario_devices(22)[:1])
        await show(window)
        window._select("gw-a")
        window.page.tabs.setCurrentWidget(window.page.logs)
        await until(lambda: window.page.logs.following, timeout=20, what="following")
        seen = []
        for what, act in (("minimised", window.showMinimized), ("restored", window.showNormal),
                          ("hidden", window.hide), ("shown", window.show)):
            act()
            await asyncio.sleep(0.3)
            seen.append((what, window.controls.refresher.view("gw-a").window_visible, window.page.logs.following))
        await close_window(window)
        return seen

    seen = aloop.run(scenario(), timeout=60)
    assert seen == [("minimised", False, False), ("restored", True, True), ("hidden", False, False),
                    ("shown", True, True)], seen


def test_removing_or_renaming_the_followed_device_stops_its_log(make_window, aloop) -> None:
    from dataclasses import replace

    from tests.gui.shell_transport import local_shell_factory

    async def scenario() -> list[tuple[object, ...]]:
        window = make_window(factory=local_shell_factory)
        window.load_devices(_scenario_devices(22))
        await show(window)
        logs = window.page.logs
        seen = []
        window._select("gw-a")
        window.page.tabs.setCurrentWidget(logs)
        await until(lambda: logs.following, timeout=20, what="following")
        old = window.sessions.get("gw-a")
        entry = window.inventory.get("gw-a") if hasattr(window.inventory, "get") else old.entry
        renamed = replace(entry, name="gw-a2")
        window.inventory.upsert(renamed, replacing=entry)
        window.model.update_device(entry, renamed)
        window.sessions.replace(entry, renamed)
        window._select("gw-a2")
        await until(lambda: logs.following and logs._session is window.sessions.get("gw-a2"), timeout=20,
                    what="following the renamed device")
        seen.append(("renamed", logs.following, logs.device))
        await window.remove_now("gw-a2")
        await asyncio.sleep(0.3)
        seen.append(("removed", logs.device, window.page.device, logs._session is window.sessions.get(logs.device)))
        await close_window(window)
        return seen

    seen = aloop.run(scenario(), timeout=60)
    # The neighbour is shown after the removal: the log follows it, never the removed device's session.
    assert seen == [("renamed", True, "gw-a2"), ("removed", "gw-b", "gw-b", True)], seen


def test_factory_check_on_a_device_removed_meanwhile_is_still_audited(make_window, aloop, tmp_path: Path) -> None:
    """Passwords were tried on the device: that goes into the audit trail even if it left the list meanwhile."""
    state = make_state(tmp_path / "dev", name="gw-a")

    async def scenario() -> list[str]:
        async with running_device(state) as device:
            KnownHosts(paths.data_dir() / "known_hosts").pin(
                "127.0.0.1", device.ssh_port, (state.root / "ssh_host_ed25519_key.pub").read_text())
            window = make_window(factory=_sim_factory(state))
            window.controls.factory_pause = 0.2  # the real 2 s between logins only makes the test slow
            window.load_devices(_scenario_devices(device.ssh_port)[:1])
            await show(window)
            await _posture_panel_asking(window, "gw-a")
            await asyncio.sleep(0.5)
            await window.remove_now("gw-a")
            await until(lambda: not window.controls._tasks, timeout=40, what="factory check ended")
            keep = window.keep_ui.keep
            assert keep.flush_records()
            actions = [r.action for r in keep.audit.records(device="gw-a")]
            await close_window(window)
            return actions

    actions = aloop.run(scenario(), timeout=60)
    assert "factory-password-check" in actions, actions
