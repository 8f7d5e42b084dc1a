"""The provisioning wizard: page 1 refuses what cannot be used, page 2 shows the dry run masked, page 3 follows
the real runner (core/provisioning/runner.py) step by step, with an injected step table and a link that
needs no device: the interrupted banner and Resume, a refusal, a job found unfinished, closing while running.
The real steps against a simulated device are tests/integration's; this is the wizard's side.

``SITELINE_PROVISION_SHOTS=/some/folder`` saves a screenshot of each page (scripts/screenshot.sh does it).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QPlainTextEdit, QWidget, QWizard

from siteline.core.errors import TransportError
from siteline.core.keep import Keep
from siteline.core.provisioning.api import MASK, StepContext, StepFailedError, StepOutcome, StepRefusedError
from siteline.core.provisioning.job import STEP_TITLES, STEPS, ProvisionJob
from siteline.core.provisioning.profile import CredentialPolicy, FactoryLogin, Profile
from siteline.core.provisioning.runner import run_provision
from siteline.core.provisioning.store import ProvisionStore
from siteline.core.transports.base import Credentials, Result
from siteline.core.vault import Vault
from siteline.core.vault.crypto import KdfCost
from siteline.ui.provision_service import ProfileChoice, Provisioner
from siteline.ui.provision_wizard import ProvisionWizard
from tests.gui.conftest import until

SHOTS = os.environ.get("SITELINE_PROVISION_SHOTS")
VAULT_PASS = "wizard test vault passphrase"
CHEAP = KdfCost(iterations=1, memory_kib=1024, lanes=1)
SECRET = "Zq7-generated-secret-pw"  # what a credentials step generates
TYPED = "typed-factory-pw-123"  # what the technician types as the factory password
SERIAL = "serial:///dev/ttyUSB7?baud=115200"
PROFILE = Profile(name="nwedge-gw-imx8mm", family=("nwedge-gw-imx8mm",), description="NW Edge gateway, i.MX8M Mini.",
                  credentials=CredentialPolicy(factory=(FactoryLogin("root", "root"),)), sha256="ab" * 32)


class FakeLink:
    """A ProvisionLink that answers every command with success: the steps below decide what happens."""

    kind = "serial"

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self.closed = False

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    async def run(self, command: str, timeout: float) -> Result:
        return Result(0, "")

    async def reconnect(self, timeout: float) -> None: ...

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return True

    def use_credentials(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def close(self) -> None:
        self.closed = True


@dataclass
class Script:
    """What the fake steps do: drop the link at a step (once), refuse at one, wait at one until released."""

    drop_at: str = ""
    refuse_at: str = ""
    hold_at: str = ""
    release: asyncio.Event | None = None
    calls: list[str] | None = None
    dry_hold: asyncio.Event | None = None  # the first dry run waits on it in "identify"
    fail_at: str = ""  # fails once there (a real run)


def fake_steps(script: Script) -> list[tuple[str, Any]]:
    def make(name: str) -> Any:
        async def step(ctx: StepContext) -> StepOutcome:
            (script.calls if script.calls is not None else []).append(name)
            if name == "identify":
                ctx.job.device, ctx.job.facts = "nw-0042", {"serial": "0042", "hostname": "imx8mm",
                                                            "os_release": {"PRETTY_NAME": "NW Edge OS 3.1"}}
            if name == "identify" and ctx.dry_run and script.dry_hold is not None:
                hold, script.dry_hold = script.dry_hold, None
                await hold.wait()
            if script.hold_at == name and script.release is not None and not ctx.dry_run:
                await script.release.wait()
            if script.fail_at == name and not ctx.dry_run:
                script.fail_at = ""
                raise StepFailedError("The device could not load the new rules: iptables-restore: line 3 failed.",
                                      "Check the profile's [firewall] allow-list, then try again.")
            if script.drop_at == name and not ctx.dry_run:
                script.drop_at = ""
                raise TransportError("the serial console stopped answering")
            if script.refuse_at == name and not ctx.job.data.get("identify", {}).get("reprovision"):
                raise StepRefusedError("This device is provisioned already: it was provisioned 2026-11-02 by job "
                                       "0191 (/etc/siteline/provisioned.json).",
                                       "Re-provisioning replaces its passwords and identity: confirm it only if "
                                       "that is what you mean.")
            if name == "credentials":
                # The step masks what it generates; the factory password the person typed it does not know of.
                await ctx.change(f"echo 'root:{SECRET}' | chpasswd", what="replace root's password", secrets=[SECRET])
                ctx.job.data["credentials"] = {"users": ["root"], "vault": {}, "proved": True}
                return StepOutcome(f"root's password replaced (factory {ctx.link.credentials.password} refused)")
            if name == "identity":
                ctx.job.data["identity"] = {"where": "device", "csr_item": "item-1", "csr_sha256": "cd" * 32}
            if name == "posture":
                checks = [{"key": "firewall_output", "status": "pass", "reason": ""},
                          {"key": "ssh_root", "status": "warn", "reason": "root may log in"}]
                ctx.job.data["posture"] = {"checks": checks, "required_failed": []}
            await ctx.change(f"true # {name}", what=f"the {name} change")
            return StepOutcome(f"{name} ok")

        return step

    return [(name, make(name)) for name in STEPS]


@dataclass
class Rig:
    wizard: ProvisionWizard
    store: ProvisionStore
    script: Script
    paused: list[str]  # "pause <target>" / "start again", in order


@pytest.fixture
def keep(aloop, tmp_path: Path) -> Iterator[Keep]:
    """A real keep (outbox, audit trail, vault) with a vault made for the test, unlocked."""
    Vault.create(tmp_path / "vault", VAULT_PASS, cost=CHEAP)
    opened = Keep.open(tmp_path / "outbox.db", tmp_path / "vault", tmp_path / "control-plane.toml")
    opened.vault.unlock(VAULT_PASS)
    yield opened
    aloop.run(opened.close())


@pytest.fixture
def rig(qtbot, aloop, tmp_path: Path, keep: Keep, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import siteline.core.provisioning.device_steps as device_steps

    async def same_box(_ctx: Any) -> None:  # the fake link answers nothing: there is no serial number to compare
        return None

    monkeypatch.setattr(device_steps, "check_same_device", same_box)
    made: list[ProvisionWizard] = []

    def build(script: Script | None = None, profiles: list[ProfileChoice] | None = None, target: str = SERIAL,
              site: str = "north-7", link_factory: Any = None) -> Rig:
        script = script or Script()
        script.calls = []
        store = ProvisionStore(tmp_path / "jobs")
        paused: list[str] = []

        async def pause(target: str) -> Any:
            paused.append(f"pause {target}")
            return lambda: paused.append("start again")

        provisioner = Provisioner(runner=functools.partial(run_provision, steps=fake_steps(script)), store=store,
                                  keep=keep, pause=pause,
                                  link_factory=link_factory or (lambda target, creds: FakeLink(creds)),
                                  profiles=lambda: [ProfileChoice(PROFILE.name, Path("x.toml"), PROFILE)]
                                  if profiles is None else profiles)
        ports = [type("Port", (), {"stable": "/dev/serial/by-id/usb-FTDI_FT232R-if00", "name": "FTDI FT232R"})()]
        wizard = ProvisionWizard(provisioner, sites=["north-7", "south-2"], target=target, site=site,
                                 ports=lambda: ports)
        qtbot.addWidget(wizard)
        wizard.resize(900, 760)
        wizard.show()
        made.append(wizard)
        return Rig(wizard, store, script, paused)

    yield build
    for wizard in made:
        aloop.run(wizard.close_work())


def shot(widget: QWidget, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        QApplication.processEvents()
        widget.grab().save(str(Path(SHOTS) / f"provision-{name}.png"))


def all_texts(root: QWidget) -> str:
    texts = [w.text() for w in root.findChildren(QLabel)]
    texts += [w.text() for w in root.findChildren(QLineEdit) if w.echoMode() == QLineEdit.EchoMode.Normal]
    texts += [w.toPlainText() for w in root.findChildren(QPlainTextEdit)]
    return "\n".join(texts)


def next_enabled(wizard: ProvisionWizard) -> bool:
    return wizard.button(QWizard.WizardButton.NextButton).isEnabled()


def to_review(aloop, wizard: ProvisionWizard) -> None:
    wizard.next()
    aloop.run(until(lambda: wizard.dry_task is None or wizard.dry_task.done(), what="dry run"))


def to_end(aloop, wizard: ProvisionWizard) -> None:
    to_review(aloop, wizard)
    wizard.next()  # the commit button: Provision
    aloop.run(until(lambda: wizard.job is not None and not wizard.running, what="the run to stop"))


def test_first_page_says_what_is_missing_and_keeps_next_off(rig) -> None:
    r = rig(target="", site="")
    page, wizard = r.wizard.target_page, r.wizard
    assert not next_enabled(wizard)
    assert "serial port" in page.message.text()
    page.target.setText("ssh://")
    assert not next_enabled(wizard)
    assert page.message.text()
    page.target.setText("mqtt://broker:1883/edge/site-a/gw1")
    assert not next_enabled(wizard)
    assert "MQTT cannot provision" in page.message.text()
    page.port.setCurrentIndex(1)
    page.port.activated.emit(1)  # what a click on the port does
    assert page.target.text() == "serial:///dev/serial/by-id/usb-FTDI_FT232R-if00"
    assert "Type the site" in page.message.text()
    assert not next_enabled(wizard)
    page.site.setCurrentText("north-7")
    page.tags.setText("pump-house, bad tag!")
    assert "bad tag!" in page.message.text()
    assert not next_enabled(wizard)
    page.tags.setText("pump-house, north-wall")
    assert next_enabled(wizard)
    assert page.message.text().startswith("✓")
    assert "NW Edge gateway" in page.profile_note.text()
    assert "nwedge-gw-imx8mm" in page.profile_note.text()
    assert page.password.echoMode() == QLineEdit.EchoMode.Password
    shot(wizard, "1-target")


def test_a_missing_or_broken_profile_is_said_and_blocks_next(rig) -> None:
    r = rig(profiles=[])
    assert "No provisioning profile found" in r.wizard.target_page.message.text()
    assert not next_enabled(r.wizard)
    r = rig(profiles=[ProfileChoice("broken", Path("broken.toml"), error="broken.toml: [mqtt] port: 0 is not 1-65535")])
    assert "cannot be used" in r.wizard.target_page.message.text()
    assert "port" in r.wizard.target_page.message.text()
    assert not next_enabled(r.wizard)


def test_a_locked_vault_is_said_and_unlocked_from_the_page(rig, aloop, keep: Keep) -> None:
    keep.vault.lock()
    r = rig()
    page = r.wizard.target_page
    page.tags.setText("x")  # any edit re-checks
    assert "vault is locked" in page.message.text()
    assert not next_enabled(r.wizard)
    assert page.unlock.isVisible()
    page.unlock.click()
    dialog = page.unlock_dialog
    dialog.passphrase.setText(VAULT_PASS)
    dialog.ok_button.click()
    aloop.run(until(lambda: next_enabled(r.wizard), what="Next after unlocking"))
    assert not keep.vault.locked
    assert not page.unlock.isVisible()


def test_review_lists_every_planned_command_with_secrets_masked(rig, aloop) -> None:
    r = rig()
    r.wizard.target_page.password.setText(TYPED)
    to_review(aloop, r.wizard)
    page = r.wizard.review_page
    assert page.ready, page.status.text()
    plan = page.plan.toPlainText()
    assert f"echo 'root:{MASK}' | chpasswd" in plan
    assert SECRET not in plan
    assert all(STEP_TITLES[s] in plan for s in STEPS)
    assert "nw-0042" in page.status.text()
    assert "NW Edge OS 3.1" in page.status.text()
    assert r.wizard.button(QWizard.WizardButton.CommitButton).text().replace("&", "") == "Provision"
    assert r.store.jobs() == []  # a dry run saves nothing
    shot(r.wizard, "2-review")


def test_back_during_the_dry_run_stops_it_and_next_reads_again(rig, aloop) -> None:
    r = rig(Script(dry_hold=asyncio.Event()))
    r.wizard.next()
    first = r.wizard.dry_task
    assert first is not None
    assert "Reading the device" in r.wizard.review_page.status.text()
    aloop.run(until(lambda: r.script.dry_hold is None, what="the dry run to wait in identify"))
    r.wizard.back()
    aloop.run(until(first.done, what="the first dry run to stop"))
    assert first.cancelled()
    r.wizard.target_page.tags.setText("second-try")
    to_review(aloop, r.wizard)
    assert r.wizard.review_page.ready
    assert r.wizard.request is not None
    assert r.wizard.request.tags == ["second-try"]


def test_an_unknown_ssh_host_key_shows_its_fingerprint_and_can_be_trusted(rig, aloop, tmp_path: Path) -> None:
    import asyncssh

    from siteline.core.errors import HostKeyError, HostKeyProblem
    from siteline.core.transports.known_hosts import KnownHosts

    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known = tmp_path / "known_hosts"
    problem = HostKeyProblem(kind="unknown", host="192.168.1.1", port=22, display_name="192.168.1.1",
                             offered_fingerprint="SHA256:testfingerprint", offered_key=key, pinned_fingerprints=(),
                             known_hosts_path=str(known))

    def link_factory(target: Any, creds: Credentials) -> FakeLink:
        if not KnownHosts(known).keys_for("192.168.1.1", 22):
            raise HostKeyError("The host key of 192.168.1.1 is not known.", problem=problem)
        return FakeLink(creds)

    r = rig(target="ssh://root@192.168.1.1", link_factory=link_factory)
    to_review(aloop, r.wizard)
    page = r.wizard.review_page
    assert not page.ready
    assert "SHA256:testfingerprint" in page.status.text()
    assert page.trust_button.isVisible()
    shot(r.wizard, "9-host-key")
    page.trust_button.click()
    aloop.run(until(lambda: page.ready, what="the dry run after trusting the key"))
    assert KnownHosts(known).keys_for("192.168.1.1", 22)
    assert not page.trust_button.isVisible()


def test_run_shows_each_step_then_the_summary(rig, aloop) -> None:
    release = asyncio.Event()
    r = rig(Script(hold_at="mqtt", release=release))
    r.wizard.target_page.tags.setText("pump-house")
    to_review(aloop, r.wizard)
    r.wizard.next()
    view = r.wizard.run_page.view
    aloop.run(until(lambda: view.rows["mqtt"].word.text() == "running", what="mqtt running"))
    assert view.rows["identify"].word.text() == "done"
    assert view.rows["identify"].mark.text() == "✔"
    assert view.rows["firewall"].word.text() == "pending"
    assert "Provisioning" in view.banner.text()
    assert not r.wizard.button(QWizard.WizardButton.FinishButton).isEnabled()
    shot(r.wizard, "3-running")
    release.set()
    aloop.run(until(lambda: not r.wizard.running and r.wizard.job.status == "provisioned", what="provisioned"))
    assert all(view.rows[s].word.text() == "done" for s in STEPS)
    assert view.banner.text().startswith("✔ Provisioned")
    summary = view.summary.text()
    assert "nw-0042" in summary
    assert "north-7" in summary
    assert "Certificate: pending" in summary
    assert "1 of 2 checks pass" in summary
    assert "root may log in" in summary
    assert "pump-house" in summary
    assert "Hostname: imx8mm" in summary
    assert r.wizard.button(QWizard.WizardButton.FinishButton).isEnabled()
    assert r.store.load(r.wizard.job.id).status == "provisioned"
    assert r.paused == [f"pause {SERIAL}", "start again"] * 2  # the dry run, then the run
    shot(r.wizard, "4-done")


def test_a_dropped_link_shows_the_banner_and_resume_finishes_the_same_job(rig, aloop) -> None:
    r = rig(Script(drop_at="identity"))
    to_end(aloop, r.wizard)
    view, job = r.wizard.run_page.view, r.wizard.job
    assert job.status == "interrupted"
    assert view.banner.text() == (f"⚠ The link dropped at “{STEP_TITLES['identity']}”. Reconnect the cable and "
                                  "press Resume: nothing is lost.")
    assert view.hint.text().startswith("What happened:")
    assert "stopped answering" in view.hint.text()
    assert r.wizard.run_page.resume_button.isVisible()
    assert view.rows["credentials"].word.text() == "done"
    assert view.rows["identity"].word.text() == "interrupted"
    assert view.rows["mqtt"].word.text() == "pending"
    assert r.store.load(job.id).status == "interrupted"
    shot(r.wizard, "5-interrupted")
    before = list(r.script.calls or [])
    r.wizard.run_page.resume_button.click()
    aloop.run(until(lambda: not r.wizard.running and r.wizard.job.status == "provisioned", what="resumed to the end"))
    assert r.wizard.job.id == job.id
    assert not r.wizard.run_page.resume_button.isVisible()
    assert (r.script.calls or [])[len(before):] == list(STEPS[STEPS.index("identity"):])  # done steps not re-run
    assert "Resuming" in view.log_pane.toPlainText()


def test_a_failed_step_says_what_to_fix_and_try_again_goes_on_from_it(rig, aloop) -> None:
    r = rig(Script(fail_at="firewall"))
    to_end(aloop, r.wizard)
    view, job = r.wizard.run_page.view, r.wizard.job
    assert job.status == "failed"
    assert view.banner.text().startswith(f"✖ Failed at “{STEP_TITLES['firewall']}”")
    assert "iptables-restore" in view.hint.text()
    assert view.rows["firewall"].word.text() == "failed"
    assert view.rows["firewall"].mark.text() == "✖"
    button = r.wizard.run_page.resume_button
    assert button.isVisible()
    assert "Try again" in button.text()
    before = len(r.script.calls or [])
    button.click()
    aloop.run(until(lambda: not r.wizard.running and r.wizard.job.status == "provisioned", what="provisioned"))
    assert (r.script.calls or [])[before:] == ["firewall", "posture", "record"]


def test_a_refusal_says_why_and_what_to_do(rig, aloop) -> None:
    r = rig(Script(refuse_at="identify"))
    to_review(aloop, r.wizard)
    page = r.wizard.review_page
    assert not page.ready
    assert "provisioned already" in page.status.text()
    assert "Go Back" in page.status.text()
    assert page.retry_button.isVisible()
    assert not page.plan.isVisible()
    assert not r.wizard.button(QWizard.WizardButton.CommitButton).isEnabled()
    shot(r.wizard, "6-refused")
    assert page.again.isVisible()
    page.again.setChecked(True)  # the confirmation: the dry run reads again, now re-provisioning
    aloop.run(until(lambda: page.ready, what="the dry run with re-provisioning"))
    assert r.wizard.target_page.reprovision.isChecked()
    assert r.wizard.request is not None
    assert r.wizard.request.reprovision
    assert not page.again.isVisible()


def test_no_secret_reaches_any_widget(rig, aloop) -> None:
    r = rig()
    r.wizard.target_page.password.setText(TYPED)
    to_end(aloop, r.wizard)
    assert r.wizard.job.status == "provisioned"
    text = all_texts(r.wizard)
    assert SECRET not in text
    assert TYPED not in text
    assert f"factory {MASK} refused" in text  # the step's detail, with the typed password masked by the wizard
    saved = r.store.path(r.wizard.job.id).read_text()
    assert SECRET not in saved


def test_an_unfinished_job_for_the_target_is_offered_and_resumed(rig, aloop, tmp_path: Path) -> None:
    store = ProvisionStore(tmp_path / "jobs")
    old = ProvisionJob.new(target=SERIAL, site="north-7", profile_name=PROFILE.name, profile_sha256=PROFILE.sha256)
    old.device, old.status = "nw-0042", "interrupted"
    for name in ("identify", "names", "credentials"):
        old.step(name).state = "done"
    store.save(old)
    r = rig()
    page = r.wizard.target_page
    assert page.resume.isVisible()
    assert page.resume.isChecked()
    assert "nw-0042" in page.resume.text()
    assert STEP_TITLES["identity"] in page.resume.text()
    to_end(aloop, r.wizard)
    assert r.wizard.job.id == old.id
    assert r.wizard.job.status == "provisioned"
    assert "identify" not in (r.script.calls or [])[-5:]
    assert (r.script.calls or [])[-1] == "record"
    page.target.setText("serial:///dev/ttyUSB9")
    assert not page.resume.isVisible()


def test_closing_while_running_asks_and_keeps_the_job_resumable(rig, aloop) -> None:
    release = asyncio.Event()
    r = rig(Script(hold_at="firewall", release=release))
    to_review(aloop, r.wizard)
    r.wizard.next()
    aloop.run(until(lambda: r.wizard.run_page.view.rows["firewall"].word.text() == "running", what="firewall"))
    r.wizard.reject()  # Cancel / Esc / the window's close button
    box = r.wizard.confirm_box
    assert box is not None
    assert box.isVisible()
    assert r.wizard.isVisible()
    assert r.wizard.running
    assert "resumes" in box.informativeText()
    box.reject()  # "Cancel": keep going
    assert r.wizard.running
    assert r.wizard.isVisible()
    r.wizard.reject()
    r.wizard.confirm_box.accept()
    aloop.run(until(lambda: not r.wizard.running, what="the run to stop"))
    assert not r.wizard.isVisible()
    job = r.store.jobs()[-1]
    assert job.status == "interrupted"
    assert job.next_step() == "firewall"


def test_the_main_window_opens_the_wizard_for_the_selected_device(make_window, aloop, qtbot) -> None:
    from PySide6.QtCore import Qt

    from siteline.core.inventory import DeviceEntry
    from tests.gui.conftest import close_window, show

    async def scenario() -> None:
        window = make_window()
        window.load_devices([(DeviceEntry(name="gw-01", target="ssh://root@127.0.0.1:2222", site="north-7"),
                              Credentials(username="root", password="x"))])
        await show(window)
        window._select("gw-01")
        qtbot.keyClick(window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        wizard = window.provision_wizard
        assert wizard is not None
        assert wizard.isVisible()
        assert wizard.target_page.target.text() == "ssh://root@127.0.0.1:2222"
        assert wizard.target_page.site.currentText() == "north-7"
        assert "nwedge-gw-imx8mm" in [c.name for c in wizard.target_page.choices]  # the shipped profiles
        assert all(c.profile is not None for c in wizard.target_page.choices), wizard.target_page.choices
        wizard.reject()
        assert not wizard.isVisible()
        await close_window(window)

    aloop.run(scenario())


def test_a_device_provisioned_from_a_bare_target_joins_the_device_list(make_window, aloop) -> None:
    from siteline.core.provisioning.job import ProvisionJob
    from tests.gui.conftest import close_window, show

    async def scenario() -> None:
        window = make_window()
        await show(window)
        window.provision_device()
        wizard = window.provision_wizard
        job = ProvisionJob.new(target="serial:///dev/ttyS-not-there", site="north-7", profile_name="p",
                               profile_sha256="0", tags=["tower"])
        job.device, job.status, job.data["credentials"] = "nw-4f2a91", "provisioned", {"users": ["root"]}
        wizard.sig_provisioned.emit(job)
        entry = window.inventory.get("nw-4f2a91")
        assert entry is not None
        assert (entry.target, entry.site, entry.username, entry.tags) == (job.target, "north-7", "root", ("tower",))
        wizard.sig_provisioned.emit(job)  # twice (a resumed run): still one entry
        assert [d.name for d in window.inventory.devices].count("nw-4f2a91") == 1
        wizard.reject()
        await close_window(window)

    aloop.run(scenario())


@pytest.mark.timeout(240)  # 15-45 s alone; the serial proof logins of the credentials step dominate
def test_a_simulated_device_is_provisioned_through_the_wizard(qtbot, aloop, home, keep: Keep, tmp_path: Path) -> None:
    """Every real step over the simulator's serial console, from the wizard: the dry run changes nothing; then
    the factory password is gone, the vault's works, and no generated password reaches a widget."""
    from siteline.core.keep import device_secret_name
    from siteline.core.transports.factory import open_transport
    from siteline.simulator import rootfs
    from siteline.ui.provision_service import find_profiles
    from tests.peers.sim import make_state, running_device

    state = make_state(tmp_path / "dev", password="root")
    tty = tmp_path / "ttyGW"

    async def scenario() -> ProvisionJob:
        async with running_device(state, ssh=False, serial_link=tty):
            provisioner = Provisioner(keep=keep, store=ProvisionStore(tmp_path / "jobs"),
                                      transports=lambda t, c: open_transport(t, c, tmp_path / "known_hosts"))
            wizard = ProvisionWizard(provisioner, sites=[], target=f"serial://{tty}?baud=115200", site="north-7",
                                     ports=list)
            qtbot.addWidget(wizard)
            wizard.show()
            page = wizard.target_page
            page.profile.setCurrentIndex([c.name for c in page.choices].index("nwedge-gw-imx8mm"))
            page.tags.setText("pump-house")
            wizard.next()
            review = wizard.review_page
            await until(lambda: review.ready or "✖" in review.status.text(), 30, "the dry run")
            assert review.ready, review.status.text()
            assert STEP_TITLES["credentials"] in review.plan.toPlainText()
            assert MASK in review.plan.toPlainText()  # the generated password, masked
            shot(wizard, "7-review-simulator")
            assert state.check_password("root", "root")  # the dry run changed nothing
            assert not rootfs.device_file(state.root, "/etc/siteline/site.json").exists()
            assert ProvisionStore(tmp_path / "jobs").jobs() == []
            wizard.next()
            await until(lambda: wizard.job is not None and not wizard.running, 180, "the provisioning")
            job = wizard.job
            assert job is not None
            shot(wizard, "8-done-simulator")
            view = wizard.run_page.view
            assert job.status in ("provisioned", "incomplete"), (job.status, job.message)
            assert view.summary.isVisible()
            assert job.device in view.summary.text()
            password = keep.secret(device_secret_name("north-7", job.device, "password"))
            assert password
            assert password not in all_texts(wizard)
            await wizard.close_work()
            wizard.close()
            return job

    aloop.run(scenario(), timeout=220)
    assert [c.name for c in find_profiles() if c.profile is None] == []  # every shipped profile loads
    password = keep.secret(device_secret_name("north-7", ProvisionStore(tmp_path / "jobs").jobs()[-1].device,
                                              "password"))
    assert rootfs.device_file(state.root, "/etc/siteline/provisioned.json").exists()  # the marker, written last
    assert not state.check_password("root", "root")
    assert password is not None
    assert state.check_password("root", password)


