"""The control-plane dialog against real pieces: settings files on disk, a real vault, real Mosquitto.

Plain mqtt:// needs the explicit tick; the password lands in the vault and never in the settings file;
"Test connection" connects for real (plain and TLS with a client certificate) and explains a closed port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel

from siteline.core.outbox.settings import ControlPlaneSettings, load_settings, save_settings
from siteline.core.vault import KdfCost, Vault
from siteline.simulator.broker import BrokerHandle, start_mosquitto
from siteline.ui.control_plane_dialog import PASSWORD_ENTRY, ControlPlaneDialog
from tests.gui.conftest import Loop
from tests.peers import free_port
from tests.peers.pki import Pki, make_pki, start_tls_broker
from tests.peers.stall import assert_no_stall, measure_stalls

PASSWORD = "Tower7-s3cret-pw"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "control-plane.json"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    made = _cheap_vault(tmp_path / "vault.siteline")
    try:
        yield made
    finally:
        made.lock()


def _cheap_vault(path: Path) -> Vault:
    """A real vault with the KDF's cheapest cost (tests must be fast; the format is the same)."""
    return Vault.create(path, PASSPHRASE, cost=KdfCost(iterations=1, memory_kib=64, lanes=1))


def _dialog(qtbot, settings_path: Path, current: ControlPlaneSettings | None = None, **kwargs) -> ControlPlaneDialog:
    dialog = ControlPlaneDialog(current, path=settings_path, connect_timeout=3.0, **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def _error(dialog: ControlPlaneDialog, field: str) -> str:
    label = dialog.findChild(QLabel, f"cpError_{field}")
    assert label is not None, field
    return label.text() if label.isVisibleTo(dialog) else ""


def test_plain_mqtt_refused_without_the_tick(qtbot, settings_path: Path) -> None:
    dialog = _dialog(qtbot, settings_path)
    assert not dialog.save_button.isEnabled()  # nothing typed yet
    dialog.url.setText("mqtt://127.0.0.1:1883")
    assert "unencrypted" in _error(dialog, "url")
    assert "Allow unencrypted MQTT" in _error(dialog, "url")
    assert not dialog.save_button.isEnabled()
    dialog.accept()  # Enter in a field: still refused, still open
    assert dialog.isVisible()
    assert not settings_path.exists()
    dialog.allow_plain.setChecked(True)
    assert _error(dialog, "url") == ""
    assert dialog.save_button.isEnabled()
    dialog.save_button.click()
    assert dialog.result() == ControlPlaneDialog.DialogCode.Accepted
    saved = load_settings(settings_path)
    assert saved is not None
    assert (saved.url, saved.allow_plain) == ("mqtt://127.0.0.1:1883", True)
    assert dialog.settings() == saved


def test_mqtts_is_the_default_and_needs_no_tick(qtbot, settings_path: Path) -> None:
    dialog = _dialog(qtbot, settings_path)
    assert dialog.url.placeholderText().startswith("mqtts://")
    assert dialog.technician.text()  # the OS user name, shown
    dialog.url.setText("mqtts://broker.example.com")
    assert _error(dialog, "url") == ""
    dialog.url.setText("https://broker.example.com")
    assert "not an MQTT URL" in _error(dialog, "url")
    dialog.url.setText("mqtts://broker.example.com:99999")
    assert "port" in _error(dialog, "url").lower()


def test_password_goes_to_the_vault_not_the_settings_file(qtbot, settings_path: Path, vault: Vault) -> None:
    dialog = _dialog(qtbot, settings_path, vault=vault)
    assert dialog.password.isEnabled()
    dialog.url.setText("mqtts://cp.example.net:8883")
    dialog.username.setText("tech-jane")
    dialog.password.setText(PASSWORD)
    dialog.metered.setChecked(True)
    dialog.budget.setValue(500)
    dialog.save_button.click()
    assert dialog.result() == ControlPlaneDialog.DialogCode.Accepted
    raw = settings_path.read_bytes()
    assert PASSWORD.encode() not in raw
    assert vault.get(PASSWORD_ENTRY) == PASSWORD
    saved = load_settings(settings_path)
    assert saved is not None
    assert saved.password_ref == PASSWORD_ENTRY  # the entry's name, never the value
    assert (saved.username, saved.metered, saved.monthly_budget_bytes) == ("tech-jane", True, 500_000_000)
    # Edited again later: the password stays in the vault without being typed again.
    again = _dialog(qtbot, settings_path, current=saved, vault=vault)
    assert "kept in the vault" in again.password.placeholderText()
    again.technician.setText("jane-2")
    again.save_button.click()
    reread = load_settings(settings_path)
    assert reread is not None
    assert (reread.technician, reread.password_ref) == ("jane-2", saved.password_ref)


def test_locked_or_missing_vault_keeps_the_password_field_shut(qtbot, settings_path: Path, vault: Vault) -> None:
    vault.lock()
    for given in (vault, None):
        dialog = _dialog(qtbot, settings_path, vault=given)
        assert not dialog.password.isEnabled()
        assert "unlock the vault to keep the password" in dialog.password.placeholderText()
        assert "Unlock the vault" in _error(dialog, "password")
        dialog.url.setText("mqtts://cp.example.net")
        dialog.username.setText("tech-jane")
        dialog.save_button.click()
        saved = load_settings(settings_path)
        assert saved is not None
        assert saved.password_ref is None


def test_unreadable_tls_file_is_shown_next_to_its_field(qtbot, settings_path: Path, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, settings_path)
    dialog.url.setText("mqtts://cp.example.net")
    dialog.ca.edit.setText(str(tmp_path / "missing-ca.pem"))
    assert "does not exist" in _error(dialog, "ca")
    assert not dialog.save_button.isEnabled()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    dialog.ca.edit.setText(str(ca))
    assert _error(dialog, "ca") == ""
    assert dialog.save_button.isEnabled()


def test_settings_error_is_shown_inline_and_the_dialog_stays_open(qtbot, settings_path: Path) -> None:
    dialog = _dialog(qtbot, settings_path)
    dialog.url.setText("mqtts://cp.example.net")
    dialog.technician.setText("no spaces / or slashes")
    assert _error(dialog, "technician") != ""
    assert not dialog.save_button.isEnabled()
    dialog.accept()
    assert dialog.isVisible()
    assert not settings_path.exists()


def test_password_without_user_name_points_at_the_user_name(qtbot, settings_path: Path, vault: Vault) -> None:
    dialog = _dialog(qtbot, settings_path, vault=vault)
    dialog.url.setText("mqtts://cp.example.net")
    dialog.password.setText(PASSWORD)
    assert "user name this password belongs to" in _error(dialog, "username")
    assert not dialog.save_button.isEnabled()
    dialog.username.setText("tech-jane")
    assert _error(dialog, "username") == ""
    assert dialog.save_button.isEnabled()


def test_work_offline_keeps_everything_local(qtbot, settings_path: Path) -> None:
    dialog = _dialog(qtbot, settings_path)
    dialog.offline_button.click()
    assert dialog.work_offline
    assert dialog.settings() is None
    assert dialog.result() == ControlPlaneDialog.DialogCode.Accepted
    assert not settings_path.exists()


def test_existing_settings_are_shown(qtbot, settings_path: Path) -> None:
    current = ControlPlaneSettings(url="mqtts://cp.example.net:8884", technician="jane", protocol="3.1.1",
                                   metered=True, monthly_budget_bytes=2_000_000_000)
    save_settings(current, settings_path)
    dialog = _dialog(qtbot, settings_path, current=load_settings(settings_path))
    assert dialog.url.text() == "mqtts://cp.example.net:8884"
    assert dialog.protocol.currentData() == "3.1.1"
    assert dialog.metered.isChecked()
    assert dialog.budget.value() == 2000
    assert "90%" in dialog.hold_note
    dialog.save_button.click()
    assert load_settings(settings_path) == current  # saved unchanged: nothing lost to the form's rounding


def test_a_budget_the_field_rounds_is_kept_exact(qtbot, settings_path: Path) -> None:
    current = ControlPlaneSettings(url="mqtts://cp.example.net", technician="jane", monthly_budget_bytes=300_000)
    dialog = _dialog(qtbot, settings_path, current=current)
    assert dialog.budget.value() == 1  # shown as 1 MB, not as "No budget"
    dialog.save_button.click()
    saved = load_settings(settings_path)
    assert saved is not None
    assert saved.monthly_budget_bytes == 300_000


@pytest.mark.peer("mosquitto")
def test_test_connection_ok_against_mosquitto(qtbot, settings_path: Path, mosquitto: BrokerHandle,
                                              aloop: Loop) -> None:
    dialog = _dialog(qtbot, settings_path)
    dialog.url.setText(f"mqtt://{mosquitto.host}:{mosquitto.port}")
    dialog.allow_plain.setChecked(True)
    dialog.test_button.click()
    assert dialog.test_result.text() == "Connecting…"
    aloop.run(dialog.wait_for_test())
    assert dialog.test_result.text().startswith(f"✓ Connected to {mosquitto.host}:{mosquitto.port} unencrypted")
    assert dialog.test_button.isEnabled()
    assert not settings_path.exists()  # testing saves nothing


def test_test_connection_explains_a_closed_port(qtbot, settings_path: Path, aloop: Loop) -> None:
    dialog = _dialog(qtbot, settings_path)
    dialog.url.setText(f"mqtt://127.0.0.1:{free_port()}")
    dialog.allow_plain.setChecked(True)
    dialog.test_button.click()
    aloop.run(dialog.wait_for_test())
    text = dialog.test_result.text()
    assert text.startswith("✗ ")
    assert "refused the connection" in text
    assert "Is the broker running" in text  # what happened, then what to do


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.peer("mosquitto")
def test_test_connection_over_tls_with_a_client_certificate(qtbot, settings_path: Path, pki: Pki, tmp_path: Path,
                                                            aloop: Loop) -> None:
    broker = start_tls_broker(tmp_path / "tls", pki, require_certificate=True)
    try:
        dialog = _dialog(qtbot, settings_path)
        dialog.url.setText(broker.url)
        dialog.ca.edit.setText(str(pki.ca))
        dialog.test_button.click()
        aloop.run(dialog.wait_for_test())
        assert "client certificate" in dialog.test_result.text()  # refused without one, and says so
        dialog.cert.edit.setText(str(pki.client))
        dialog.key.edit.setText(str(pki.client_key))
        dialog.test_button.click()
        aloop.run(dialog.wait_for_test())
        assert dialog.test_result.text().startswith(f"✓ Connected to 127.0.0.1:{broker.port} over TLS")
    finally:
        broker.stop()


@pytest.mark.peer("mosquitto")
def test_test_connection_logs_in_with_the_password_from_the_vault(qtbot, settings_path: Path, vault: Vault,
                                                                  tmp_path: Path, aloop: Loop) -> None:
    broker = start_mosquitto(tmp_path / "users", 0, users={"tech-jane": PASSWORD})
    try:
        vault.put(PASSWORD_ENTRY, PASSWORD)
        current = ControlPlaneSettings(url=broker.url, technician="jane", allow_plain=True, username="tech-jane",
                                       password_ref=PASSWORD_ENTRY)
        dialog = _dialog(qtbot, settings_path, current=current, vault=vault)
        assert dialog.password.text() == ""  # never shown, even when unlocked
        dialog.test_button.click()
        aloop.run(dialog.wait_for_test())
        assert dialog.test_result.text().startswith("✓ Connected")
        assert "as tech-jane" in dialog.test_result.text()
        dialog.password.setText("not-the-password")
        dialog.test_button.click()
        aloop.run(dialog.wait_for_test())
        assert "refused the login" in dialog.test_result.text()
        assert "Check the user name and password" in dialog.test_result.text()
    finally:
        broker.stop()


def test_a_silent_broker_neither_blocks_the_ui_nor_outlives_the_dialog(qtbot, settings_path: Path,
                                                                       aloop: Loop) -> None:
    """A port that takes TCP and then says nothing: the loop keeps running, the answer comes in words, and
    closing the dialog mid-test leaves no task behind (the aloop fixture checks)."""
    dialog = ControlPlaneDialog(None, path=settings_path, connect_timeout=0.5)
    qtbot.addWidget(dialog)
    dialog.show()

    async def scenario() -> None:
        accepted: list[asyncio.StreamWriter] = []
        silent = await asyncio.start_server(lambda _r, w: accepted.append(w), "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        try:
            dialog.url.setText(f"mqtt://127.0.0.1:{port}")
            dialog.allow_plain.setChecked(True)
            async with measure_stalls() as watch:
                dialog.test_button.click()
                assert not dialog.test_button.isEnabled()  # one test at a time
                await dialog.wait_for_test()
            assert_no_stall(watch, "test connection against a silent broker")
            assert "never acknowledged the MQTT connect" in dialog.test_result.text()
            dialog.test_button.click()
            dialog.reject()  # closed while connecting
            await dialog.wait_for_test()
        finally:
            silent.close()
            for writer in accepted:
                writer.close()
            await silent.wait_closed()

    aloop.run(scenario())
    assert not dialog.isVisible()


def test_error_lines_are_never_squeezed(qtbot, settings_path: Path, tmp_path: Path) -> None:
    """Long errors appear after the window was sized: each gets the height its wrapped text needs."""
    dialog = _dialog(qtbot, settings_path)
    dialog.url.setText("mqtt://10.20.0.5:1883")
    dialog.technician.setText("Jane Doe")
    dialog.key.edit.setText(str(tmp_path / "a-rather-long-folder-name" / "jane-client-certificate.key"))
    qtbot.wait(50)
    shown = [label for label in dialog.errors.values() if label.isVisibleTo(dialog)]
    assert {label.objectName() for label in shown} >= {"cpError_url", "cpError_technician", "cpError_key"}
    for label in shown:
        assert label.height() >= label.heightForWidth(label.width()), label.objectName()
    assert "For example: jane-doe" in _error(dialog, "technician")  # a fix to copy, not only a rule
