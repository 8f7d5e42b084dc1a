"""The first-run guide's four pages. Each reuses the dialog that already does its job (vault_dialogs.py,
control_plane_dialog.py, the add-device dialog), so the rules and messages are the same everywhere."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget, QWizardPage

from siteline.core.errors import SitelineError
from siteline.core.outbox.envelope import default_technician, make_technician_id, technician_problem
from siteline.core.outbox.settings import FILE_NAME as SETTINGS_FILE
from siteline.core.outbox.settings import save_settings
from siteline.core.vault import KdfCost, Vault
from siteline.ui.device_dialog import bad_colour
from siteline.ui.panels import plain_label

if TYPE_CHECKING:
    from siteline.ui.first_run import FirstRunWizard

LATER_WORDS = ("Later: the vault stays locked. Siteline still works, but it cannot remember device passwords or "
               "the control plane's login, so it asks for them each time. Tools ▸ Vault… sets it up later.")
OFFLINE_WORDS = ("Working offline: every result, note and audit record is kept in the outbox on this laptop and "
                 "goes to the control plane once you set one up (Tools ▸ Control plane…).")


def _words(text: str = "", name: str = "") -> QLabel:
    return plain_label(text, name or None, selectable=False)


def _button(text: str, name: str, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setMinimumHeight(52)  # a gloved finger on a touchscreen, or a cold touchpad
    button.setProperty("touch", True)  # the style sheet sizes it for gloves
    button.setToolTip(tip)
    return button


def _row(*buttons: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for button in buttons:
        row.addWidget(button)
    row.addStretch(1)
    return row


class VaultPage(QWizardPage):
    """Create (passphrase twice, or the OS keyring) or unlock the vault; Later leaves it locked."""

    def __init__(self, wizard: FirstRunWizard, *, cost: KdfCost | None, keyring_available: bool | None) -> None:
        super().__init__()
        self.guide = wizard
        self._cost = cost
        self._keyring = keyring_available
        self.dialog: Any = None
        self.setTitle("1 of 4 · The vault")
        self.setSubTitle("The vault keeps device passwords, keys and the control plane's login encrypted on "
                         "this laptop, under one passphrase (or the OS keyring).")
        self.state = _words(name="frVaultState")
        self.create_button = _button("Create the vault…", "frCreateVault")
        self.unlock_button = _button("Unlock the vault…", "frUnlockVault")
        self.later_button = _button("Later", "frVaultLater", "Go on without the vault; it stays locked")
        self.later_words = _words(LATER_WORDS, "frVaultLaterWords")
        self.create_button.clicked.connect(self._on_create_clicked)
        self.unlock_button.clicked.connect(self._on_unlock_clicked)
        self.later_button.clicked.connect(wizard.next)
        welcome = _words("Welcome. Four short steps get this laptop ready for the field; each one can be skipped "
                         "and done later from the menus.", "frWelcome")
        layout = QVBoxLayout(self)
        layout.addWidget(welcome)
        layout.addSpacing(8)
        layout.addWidget(self.state)
        layout.addLayout(_row(self.create_button, self.unlock_button, self.later_button))
        layout.addWidget(self.later_words)
        layout.addStretch(1)
        self.refresh()

    @property
    def vault(self) -> Vault:
        return self.guide.vault

    @property
    def working(self) -> bool:
        return self.dialog is not None and self.dialog.working

    def refresh(self) -> None:
        v = self.vault
        if not v.exists:
            self.state.setText(f"There is no vault yet. Create one; it is kept in {v.path}.")
        elif v.problem is not None:
            self.state.setText(f"The vault {v.path} cannot be used: {v.problem}. Tools ▸ Vault… shows more.")
        elif v.locked:
            self.state.setText(f"There is a vault ({v.path}). Unlock it to use its passwords and keys.")
        else:
            self.state.setText(f"The vault is unlocked ({v.path}). Press Next.")
        self.create_button.setVisible(not v.exists)
        self.unlock_button.setVisible(v.exists and v.locked and v.problem is None)
        self.later_button.setVisible(v.locked or not v.exists)
        self.later_words.setVisible(v.locked or not v.exists)

    def _on_create_clicked(self) -> None:
        from siteline.ui.vault_dialogs import CreateVaultDialog

        self.dialog = CreateVaultDialog(self.vault.path, self, cost=self._cost, keyring_available=self._keyring)
        self.dialog.sig_done.connect(self._on_created)
        self.dialog.open()

    def _on_created(self, vault: Vault) -> None:
        self.guide.vault = vault
        self.refresh()
        self.guide.sig_vault_created.emit(vault)

    def _on_unlock_clicked(self) -> None:
        from siteline.ui.vault_dialogs import UnlockDialog

        self.dialog = UnlockDialog(self.vault, self)  # a wrong passphrase is said there, and retried there
        self.dialog.sig_done.connect(lambda _r: self._on_unlocked())
        self.dialog.open()
        if self.vault.uses_keyring:  # nothing to type: the keyring holds the key
            self.dialog.task = asyncio.ensure_future(self.dialog._run(self.vault.unlock))

    def _on_unlocked(self) -> None:
        self.refresh()
        self.guide.sig_vault_unlocked.emit()


class TechnicianPage(QWizardPage):
    """The id on every audit record and outbox item; checked by the same rule as the settings file."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.guide = wizard
        self.setTitle("2 of 4 · Who you are")
        self.setSubTitle("Your technician id is recorded on every action and every result you send, so the "
                         "office knows who did what. Letters, digits, '.', '_' and '-'.")
        self.edit = QLineEdit()
        self.edit.setObjectName("frTechnician")
        self.edit.setPlaceholderText("for example jane.doe")
        self.problem = _words(name="frTechnicianProblem")
        self.problem.setStyleSheet(f"color: {bad_colour(self).name()};")
        self.suggest = _button("", "frTechnicianSuggest")
        self.suggest.clicked.connect(lambda: self.edit.setText(self.suggest.property("id")))
        self.edit.textChanged.connect(self._on_text_changed)
        layout = QVBoxLayout(self)
        layout.addWidget(_words("Technician id:"))
        layout.addWidget(self.edit)
        layout.addWidget(self.problem)
        layout.addLayout(_row(self.suggest))
        layout.addWidget(_words("It starts as this laptop's login name: change it if the login is shared "
                                "(\"root\", \"field\", …), so your work is not recorded under someone else's name."))
        layout.addStretch(1)
        from siteline.ui.first_run import saved_technician

        settings = wizard.settings
        self.edit.setText(settings.technician if settings else saved_technician(wizard.config) or default_technician())

    def technician(self) -> str:
        return self.edit.text().strip()

    def _on_text_changed(self, _text: str) -> None:
        text = self.technician()
        problem = technician_problem(text) if text else "type your technician id"
        self.problem.setText(f"{problem[0].upper()}{problem[1:]}." if problem else "")
        suggestion = make_technician_id(text) if text else ""
        self.suggest.setProperty("id", suggestion)
        self.suggest.setText(f"Use “{suggestion}”")
        self.suggest.setVisible(bool(problem and suggestion and suggestion != text))
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return technician_problem(self.technician()) is None

    def validatePage(self) -> bool:
        """Saved on Next: into the control-plane settings when there are some, else into the record."""
        tech, settings = self.technician(), self.guide.settings
        if settings is not None and settings.technician != tech:
            try:
                changed = dataclasses.replace(settings, technician=tech)
                save_settings(changed, self.guide.config / SETTINGS_FILE)
            except SitelineError as exc:
                self.problem.setText(f"Not saved: {exc}")
                return False
            self.guide.settings = changed
            self.guide.sig_settings_saved.emit(changed)
        self.guide.save_technician(tech)
        self.guide.sig_technician_changed.emit(tech)
        return True


