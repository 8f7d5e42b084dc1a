"""`siteline demo --headless`: the listed devices (and a new one to provision) answer; a clean stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from tests.peers import require_tool
from tests.peers.sim import start_siteline

from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.factory import open_transport


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _ssh_with_key(port: int, key: Path) -> str:
    async with asyncssh.connect("127.0.0.1", port, username="root", client_keys=[str(key)], known_hosts=None,
                                password=None) as conn:
        return str((await conn.run("cat /etc/hostname", check=True)).stdout)


async def _run_on(target: Target, creds: Credentials, known_hosts: Path) -> str:
    transport = open_transport(target, creds, known_hosts, accept_new_host_key=True)
    try:
        await asyncio.wait_for(transport.connect(), 30)
        result = await transport.run("cat /etc/hostname", timeout=20)
        assert result.exit_code == 0, result
        return result.stdout.strip()
    finally:
        await transport.close()


async def _ssh_with_password(port: int, password: str) -> None:
    async with asyncssh.connect("127.0.0.1", port, username="root", password=password, client_keys=None,
                                known_hosts=None):
        pass


def _assert_secrets_kept(folder: Path, password: str) -> None:
    """The login password is in no process's argv (``ps`` shows argv to every user); secret files are 0600."""
    assert password
    seen = 0
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(folder).encode() in argv:
            seen += 1
            assert password.encode() not in argv, argv
    assert seen >= 3  # the three devices at least
    for secret in ("password.txt", "id_ed25519"):
        assert (folder / secret).stat().st_mode & 0o077 == 0, secret


def _credentials(text: str, folder: Path) -> dict[str, Credentials]:
    """What the demo printed for each device, as Siteline's transports take it."""
    serial = re.search(r"serial://\S+\s+\(login (\S+) / (\S+)\)", text)
    mqtt = re.search(r"mqtt://\S+\s+\(broker login (\S+) / (\S+)\)", text)
    assert serial, text
    assert mqtt, text
    return {
        "serial": Credentials(username=serial[1], password=serial[2], use_agent=False),
        "ssh": Credentials(username="root", key_path=str(folder / "id_ed25519"), use_agent=False),
        "mqtt": Credentials(username=mqtt[1], password=mqtt[2], use_agent=False),
    }


def _outbox_reaches_the_demo_control_plane(text: str, home: Path) -> None:
    """The demo's broker is a control plane too: a note sent with the login it printed is acknowledged."""
    from tests.integration.test_cli import siteline

    control = re.search(r"control\s+(mqtt://\S+) \(login (\S+) / (\S+)\); .* to siteline/v1/(\S+)/outbox/#", text)
    assert control, text
    assert siteline("note", "demo-site", "gw-mqtt", "antenna checked", home=home).returncode == 0
    sync = siteline("outbox", "sync", "--broker", control[1], "--plain-ok", "--username", control[2],
                    "--technician", control[4], "--timeout", "20", home=home,
                    env={"SITELINE_CONTROL_PLANE_PASSWORD": control[3]})
    assert sync.returncode == 0, sync.stderr
    assert "sent 2 items" in sync.stdout  # the note and its audit record


def _images_are_signed_by_the_printed_key(text: str) -> None:
    """The demo's update images verify against the key it prints (the technician's own store is not touched)."""
    found = re.search(r"^  images\s+(\S+) \(flash them after `siteline keys add (\S+) --name demo-ops`\)", text, re.M)
    assert found, text
    images = sorted(Path(found.group(1)).glob("*.raucb"))
    assert [p.name for p in images] == ["nwedge-2024.09.0.raucb", "nwedge-2024.09.1-unhealthy.raucb",
                                        "nwedge-2024.09.2-noboot.raucb"]
    for image in images:
        done = subprocess.run([sys.executable, "-m", "siteline", "image", "verify", str(image), "--sig",
                               f"{image}.sig", "--key", found.group(2)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_demo_headless_prints_three_targets_and_stops(tmp_path: Path) -> None:
    require_tool("mosquitto")
    folder = tmp_path / "demo"
    folder.mkdir()
    demo = start_siteline(["demo", "--headless", "--dir", str(folder)], tmp_path / "demo.log")
    try:
        demo.wait_for("Press Ctrl-C", timeout=30)
        text = "\n".join(demo.lines)
        # Each device's preferred target starts its line; "then ..." lines are fallback paths.
        targets = [parse_target(t) for t in re.findall(r"^  gw-(?!new)\S+\s+((?:serial|ssh|mqtt)://\S+)", text, re.M)]
        assert sorted(t.scheme for t in targets) == ["mqtt", "serial", "ssh"]
        # gw-new: a factory-fresh box on its own cable, waiting to be provisioned (not in the device list).
        new = re.search(r"^  gw-new\s+(serial://\S+)\s+\(new from the factory: login root / root;", text, re.M)
        assert new, text
        assert Path(parse_target(new.group(1)).device).exists()
        fallbacks = [parse_target(t) for t in re.findall(r"^\s+then ((?:serial|ssh|mqtt)://\S+)", text, re.M)]
        assert [t.scheme for t in fallbacks] == ["serial"]  # gw-ssh's cable
        assert Path(fallbacks[0].device).exists()
        ssh = next(t for t in targets if t.scheme == "ssh")
        serial = next(t for t in targets if t.scheme == "serial")
        assert asyncio.run(_ssh_with_key(ssh.effective_port, folder / "id_ed25519")) == "gw-ssh\n"
        assert Path(serial.device).exists()
        assert re.search(r"login root / \S+", text)
        creds = _credentials(text, folder)
        _assert_secrets_kept(folder, creds["serial"].password or "")
        with pytest.raises(asyncssh.PermissionDenied):  # the SSH device takes keys only
            asyncio.run(_ssh_with_password(ssh.effective_port, creds["serial"].password or ""))
        names = {t.scheme: asyncio.run(_run_on(t, creds[t.scheme], tmp_path / "known_hosts")) for t in targets}
        assert names == {"serial": "gw-serial", "ssh": "gw-ssh", "mqtt": "gw-mqtt"}
        _outbox_reaches_the_demo_control_plane(text, tmp_path / "home")
        _images_are_signed_by_the_printed_key(text)
    finally:
        code = demo.stop(signal.SIGINT, timeout=20)
    assert code == 0
    assert not _port_open(ssh.effective_port)
    assert not (folder / "ttyGW0").exists()


def test_demo_falls_back_to_the_embedded_broker(tmp_path: Path) -> None:
    from siteline.simulator.broker import embedded_available

    if not embedded_available():
        pytest.skip("amqtt is not installed (optional: pip install 'siteline[broker]'): embedded broker not tested")
    folder = tmp_path / "demo"
    demo = start_siteline(["demo", "--headless", "--dir", str(folder)], tmp_path / "demo.log",
                          env={"SITELINE_BROKER": "embedded"})
    try:
        demo.wait_for("Press Ctrl-C", timeout=30)
        text = "\n".join(demo.lines)
        assert "broker     embedded on 127.0.0.1:" in text
        mqtt = parse_target(re.findall(r"\b(mqtt://\S+/edge/\S+)", text)[0])
        creds = _credentials(text, folder)["mqtt"]
        assert asyncio.run(_run_on(mqtt, creds, tmp_path / "known_hosts")) == "gw-mqtt"
    finally:
        code = demo.stop(signal.SIGINT, timeout=20)
    assert code == 0
