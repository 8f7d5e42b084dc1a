"""Device > Data plan: the person's word on the link beats the guess; kept in refresh.json; the pace follows."""

from __future__ import annotations

import asyncio
import json

from siteline.core.inventory import DeviceEntry
from siteline.core.refresh_policy import settings_path
from siteline.core.transports.base import Credentials
from tests.gui.conftest import close_window, show, until
from tests.gui.shell_transport import local_shell_factory


def test_marking_a_device_metered_slows_it_and_is_kept(make_window, aloop, home) -> None:
    async def scenario() -> tuple[str, str, dict[str, object], str]:
        window = make_window(factory=local_shell_factory)
        window.load_devices([(DeviceEntry("gw-a", "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root"))])
        await show(window)
        window._select("gw-a")
        await until(lambda: window.sessions.all_up(), what="up")
        controls = window.controls
        before = controls.refresh_label.text()
        controls.plan_menu.aboutToShow.emit()
        assert controls.plan_actions["auto"].isChecked()
        controls.plan_actions["metered"].trigger()
        after = controls.refresh_label.text()
        kept = json.loads(settings_path().read_text())
        controls.plan_actions["auto"].trigger()
        back = controls.refresh_label.text()
        await close_window(window)
        return before, after, kept, back

    before, after, kept, back = aloop.run(scenario(), timeout=40)
    assert before.startswith("refreshing every 30 s"), before
    assert "marked metered" in after, after
    assert "5 min" in after, after
    assert kept["devices"] == {"gw-a": "metered"}
    assert back == before


def test_removing_a_device_stops_its_factory_check(make_window, aloop) -> None:
    """The check of a removed device is cancelled (and audited as such), not run to its end."""

    async def scenario() -> list[str]:
        accepted: list[asyncio.StreamWriter] = []
        silent = await asyncio.start_server(lambda _r, w: accepted.append(w), "127.0.0.1", 0)  # never answers
        port = silent.sockets[0].getsockname()[1]
        window = make_window(factory=local_shell_factory)
        window.load_devices([(DeviceEntry("gw-a", f"ssh://root@127.0.0.1:{port}", "Tower 7"), Credentials("root")),
                             (DeviceEntry("gw-b", f"ssh://root@127.0.0.1:{port}", "Tower 7"), Credentials("root"))])
        await show(window)
        window._select("gw-a")
        await until(lambda: window.sessions.all_up(), what="up")
        tab = window.page.panel_tabs["posture"]
        window.page.tabs.setCurrentWidget(tab)
        await until(lambda: tab.latest is not None, timeout=30, what="posture read")
        tab.build()
        panel = tab.panel
        panel.confirm = lambda _text: True
        panel.factory_button.click()
        task = next(iter(window.controls._checks))
        await asyncio.sleep(0.5)  # the first login is under way: the silent server never answers it
        window.remove_now("gw-a")
        await until(task.done, timeout=5, what="check stopped")
        keep = window.keep_ui.keep
        keep.flush_records()
        results = [r.result for r in keep.audit.records(device="gw-a") if r.action == "factory-password-check"]
        await close_window(window)
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
        return results

    assert aloop.run(scenario(), timeout=60) == ["cancelled"]