class ControlPlanePage(QWizardPage):
    """Set up the control plane (the same dialog as Tools ▸ Control plane…) or work offline for now."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.guide = wizard
        self.dialog: Any = None
        self.offline = False
        self.setTitle("3 of 4 · The control plane")
        self.setSubTitle("The control plane is your company's MQTT broker: Siteline sends it every result, note and "
                         "audit record. No network here? Work offline; nothing is lost.")
        self.state = _words(name="frControlState")
        self.setup_button = _button("Set up the control plane…", "frControlSetup",
                                    "Broker URL, TLS files and login; Test connection tries it")
        self.offline_button = _button("Work offline for now", "frControlOffline", OFFLINE_WORDS)
        self.setup_button.clicked.connect(self._on_setup_clicked)
        self.offline_button.clicked.connect(self._on_offline_clicked)
        layout = QVBoxLayout(self)
        layout.addWidget(self.state)
        layout.addLayout(_row(self.setup_button, self.offline_button))
        layout.addStretch(1)

    def initializePage(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        settings = self.guide.settings
        if settings is not None and not self.offline:
            self.state.setText(f"✓ Results go to {settings.url} as {settings.technician}. "
                               "Change it with the button, or press Next.")
        elif self.offline:
            self.state.setText("✓ " + OFFLINE_WORDS)
        else:
            self.state.setText("Not set up yet. " + OFFLINE_WORDS.replace("Working offline:", "Until then,")
                               + " Next works offline too.")

    def _on_setup_clicked(self) -> None:
        from siteline.ui.control_plane_dialog import ControlPlaneDialog
        from siteline.ui.keep_controller import parked_settings

        vault = self.guide.vault
        self.dialog = ControlPlaneDialog(self.guide.settings or parked_settings(), vault=vault,
                                         path=self.guide.config / SETTINGS_FILE, technician=self.guide.technician,
                                         parent=self)
        self.dialog.sig_settings_saved.connect(self._on_saved)
        self.dialog.finished.connect(lambda _r: self._on_offline_clicked() if self.dialog.work_offline else None)
        self.dialog.open()

    def _on_saved(self, settings: Any) -> None:
        self.guide.settings, self.offline = settings, False
        if settings.technician != self.guide.technician:  # changed in the dialog: page 2 follows
            self.guide.technician_page.edit.setText(settings.technician)
        self.guide.sig_settings_saved.emit(settings)
        self.refresh()

    def _on_offline_clicked(self) -> None:
        had = self.guide.settings is not None
        self.offline = True
        self.guide.settings = None
        if had:
            self.guide.sig_offline_chosen.emit()
        self.refresh()
        if self.guide.currentPage() is self:
            self.guide.next()  # nothing more to do here


class DemoPage(QWizardPage):
    """Try the simulated demo site, or add the first real device."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.guide = wizard
        self.setTitle("4 of 4 · Try it")
        self.setSubTitle("The demo site is three simulated gateways (serial, SSH and MQTT) that answer like real "
                         "ones: look around, flash, roll back — nothing real is touched.")
        self.demo_button = _button("Start the demo site", "frStartDemo")
        self.add_button = _button("Add my first device…", "frAddDevice",
                                  "Finish the guide and add a device by its URL (serial, SSH or MQTT)")
        self.state = _words(name="frDemoState")
        self.demo_button.clicked.connect(self._on_demo_clicked)
        self.add_button.clicked.connect(wizard.finish_and_add_device)
        layout = QVBoxLayout(self)
        layout.addLayout(_row(self.demo_button, self.add_button))
        layout.addWidget(self.state)
        layout.addStretch(1)
        layout.addWidget(_words("Help ▸ First-run guide… opens this guide again; Help ▸ Glossary… explains the "
                                "words used on every panel."))

    def _on_demo_clicked(self) -> None:
        self.state.setText(self.guide.demo.start())
