"""Local port forward through real sshd (and a bastion) to a tiny HTTP server standing in for a device's web UI."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.peers import free_port
from tests.peers.sshd import SshdHandle

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials
from siteline.core.transports.ssh import SshTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd"), pytest.mark.timeout(20)]

PAGE = b"<html><body>gw1 web UI</body></html>\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_ui(tmp_path: Path) -> Iterator[int]:
    """The device's web UI: http.server on 127.0.0.1:<random>, serving index.html; yields the port."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(PAGE)
    (root / "big.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB: more than one window and chunk

    def handler(*args: Any) -> _Quiet:
        return _Quiet(*args, directory=str(root))

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="web-ui", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        data: bytes = reply.read()
        return data


def _transport(sshd: SshdHandle, tmp: Path, jump: str = "") -> SshTransport:
    query = f"?jump={jump}" if jump else ""
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{query}")
    return SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False), tmp / "known_hosts",
                        accept_new_host_key=True)


async def test_web_ui_through_the_forward(sshd: SshdHandle, web_ui: int, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    await t.connect()
    try:
        async with await t.forward_local(remote_port=web_ui) as fwd:
            assert fwd.url == f"http://127.0.0.1:{fwd.local_port}/"
            assert fwd.local_port > 0
            page, big = await asyncio.gather(
                asyncio.to_thread(_fetch, fwd.url), asyncio.to_thread(_fetch, fwd.url + "big.bin")
            )
            assert page == PAGE
            assert big == bytes(range(256)) * 8192
            assert (fwd.connections, fwd.failures) == (2, 0)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(socket.create_connection, ("127.0.0.1", fwd.local_port), 2)
        assert (await t.run("echo still up")).ok
    finally:
        await t.close()


async def test_web_ui_through_the_bastion(
    sshd: SshdHandle, sshd_bastion: SshdHandle, web_ui: int, tmp_path: Path
) -> None:
    sshd_bastion.authorize(sshd.client_key)
    t = _transport(sshd, tmp_path, jump=f"{sshd_bastion.user}@127.0.0.1:{sshd_bastion.port}")
    await t.connect()
    try:
        port = free_port()
        fwd = await t.forward_local("127.0.0.1", web_ui, local_port=port)
        assert fwd.local_port == port
        assert await asyncio.to_thread(_fetch, fwd.url) == PAGE
    finally:
        await t.close()  # closes the forward too
    assert not fwd.is_open


async def test_device_side_failure_is_logged_not_fatal(
    sshd: SshdHandle, web_ui: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = _transport(sshd, tmp_path)
    await t.connect()
    dead = free_port()  # nothing listens there on the device
    try:
        async with await t.forward_local(remote_port=dead) as broken, await t.forward_local(remote_port=web_ui) as ok:
            with caplog.at_level(logging.WARNING, logger="siteline.core.transports.forward"):
                reader, writer = await asyncio.open_connection("127.0.0.1", broken.local_port)
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us, not hung
                writer.close()
                await writer.wait_closed()
            assert broken.failures == 1
            assert f"could not connect to 127.0.0.1:{dead}" in caplog.text
            assert await asyncio.to_thread(_fetch, ok.url) == PAGE  # the link and other forwards carry on
            assert t.state.state is ConnState.UP
    finally:
        await t.close()


async def test_binds_loopback_by_default_and_reports_a_busy_port(sshd: SshdHandle, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path)
    await t.connect()
    try:
        fwd = await t.forward_local(remote_port=8080)
        assert fwd.listen_host == "127.0.0.1"
        with pytest.raises(TransportError, match=r"Cannot listen on 127\.0\.0\.1") as info:
            await t.forward_local(remote_port=8080, local_port=fwd.local_port)
        assert "another local port" in info.value.hint
        with pytest.raises(TransportError, match="not a TCP port"):
            await t.forward_local(remote_port=0)
    finally:
        await t.close()
    with pytest.raises(TransportError, match="Not connected"):
        await t.forward_local(remote_port=80)
