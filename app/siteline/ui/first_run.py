"""The first-run guide: when it shows, what it remembers, the demo it starts, and how it talks to the window.

It shows on a fresh laptop only: no ``first-run.json`` marked done, no vault, no control-plane settings
(not even ones parked by "Work offline") and no saved device list — someone upgrading is not bothered.
Help ▸ First-run guide… opens it at any time. The pages live in first_run_pages.py.

Closing it (Escape, the window's ×, Cancel) means "not now": nothing is marked, and it comes back at the
next start only if still nothing was set up (a vault or control plane made meanwhile stops it anyway).
"Don't show again" and Finish mark it done. Why: a technician in a hurry at a tower closes whatever pops
up; that must not lose the guide for good, and it cannot nag anyone who has started using Siteline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget, QWizard

from siteline import paths
from siteline.core.first_run import (  # noqa: F401  (the guide's record; re-exported for the UI and its tests)
    RECORD_FILE,
    FirstRunRecord,
    load_record,
    needs_first_run,
    record_path,
    save_record,
    saved_technician,
)
from siteline.core.outbox.envelope import technician_problem
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.vault import KdfCost, Vault

if TYPE_CHECKING:
    from siteline.ui.main_window import MainWindow

log = logging.getLogger(__name__)
# Gloves and a cold touchpad: every button and field on the guide is at least this tall.
TOUCH_STYLE = ("QPushButton { min-height: 44px; padding: 2px 16px; } "
               "QLineEdit { min-height: 38px; } QCheckBox { min-height: 32px; }")


# -- the demo site -----------------------------------------------------------------------------


class DemoLauncher:
    """`siteline demo` as its own window and process.

    Not in this window: the demo's devices get fresh ports and keys each run, and adding them here would
    leave dead entries in the technician's own device list and host keys. Its own process has its own
    SITELINE_HOME (the demo makes one), and it is stopped when this window closes.
    """

    def __init__(self, command: list[str] | None = None, log_path: Path | None = None) -> None:
        # `sys.executable -m siteline` also works in the frozen bundle (app/siteline/frozen.py).
        self.command = command or [sys.executable, "-m", "siteline", "demo"]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        # The demo's process group (its own session, so the group id is its pid), kept from start: the devices
        # it started stay in the group after the demo itself has exited, and stop() must still reach them.
        self.pgid: int | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> str:
        """Start it (once); what happened, in words for the page."""
        if self.running:
            return "The demo site is already running in its own window."
        self._reap()
        log_path = self.log_path or paths.state_dir() / "demo.log"
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as out:
                # Its own session: a Ctrl-C in this terminal reaches this window, which then stops the demo.
                self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                             start_new_session=True)
        except OSError as exc:
            return f"The demo site could not start: {exc.strerror or exc}. Its log is {log_path}."
        self.pgid = self.proc.pid if _HAVE_GROUPS else None
        log.info("demo site started (pid %s), log %s", self.proc.pid, log_path)
        return ("Starting the demo site: a second Siteline window opens in a few seconds with three simulated "
                "devices (serial, SSH, MQTT). It has its own device list, so yours stays as it is; "
                "it stops when you close it or this window.")

    def _reap(self) -> None:
        """Forget a demo that has exited; what it left in its group (a device still stopping) is told to stop,
        so a new demo does not start next to it."""
        if self.proc is not None and self.proc.poll() is not None:
            if self.pgid is not None:
                _signal_group(self.pgid, signal.SIGTERM)
            self.proc = self.pgid = None

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the demo's whole process group (the demo closes its window, its devices stop), then
        SIGKILL to what is left after ``timeout``; the group is reached also when the demo itself has exited."""
        proc, self.proc = self.proc, None
        pgid, self.pgid = self.pgid, None
        if proc is None:
            return
        if pgid is None:  # Windows: no process groups to signal, only the demo itself
            await self._stop_alone(proc, timeout)
            return
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, timeout)
        while time.monotonic() < deadline:  # its devices may take a moment longer than the demo itself
            if not _group_alive(pgid):
                break
            await asyncio.sleep(0.05)
        if proc.poll() is None or _group_alive(pgid):
            log.warning("the demo site did not stop within %.0f s; killing it", timeout)
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 5)

    @staticmethod
    async def _stop_alone(proc: subprocess.Popen[bytes], timeout: float) -> None:
        if proc.poll() is None:
            proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            log.warning("the demo site did not stop within %.0f s; killing it", timeout)
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)


# Process groups (os.killpg) are POSIX; on Windows the launcher stops the demo process alone.
_HAVE_GROUPS = hasattr(os, "killpg")


def _signal_group(pgid: int, signum: int) -> None:
    # PermissionError: the group's ids were reused by someone else's processes; nothing of ours is left.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """True while any process of the group is left (an exited, not yet reaped one counts too)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# -- the wizard --------------------------------------------------------------------------------


