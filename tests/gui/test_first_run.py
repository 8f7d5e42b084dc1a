"""The first-run guide on a real SITELINE_HOME: when it shows, the vault, the technician id, the control plane or
offline, the demo process, and what it remembers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from siteline import paths
from siteline.core.inventory import DeviceEntry
from siteline.core.outbox.settings import ControlPlaneSettings, load_settings, save_settings
from siteline.core.transports.base import Credentials
from siteline.core.vault import KdfCost, Vault
from siteline.core.vault import default_path as vault_path
from siteline.ui.first_run import (
    DemoLauncher,
    FirstRunRecord,
    load_record,
    needs_first_run,
    open_first_run,
    save_record,
)
from tests.gui.conftest import Loop, close_window, show, until

CHEAP = KdfCost(iterations=1, memory_kib=1024, lanes=1)
PASS = "correct horse battery"


def _given(kind: str) -> None:
    if kind == "vault":
        Vault.create(vault_path(), PASS, cost=CHEAP).lock()
    elif kind == "settings":
        # On loopback where nothing listens: the sync loop may try, and no traffic leaves this machine.
        save_settings(ControlPlaneSettings(url="mqtts://127.0.0.1:1", technician="tech-a"))
    elif kind == "record":
        save_record(FirstRunRecord(done=True, how="finished"))


@pytest.mark.parametrize("existing", ["", "vault", "settings", "record", "demo devices"])
def test_guide_shows_on_a_fresh_home_only(make_window, home: Path, aloop: Loop, existing: str) -> None:
    _given(existing)
    window = make_window()

    async def scenario() -> None:
        extra = [(DeviceEntry("gw", "serial:///dev/ttyDEMO0", "Demo"), Credentials())] \
            if existing == "demo devices" else None
        window.load_devices(extra)
        await show(window)
        window.start_keep()
        shown = window.first_run is not None and window.first_run.isVisible()
        assert shown == (existing == ""), existing
        if shown:  # "Not now": nothing remembered, so it comes back while nothing is set up
            window.first_run.reject()
            assert load_record() is None
            assert needs_first_run()
        await close_window(window)

    aloop.run(scenario())


def _guide(window):
    wizard = open_first_run(window, cost=CHEAP, keyring_available=False)
    assert wizard.isVisible()
    return wizard


async def _finish(dialog) -> None:
    await until(lambda: dialog.task is not None and dialog.task.done(), what="the vault work")


def test_create_vault_from_the_guide(make_window, home: Path, aloop: Loop) -> None:
    window = make_window()
    keep = window.keep_ui.keep

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        page = wizard.vault_page
        assert page.create_button.isVisible()
        assert not page.unlock_button.isVisible()
        assert "stays locked" in page.later_words.text()
        page.create_button.click()
        dialog = page.dialog
        dialog.new_edit.setText(PASS)
        dialog.repeat_edit.setText(PASS)
        dialog.ok_button.click()
        await _finish(dialog)
        assert "unlocked" in page.state.text()
        assert not page.create_button.isVisible()
        await close_window(window)

    aloop.run(scenario())
    assert vault_path().is_file()
    assert keep.vault.path == vault_path()  # the window's keep took the new vault
    again = Vault.open(vault_path())
    again.unlock(PASS)
    assert not again.locked


def test_wrong_passphrase_says_so_and_retry_unlocks(make_window, home: Path, aloop: Loop) -> None:
    Vault.create(vault_path(), PASS, cost=CHEAP).lock()
    window = make_window()
    keep = window.keep_ui.keep

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        page = _guide(window).vault_page
        assert page.unlock_button.isVisible()
        page.unlock_button.click()
        dialog = page.dialog
        dialog.passphrase.setText("not the passphrase")
        dialog.ok_button.click()
        await _finish(dialog)
        assert dialog.isVisible()
        assert "passphrase is not right" in dialog.error.text()
        dialog.passphrase.setText(PASS)
        dialog.ok_button.click()
        await _finish(dialog)
        assert not dialog.isVisible()
        assert "unlocked" in page.state.text()
        assert not keep.vault.locked
        await close_window(window)

    aloop.run(scenario())


def test_technician_saved_and_offline_leaves_no_settings(make_window, home: Path, aloop: Loop) -> None:
    window = make_window()
    keep = window.keep_ui.keep

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        wizard.next()  # the vault: Later
        page = wizard.technician_page
        page.edit.setText("Jane Doe")
        assert not page.isComplete()
        assert "must be" in page.problem.text()
        assert page.suggest.isVisible()
        page.suggest.click()
        assert page.edit.text() == "jane-doe"
        assert page.isComplete()
        wizard.next()
        assert load_record().technician == "jane-doe"
        assert keep.technician == "jane-doe"  # the audit trail names her from now on
        assert keep.audit.technician == "jane-doe"
        wizard.control_page.offline_button.click()
        assert "Working offline" in wizard.control_page.state.text()
        assert wizard.currentPage() is wizard.demo_page  # chosen: on to the last page
        wizard.button(QWizard.WizardButton.FinishButton).click()
        assert not wizard.isVisible()
        await close_window(window)

    aloop.run(scenario())
    record = json.loads((paths.config_dir() / "first-run.json").read_text())
    assert record["done"] is True
    assert record["how"] == "finished"
    assert record["technician"] == "jane-doe"
    assert not (paths.config_dir() / "control-plane.json").exists()
    assert not (paths.config_dir() / "control-plane.json.offline").exists()
    assert not needs_first_run()


def test_control_plane_set_up_from_the_guide(make_window, home: Path, aloop: Loop) -> None:
    window = make_window()
    keep = window.keep_ui.keep

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        wizard.next()
        wizard.technician_page.edit.setText("tech-b")
        wizard.next()
        wizard.control_page.setup_button.click()
        dialog = wizard.control_page.dialog
        assert dialog.technician.text() == "tech-b"  # what page 2 said
        dialog.url.setText("mqtt://127.0.0.1:1")
        dialog.allow_plain.setChecked(True)
        assert dialog.save_button.isEnabled(), dialog.message.text()
        dialog.save_button.click()
        assert "mqtt://127.0.0.1:1" in wizard.control_page.state.text()
        await until(lambda: keep.settings is not None, what="the keep took the settings")
        await close_window(window)

    aloop.run(scenario())
    saved = load_settings()
    assert saved is not None
    assert saved.technician == "tech-b"


def test_from_help_on_a_configured_laptop_the_technician_change_goes_to_the_settings(
    make_window, home: Path, aloop: Loop
) -> None:
    _given("settings")
    window = make_window()
    keep = window.keep_ui.keep

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        window.start_keep()
        assert window.first_run is None  # not at start: this laptop is set up
        window.act_first_run.trigger()
        wizard = window.first_run
        assert wizard is not None
        assert wizard.isVisible()
        wizard.next()
        assert wizard.technician_page.edit.text() == "tech-a"
        wizard.technician_page.edit.setText("tech-z")
        wizard.next()
        assert "mqtts://127.0.0.1:1" in wizard.control_page.state.text()
        await until(lambda: keep.technician == "tech-z", what="the keep took the new id")
        wizard.reject()
        await close_window(window)

    aloop.run(scenario())
    assert load_settings().technician == "tech-z"
    assert load_record().done is False  # "Not now" from Help: the record only holds the id


def test_dont_show_again_and_add_first_device(make_window, home: Path, aloop: Loop) -> None:
    window = make_window()

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        wizard.button(QWizard.WizardButton.CustomButton1).click()
        assert not wizard.isVisible()
        assert load_record().how == "dismissed"
        assert not needs_first_run()
        again = _guide(window)  # Help ▸ First-run guide… still opens it
        for _ in range(3):
            again.next()
        again.demo_page.add_button.click()
        assert not again.isVisible()
        assert window.device_dialog is not None
        assert window.device_dialog.isVisible()
        window.device_dialog.reject()
        await close_window(window)

    aloop.run(scenario())
    assert load_record().how == "finished"


def test_demo_process_starts_and_stops_with_the_window(make_window, home: Path, aloop: Loop, tmp_path: Path) -> None:
    window = make_window()
    # A stand-in for `siteline demo` (the real one is its own window with simulated devices): the guide's job is
    # to start it, say so, and stop it with this window.
    window.demo = DemoLauncher([sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "demo.log")
    assert DemoLauncher().command[1:] == ["-m", "siteline", "demo"]

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        for _ in range(3):
            wizard.next()
        wizard.demo_page.demo_button.click()
        assert "second Siteline window" in wizard.demo_page.state.text()
        proc = window.demo.proc
        assert proc is not None
        assert window.demo.running
        wizard.demo_page.demo_button.click()
        assert "already running" in wizard.demo_page.state.text()
        await close_window(window)
        assert proc.returncode is not None
        assert not window.demo.running

    aloop.run(scenario())


def test_guide_pages_keep_touch_sized_buttons(make_window, home: Path, aloop: Loop) -> None:
    window = make_window()

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        assert wizard.vault_page.create_button.height() >= 44
        assert wizard.button(QWizard.WizardButton.NextButton).height() >= 40
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        wizard.reject()
        await close_window(window)

    aloop.run(scenario())


@pytest.mark.slow
def test_the_real_demo_starts_as_its_own_window_and_stops_with_this_one(make_window, home: Path, aloop: Loop,
                                                                         tmp_path: Path) -> None:
    """`siteline demo` for real (offscreen): it comes up, and closing this window ends it and its devices."""
    import time

    log = tmp_path / "demo.log"
    window = make_window()
    window.demo = DemoLauncher(log_path=log)

    async def scenario() -> None:
        window.load_devices()
        await show(window)
        wizard = _guide(window)
        for _ in range(3):
            wizard.next()
        wizard.demo_page.demo_button.click()
        proc = window.demo.proc
        # The demo logs "window shown" once its devices answer and its own window is up.
        await until(lambda: "window shown" in log.read_text(errors="replace") or proc.poll() is not None,
                    timeout=40.0, what="the demo's window up")
        assert proc.poll() is None, log.read_text(errors="replace")
        started = time.monotonic()
        await close_window(window)
        assert proc.returncode == 0, log.read_text(errors="replace")
        assert time.monotonic() - started < 15

    aloop.run(scenario(), timeout=55.0)
