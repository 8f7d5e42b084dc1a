"""SSH host keys in the window: an unknown key asks (fingerprint as OpenSSH prints it) and "Trust" pins
it and connects; a changed key refuses with a warning and offers no button that continues, only a
separate replacement that asks for the device's name to be typed. Against OpenSSH's real sshd."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QWidget

from siteline.core.errors import HostKeyError, HostKeyProblem
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, StatefulLink
from siteline.core.transports.known_hosts import KnownHosts, fingerprint, public_key_text
from siteline.ui.device_page import DevicePage
from siteline.ui.device_tree_model import STATE_COLUMN, DeviceTreeModel
from siteline.ui.host_key_dialog import HostKeyDialog, HostKeyPrompts, keygen_command
from siteline.ui.sessions import SessionManager, default_factory
from tests.gui.conftest import Loop, fast_backoff, until
from tests.peers.sshd import SshdHandle


@pytest.fixture
def parent(qtbot) -> QWidget:
    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


@pytest.fixture
def manager(qapp, aloop: Loop, tmp_path: Path) -> Iterator[SessionManager]:
    made = SessionManager(PluginHost(), default_factory(tmp_path / "known_hosts"), backoff=fast_backoff)
    yield made
    aloop.run(made.close_all())


def _sshd_entry(sshd: SshdHandle, name: str = "edge-1") -> tuple[DeviceEntry, Credentials]:
    target = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}"
    return DeviceEntry(name, target, "Tower 7"), Credentials(key_path=str(sshd.client_key), use_agent=False)


def _text(dialog: QWidget, name: str) -> str:
    label = dialog.findChild(QLabel, name)
    assert label is not None, name
    return label.text()


@pytest.mark.peer("sshd")
def test_unknown_key_asks_and_trust_connects(
    manager: SessionManager, parent: QWidget, aloop: Loop, sshd: SshdHandle, tmp_path: Path
) -> None:
    prompts = HostKeyPrompts(manager, parent)
    seen: list[tuple[str, HostKeyProblem]] = []
    manager.sig_host_key_problem.connect(lambda name, problem: seen.append((name, problem)))
    entry, creds = _sshd_entry(sshd)

    async def scenario() -> None:
        manager.add(entry, creds)
        await until(lambda: manager.state("edge-1").state is ConnState.DOWN and bool(seen), what="host key question")
        name, problem = seen[0]
        assert (name, problem.kind, problem.offered_fingerprint) == ("edge-1", "unknown", sshd.host_fingerprint)
        assert not (tmp_path / "known_hosts").exists()  # nothing trusted behind the person's back
        dialog = prompts.dialog
        assert dialog is not None
        assert dialog.isVisible()
        assert _text(dialog, "offeredFingerprint") == sshd.host_fingerprint
        assert dialog.trust_button is not None
        dialog.trust_button.click()
        await until(lambda: manager.state("edge-1").state is ConnState.UP, what="up after trust")
        assert not dialog.isVisible()
        assert manager.host_key_problem("edge-1") is None
        pinned = KnownHosts(tmp_path / "known_hosts").keys_for(sshd.host, sshd.port)
        assert [fingerprint(k) for k in pinned] == [sshd.host_fingerprint]

    aloop.run(scenario(), timeout=30)


@pytest.mark.peer("sshd")
def test_changed_key_refuses_until_replaced_with_typed_name(
    qtbot, manager: SessionManager, parent: QWidget, aloop: Loop, sshd: SshdHandle, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    old = asyncssh.generate_private_key("ssh-ed25519")
    store = KnownHosts(tmp_path / "known_hosts")
    store.pin(sshd.host, sshd.port, public_key_text(old))
    before = store.path.read_bytes()
    prompts = HostKeyPrompts(manager, parent)
    page = DevicePage(PluginHost())
    qtbot.addWidget(page)
    page.follow(manager)
    page.sig_host_key_review_requested.connect(lambda: prompts.review(page.device))
    entry, creds = _sshd_entry(sshd)
    model = DeviceTreeModel()
    model.follow(manager)
    model.set_devices([entry])
    manager.sig_state_changed.connect(lambda name: model.set_state(name, manager.state(name)))

    def row() -> str:
        return str(model.index_of("edge-1", STATE_COLUMN).data())

    async def scenario() -> None:
        manager.add(entry, creds)
        page.show_device(entry, manager.state("edge-1"), {})
        await until(lambda: prompts.dialog is not None, what="host key warning")
        dialog = prompts.dialog
        assert isinstance(dialog, HostKeyDialog)
        assert dialog.problem.kind == "changed"
        assert dialog.trust_button is None
        roles = {dialog.buttons.buttonRole(b) for b in dialog.buttons.buttons()}
        assert QDialogButtonBox.ButtonRole.AcceptRole not in roles  # no button that simply continues
        assert _text(dialog, "pinnedFingerprint") == fingerprint(old)
        assert _text(dialog, "offeredFingerprint") == sshd.host_fingerprint
        warning = " ".join(label.text() for label in dialog.findChildren(QLabel))
        assert "attack" in warning
        assert "CHANGED" in warning
        dialog.reject()  # Close: nothing proceeds
        assert store.path.read_bytes() == before
        assert manager.state("edge-1").state is ConnState.DOWN
        assert not page.host_key_bar.isHidden()
        assert "CHANGED" in page.host_key_text.text()
        assert row() == "⚠ HOST KEY CHANGED"

        page.host_key_button.click()  # "Review…" asks again
        dialog = prompts.dialog
        assert dialog is not None
        assert dialog.isVisible()
        assert dialog.replace_button is not None
        dialog.replace_button.click()
        confirm = prompts.confirm
        assert confirm is not None
        assert not confirm.confirm_button.isEnabled()
        confirm.typed.setText("edge-2")
        assert not confirm.confirm_button.isEnabled()
        confirm.accept()  # refused while the name is wrong
        assert store.path.read_bytes() == before
        confirm.typed.setText("edge-1")
        confirm.confirm_button.click()
        await until(lambda: manager.state("edge-1").state is ConnState.UP, what="up after replacing the key")
        assert [fingerprint(k) for k in store.keys_for(sshd.host, sshd.port)] == [sshd.host_fingerprint]
        assert page.host_key_bar.isHidden()
        assert row() == "up"

    aloop.run(scenario(), timeout=30)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("opened the replacement" in w for w in warnings), warnings
    assert any("replaced the pinned host key" in w and "typing the name" in w for w in warnings), warnings


# -- one prompt per device; a removed device takes its prompt with it ------------------------------


def _problem(host: str) -> HostKeyProblem:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return HostKeyProblem("unknown", host, 22, host, fingerprint(key), public_key_text(key), (), "/nonexistent")


class _UnknownKeyLink(StatefulLink):
    """Stands in for an SSH link whose handshake stops at an unknown key (the dialog logic, not SSH)."""

    problems: dict[str, HostKeyProblem] = {}  # noqa: RUF012 (set per test)

    def __init__(self, target: Target, _credentials: Credentials) -> None:
        super().__init__()
        self.target = target

    async def connect(self) -> None:
        problem = self.problems[self.target.host]
        raise HostKeyError(f"The SSH host key of {problem.display_name} is not known yet.", "", problem)

    async def run(self, command: str, timeout: float = 30.0):  # pragma: no cover - never connected
        raise AssertionError(command)

    async def close(self) -> None:
        self._state.set(ConnState.DOWN)


def test_one_prompt_per_device_and_removal_closes_it(qapp, aloop: Loop, parent: QWidget) -> None:
    _UnknownKeyLink.problems = {h: _problem(h) for h in ("10.0.0.1", "10.0.0.2")}
    manager = SessionManager(PluginHost(), _UnknownKeyLink, backoff=fast_backoff)
    prompts = HostKeyPrompts(manager, parent)

    def shown() -> list[str]:
        return [d.device for d in parent.findChildren(HostKeyDialog) if d.isVisible()]

    async def scenario() -> None:
        try:
            manager.add(DeviceEntry("gw-a", "ssh://root@10.0.0.1"))
            manager.add(DeviceEntry("gw-b", "ssh://root@10.0.0.2"))
            await until(lambda: manager.host_key_problem("gw-b") is not None, what="both asked")
            assert shown() == ["gw-a"]  # one at a time; gw-b waits its turn
            asked: list[str] = []
            manager.sig_host_key_problem.connect(lambda name, _p: asked.append(name))
            manager.reconnect("gw-a")  # the same question again: no second dialog
            await until(lambda: asked == ["gw-a"], what="asked again")
            prompts.review("gw-a")
            assert shown() == ["gw-a"]
            manager.remove("gw-a")
            assert shown() == ["gw-b"]  # gw-a's prompt went with it; the next one is asked
            manager.remove("gw-b")
            assert shown() == []
            assert prompts.dialog is None or not prompts.dialog.isVisible()
        finally:
            await manager.close_all()

    aloop.run(scenario(), timeout=20)


def test_keygen_hint_matches_the_key_type() -> None:
    rsa = HostKeyProblem("unknown", "h", 22, "h", "SHA256:x", "ssh-rsa AAAA", (), "")
    ecdsa = HostKeyProblem("unknown", "h", 22, "h", "SHA256:x", "ecdsa-sha2-nistp256 AAAA", (), "")
    assert keygen_command(rsa) == "ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub"
    assert keygen_command(ecdsa) == "ssh-keygen -lf /etc/ssh/ssh_host_ecdsa_key.pub"


# -- the whole window (once main_window.py creates HostKeyPrompts and follows the sessions) ---------


@pytest.mark.peer("sshd")
def test_window_asks_shows_and_trusts(make_window, aloop: Loop, sshd: SshdHandle, home: Path) -> None:
    window = make_window(factory=default_factory(home / "known_hosts"))
    if not hasattr(window, "host_keys"):
        pytest.skip("main_window.py does not create HostKeyPrompts yet")
    entry, creds = _sshd_entry(sshd)

    async def scenario() -> None:
        window.load_devices([(entry, creds)])
        await until(lambda: window.host_keys.dialog is not None, what="the host key question")
        assert window.host_keys.dialog.device == "edge-1"
        assert window.model.index_of("edge-1", STATE_COLUMN).data() == "host key to check"
        window.host_keys.dialog.reject()  # Cancel: the page keeps a way back to the question
        assert not window.page.host_key_bar.isHidden()
        window.page.host_key_button.click()
        dialog = window.host_keys.dialog
        assert dialog is not None
        assert dialog.isVisible()
        dialog.trust_button.click()
        await until(lambda: window.sessions.state("edge-1").state is ConnState.UP, what="up after trust")
        assert window.page.host_key_bar.isHidden()
        await window.sessions.close_all()

    aloop.run(scenario(), timeout=30)
