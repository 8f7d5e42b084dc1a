"""`siteline demo --headless`: three devices reachable, their URLs printed, a clean stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from pathlib import Path

import asyncssh
from tests.peers import require_tool
from tests.peers.sim import start_siteline

from siteline.core.targets import parse_target


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _ssh_with_key(port: int, key: Path) -> str:
    async with asyncssh.connect("127.0.0.1", port, username="root", client_keys=[str(key)], known_hosts=None,
                                password=None) as conn:
        return str((await conn.run("cat /etc/hostname", check=True)).stdout)


def test_demo_headless_prints_three_targets_and_stops(tmp_path: Path) -> None:
    require_tool("mosquitto")
    folder = tmp_path / "demo"
    folder.mkdir()
    demo = start_siteline(["demo", "--headless", "--dir", str(folder)], tmp_path / "demo.log")
    try:
        demo.wait_for("Press Ctrl-C", timeout=30)
        text = "\n".join(demo.lines)
        targets = [parse_target(t) for t in re.findall(r"\b((?:serial|ssh|mqtt)://\S+)", text)]
        assert sorted(t.scheme for t in targets) == ["mqtt", "serial", "ssh"]
        ssh = next(t for t in targets if t.scheme == "ssh")
        serial = next(t for t in targets if t.scheme == "serial")
        assert asyncio.run(_ssh_with_key(ssh.effective_port, folder / "id_ed25519")) == "gw-ssh\n"
        assert Path(serial.device).exists()
        assert re.search(r"login root / \S+", text)
    finally:
        code = demo.stop(signal.SIGINT, timeout=20)
    assert code == 0
    assert not _port_open(ssh.effective_port)
    assert not (folder / "ttyGW0").exists()
