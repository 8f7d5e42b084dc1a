"""Several paths per device: edited as an ordered list in the device dialog, and the one in use shown on the
device page's "Path" line and in the device tree."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from siteline.core.errors import TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.paths import STANDBY, PathStatus
from siteline.core.plugins import PluginHost
from siteline.core.targets import Target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.serial import SerialTransport
from siteline.ui.console_tab import MQTT_NO_CONSOLE
from siteline.ui.device_dialog import HAS_FALLBACKS, DeviceDialog
from siteline.ui.device_page import DevicePage
from siteline.ui.device_tree_model import STATE_COLUMN, DeviceTreeModel, PathRole
from siteline.ui.path_view import describe_target, path_line, paths_tooltip
from siteline.ui.sessions import SessionManager, default_factory
from tests.gui.conftest import Loop, fast_backoff, until
from tests.gui.shell_transport import LocalShellTransport
from tests.peers.socat_shell import SocatShell
from tests.peers.sshd import SshdHandle

SSH = "ssh://root@10.0.0.5?jump=ops@bastion.example:2222"
SERIAL = "serial:///dev/ttyUSB0?baud=115200"
MQTT = "mqtt://broker.example:1883/edge/site-a/gw1"
AT_1402 = dt.datetime.now().replace(hour=14, minute=2, second=0, microsecond=0)


def status(target: str, role: Any, state: Any, reason: str = "", last_change: Any = None) -> PathStatus:
    """A core PathStatus as a session would report it."""
    when = last_change.timestamp() if isinstance(last_change, dt.datetime) else time.time()
    return PathStatus(target, role, state if isinstance(state, ConnState) else ConnState.DOWN, reason, when)


def _fell_back() -> list[PathStatus]:
    return [
        status(SSH, "preferred", ConnState.DOWN, "connection refused", AT_1402),
        status(SERIAL, "fallback", ConnState.UP, "", AT_1402),
        status(MQTT, "fallback", "standby", STANDBY),
    ]


def test_path_words() -> None:
    assert describe_target(SSH) == "SSH via bastion.example"
    assert describe_target(SERIAL) == "serial /dev/ttyUSB0"
    preferred = [status(SSH, "preferred", ConnState.UP), status(SERIAL, "fallback", "standby", STANDBY)]
    assert path_line(preferred, SSH) == "SSH via bastion.example ✓ (preferred)"
    assert path_line(_fell_back(), SERIAL) == (
        "serial /dev/ttyUSB0 — fallback; preferred SSH via bastion.example down since 14:02: "
        "connection refused"
    )
    none_up = [status(SSH, "preferred", "down", "timed out"), status(SERIAL, "fallback", "down", "port missing")]
    assert path_line(none_up).startswith("no path answers — preferred SSH via bastion.example down since")
    tip = paths_tooltip(_fell_back(), SERIAL).splitlines()
    assert tip[1] == "2. serial /dev/ttyUSB0 (fallback) — in use ✓"
    assert tip[0].startswith("1. SSH via bastion.example (preferred) — down since 14:02")


def test_device_page_path_line(qtbot) -> None:
    page = DevicePage(PluginHost())
    qtbot.addWidget(page)
    entry = DeviceEntry("gw-01", SSH, "Tower 7")
    page.show_device(entry, ConnectionState(ConnState.UP), {})
    assert page.path.isHidden()  # one path: the target line says it all
    page.show_paths(_fell_back(), SERIAL)
    assert not page.path.isHidden()
    assert page.path.text().startswith("Path: serial /dev/ttyUSB0 — fallback; preferred SSH")
    assert "3. MQTT edge/site-a/gw1 at broker.example (fallback) — standby" in page.path.toolTip()
    page.show_paths([status(SSH, "preferred", ConnState.UP), status(SERIAL, "fallback", "standby", STANDBY)], SSH)
    assert page.path.text() == "Path: SSH via bastion.example ✓ (preferred)"


def test_tree_row_says_which_path_is_in_use(qtmodeltester) -> None:
    model = DeviceTreeModel()
    model.set_devices([DeviceEntry("gw-01", SSH, "Tower 7"), DeviceEntry("gw-02", SERIAL, "Tower 7")])
    model.set_state("gw-01", ConnectionState(ConnState.UP))
    model.set_state("gw-02", ConnectionState(ConnState.UP))
    model.set_paths("gw-01", _fell_back(), SERIAL)
    qtmodeltester.check(model, force_py=True)
    index = model.index_of("gw-01", STATE_COLUMN)
    assert index.data() == "up via serial"
    assert index.data(PathRole) == SERIAL
    tip = index.data(Qt.ItemDataRole.ToolTipRole)
    assert "in use: serial /dev/ttyUSB0" in tip
    assert "1. SSH via bastion.example (preferred) — down since 14:02: connection refused" in tip
    assert model.index_of("gw-02", STATE_COLUMN).data() == "up"  # one path: nothing to add
    model.set_paths("gw-01", [status(SSH, "preferred", ConnState.UP), status(SERIAL, "fallback", "standby", STANDBY)])
    assert index.data() == "up via ssh"
    model.set_paths("nope", [])  # an unknown device is ignored


def test_dialog_edits_an_ordered_path_list(qtbot) -> None:
    dialog = DeviceDialog(["Tower 7"], {"gw-00"})
    qtbot.addWidget(dialog)
    dialog.name.setText("gw-01")
    dialog.target.setText(SERIAL)
    assert dialog.ok_button.isEnabled(), dialog.message.text()
    paths = dialog.paths
    paths.add_path("ssh://root@10.0.0.5:99999")
    assert "65535" in paths.notes[1].text() or "port" in paths.notes[1].text().lower()  # the error, inline
    assert not dialog.ok_button.isEnabled()
    assert dialog.message.text().startswith("Path 2:")
    paths.edits[1].setText(SSH)
    paths.add_path(SERIAL)
    assert paths.notes[2].text() == "The same as path 1."
    paths.edits[2].setText(MQTT)
    paths.move_path(1, -1)  # prefer SSH over the cable
    assert paths.targets() == [SSH, SERIAL, MQTT]
    assert paths.notes[0].text().startswith("✓ SSH to 10.0.0.5:22 via ops@bastion.example:2222 (preferred)")
    paths.move_path(0, -1)  # already first: nothing moves
    paths.remove_path(2)
    assert paths.targets() == [SSH, SERIAL]
    if not HAS_FALLBACKS:  # before the inventory keeps fallbacks, the dialog must not drop them silently
        assert not dialog.ok_button.isEnabled()
        pytest.skip("DeviceEntry has no fallbacks yet")
    assert dialog.ok_button.isEnabled(), dialog.message.text()
    dialog.accept()
    assert dialog.entry is not None
    assert (dialog.entry.target, dialog.entry.fallbacks) == (SSH, (SERIAL,))  # type: ignore[attr-defined]


def test_dialog_keeps_one_path_and_loads_fallbacks(qtbot) -> None:
    dialog = DeviceDialog([], set())
    qtbot.addWidget(dialog)
    dialog.paths.remove_path(0)  # the last path cannot go
    assert len(dialog.paths.edits) == 1
    if not HAS_FALLBACKS:
        pytest.skip("DeviceEntry has no fallbacks yet")
    entry = DeviceEntry("gw-01", SSH, "Tower 7", fallbacks=(SERIAL, MQTT))  # type: ignore[call-arg]
    edit = DeviceDialog(["Tower 7"], {"gw-01"}, entry)
    qtbot.addWidget(edit)
    assert edit.paths.targets() == [SSH, SERIAL, MQTT]
    assert edit.ok_button.isEnabled(), edit.message.text()


# -- end to end: real sshd (key not trusted yet) preferred, a real bash on a pty as the fallback ----


@pytest.mark.peer("sshd")
@pytest.mark.peer("socat")
def test_fallback_shown_while_host_key_waits_then_back_on_ssh(
    qtbot, aloop: Loop, sshd: SshdHandle, socat_shell: SocatShell, tmp_path: Path
) -> None:
    manager = SessionManager(PluginHost(), default_factory(tmp_path / "known_hosts"), backoff=fast_backoff)
    model = DeviceTreeModel()
    model.follow(manager)
    page = DevicePage(PluginHost())
    qtbot.addWidget(page)
    page.follow(manager)
    said: list[str] = []
    manager.sig_path_event.connect(lambda _name, message: said.append(message))
    ssh = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}"
    entry = DeviceEntry("gw-01", ssh, "Tower 7", fallbacks=(socat_shell.url,))
    model.set_devices([entry])
    manager.sig_state_changed.connect(lambda name: model.set_state(name, manager.state(name)))

    def via() -> str:
        return str(model.index_of("gw-01", STATE_COLUMN).data())

    async def scenario() -> None:
        try:
            manager.add(entry, Credentials(key_path=str(sshd.client_key), use_agent=False))
            page.show_device(entry, manager.state("gw-01"), {})
            await until(lambda: via() == "up via serial · host key to check", what="up on the serial fallback")
            problem = manager.host_key_problem("gw-01")
            assert problem is not None
            assert problem.offered_fingerprint == sshd.host_fingerprint
            assert page.path.text().startswith(f"Path: serial {socat_shell.path} — fallback; preferred SSH to ")
            assert "not known yet" in page.path.toolTip()
            assert not page.host_key_bar.isHidden()  # the question stays while the device works on serial
            manager.trust_host_key("gw-01", problem)
            await until(lambda: via() == "up via ssh", what="back on SSH after the key was trusted")
            assert manager.host_key_problem("gw-01") is None
            assert page.host_key_bar.isHidden()
            assert page.path.text() == f"Path: SSH to {sshd.host}:{sshd.port} ✓ (preferred)"
            assert any("connected on fallback" in m for m in said), said
        finally:
            await manager.close_all()

    aloop.run(scenario(), timeout=30)


# -- the Console tab follows the path in use, not the preferred one ---------------------------------------


class _Broker(LocalShellTransport):
    """The MQTT path of the device: answers only while the test says the broker is reachable."""

    reachable = False

    async def connect(self) -> None:
        if not _Broker.reachable:
            self._state.set(ConnState.DOWN, "connection refused")
            raise TransportError("The MQTT broker refused the connection.", "Check the broker address.")
        await super().connect()


def _mqtt_then_serial(target: Target, creds: Credentials) -> Transport:
    if target.is_mqtt:
        return _Broker(target, creds)
    return SerialTransport(target, creds, wake_timeout=1.0)


def test_console_offered_without_sessions_on_a_device_with_a_serial_fallback(qtbot) -> None:
    page = DevicePage(PluginHost())
    qtbot.addWidget(page)
    page.show_device(DeviceEntry("gw-01", MQTT, "Tower 7", fallbacks=(SERIAL,)), ConnectionState(ConnState.DOWN), {})
    assert str(page.console.target) == SERIAL
    assert page.console.connect_button.isEnabled()
    page.show_device(DeviceEntry("gw-02", MQTT, "Tower 7"), ConnectionState(ConnState.DOWN), {})
    assert page.console.status.text() == MQTT_NO_CONSOLE
    assert not page.console.connect_button.isEnabled()


@pytest.mark.peer("socat")
def test_console_follows_the_path_in_use(
    qtbot, aloop: Loop, socat_shell: SocatShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Broker, "reachable", False)
    manager = SessionManager(PluginHost(), _mqtt_then_serial, backoff=fast_backoff)
    page = DevicePage(PluginHost())
    page.follow(manager)
    page.console_opener = lambda name: manager.get(name).open_shell  # type: ignore[union-attr]
    entry = DeviceEntry("gw-01", MQTT, "Tower 7", fallbacks=(socat_shell.url,))
    console = page.console

    async def scenario() -> None:
        try:
            manager.add(entry)
            page.show_device(entry, manager.state("gw-01"), {})
            await until(lambda: manager.active_target("gw-01") == socat_shell.url, what="up on the serial cable")
            assert str(console.target) == socat_shell.url
            assert console.connect_button.isEnabled()
            console.connect_button.click()
            await until(lambda: console.channel is not None, what="a shell over the serial fallback")
            console.channel.write(b"echo on-$((6 * 7))\r")  # type: ignore[union-attr]
            await until(lambda: any("on-42" in line for line in console.terminal.display_lines()), what="output")
            # The cable is pulled and the broker answers: the session moves to MQTT, and the tab says so.
            _Broker.reachable = True
            socat_shell.stop()
            await until(lambda: manager.active_target("gw-01") == MQTT, what="moved to MQTT")
            await until(lambda: console.status.text() == MQTT_NO_CONSOLE, what="no console over MQTT")
            assert console.channel is None
            assert not console.connect_button.isEnabled()
        finally:
            await console.close_shell()
            await manager.close_all()

    aloop.run(scenario(), timeout=30)
    page.close()
    page.deleteLater()
