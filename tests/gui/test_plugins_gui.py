"""A broken plugin is reported in the status bar and the plugins dialog, disabled, and the window keeps working."""

from __future__ import annotations

from siteline.api import hookimpl
from siteline.core.inventory import DeviceEntry
from siteline.core.transports.base import Credentials
from tests.gui.conftest import close_window, plugins_with_builtins, show, until


class BrokenPanels:
    """Raises while contributing panels: fails as soon as the window asks for them."""

    @hookimpl
    def siteline_panels(self):
        raise RuntimeError("panel factory exploded")


class _BadProbe:
    name = "bad-system"
    kind = "system"

    async def collect(self, ctx):
        raise ValueError("cannot make sense of os-release")


class BrokenProbe:
    """Loads fine, then raises from its probe once a device is up."""

    @hookimpl
    def siteline_probes(self):
        return [_BadProbe()]


def test_broken_plugins_are_reported_and_disabled(make_window, aloop, qtbot) -> None:
    host = plugins_with_builtins((BrokenPanels(), "broken-panels"), (BrokenProbe(), "broken-probe"))

    async def scenario() -> None:
        window = make_window(plugins=host)
        assert window.status.plugin_failures == 1  # the panel hook failed while the page was built
        assert "1 failed" in window.status.plugin_button.text()
        assert "panel factory exploded" in window.status.plugin_button.toolTip()
        window.load_devices([(DeviceEntry("gw-01", "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root"))])
        await show(window)
        # The built-in system probe still fills the Overview; the broken one is disabled on first use.
        await until(lambda: window.page.overview.filled, what="overview from the working plugin")
        await until(lambda: window.status.plugin_failures == 2, what="probe failure reported")
        assert "2 failed" in window.status.plugin_button.text()

        window.status.plugin_button.click()
        dialog = window.plugins_dialog
        assert dialog is not None
        assert dialog.isVisible()
        rows = {
            dialog.model.index(r, 0).data(): dialog.model.index(r, 2).data() for r in range(dialog.model.rowCount())
        }
        assert rows["system"] == "enabled"
        assert rows["broken-panels"].startswith("disabled: RuntimeError: panel factory exploded")
        assert rows["broken-probe"].startswith("disabled: ValueError: cannot make sense of os-release")
        assert "broken-probe" in dialog.failures.text()
        dialog.close()

        window.sessions.reconnect("gw-01")  # the window still works: reconnect and read again
        await until(lambda: window.model.state("gw-01").state.value == "up", what="up again")
        await close_window(window)

    aloop.run(scenario())
