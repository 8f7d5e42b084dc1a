"""One device, several paths, against real peers: OpenSSH sshd behind the fault proxy is the preferred path,
a real bash on a pty (socat) or the simulator's serial console the other one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.peers.faultproxy import FaultProxy
from tests.peers.sim import make_state, running_device
from tests.peers.socat_shell import SocatShell
from tests.peers.sshd import SshdHandle

from siteline.core.backoff import Backoff
from siteline.core.inventory import DeviceEntry, Inventory
from siteline.core.paths import PathEvent
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Transport
from siteline.core.transports.factory import open_transport

PREFERRED_RETRY = 0.3
CONNECT_TIMEOUT = 1.0  # a black-holed SSH path gives up this fast, so the background retry stays quick


@pytest.fixture
def proxy(sshd: SshdHandle) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        yield p


def _ssh_url(sshd: SshdHandle, proxy: FaultProxy) -> str:
    return f"ssh://{sshd.user}@127.0.0.1:{proxy.port}"


@pytest_asyncio.fixture
async def make_session(tmp_path: Path) -> AsyncIterator[Callable[..., DeviceSession]]:
    """Builds sessions over the real transports; stops each one when the test ends, also when it fails."""
    made: list[DeviceSession] = []

    def make(targets: list[str], creds: Credentials) -> DeviceSession:
        def factory(t: Target, c: Credentials) -> Transport:
            return open_transport(t, c, tmp_path / "known_hosts", connect_timeout=CONNECT_TIMEOUT,
                                  accept_new_host_key=True)

        entry = DeviceEntry("gw", targets[0], username=creds.username, fallbacks=tuple(targets[1:]))
        session = DeviceSession(entry, factory, creds, PluginHost(), Backoff(0.05, maximum=0.2, jitter=0.1),
                                preferred_retry=PREFERRED_RETRY)
        made.append(session)
        return session

    yield make
    for session in made:
        await session.stop()


async def _until(pred: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def _key(sshd: SshdHandle) -> Credentials:
    return Credentials(key_path=str(sshd.client_key), use_agent=False)


@pytest.mark.asyncio
async def test_cut_moves_to_serial_and_heal_comes_back(
    sshd: SshdHandle, proxy: FaultProxy, socat_shell: SocatShell, make_session: Callable[..., DeviceSession]
) -> None:
    preferred = _ssh_url(sshd, proxy)
    session = make_session([preferred, socat_shell.url], _key(sshd))
    events: list[PathEvent] = []
    session.add_path_listener(events.append)
    session.start()
    await _until(lambda: session.state.state is ConnState.UP)
    assert str(session.active_target) == preferred
    assert session.state.reason == ""

    proxy.black_hole()  # the cellular link dies: new connections hang, the open one is cut
    proxy.cut()
    await _until(lambda: str(session.active_target) == socat_shell.url)
    assert session.state.state is ConnState.UP
    assert session.state.reason.startswith(f"on fallback {socat_shell.url} (preferred {preferred} down: ")
    switched = [e for e in events if e.kind == "switched"]
    assert switched[0].message.startswith(f"SSH to 127.0.0.1:{proxy.port} dropped (")
    assert switched[0].message.endswith(f"); continuing on {socat_shell.url}")
    assert switched[0].active == socat_shell.url
    result = await session.run("echo on-$((6 * 7))")  # runs in the real bash behind the serial line
    assert (result.exit_code, result.stdout.strip()) == (0, "on-42")
    paths = session.paths
    assert [(p.role, p.state) for p in paths] == [("preferred", ConnState.RETRYING), ("fallback", ConnState.UP)]

    # A command still running on the serial line when SSH comes back finishes there.
    running = asyncio.ensure_future(session.run("sleep 1.5; echo finished", timeout=10))
    await asyncio.sleep(0.1)
    proxy.heal()
    started = time.monotonic()
    await _until(lambda: str(session.active_target) == preferred)
    assert time.monotonic() - started < PREFERRED_RETRY + CONNECT_TIMEOUT + 2.0
    assert events[-1].kind == "back"
    assert events[-1].message == f"back on the preferred path {preferred}"
    assert session.state.reason == ""
    assert (await session.run("echo via-ssh")).stdout == "via-ssh\n"
    assert (await running).stdout.strip() == "finished"
    assert session.paths[1].state is ConnState.DOWN  # the serial line is let go once SSH is up


@pytest.mark.asyncio
async def test_all_paths_down_is_retrying_then_comes_back(
    sshd: SshdHandle, proxy: FaultProxy, socat_shell: SocatShell, make_session: Callable[..., DeviceSession]
) -> None:
    preferred = _ssh_url(sshd, proxy)
    session = make_session([preferred, socat_shell.url], _key(sshd))
    session.start()
    await _until(lambda: session.state.state is ConnState.UP)
    socat_shell.stop()  # the serial cable is out too
    proxy.black_hole()
    proxy.cut()
    await _until(lambda: session.state.state is ConnState.RETRYING)
    reason = session.state.reason
    assert reason.startswith("no path answers (SSH to 127.0.0.1")
    assert "serial " in reason
    assert session.active_target is None
    assert all(p.state is not ConnState.UP for p in session.paths)
    proxy.heal()
    await _until(lambda: session.state.state is ConnState.UP)
    assert str(session.active_target) == preferred


@pytest.mark.asyncio
async def test_wrong_password_on_one_path_and_a_good_other_path(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path, make_session: Callable[..., DeviceSession]
) -> None:
    link = tmp_path / "ttyGW"
    state = make_state(tmp_path / "device")
    async with running_device(state, ssh=False, serial_link=link):
        serial = f"serial://{link}"
        creds = Credentials(username="root", password="not-the-password", key_path=str(sshd.client_key),
                            use_agent=False)
        session = make_session([serial, _ssh_url(sshd, proxy)], creds)
        events: list[PathEvent] = []
        session.add_path_listener(events.append)
        session.start()
        await _until(lambda: session.state.state is ConnState.UP)
        assert str(session.active_target) == _ssh_url(sshd, proxy)
        first = session.paths[0]
        assert first.state is ConnState.DOWN
        assert "Login incorrect" in first.reason
        assert any(e.kind == "failed" and e.message.startswith(f"serial {link} needs you: ") for e in events)
        assert session.state.reason.startswith(f"on fallback {_ssh_url(sshd, proxy)} (preferred {serial} down: ")
        await asyncio.sleep(PREFERRED_RETRY * 2)  # the background retry leaves a refused login alone
        assert session.paths[0].last_change == first.last_change
        assert str(session.active_target) == _ssh_url(sshd, proxy)
        await session.stop()


def test_inventory_written_before_fallbacks_loads(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text('{"version": 1, "devices": [{"name": "gw", "target": "ssh://root@10.0.0.5", "site": "T7",'
                    ' "username": null, "notes": "", "tags": []}]}')
    inv = Inventory(path)
    assert inv.load() == []
    entry = inv.get("gw")
    assert entry is not None
    assert entry.fallbacks == ()
    assert entry.targets == ("ssh://root@10.0.0.5",)


@pytest.mark.asyncio
async def test_an_open_serial_console_keeps_the_fallback_until_it_closes(
    sshd: SshdHandle, proxy: FaultProxy, socat_shell: SocatShell, make_session: Callable[..., DeviceSession]
) -> None:
    preferred = _ssh_url(sshd, proxy)
    proxy.black_hole()  # SSH is out when the technician arrives: the session comes up on the cable
    session = make_session([preferred, socat_shell.url], _key(sshd))
    events: list[PathEvent] = []
    session.add_path_listener(events.append)
    session.start()
    await _until(lambda: str(session.active_target) == socat_shell.url)
    shell = await session.open_shell(80, 24)  # vi on the serial console
    out = bytearray()
    shell.add_output_listener(out.extend)
    proxy.heal()
    await _until(lambda: any(e.kind == "held" for e in events))
    staying = "staying on serial while the console is open"
    assert events[-1].message == f"SSH to 127.0.0.1:{proxy.port} answers again; {staying}"
    assert session.state.reason == f"on fallback {socat_shell.url} (preferred {preferred} answers again; {staying})"
    await asyncio.sleep(PREFERRED_RETRY * 2)  # more rounds: still on the cable, said once
    assert str(session.active_target) == socat_shell.url
    assert [e.kind for e in events].count("held") == 1
    shell.write(b"echo still-$((6 * 7))\r")  # the console still works: its link was never closed
    await _until(lambda: b"still-42" in out)
    await shell.close()
    await _until(lambda: str(session.active_target) == preferred)
    assert events[-1].message == f"back on the preferred path {preferred}"
    assert (await session.run("echo via-ssh")).stdout == "via-ssh\n"
    assert session.paths[1].state is ConnState.DOWN
