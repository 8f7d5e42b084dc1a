"""The provisioning wizard's first page: where the device is (a serial port picked from the list, or a target
URL checked as it is typed, as the device dialog does), which profile (its family and description shown), the
site and tags, and an unfinished job for that target offered for resuming. Next stays off, with the reason in
words, until every field can be used.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from siteline.core.provisioning.job import STEP_TITLES
from siteline.ui.device_dialog import check_target
from siteline.ui.panels import paint, plain_label
from siteline.ui.provision_service import ProfileChoice
from siteline.ui.provision_steps_view import step_at
from siteline.ui.update_steps import big

if TYPE_CHECKING:
    from siteline.ui.provision_wizard import ProvisionWizard

log = logging.getLogger(__name__)
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")
PortLister = Callable[[], list[Any]]  # -> SerialPort-like (device, stable, name)


def list_serial_ports() -> list[Any]:
    from siteline.core.transports.serial_ports import list_ports

    try:
        return list_ports()
    except (OSError, ImportError) as exc:
        log.warning("serial ports cannot be listed: %s", exc)
        return []


class TargetPage(QWizardPage):
    """Where the device is and what it becomes. Next stays off until every field can be used."""

    def __init__(self, wizard: ProvisionWizard, sites: list[str], target: str, site: str, ports: PortLister) -> None:
        super().__init__()
        self.setTitle("Which device, and what should it become?")
        self.setSubTitle("Connect the serial cable (or the device's local network port), pick its profile and site.")
        self._wizard = wizard
        self.port = QComboBox()
        self.port.setObjectName("provisionPort")
        self.port.addItem("Pick a serial port…", "")
        for port in ports():
            self.port.addItem(f"{port.stable} — {port.name}", f"serial://{port.stable}")
        self.port.activated.connect(self._on_port_activated)
        self.target = QLineEdit(target)
        self.target.setPlaceholderText("serial:///dev/ttyUSB0?baud=115200   or   ssh://root@192.168.1.1")
        self.target_note = plain_label("", "provisionTargetNote", selectable=False)
        self.profile = QComboBox()
        self.profile.setObjectName("provisionProfile")
        self.choices: list[ProfileChoice] = wizard.provisioner.profiles()
        for choice in self.choices:
            family = ", ".join(choice.profile.family) if choice.profile else "cannot be used"
            self.profile.addItem(f"{choice.name} — {family}", choice.name)
        self.profile_note = plain_label("", "provisionProfileNote", selectable=False)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("leave empty: the profile's factory default")
        self.site = QComboBox()
        self.site.setEditable(True)
        self.site.addItems(sorted(set(sites)))
        self.site.setCurrentText(site)
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("e.g. pump-house, north-wall")
        self.reprovision = QCheckBox("Provision again a device that was provisioned before (new passwords and key)")
        self.resume = QCheckBox()
        self.resume.setChecked(True)
        self.resume.hide()
        self.unlock = QPushButton("&Unlock the vault…")
        self.unlock.setObjectName("provisionUnlock")
        self.unlock.setMinimumHeight(40)
        self.unlock.setProperty("touch", True)  # the style sheet sizes it for gloves
        self.unlock.clicked.connect(self._on_unlock_clicked)
        self.unlock_dialog: QWidget | None = None
        self.message = plain_label("", "provisionMessage", selectable=False)
        form = QFormLayout()
        form.addRow("Serial &port:", self.port)
        form.addRow("&Target:", self.target)
        form.addRow("", self.target_note)
        form.addRow("P&rofile:", self.profile)
        form.addRow("", self.profile_note)
        form.addRow("&Factory password:", self.password)
        form.addRow("&Site:", self.site)
        form.addRow("T&ags:", self.tags)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.reprovision)
        layout.addWidget(self.resume)
        layout.addStretch(1)
        layout.addWidget(big(self.message, 1.05))
        layout.addWidget(self.unlock, 0, Qt.AlignmentFlag.AlignLeft)
        for edit in (self.target, self.tags):
            edit.textChanged.connect(self._on_input_changed)
        self.site.currentTextChanged.connect(self._on_input_changed)
        self.profile.currentIndexChanged.connect(self._on_input_changed)
        self._on_input_changed()

    def _on_port_activated(self, index: int) -> None:
        url = self.port.itemData(index)
        if url:
            self.target.setText(url)

    def choice(self) -> ProfileChoice | None:
        index = self.profile.currentIndex()
        return self.choices[index] if 0 <= index < len(self.choices) else None

    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.tags.text().split(",") if t.strip()]

    def problem(self) -> str | None:
        """Why Next is off, in words; None when it can go on."""
        text = self.target.text().strip()
        if not text:
            return "Pick the serial port the cable is in, or type the device's target URL."
        target, description = check_target(text)
        if target is None:
            return description
        if target.is_mqtt:
            return "MQTT cannot provision a device: connect a serial cable, or use SSH on the local network."
        choice = self.choice()
        if choice is None:
            return "No provisioning profile found: put one (a .toml file) in the profiles folder of Siteline's config."
        if choice.profile is None:
            return f"The profile {choice.name} cannot be used: {choice.error}"
        if not self.site.currentText().strip():
            return "Type the site the device is installed at."
        vault = self._wizard.provisioner.vault_problem()
        if vault is not None:
            return vault
        bad = [t for t in self.tag_list() if not TAG.fullmatch(t)]
        if bad:
            return f"The tag “{bad[0][:40]}” has characters a tag cannot have: use letters, digits, . _ : -"
        return None

    def _on_input_changed(self, *_args: object) -> None:
        text = self.target.text().strip()
        self.target_note.setText(f"✓ {check_target(text)[1]}" if text and check_target(text)[0] else "")
        choice = self.choice()
        if choice is not None and choice.profile is not None:
            profile = choice.profile
            self.profile_note.setText(f"For {', '.join(profile.family)}. {profile.description}".strip())
        else:
            self.profile_note.setText(choice.error if choice is not None else "")
        self._offer_resume(text)
        problem = self.problem()
        keep = self._wizard.provisioner.keep
        self.unlock.setVisible(keep is not None and keep.vault.exists and keep.vault.locked)
        self.message.setText(problem or "✓ Ready: Next reads the device and shows what would change.")
        paint(self.message, "bad" if problem and text else None)
        self.completeChanged.emit()

    def _offer_resume(self, text: str) -> None:
        job = self._wizard.provisioner.unfinished(text) if text else None
        self._wizard.found = job
        self.resume.setVisible(job is not None)
        if job is not None:
            title = STEP_TITLES.get(step_at(job), step_at(job))
            self.resume.setText(f"Resume the provisioning of {job.device or text} that stopped at “{title}” "
                                f"(site {job.site}, profile {job.profile_name})")

    def _on_unlock_clicked(self) -> None:
        from siteline.ui.vault_dialogs import UnlockDialog

        keep = self._wizard.provisioner.keep
        if keep is None:
            return
        dialog = UnlockDialog(keep.vault, self)
        dialog.sig_done.connect(lambda _result: self._on_input_changed())
        self.unlock_dialog = dialog
        dialog.open()
        if keep.vault.uses_keyring:  # nothing to type: the keyring holds the key
            dialog.task = asyncio.ensure_future(dialog._run(keep.vault.unlock))

    def isComplete(self) -> bool:
        return self.problem() is None
