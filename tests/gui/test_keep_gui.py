"""The window keeps a record of what the technician does and sends it: a real bash on a pty (socat) as the
device, a real Mosquitto as the control plane, the real outbox, audit trail and sync behind the window."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from siteline import paths
from siteline.core.inventory import DeviceEntry
from siteline.core.outbox.envelope import decode
from siteline.core.outbox.settings import ControlPlaneSettings, save_settings
from siteline.core.outbox.store import default_path
from siteline.core.transports.base import Credentials
from siteline.simulator.broker import BrokerHandle
from siteline.ui.main_window import MainWindow
from siteline.ui.note_dialog import NoteDialog
from siteline.ui.sessions import default_factory
from tests.gui.conftest import Loop, close_window, show, until
from tests.gui.test_console_tab import _screen, _type
from tests.peers.socat_shell import SocatShell

pytestmark = [pytest.mark.peer("socat"), pytest.mark.peer("mosquitto")]
SECRET = "hunter2-not-for-the-record"


class Collector:
    """A subscriber on the control plane's outbox topics, as an operator's consumer would be."""

    def __init__(self, broker: BrokerHandle) -> None:
        self.envelopes: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-collector")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("siteline/v1/+/outbox/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.envelopes.extend(decode(bytes(msg.payload)))

    def actions(self) -> list[str]:
        with self._lock:
            return [json.loads(str(e["payload"]))["action"] if isinstance(e["payload"], str) else
                    e["payload"]["action"]  # type: ignore[index]
                    for e in self.envelopes if e["kind"] == "audit"]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _window(make_window, home: Path, broker: BrokerHandle) -> MainWindow:
    save_settings(ControlPlaneSettings(url=f"mqtt://{broker.host}:{broker.port}", technician="tech-a",
                                       allow_plain=True, protocol="3.1.1"))
    return make_window(factory=default_factory(home / "known_hosts"))


def test_console_commands_are_audited_without_secrets_and_reach_the_control_plane(
    make_window, home: Path, aloop: Loop, qtbot, socat_shell: SocatShell, mosquitto: BrokerHandle
) -> None:
    collector = Collector(mosquitto)
    window = _window(make_window, home, mosquitto)
    assert window.keep_ui is not None
    keep = window.keep_ui.keep
    console = window.page.console

    async def scenario() -> None:
        window.load_devices([(DeviceEntry("gw-serial", socat_shell.url, "Tower 7"), Credentials())])
        await show(window)
        window.start_keep()
        await until(lambda: window.sessions.all_up(), what="the serial device up")
        await until(lambda: "connect" in [r.action for r in keep.audit.records()], what="connect audited")
        window._select("gw-serial")
        window.open_device()
        await until(lambda: console.connect_button.isEnabled(), what="console offered")
        console.connect_button.click()
        await until(lambda: console.channel is not None, what="a shell")
        _type(qtbot, console.terminal, "echo audited-$((6*7))")
        await until(lambda: "audited-42" in _screen(console.terminal), what="output")
        _type(qtbot, console.terminal, "read -s -p 'Password: ' x; echo done-$((1+1))")
        await until(lambda: any(line.startswith("Password:") for line in _screen(console.terminal)), what="prompt")
        _type(qtbot, console.terminal, SECRET)
        await until(lambda: any("done-2" in line for line in _screen(console.terminal)), what="read finished")
        lines = lambda: [r.detail_obj() for r in keep.audit.records("gw-serial") if r.action == "console-command"]  # noqa: E731
        await until(lambda: len(lines()) >= 3, timeout=10, what="three console lines judged")
        details = lines()
        assert {"line": "echo audited-$((6*7))"} in details
        assert any(d.get("withheld") for d in details)  # the password line: the fact only
        await until(lambda: "console-command" in collector.actions(), timeout=15, what="records at the broker")
        await until(lambda: keep.outbox.status().pending == 0, timeout=15, what="outbox drained")
        await until(lambda: window.keep_ui.sync_widget.word == "online", what="sync state")

    try:
        aloop.run(scenario(), timeout=60)
    finally:
        aloop.run(console.close_shell())
        aloop.run(close_window(window))
        collector.stop()
    db = default_path()
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert SECRET.encode() not in path.read_bytes()
    assert keep.audit.verify().ok


def test_a_note_is_kept_and_audited(make_window, home: Path, aloop: Loop, qtbot, socat_shell: SocatShell,
                                    mosquitto: BrokerHandle) -> None:
    window = _window(make_window, home, mosquitto)
    keep = window.keep_ui.keep  # type: ignore[union-attr]

    async def scenario() -> None:
        window.load_devices([(DeviceEntry("gw-serial", socat_shell.url, "Tower 7"), Credentials())])
        await show(window)
        window._select("gw-serial")
        window.keep_ui.act_note.trigger()  # type: ignore[union-attr]
        dialog = window.keep_ui.note_dialog  # type: ignore[union-attr]
        assert isinstance(dialog, NoteDialog)
        dialog.text.setPlainText("Antenna cable replaced; RSRP -95 after.")
        await asyncio.sleep(0)
        dialog.save_button.click()
        await until(lambda: dialog.saved_text is not None, what="saved")
        notes = [i for i in keep.outbox.items() if i.kind == "note"]
        assert [n.payload_obj()["text"] for n in notes] == ["Antenna cable replaced; RSRP -95 after."]
        assert "note" in [r.action for r in keep.audit.records("gw-serial")]

    try:
        aloop.run(scenario())
    finally:
        aloop.run(close_window(window))
    assert paths.data_dir() in default_path().parents


def test_a_remembered_password_comes_from_the_vault_next_time(make_window, home: Path, aloop: Loop, qtbot) -> None:
    from PySide6.QtWidgets import QDialogButtonBox

    from siteline.core.transports.base import ConnState
    from siteline.core.vault import KdfCost, Vault
    from siteline.core.vault.vault import default_path as vault_path
    from tests.gui.shell_transport import password_factory

    Vault.create(vault_path(), "correct horse battery staple", cost=KdfCost(iterations=1, memory_kib=1024, lanes=1))
    entry = DeviceEntry("locked", "ssh://root@127.0.0.1:22", "Tower 7")

    async def first_visit() -> None:
        window = make_window(factory=password_factory("s3cret"))
        window.keep_ui.keep.vault.unlock("correct horse battery staple")  # type: ignore[union-attr]
        window.load_devices([(entry, Credentials(username="root"))])
        await show(window)
        await until(lambda: window.password_dialog is not None and window.password_dialog.isVisible(), what="prompt")
        dialog = window.password_dialog
        assert dialog.remember.isEnabled()
        assert dialog.remember.isChecked()
        qtbot.keyClicks(dialog.password, "s3cret")
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()
        await until(lambda: window.sessions.state("locked").state is ConnState.UP, what="up after password")
        await close_window(window)

    async def next_visit() -> None:
        # Siteline starts with the vault locked: the device asks; the person unlocks the vault instead of typing.
        window = make_window(factory=password_factory("s3cret"))
        window.load_devices([(entry, Credentials(username="root"))])
        await show(window)
        await until(lambda: window.password_dialog is not None and window.password_dialog.isVisible(), what="prompt")
        window.keep_ui.keep.vault.unlock("correct horse battery staple")  # type: ignore[union-attr]
        window.keep_ui._on_vault_lock_changed(False)  # type: ignore[union-attr]  # as the vault window emits
        await until(lambda: window.sessions.state("locked").state is ConnState.UP, what="up with the vault's password")
        window.password_dialog.reject()
        await close_window(window)

    async def unlocked_at_start() -> None:
        window = make_window(factory=password_factory("s3cret"))
        window.keep_ui.keep.vault.unlock("correct horse battery staple")  # type: ignore[union-attr]
        window.load_devices([(entry, Credentials(username="root"))])
        await show(window)
        await until(lambda: window.sessions.state("locked").state is ConnState.UP, what="up with no prompt")
        assert window.password_dialog is None or not window.password_dialog.isVisible()
        await close_window(window)

    aloop.run(first_visit())
    aloop.run(next_visit())
    aloop.run(unlocked_at_start())
    assert b"s3cret" not in vault_path().read_bytes()
    assert "s3cret" not in (home / "config" / "devices.json").read_text()


def test_a_snapshot_of_what_the_probes_show_is_kept(make_window, home: Path, aloop: Loop, socat_shell: SocatShell,
                                                   mosquitto: BrokerHandle) -> None:
    window = _window(make_window, home, mosquitto)
    keep = window.keep_ui.keep  # type: ignore[union-attr]

    async def scenario() -> None:
        window.load_devices([(DeviceEntry("gw-serial", socat_shell.url, "Tower 7"), Credentials())])
        await show(window)
        session = window.sessions.get("gw-serial")
        await until(lambda: session is not None and "system" in session.snapshots, what="the system probe")
        window._select("gw-serial")
        window.keep_ui.act_snapshot.trigger()  # type: ignore[union-attr]
        snaps = [i for i in keep.outbox.items() if i.kind == "snapshot"]
        assert len(snaps) == 1
        system = snaps[0].payload_obj()["system"]
        assert system["kernel"]  # the typed snapshot, as plain JSON
        assert "saved on this laptop" in window.status.currentMessage()

    try:
        aloop.run(scenario())
    finally:
        aloop.run(close_window(window))


def test_work_offline_stops_sending(make_window, home: Path, aloop: Loop, mosquitto: BrokerHandle) -> None:
    window = _window(make_window, home, mosquitto)
    keep = window.keep_ui.keep  # type: ignore[union-attr]

    async def scenario() -> None:
        await show(window)
        window.start_keep()
        await until(lambda: window.keep_ui.sync_widget.word == "online", what="online")  # type: ignore[union-attr]
        window.keep_ui.show_control_plane()  # type: ignore[union-attr]
        dialog = window.keep_ui.control_plane_dialog  # type: ignore[union-attr]
        dialog.offline_button.click()
        await until(lambda: keep.syncer is None, what="the sync stopped")
        await until(lambda: window.keep_ui.sync_widget.word == "not configured", what="said")  # type: ignore[union-attr]
        assert "Working offline" in window.status.currentMessage()
        window.keep_ui.show_control_plane()  # type: ignore[union-attr]  # pointing at it again starts from the old
        assert window.keep_ui.control_plane_dialog.url.text().startswith("mqtt://127.0.0.1:")  # type: ignore[union-attr]
        window.keep_ui.control_plane_dialog.reject()  # type: ignore[union-attr]

    try:
        aloop.run(scenario())
    finally:
        aloop.run(close_window(window))
