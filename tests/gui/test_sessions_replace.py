"""Editing a serial device (the baud rate, say) never shows a false "port busy": the new session
starts only after the old one has let go of the port."""

from __future__ import annotations

from pathlib import Path

import pytest

from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.transports.base import ConnectionState, ConnState
from siteline.ui.sessions import SessionManager, default_factory
from tests.gui.conftest import Loop, fast_backoff, until
from tests.peers.socat_shell import SocatShell

pytestmark = pytest.mark.peer("socat")


def _watch(manager: SessionManager, name: str, seen: list[ConnectionState]) -> None:
    manager.sig_state_changed.connect(lambda n: seen.append(manager.state(n)) if n == name else None)


def test_replace_and_readd_serial_device_without_port_busy(
    qapp: object, aloop: Loop, socat_shell: SocatShell, tmp_path: Path
) -> None:
    manager = SessionManager(PluginHost(), default_factory(tmp_path / "known_hosts"), backoff=fast_backoff)
    seen: list[ConnectionState] = []
    _watch(manager, "gw", seen)

    async def scenario() -> None:
        try:
            await steps()
        finally:
            await manager.close_all()

    async def steps() -> None:
        manager.add(DeviceEntry("gw", socat_shell.url))
        await until(lambda: manager.state("gw").state is ConnState.UP, what="first session up")
        for baud in (115200, 57600, 115200):  # the most common edit, several times in a row
            seen.clear()
            manager.replace("gw", DeviceEntry("gw", f"{socat_shell.url}?baud={baud}"))
            await until(lambda: manager.state("gw").state is ConnState.UP, what=f"up again at {baud}")
            busy = [s.describe() for s in seen if "busy" in (s.reason or "")]
            assert not busy, busy
        seen.clear()
        manager.remove("gw")  # remove then add at once (delete and re-create the device)
        manager.add(DeviceEntry("gw", socat_shell.url))
        await until(lambda: manager.state("gw").state is ConnState.UP, what="re-added session up")
        assert not [s for s in seen if s.state is ConnState.RETRYING], [s.describe() for s in seen]

    aloop.run(scenario(), timeout=40)