class FirstRunWizard(QWizard):
    """Vault, technician, control plane, demo. It changes files through the dialogs it reuses and tells the
    window through its signals, which ``open_first_run`` connects."""

    sig_vault_created = Signal(object)
    """A new vault was made (and is unlocked); the argument is the Vault."""
    sig_vault_unlocked = Signal()
    sig_technician_changed = Signal(str)
    sig_settings_saved = Signal(object)
    """Control-plane settings were saved; the argument is the ControlPlaneSettings."""
    sig_offline_chosen = Signal()
    sig_add_device_requested = Signal()

    def __init__(self, vault: Vault, settings: ControlPlaneSettings | None, *, config: Path | None = None,
                 demo: DemoLauncher | None = None, cost: KdfCost | None = None,
                 keyring_available: bool | None = None, parent: QWidget | None = None) -> None:
        from siteline.ui.first_run_pages import ControlPlanePage, DemoPage, TechnicianPage, VaultPage

        super().__init__(parent)
        self.vault = vault
        self.settings = settings
        self.config = config or paths.config_dir()
        self.demo = demo or DemoLauncher()
        self.setWindowTitle("Welcome to Siteline")
        self.setObjectName("firstRunWizard")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setStyleSheet(TOUCH_STYLE)
        self.setMinimumSize(760, 540)
        self.setOption(QWizard.WizardOption.HaveCustomButton1, True)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.CustomButton1, "Don't show again")
        # Apart on the left, so it is never pressed instead of Next with a gloved finger.
        buttons = QWizard.WizardButton
        self.setButtonLayout([buttons.CustomButton1, buttons.Stretch, buttons.BackButton, buttons.NextButton,
                              buttons.FinishButton, buttons.CancelButton])
        self.setButtonText(QWizard.WizardButton.CancelButton, "Not now")
        self.button(QWizard.WizardButton.CancelButton).setToolTip(
            "Close the guide; it comes back at the next start while nothing is set up (Help ▸ First-run guide…).")
        self.button(QWizard.WizardButton.CustomButton1).setToolTip(
            "Close the guide for good on this laptop; Help ▸ First-run guide… still opens it.")
        self.customButtonClicked.connect(self._on_custom_button_clicked)
        self.vault_page = VaultPage(self, cost=cost, keyring_available=keyring_available)
        self.technician_page = TechnicianPage(self)
        self.control_page = ControlPlanePage(self)
        self.demo_page = DemoPage(self)
        for page in (self.vault_page, self.technician_page, self.control_page, self.demo_page):
            self.addPage(page)

    @property
    def technician(self) -> str:
        return self.technician_page.technician()

    def mark(self, how: str) -> None:
        """Remember the guide is done, with the technician id; a failed write is logged, never raised."""
        try:
            save_record(FirstRunRecord(done=True, how=how, technician=self.technician or None, when=time.time()),
                        self.config)
        except OSError as exc:
            log.warning("could not write the first-run record: %s", exc)

    def save_technician(self, technician: str) -> None:
        """Kept in the record (done stays as it was) so it survives "Not now" and an offline start."""
        record = load_record(self.config) or FirstRunRecord()
        try:
            save_record(FirstRunRecord(done=record.done, how=record.how, technician=technician,
                                       when=record.when or time.time()), self.config)
        except OSError as exc:
            log.warning("could not write the first-run record: %s", exc)

    def accept(self) -> None:
        self.mark("finished")
        super().accept()

    def _on_custom_button_clicked(self, which: int) -> None:
        if which == QWizard.WizardButton.CustomButton1.value:
            self.mark("dismissed")
            super().reject()

    def finish_and_add_device(self) -> None:
        self.accept()
        self.sig_add_device_requested.emit()

    def reject(self) -> None:
        if self.vault_page.working:  # a key derivation runs in a thread: let it finish
            return
        super().reject()


# -- the window's side -------------------------------------------------------------------------


def open_first_run(window: MainWindow, *, cost: KdfCost | None = None,
                   keyring_available: bool | None = None) -> FirstRunWizard:
    """Build the guide over ``window`` and connect it to what the window keeps; opened window-modal."""
    keep_ui = window.keep_ui
    keep = keep_ui.keep if keep_ui is not None else None
    vault = keep.vault if keep is not None else Vault.open()
    settings = keep.settings if keep is not None else None
    wizard = FirstRunWizard(vault, settings, config=window.config_dir, demo=window.demo, cost=cost,
                            keyring_available=keyring_available, parent=window)
    wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if keep_ui is not None:
        wizard.sig_vault_created.connect(keep_ui._on_vault_changed)
        wizard.sig_vault_unlocked.connect(lambda: keep_ui._on_vault_lock_changed(False))
        wizard.sig_settings_saved.connect(keep_ui._on_settings_saved)
        wizard.sig_technician_changed.connect(lambda tech: apply_technician(window, tech))
        wizard.sig_offline_chosen.connect(lambda: _go_offline(window))
    wizard.sig_add_device_requested.connect(window.add_device)
    window.first_run = wizard
    wizard.open()
    return wizard


def apply_technician(window: MainWindow, technician: str | None) -> None:
    """Without control-plane settings the keep names the OS user; the guide's id is used instead."""
    keep = window.keep_ui.keep if window.keep_ui is not None else None
    if keep is None or not technician or keep.settings is not None or technician_problem(technician):
        return
    keep.technician = keep.audit.technician = technician


def _go_offline(window: MainWindow) -> None:
    keep_ui = window.keep_ui
    if keep_ui is not None and keep_ui.keep.settings is not None:
        keep_ui._spawn(keep_ui.keep.work_offline())
