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


@pytest.mark.asyncio
async def test_stop_ends_a_probe_round_asked_for_from_outside(tmp_path: Path) -> None:
    """F5 starts a round outside the keep-up loop; when stop() returns, its command has ended too.

    (A command still running when the window's loop closed failed a GUI test in CI.)
    """
    import types
    import uuid

    from tests.gui.shell_transport import local_shell_factory

    from siteline.api import DeviceContext, hookimpl

    marker = f"siteline-slow-probe-{uuid.uuid4().hex[:8]}"
    started = asyncio.Event()

    class Slow:
        name, kind = "slow", "modem"

        async def collect(self, ctx: DeviceContext) -> object:
            started.set()
            await ctx.run(f"sleep 30; echo {marker}", timeout=60)
            return None

    @hookimpl
    def siteline_probes() -> list[object]:
        return [Slow()]

    plugin = types.ModuleType("slow_plugin")
    plugin.siteline_probes = siteline_probes  # type: ignore[attr-defined]
    plugins = PluginHost()
    plugins.register(plugin, "slow")
    session = DeviceSession(DeviceEntry("dev", "ssh://root@127.0.0.1:22"), local_shell_factory, Credentials(),
                            plugins, backoff=Backoff(**vars(FAST)))
    session.start()
    await _until(lambda: session.state.state is ConnState.UP and started.is_set())
    await asyncio.sleep(0.1)
    started.clear()
    outside = asyncio.get_running_loop().create_task(session.refresh("modem"))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.wait_for(session.stop(), 10)
    assert outside.done()
    assert not outside.cancelled()
    assert outside.exception() is None
    assert not session._probing
    ps = await asyncio.create_subprocess_exec("pgrep", "-f", marker, stdout=asyncio.subprocess.DEVNULL)
    assert await ps.wait() == 1, "the probe's command outlived the session"


@pytest.mark.asyncio
async def test_cancelling_the_caller_cancels_the_round(sshd: Any, tmp_path: Path) -> None:
    session, _seen = _session(tmp_path, f"ssh://{sshd.user}@127.0.0.1:{sshd.port}", sshd.client_key)
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.UP)
        caller = asyncio.get_running_loop().create_task(session.refresh())
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await _until(lambda: not session._probing, timeout=5)
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_fallback_probe_is_asked_only_for_an_area_not_read() -> None:
    """No mmcli: ModemManager's 'unavailable' is not shown when the AT port's probe reads the modem."""
    import types

    from tests.gui.shell_transport import local_shell_factory

    from siteline.api import DeviceContext, Unavailable, hookimpl

    asked: list[str] = []

    class Probe:
        def __init__(self, name: str, answer: object, fallback: bool = False) -> None:
            self.name, self.kind, self.answer, self.fallback = name, "modem", answer, fallback

        async def collect(self, ctx: DeviceContext) -> object:
            asked.append(self.name)
            await ctx.run("true")
            return self.answer

    def host(*probes: Probe) -> PluginHost:
        plugin = types.ModuleType("modems")

        @hookimpl
        def siteline_probes() -> list[object]:
            return list(probes)

        plugin.siteline_probes = siteline_probes  # type: ignore[attr-defined]
        plugins = PluginHost()
        plugins.register(plugin, "modems")
        return plugins

    async def round_with(plugins: PluginHost) -> list[tuple[str, object]]:
        session = DeviceSession(DeviceEntry("dev", "ssh://root@127.0.0.1:22"), local_shell_factory, Credentials(),
                                plugins, backoff=Backoff(**vars(FAST)))
        told: list[tuple[str, object]] = []
        session.add_snapshot_listener(lambda kind, snap: told.append((kind, snap)))
        session.start()
        try:
            await _until(lambda: told)
            await asyncio.sleep(0.05)
        finally:
            await session.stop()
        return told

    missing = Unavailable("modem", "mmcli not found")
    assert await round_with(host(Probe("at", "AT reading", fallback=True), Probe("mm", missing))) == [
        ("modem", "AT reading")]
    assert asked == ["mm", "at"]  # the fallback is asked after, though registered first
    asked.clear()
    assert await round_with(host(Probe("at", "AT reading", fallback=True), Probe("mm", "MM reading"))) == [
        ("modem", "MM reading")]
    assert asked == ["mm"]  # read: the fallback is not asked
    asked.clear()
    assert await round_with(host(Probe("mm", missing), Probe("at", Unavailable("modem", "no AT port"), True))) == [
        ("modem", missing)]
    asked.clear()  # a probe that is no fallback is asked even when the area was read (a vendor's own, say)
    assert await round_with(host(Probe("mm", "MM reading"), Probe("vendor", "vendor reading"))) == [
        ("modem", "MM reading"), ("modem", "vendor reading")]
