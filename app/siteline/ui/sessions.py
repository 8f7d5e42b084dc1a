"""The Qt side of device sessions: one core DeviceSession per device, adapted to signals.

Core sessions call plain listeners from the asyncio loop, which qasync runs in Qt's main
thread, so the listeners may emit signals directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from siteline.core.backoff import Backoff
from siteline.core.device.history import DeviceHistory
from siteline.core.errors import AuthError, HostKeyError, HostKeyProblem, SitelineError, TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.keep import Keep, device_secret_name
from siteline.core.paths import PathEvent, PathStatus
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession, TransportFactory
from siteline.core.targets import Target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Result, StateListener, Transport
from siteline.core.transports.factory import open_transport

log = logging.getLogger(__name__)


def default_factory(known_hosts: Path, accept_new_host_key: bool = False) -> TransportFactory:
    """The real transports; a transport module that cannot be imported becomes a retryable error.

    An unknown SSH host key is refused (``accept_new_host_key`` False): the window asks the person,
    who compares the fingerprint, instead of trusting whatever answers first.
    """

    def make(target: Target, credentials: Credentials) -> Transport:
        try:
            return open_transport(target, credentials, known_hosts, accept_new_host_key=accept_new_host_key)
        except ImportError as exc:
            raise TransportError(
                f"The {target.scheme} transport is not available in this Siteline ({exc}).",
                "Update or reinstall Siteline.",
            ) from exc

    return make


def _all_of(*removers: Callable[[], None]) -> Callable[[], None]:
    def remove() -> None:
        for remover in removers:
            remover()

    return remove


class _WatchedTransport:
    """Delegates to a transport and reports what a person must settle: a refused login, a host key."""

    def __init__(
        self,
        inner: Transport,
        on_auth_error: Callable[[AuthError], None],
        on_host_key_error: Callable[[HostKeyError], None] | None = None,
    ) -> None:
        self._inner = inner
        self._on_auth_error = on_auth_error
        self._on_host_key_error = on_host_key_error

    @property
    def inner(self) -> Transport:
        """The transport this one watches: what a caller that needs its kind (SFTP over SSH) looks at."""
        return self._inner

    @property
    def state(self) -> ConnectionState:
        return self._inner.state

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        return self._inner.add_state_listener(listener)

    async def connect(self) -> None:
        try:
            await self._inner.connect()
        except AuthError as exc:
            self._on_auth_error(exc)
            raise
        except HostKeyError as exc:
            if self._on_host_key_error is not None:
                self._on_host_key_error(exc)
            raise

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        return await self._inner.run(command, timeout)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:  # stream/put/get/shell arrive with later transports
        return getattr(self._inner, name)


class SessionManager(QObject):
    """Owns every device's session; the window and the tree model listen to its signals."""

    sig_state_changed = Signal(str)  # device name; read the state with state(name)
    sig_snapshot_received = Signal(str, str)  # device name, probe kind
    sig_password_needed = Signal(str, str)  # device name, what the device said
    sig_host_key_problem = Signal(str, object)  # device name, HostKeyProblem: unknown or changed key
    sig_paths_changed = Signal(str)  # device name; read them with paths(name)
    sig_path_event = Signal(str, str)  # device name, what happened in words ("SSH via bastion dropped ...")
    sig_device_removed = Signal(str)  # device name: prompts about it close

    def __init__(
        self,
        plugins: PluginHost,
        factory: TransportFactory,
        backoff: Callable[[], Backoff] = Backoff,
        parent: QObject | None = None,
        keep: Keep | None = None,
    ) -> None:
        super().__init__(parent)
        self._plugins = plugins
        # The audit trail and the vault; None in tests that exercise sessions alone.
        self.keep = keep
        # Devices whose connection is in the audit trail: a link that drops and comes back by itself is
        # not a new action (and must not cost metered data); a start or a person's reconnect is.
        self._audited_up: set[str] = set()
        self._factory = factory
        self._backoff = backoff
        self._sessions: dict[str, DeviceSession] = {}
        # One Timeline history per device name; it outlives reconnects and edits, goes with remove_now().
        self._histories: dict[str, DeviceHistory] = {}
        self._unlisten: dict[str, Callable[[], None]] = {}
        # The host-key question each device waits on, until the person answers or the device goes.
        self._host_key_problems: dict[str, HostKeyProblem] = {}
        # The path (target URL) each question is about: with several paths the device may be up on another.
        self._host_key_targets: dict[str, str] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        # The stop still running per device name: a new session for that name starts only after it,
        # because the old one may still hold the serial port's lock (a false "port busy").
        self._stop_by_name: dict[str, asyncio.Task[None]] = {}
        # Whether an update job drives the device now (the window wires it to the update controller): its
        # session is then not replaced under it. An edit waits in _postponed until the job ends.
        self.in_use: Callable[[str], bool] = lambda _name: False
        self._postponed: dict[str, DeviceEntry] = {}
        # Retry countdowns ("retrying in 4 s") must move even when nothing else happens.
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._on_ticker_timeout)
        self._ticker.start()

    # -- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._sessions)

    def get(self, name: str) -> DeviceSession | None:
        return self._sessions.get(name)

    def history(self, name: str) -> DeviceHistory | None:
        """What the device did (snapshots, path events) for its Timeline; None for an unknown device."""
        return self._histories.get(name)

    def forget_history(self, name: str) -> None:
        self._histories.pop(name, None)

    def state(self, name: str) -> ConnectionState:
        session = self._sessions.get(name)
        return session.state if session else ConnectionState(ConnState.DOWN, "no session")

    def host_key_problem(self, name: str) -> HostKeyProblem | None:
        """The unknown or changed host key that stops ``name``, until the person settles it."""
        return self._host_key_problems.get(name)

    def paths(self, name: str) -> list[PathStatus]:
        """The device's paths in order of preference, each with its state and why."""
        session = self._sessions.get(name)
        return session.paths if session is not None else []

    def active_target(self, name: str) -> str | None:
        """The target URL in use now, None while no path is up."""
        session = self._sessions.get(name)
        active = session.active_target if session is not None else None
        return str(active) if active is not None else None

    def all_up(self) -> bool:
        return bool(self._sessions) and all(s.state.state is ConnState.UP for s in self._sessions.values())

    # -- changing ----------------------------------------------------------------------------

    def add(
        self,
        entry: DeviceEntry,
        credentials: Credentials | None = None,
        start: bool = True,
        after: asyncio.Task[None] | None = None,
    ) -> DeviceSession:
        """A session for ``entry``; it starts once ``after`` (and any stop of the same name) has finished."""
        if entry.name in self._sessions:
            self.remove(entry.name)
        creds = self._with_vault_secrets(entry, credentials or Credentials(username=entry.username))
        name = entry.name

        def factory(target: Target, creds: Credentials) -> Transport:
            return _WatchedTransport(
                self._factory(target, creds),
                lambda exc: self._on_auth_error(name, exc),
                lambda exc: self._on_host_key_error(name, str(target), exc),
            )

        session = DeviceSession(entry, factory, creds, self._plugins, backoff=self._backoff())
        unlisten_state = session.add_state_listener(lambda s: self._on_session_state(name, s))
        unlisten_paths = session.add_path_listener(lambda event: self._on_path_event(name, session, event))
        self._unlisten[name] = _all_of(unlisten_state, unlisten_paths)
        history = self._histories.setdefault(name, DeviceHistory(name))

        def on_snapshot(kind: str, snapshot: Any) -> None:
            if self._sessions.get(name) is session:  # a replaced session's last probe is not news
                history.observe(kind, snapshot)
            self._on_snapshot(name, kind)

        session.add_snapshot_listener(on_snapshot)
        self._sessions[name] = session
        if start:
            waits = {t for t in (after, self._stop_by_name.get(name)) if t is not None and not t.done()}
            if waits:
                self._track(asyncio.get_running_loop().create_task(self._start_after(waits, session)))
            else:
                session.start()
        return session

    def _with_vault_secrets(self, entry: DeviceEntry, creds: Credentials) -> Credentials:
        """Fill in the device's password and key passphrase from the vault when it is unlocked and has them."""
        if self.keep is None:
            return creds
        if creds.password is None:
            password = self.keep.secret(device_secret_name(entry.site, entry.name, "password"))
            if password is not None:
                creds = replace(creds, password=password)
        if creds.key_passphrase is None:
            passphrase = self.keep.secret(device_secret_name(entry.site, entry.name, "key-passphrase"))
            if passphrase is not None:
                creds = replace(creds, key_passphrase=passphrase)
        return creds

    def _audit(self, name: str, action: str, detail: dict[str, Any], result: str = "ok") -> None:
        session = self._sessions.get(name)
        if self.keep is None or session is None:
            return
        self.keep.record(action, device=name, site=session.entry.site, detail=detail, result=result)

    async def _start_after(self, waits: set[asyncio.Task[None]], session: DeviceSession) -> None:
        await asyncio.wait(waits)
        if self._sessions.get(session.entry.name) is session:  # not removed or replaced meanwhile
            session.start()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def remove(self, name: str) -> asyncio.Task[None] | None:
        """Forget a device now and stop its session in the background (close_all waits for it)."""
        session = self._sessions.pop(name, None)
        unlisten = self._unlisten.pop(name, None)
        self._forget_host_key(name)
        if session is None:
            return None
        if unlisten:
            unlisten()
        if name in self._audited_up and self.keep is not None:
            self._audited_up.discard(name)
            self.keep.record("disconnect", device=name, site=session.entry.site, detail={"reason": "closed"})
        self.sig_device_removed.emit(name)
        task = asyncio.get_running_loop().create_task(session.stop(), name=f"stop {name}")
        self._track(task)
        self._stop_by_name[name] = task
        task.add_done_callback(lambda t: self._forget_stop(name, t))
        return task

    def _forget_stop(self, name: str, task: asyncio.Task[None]) -> None:
        if self._stop_by_name.get(name) is task:
            del self._stop_by_name[name]

    def replace(self, old_name: str, entry: DeviceEntry) -> DeviceSession:
        """An edited device: same secrets if the person kept the name and target, new session regardless.

        While an update job drives the device the session stays until the job ends (:meth:`apply_postponed`): a
        new session mid-reboot cannot tell whether the reboot took effect, and the job must finish on the device
        it started on.
        """
        old = self._sessions.get(old_name)
        if old is not None and self.in_use(old_name):
            log.info("%s: an update runs on it; its edited entry applies when the update ends", old_name)
            self._postponed[old_name] = entry
            return old
        self._postponed.pop(old_name, None)
        creds = old.credentials if old and old.entry.target == entry.target else None
        if creds is not None and entry.username != old.entry.username:  # type: ignore[union-attr]
            creds = replace(creds, username=entry.username)
        stopping = self.remove(old_name)
        if old_name != entry.name and old_name in self._histories:
            self._histories[entry.name] = self._histories.pop(old_name)  # a renamed device keeps its Timeline
        return self.add(entry, creds, after=stopping)

    def postponed(self, name: str) -> DeviceEntry | None:
        """The edited entry that waits for the device's update to end, if any."""
        return self._postponed.get(name)

    def apply_postponed(self, name: str) -> DeviceSession | None:
        """Replace the session with the edit made while an update ran (call once the update ended)."""
        entry = self._postponed.pop(name, None)
        if entry is None or name not in self._sessions:
            return None
        return self.replace(name, entry)

    def set_password(self, name: str, password: str, remember: bool = False) -> None:
        """Connect again with ``password``; with ``remember``, keep it in the (unlocked) vault for next time."""
        session = self._sessions.get(name)
        if session is None:
            return
        if remember and self.keep is not None and self.keep.vault.locked:
            self.keep.report(SitelineError("The password was not remembered: the vault locked itself meanwhile.",
                                           "Unlock the vault, then type the password again to keep it."))
        elif remember and self.keep is not None:
            try:
                self.keep.vault.put(device_secret_name(session.entry.site, name, "password"), password,
                                    kind="password", note=f"login of {name} at {session.entry.site}")
            except SitelineError as exc:  # the connection goes on with the typed password regardless
                self.keep.report(exc)
        self._audited_up.discard(name)
        session.reconnect(replace(session.credentials, password=password))

    def trust_host_key(self, name: str, problem: HostKeyProblem) -> None:
        """The person compared the fingerprint of an unknown key and trusts it: pin it and connect."""
        from siteline.core.transports.known_hosts import KnownHosts  # asyncssh only when an answer comes

        if problem.kind != "unknown":
            raise ValueError("a changed host key is only replaced through replace_host_key")
        KnownHosts(Path(problem.known_hosts_path)).pin(problem.host, problem.port, problem.offered_key)
        log.warning(
            "%s: the user trusted the host key %s of %s after comparing it; pinned in %s",
            name, problem.offered_fingerprint, problem.display_name, problem.known_hosts_path,
        )
        self._audit(name, "host-key-pinned", {"host": problem.display_name, "fingerprint": problem.offered_fingerprint})
        self._settled(name, problem)

    def replace_host_key(self, name: str, problem: HostKeyProblem, typed_name: str) -> None:
        """The person explicitly replaced a changed key (and typed the device's name to confirm it)."""
        from siteline.core.transports.known_hosts import KnownHosts

        if problem.kind != "changed" or typed_name.strip() != name:
            raise ValueError("replacing a pinned host key needs the device's name typed as confirmation")
        log.warning(
            "%s: the user replaced the pinned host key of %s (was %s) with %s, confirmed by typing the name",
            name, problem.display_name, ", ".join(problem.pinned_fingerprints) or "none",
            problem.offered_fingerprint,
        )
        KnownHosts(Path(problem.known_hosts_path)).replace(problem.host, problem.port, problem.offered_key)
        self._audit(name, "host-key-replaced", {"host": problem.display_name,
                                                "fingerprint": problem.offered_fingerprint,
                                                "was": list(problem.pinned_fingerprints)})
        self._settled(name, problem)

    def _settled(self, name: str, problem: HostKeyProblem) -> None:
        if self._host_key_problems.get(name) == problem:
            self._forget_host_key(name)
        self.reconnect(name)

    def _forget_host_key(self, name: str) -> None:
        self._host_key_problems.pop(name, None)
        self._host_key_targets.pop(name, None)

    def reconnect(self, name: str) -> None:
        session = self._sessions.get(name)
        if session is not None:
            self._audited_up.discard(name)
            creds = self._with_vault_secrets(session.entry, session.credentials)
            session.reconnect(creds if creds != session.credentials else None)

    def use_vault_secrets(self) -> list[str]:
        """The vault was just unlocked: devices without a password that it has one for connect again with it."""
        started = []
        for name, session in list(self._sessions.items()):
            creds = self._with_vault_secrets(session.entry, session.credentials)
            if creds != session.credentials and session.state.state is not ConnState.UP:
                self._audited_up.discard(name)
                session.reconnect(creds)
                started.append(name)
        return started

    async def refresh(self, name: str) -> None:
        session = self._sessions.get(name)
        if session is not None and session.state.state is ConnState.UP:
            await session.refresh()

    async def close_all(self) -> None:
        self._ticker.stop()
        for name in list(self._sessions):
            self.remove(name)
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    # -- slots -------------------------------------------------------------------------------

    def _on_ticker_timeout(self) -> None:
        for name, session in list(self._sessions.items()):
            if session.state.state is ConnState.RETRYING:
                self.sig_state_changed.emit(name)

    def _on_snapshot(self, name: str, kind: str) -> None:
        if name in self._sessions:
            self.sig_snapshot_received.emit(name, kind)

    def _on_session_state(self, name: str, state: ConnectionState) -> None:
        if state.state is ConnState.UP:
            self._clear_if_in_use(name)
            if name not in self._audited_up and name in self._sessions:
                self._audited_up.add(name)
                self._audit(name, "connect", {"target": self.active_target(name) or ""})
                self._pick_up_certificate(name)
        self.sig_state_changed.emit(name)

    def _pick_up_certificate(self, name: str) -> None:
        """A certificate the control plane signed for this device since it was provisioned goes on it now."""
        session = self._sessions.get(name)
        if self.keep is None or session is None:
            return
        from siteline.core.provisioning.certificates import PendingStore, pickup_on_connect

        store = PendingStore()
        site = session.entry.site
        if store.get(site, name) is None:
            return
        keep = self.keep

        def record(action: str, detail: Any, result: str) -> None:
            keep.record(action, device=name, site=site, detail=dict(detail), result=result)

        async def pick_up() -> None:
            try:
                result = await pickup_on_connect(session.run, keep.inbound, site, name, store, record=record)
            except SitelineError as exc:
                log.info("certificate for %s not installed now: %s", name, exc)
                return
            if result is not None:
                self.sig_path_event.emit(name, f"Device certificate: {result.detail}")

        self._track(asyncio.get_running_loop().create_task(pick_up()))

    def _clear_if_in_use(self, name: str) -> None:
        """The questioned path is up after all (e.g. the CLI pinned the key): the question is settled."""
        session = self._sessions.get(name)
        target = self._host_key_targets.get(name)
        if session is None or target is None:
            return
        if str(session.active_target or session.target) == target:
            self._forget_host_key(name)

    def _on_path_event(self, name: str, session: DeviceSession, event: PathEvent) -> None:
        if self._sessions.get(name) is not session:
            return
        if event.active is not None and event.active == self._host_key_targets.get(name):
            self._clear_if_in_use(name)
        history = self._histories.get(name)
        if history is not None:
            history.observe_path_event(event)  # "trying ..." is dropped there
        self.sig_paths_changed.emit(name)
        # Only news for a device with somewhere to fall back to; "trying ..." is the state line's job.
        if event.message and len(session.targets) > 1 and event.kind != "trying":
            self.sig_path_event.emit(name, event.message)

    def _on_host_key_error(self, name: str, target: str, exc: HostKeyError) -> None:
        if name not in self._sessions or exc.problem is None:
            return
        self._host_key_problems[name] = exc.problem
        self._host_key_targets[name] = target
        self.sig_host_key_problem.emit(name, exc.problem)

    def _on_auth_error(self, name: str, exc: AuthError) -> None:
        if name in self._sessions:
            self.sig_password_needed.emit(name, str(exc))
