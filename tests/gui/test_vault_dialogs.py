"""Vault dialogs over a real vault file: create, unlock (wrong, then right), entries without values, actions.

Most tests use a cheap Argon2id cost so they stay fast; one uses the real cost and checks the loop kept
running while the key was derived in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from siteline.core.vault import KdfCost, Vault
from siteline.ui.vault_dialogs import (
    AddEntryDialog,
    ChangePassphraseDialog,
    CreateVaultDialog,
    ExportDialog,
    ImportDialog,
    UnlockDialog,
    strength_hint,
)
from siteline.ui.vault_window import VaultWindow
from tests.gui.conftest import Loop, until

CHEAP = KdfCost(iterations=1, memory_kib=1024, lanes=1)
PASS = "correct horse battery"
SECRET = "s3cr3t-Value-4711"


def cheap_vault(path: Path) -> Vault:
    vault = Vault.create(path, PASS, cost=CHEAP)
    vault.put("device/tower-7/gw-01/password", SECRET, note="root on the gateway")
    vault.put("control-plane/password", "another-" + SECRET, kind="mqtt")
    return vault


async def finish(dialog) -> None:
    await until(lambda: dialog.task is not None and dialog.task.done(), what="vault work to finish")


def test_strength_hint_grows_with_length() -> None:
    assert strength_hint("abc")[1] == "bad"
    assert strength_hint("abcdefgh")[1] == "bad"
    assert strength_hint("abcdefgh12X!")[1] == "good"
    assert strength_hint("four words are plenty")[1] == "good"


def test_create_refuses_mismatch_then_creates(qtbot, aloop: Loop, tmp_path: Path) -> None:
    path = tmp_path / "vault.siteline"
    dialog = CreateVaultDialog(path, cost=CHEAP, keyring_available=False)
    qtbot.addWidget(dialog)
    assert dialog.use_keyring.isHidden()

    async def scenario() -> None:
        dialog.show()
        dialog.new_edit.setText("short")
        assert dialog.strength.property("tone") == "bad"
        dialog.ok_button.click()
        assert "at least 8" in dialog.error.text()
        dialog.new_edit.setText(PASS)
        dialog.repeat_edit.setText(PASS + "x")
        dialog.ok_button.click()
        assert "not the same" in dialog.error.text()
        assert dialog.task is None
        assert not path.exists()
        dialog.repeat_edit.setText(PASS)
        dialog.ok_button.click()
        await finish(dialog)

    aloop.run(scenario())
    assert dialog.result() == dialog.DialogCode.Accepted
    assert dialog.vault is not None
    assert not dialog.vault.locked
    assert path.exists()
    assert PASS.encode() not in path.read_bytes()


def test_unlock_wrong_stays_open_then_right(qtbot, aloop: Loop, tmp_path: Path) -> None:
    cheap_vault(tmp_path / "v").lock()
    vault = Vault.open(tmp_path / "v")
    dialog = UnlockDialog(vault)
    qtbot.addWidget(dialog)

    async def scenario() -> None:
        dialog.show()
        dialog.activateWindow()
        dialog.passphrase.setText("not the passphrase")
        dialog.ok_button.click()
        await finish(dialog)
        assert dialog.isVisible()
        assert "passphrase is not right" in dialog.error.text()
        assert dialog.passphrase.selectedText() == "not the passphrase"  # selected: typing replaces it
        assert vault.locked
        dialog.passphrase.setText(PASS)
        dialog.ok_button.click()
        await finish(dialog)

    aloop.run(scenario())
    assert not dialog.isVisible()
    assert not vault.locked
    assert vault.get("device/tower-7/gw-01/password") == SECRET


def test_real_kdf_cost_does_not_freeze_the_ui(qtbot, aloop: Loop, tmp_path: Path) -> None:
    path = tmp_path / "real.siteline"
    dialog = CreateVaultDialog(path, keyring_available=False)  # the default, real Argon2id cost
    qtbot.addWidget(dialog)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def scenario() -> None:
        dialog.show()
        dialog.new_edit.setText(PASS)
        dialog.repeat_edit.setText(PASS)
        tick = asyncio.ensure_future(ticker())
        try:
            started = time.monotonic()
            dialog.ok_button.click()
            assert dialog.busy.isVisible()
            assert not dialog.ok_button.isEnabled()
            await finish(dialog)
            took = time.monotonic() - started
        finally:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        assert took > 0.1, "the real cost should take a while; otherwise this test proves nothing"
        assert max(gaps) < 0.25, f"the loop stalled {max(gaps):.2f} s while the key was derived"

    aloop.run(scenario())
    assert dialog.vault is not None


def all_model_text(model) -> str:
    out = []
    for row in range(model.rowCount()):
        for col in range(model.columnCount()):
            index = model.index(row, col)
            for role in range(0, 64):
                value = model.data(index, role)
                if value is not None:
                    out.append(str(value))
    for col in range(model.columnCount()):
        out.append(str(model.headerData(col, Qt.Orientation.Horizontal)))
    return "\n".join(out)


def test_window_lists_entries_without_values(qtbot, qtmodeltester, tmp_path: Path) -> None:
    vault = cheap_vault(tmp_path / "v")
    window = VaultWindow(vault, cost=CHEAP)
    qtbot.addWidget(window)
    qtmodeltester.check(window.model)
    text = all_model_text(window.model)
    assert "device/tower-7/gw-01/password" in text
    assert "root on the gateway" in text
    assert SECRET not in text
    labels = " ".join(w.text() for w in (window.state, window.message))
    assert SECRET not in labels
    assert "2 entries" in window.state.text()

    window.lock_now()
    assert vault.locked
    assert window.model.rowCount() == 0
    assert window.buttons["unlock"].isEnabled()
    assert not window.buttons["add"].isEnabled()


def test_window_add_delete_and_idle_lock(qtbot, aloop: Loop, tmp_path: Path) -> None:
    vault = cheap_vault(tmp_path / "v")
    window = VaultWindow(vault, cost=CHEAP)
    qtbot.addWidget(window)

    async def scenario() -> None:
        window.show()
        window.buttons["add"].click()
        add = window.dialog
        assert isinstance(add, AddEntryDialog)
        add.name_edit.setText("device/depot/rtr-9/password")
        add.value_edit.setText("rtr-" + SECRET)
        assert add.value_edit.echoMode() == add.value_edit.EchoMode.Password
        add.ok_button.click()
        await finish(add)
        assert "device/depot/rtr-9/password" in all_model_text(window.model)

        row = next(r for r in range(window.model.rowCount()) if window.model.name(r) == "device/depot/rtr-9/password")
        window.table.selectRow(row)
        window.buttons["delete"].click()
        box = window.confirm_box
        assert isinstance(box, QMessageBox)
        box.button(QMessageBox.StandardButton.Cancel).click()
        assert "device/depot/rtr-9/password" in vault.names()
        window.buttons["delete"].click()
        window.confirm_box.button(QMessageBox.StandardButton.Yes).click()
        await until(lambda: "device/depot/rtr-9/password" not in vault.names(), what="entry deleted")
        assert "Deleted" in window.message.text()

    aloop.run(scenario())
    vault.idle_timeout = 0.0
    with qtbot.waitSignal(window.sig_lock_changed, timeout=1000) as locked:
        assert window.check_idle()
    assert locked.args == [True]
    assert "Locked" in window.state.text()


def test_change_passphrase_export_and_import(qtbot, aloop: Loop, tmp_path: Path) -> None:
    vault = cheap_vault(tmp_path / "v")
    export = tmp_path / "handover.siteline"

    async def scenario() -> None:
        change = ChangePassphraseDialog(vault)
        qtbot.addWidget(change)
        change.show()
        change.old_edit.setText("wrong passphrase")
        change.new_edit.setText("a brand new passphrase")
        change.repeat_edit.setText("a brand new passphrase")
        change.ok_button.click()
        await finish(change)
        assert change.isVisible()
        assert "not right" in change.error.text()
        change.old_edit.setText(PASS)
        change.ok_button.click()
        await finish(change)
        assert not change.isVisible()

        out = ExportDialog(vault, path=export)
        qtbot.addWidget(out)
        out.show()
        out.new_edit.setText("export pass 123")
        out.repeat_edit.setText("export pass 123")
        out.ok_button.click()
        await finish(out)
        assert out.result_value == 2

        other = Vault.create(tmp_path / "colleague", "colleague pass", cost=CHEAP)
        other.put("control-plane/password", "theirs")
        into = ImportDialog(other)
        qtbot.addWidget(into)
        into.show()
        into.file.edit.setText(str(export))
        into.passphrase.setText("export pass 123")
        into.ok_button.click()
        await finish(into)
        summary = into.result_value
        assert summary.added == ["device/tower-7/gw-01/password"]
        assert summary.skipped == ["control-plane/password"]
        assert other.get("device/tower-7/gw-01/password") == SECRET

    aloop.run(scenario())
    vault.lock()
    Vault.open(tmp_path / "v").unlock("a brand new passphrase")  # the new one opens it


def test_create_from_the_window(qtbot, aloop: Loop, tmp_path: Path) -> None:
    window = VaultWindow(Vault.open(tmp_path / "new.siteline"), cost=CHEAP)
    qtbot.addWidget(window)
    assert "No vault yet" in window.state.text()
    assert not window.buttons["create"].isHidden()
    assert window.buttons["unlock"].isHidden()

    async def scenario() -> None:
        window.show()
        with qtbot.waitSignal(window.sig_vault_changed, timeout=5000):
            window.buttons["create"].click()
            create = window.dialog
            assert isinstance(create, CreateVaultDialog)
            create.new_edit.setText(PASS)
            create.repeat_edit.setText(PASS)
            create.ok_button.click()
            await finish(create)

    aloop.run(scenario())
    assert not window.vault.locked
    assert "Unlocked" in window.state.text()
    assert window.buttons["add"].isEnabled()


def test_a_damaged_vault_is_said_in_the_dialog(qtbot, aloop: Loop, tmp_path: Path) -> None:
    path = tmp_path / "v"
    cheap_vault(path).lock()
    vault = Vault.open(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # a flipped bit in the encrypted body
    path.write_bytes(bytes(data))
    dialog = UnlockDialog(vault)
    qtbot.addWidget(dialog)

    async def scenario() -> None:
        dialog.show()
        dialog.passphrase.setText(PASS)
        dialog.ok_button.click()
        await finish(dialog)

    aloop.run(scenario())
    assert dialog.isVisible()
    assert vault.locked
    text = dialog.error.text()
    assert text.startswith("The vault file is damaged")
    assert "Restore it from your export" in text
    assert "Traceback" not in text


def test_window_export_and_import_are_announced_for_the_audit(qtbot, aloop: Loop, tmp_path: Path) -> None:
    vault = cheap_vault(tmp_path / "v")
    window = VaultWindow(vault, cost=CHEAP)
    qtbot.addWidget(window)
    said: list[tuple[str, object]] = []
    window.sig_trust_changed.connect(lambda action, detail: said.append((action, detail)))
    export = tmp_path / "out.siteline"

    async def scenario() -> None:
        window.show()
        window.buttons["export"].click()
        out = window.dialog
        assert isinstance(out, ExportDialog)
        out.file.edit.setText(str(export))
        out.new_edit.setText("export pass 123")
        out.repeat_edit.setText("export pass 123")
        out.ok_button.click()
        await finish(out)
        window.buttons["import"].click()
        into = window.dialog
        assert isinstance(into, ImportDialog)
        into.file.edit.setText(str(export))
        into.passphrase.setText("export pass 123")
        into.overwrite.setChecked(True)
        into.ok_button.click()
        await finish(into)

    aloop.run(scenario())
    assert said[0] == ("vault-exported", {"file": str(export), "entries": 2})
    action, detail = said[1]
    assert action == "vault-imported"
    assert detail["replaced"] == ["control-plane/password", "device/tower-7/gw-01/password"]
    assert SECRET not in repr(said)
    assert "2 replaced" in window.message.text()


def test_keyring_choice_that_fails_is_said_and_nothing_is_written(
    qtbot, aloop: Loop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # keyring's own switch for its backend: the failing one, so no test ever writes to a real desktop keyring.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    path = tmp_path / "vault.siteline"
    dialog = CreateVaultDialog(path, cost=CHEAP, keyring_available=True)
    qtbot.addWidget(dialog)
    assert not dialog.use_keyring.isHidden()

    async def scenario() -> None:
        dialog.show()
        dialog.use_keyring.setChecked(True)
        assert not dialog.new_edit.isEnabled()
        dialog.ok_button.click()
        await finish(dialog)

    aloop.run(scenario())
    assert dialog.vault is None
    assert dialog.isVisible()
    assert "keyring" in dialog.error.text()
    assert not path.exists()
    assert not dialog.new_edit.isEnabled()  # still the keyring choice after the busy state ended