def test_a_session_on_the_same_serial_port_stops_for_the_run_and_starts_again(aloop) -> None:
    from siteline.core.inventory import DeviceEntry
    from siteline.ui.provision_service import same_port, session_pauser

    class Session:
        def __init__(self) -> None:
            self.events: list[str] = []

        async def stop(self) -> None:
            self.events.append("stop")

        def start(self) -> None:
            self.events.append("start")

    devices = [DeviceEntry(name="gw-01", target="serial:///dev/ttyUSB7?baud=57600", site="s"),
               DeviceEntry(name="gw-02", target="ssh://root@10.0.0.5", site="s")]
    sessions = {"gw-01": Session(), "gw-02": Session()}
    inventory = type("Inventory", (), {"devices": devices})()
    pause = session_pauser(inventory, type("Sessions", (), {"get": staticmethod(sessions.get)})())
    assert same_port(SERIAL.replace("ttyUSB7?baud=115200", "ttyUSB7"), devices[0].target)
    assert not same_port("ssh://root@10.0.0.5", devices[1].target)  # SSH takes several connections
    start_again = aloop.run(pause("serial:///dev/ttyUSB7?baud=115200"))
    assert sessions["gw-01"].events == ["stop"]
    assert sessions["gw-02"].events == []
    start_again()
    assert sessions["gw-01"].events == ["stop", "start"]
