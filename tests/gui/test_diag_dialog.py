"""Device > Save diagnostics bundle…: over the device's open session (no second login), progress per area,
the saved file and whether it was queued, "Open folder"; a device that is not connected says so."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.core.inventory import DeviceEntry
from siteline.core.outbox.store import Outbox
from siteline.core.transports.base import ConnState, Credentials
from siteline.ui.diag_dialog import DiagDialog, default_file_name
from siteline.ui.sessions import SessionManager, default_factory
from tests.gui.conftest import Loop, fast_backoff, plugins_with_builtins, until
from tests.peers.sim import PASSWORD, make_state, running_device

pytestmark = pytest.mark.timeout(60)


class _Keep:
    """The window's Keep as the dialog uses it: its outbox, its audit trail, waking its sync loop."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.woken = 0
        self.records: list[tuple[str, dict]] = []

    def wake(self) -> None:
        self.woken += 1

    def record(self, action: str, *, device: str, site: str, detail: dict) -> None:
        assert (device, site) == ("gw-01", "Tower 7")
        self.records.append((action, detail))


def test_default_file_name() -> None:
    assert default_file_name("Roof 7/gw:01", when=1_764_000_000) == "siteline-diag-Roof_7_gw_01-20251124T160000Z.zip"


def test_saves_a_bundle_over_the_open_session(qtbot, aloop: Loop, home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    state = make_state(tmp_path / "dev")
    state.log("wifi psk=dialogPlantedPsk1 applied", unit="NetworkManager")
    plugins = plugins_with_builtins()
    manager = SessionManager(plugins, default_factory(tmp_path / "known_hosts", accept_new_host_key=True),
                             backoff=fast_backoff)
    target = tmp_path / "docs" / "bundle.zip"
    target.parent.mkdir()
    opened: list[str] = []
    monkeypatch.setattr("siteline.ui.diag_dialog.QDesktopServices.openUrl",
                        lambda url: opened.append(url.toLocalFile()))

    async def scenario() -> DiagDialog:
        async with running_device(state) as device:
            entry = DeviceEntry("gw-01", f"ssh://root@127.0.0.1:{device.ssh_port}", "Tower 7")
            try:
                manager.add(entry, Credentials(password=PASSWORD))
                session = manager.get("gw-01")
                await until(lambda: session.state.state is ConnState.UP, 20, "the session up")
                link = session.transport
                with Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
                    keep = _Keep(outbox)
                    dialog = DiagDialog(session, plugins, keep=keep)
                    qtbot.addWidget(dialog)
                    dialog.choose_path = lambda: target  # the Save-as dialog, answered
                    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
                    assert not dialog.save_button.isEnabled()  # one collection at a time
                    await dialog.wait()
                    assert [i.kind for i in outbox.pending()] == ["diagnostics"]
                    assert keep.woken == 1
                    [(action, detail)] = keep.records
                    assert action == "diagnostics-bundle"
                    assert (detail["file"], detail["outbox"]) == ("bundle.zip", "queued for the control plane")
                assert session.transport is link  # the open link did the work: no second login
                return dialog
            finally:
                await manager.close_all()

    dialog = aloop.run(scenario(), timeout=45)
    assert all(label.text() == "collected" for label in dialog.area_labels.values()), \
        {a: label.text() for a, label in dialog.area_labels.items()}
    text = dialog.result_label.text()
    assert text.startswith(f"Saved {target} (")
    assert "queued for the control plane" in text
    assert dialog.folder_button.isEnabled()
    qtbot.mouseClick(dialog.folder_button, Qt.MouseButton.LeftButton)
    assert opened == [str(target.parent)]
    with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert b"dialogPlantedPsk1" not in zf.read("logs/device.txt")
        assert b"psk=***" in zf.read("logs/device.txt")
    assert (manifest["device"], manifest["site"]) == ("gw-01", "Tower 7")
    assert manifest["partial"] is False


class _Down:
    def __init__(self) -> None:
        from siteline.core.transports.base import ConnectionState

        self.entry = DeviceEntry("gw-02", "ssh://root@10.0.0.9", "Tower 8")
        self.state = ConnectionState(ConnState.DOWN, "connection refused")
        self.target = self.entry.target

    async def run(self, command: str, timeout: float = 30.0) -> None:
        raise AssertionError("nothing runs on a device that is not connected")


def test_a_device_that_is_not_connected_says_so(qtbot, aloop: Loop) -> None:
    dialog = DiagDialog(_Down(), plugins_with_builtins())
    qtbot.addWidget(dialog)
    asked: list[bool] = []
    dialog.choose_path = lambda: asked.append(True)  # type: ignore[method-assign]
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert asked == []
    assert "gw-02 is not connected" in dialog.result_label.text()
