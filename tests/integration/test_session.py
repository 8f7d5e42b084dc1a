"""DeviceSession keeps a link up against a real OpenSSH sshd: up, lost, retried, refused for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.peers import free_port

from siteline.core.backoff import Backoff
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.factory import open_transport

FAST = Backoff(initial=0.05, maximum=0.2, jitter=0.1)


def _session(tmp_path: Path, target: str, key: Path | None) -> tuple[DeviceSession, list[ConnectionState]]:
    plugins = PluginHost()
    plugins.load_entry_points()

    def factory(t: Target, c: Credentials) -> Transport:
        return open_transport(t, c, tmp_path / "known_hosts", accept_new_host_key=True)

    creds = Credentials(key_path=str(key) if key else None, use_agent=False)
    session = DeviceSession(DeviceEntry("dev", target), factory, creds, plugins, backoff=Backoff(**vars(FAST)))
    seen: list[ConnectionState] = []
    session.add_state_listener(seen.append)
    return session, seen


async def _until(pred: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_session_comes_up_and_probes_the_system(sshd: Any, tmp_path: Path) -> None:
    session, seen = _session(tmp_path, f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", sshd.client_key)
    snapshots: list[tuple[str, Any]] = []
    session.add_snapshot_listener(lambda kind, snap: snapshots.append((kind, snap)))
    session.start()
    try:
        await _until(lambda: snapshots)
        assert seen[0].state is ConnState.CONNECTING
        assert session.state.state is ConnState.UP
        kind, system = snapshots[0]
        assert kind == "system"
        assert system.kernel  # the real host's kernel, read over real sshd
        assert system.uptime_seconds is not None
        assert system.uptime_seconds > 0
        result = await session.run("sh -c 'echo out; echo err >&2; exit 3'")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    finally:
        await session.stop()
    assert session.state.state is ConnState.DOWN


@pytest.mark.asyncio
async def test_refused_port_retries_with_reason_and_countdown(tmp_path: Path) -> None:
    session, _seen = _session(tmp_path, f"ssh://root@127.0.0.1:{free_port()}", None)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.RETRYING)
        state = session.state
        assert "refused" in state.reason.lower()
        assert state.retry_in() is not None
        assert state.describe().startswith(("retrying in ", "retrying now"))
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_wrong_key_goes_down_without_retrying(sshd: Any, tmp_path: Path) -> None:
    from tests.peers.sshd import keygen

    stranger = keygen(tmp_path / "stranger")
    session, seen = _session(tmp_path, f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", stranger)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.DOWN)
        await asyncio.sleep(0.3)  # several backoff periods: it must not have tried again
        assert [s.state for s in seen] == [ConnState.CONNECTING, ConnState.DOWN]
        assert session.state.reason
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_lost_link_is_retried_until_the_device_is_back(sshd: Any, tmp_path: Path) -> None:
    session, seen = _session(tmp_path, f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", sshd.client_key)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.UP)
        sshd.stop()  # the device goes away (reboot, power, cable)
        await _until(lambda: session.state.state is ConnState.RETRYING)
        sshd.start()
        await _until(lambda: session.state.state is ConnState.UP)
        assert (await session.run("echo back")).stdout == "back\n"
    finally:
        await session.stop()
    assert ConnState.RETRYING in [s.state for s in seen]
