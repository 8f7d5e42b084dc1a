"""The simulated device over SSH, reached with a real asyncssh client."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import asyncssh
import pytest
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.simulator.device import SimulatedDevice
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio
HOST_RELEASE = Path("/etc/os-release").read_text()


def _connect(device: SimulatedDevice, **kwargs: object) -> asyncssh.connection._ConnectionManager:  # type: ignore[name-defined]
    options = {"username": "root", "password": PASSWORD, "known_hosts": None, "client_keys": None}
    options.update(kwargs)
    return asyncssh.connect("127.0.0.1", device.ssh_port, **options)


async def test_exec_codes_and_identity(sim_state: DeviceState) -> None:
    async with running_device(sim_state) as device, _connect(device) as conn:
        echo = await conn.run("echo hello there", check=False)
        assert (echo.exit_status, echo.stdout) == (0, "hello there\n")
        seven = await conn.run("sh -c 'exit 7'", check=False)
        assert seven.exit_status == 7
        err = await conn.run("echo oops >&2; false", check=False)
        assert (err.exit_status, err.stderr) == (1, "oops\n")
        piped = await conn.run("cat | tr a-z A-Z", input="shout\n", check=False)
        assert piped.stdout == "SHOUT\n"
        release = await conn.run("cat /etc/os-release", check=False)
        assert release.exit_status == 0
        assert release.stdout == (sim_state.root / "rootfs/etc/os-release").read_text()
        assert release.stdout != HOST_RELEASE


async def test_exec_output_streams_as_produced(sim_state: DeviceState) -> None:
    async with running_device(sim_state) as device, _connect(device) as conn:
        proc = await conn.create_process("echo first; read line; echo got-$line")
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == "first\n"
        proc.stdin.write("reply\n")
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == "got-reply\n"
        assert (await asyncio.wait_for(proc.wait(), 10)).exit_status == 0


async def test_client_hangup_stops_the_command(sim_state: DeviceState) -> None:
    # Found by its command line in the host's /proc: as root the command runs in the device's own PID
    # namespace, so the pid it could print ($$) would not be the host's.
    marker = f"{30 + secrets.randbelow(10**6) / 10**7:.7f}"
    async with running_device(sim_state) as device, _connect(device) as conn:
        proc = await conn.create_process(f"echo started; exec sleep {marker}")
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == "started\n"
        for _ in range(100):  # "started" comes before the exec: on a loaded box the shell may not be sleep yet
            if _running(marker):
                break
            await asyncio.sleep(0.05)
        assert _running(marker)
        proc.close()
        await asyncio.wait_for(proc.wait_closed(), 5)
        for _ in range(100):
            if not _running(marker):
                break
            await asyncio.sleep(0.05)
        assert not _running(marker), "the command outlived the session"


def _running(marker: str) -> bool:
    """A live (not zombie) host process runs ``sleep marker``."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if argv[:2] == [b"sleep", marker.encode()] and state not in ("Z", "X"):
            return True
    return False


async def test_journal_follow_streams(sim_state: DeviceState) -> None:
    async with running_device(sim_state) as device, _connect(device) as conn:
        proc = await conn.create_process("journalctl -o json -f")
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        assert "MESSAGE" in first
        assert "__REALTIME_TIMESTAMP" in first
        # Log until one shows up: journalctl -f may start watching a moment after its first lines.
        for attempt in range(30):
            sim_state.log(f"streamed-marker-{attempt}", unit="siteline-test")
            try:
                doc = json.loads(await asyncio.wait_for(proc.stdout.readline(), 0.5))
            except TimeoutError:
                continue
            if str(doc.get("MESSAGE", "")).startswith("streamed-marker-"):
                break
        else:
            raise AssertionError("journalctl -f never streamed a new entry")
        proc.close()
        await asyncio.wait_for(proc.wait_closed(), 5)


async def test_password_and_key_auth(sim_state: DeviceState, tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    async with running_device(sim_state) as device:
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(device, password="wrong"):
                pass
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(device, password=None, client_keys=[key]):
                pass  # not yet authorised
        auth = sim_state.authorized_keys_path("root")
        auth.write_bytes(key.export_public_key())
        async with _connect(device, password=None, client_keys=[key]) as conn:
            assert (await conn.run("echo key", check=True)).stdout == "key\n"


async def _host_key(device: SimulatedDevice) -> bytes:
    async with _connect(device) as conn:
        server_key = conn.get_server_host_key()
        assert server_key is not None
        return bytes(server_key.public_data)


async def test_host_key_belongs_to_state_dir(tmp_path: Path) -> None:
    one = make_state(tmp_path / "one")
    async with running_device(one) as device:
        first = await _host_key(device)
    async with running_device(DeviceState.open(tmp_path / "one")) as device:
        again = await _host_key(device)
    async with running_device(make_state(tmp_path / "two")) as device:
        other = await _host_key(device)
    assert first == again
    assert first != other


async def test_sftp_upload_lands_in_device(sim_state: DeviceState, tmp_path: Path) -> None:
    image = tmp_path / "image.raucb"
    image.write_bytes(b"\x00bundle" * 4096)
    async with running_device(sim_state) as device, _connect(device) as conn, conn.start_sftp_client() as sftp:
        await sftp.makedirs("/data", exist_ok=True)
        await sftp.put(str(image), "/data/image.raucb")
        assert await sftp.getsize("/data/image.raucb") == image.stat().st_size
        await sftp.put(str(image), "/../../escape.bin")  # chrooted: ".." stops at the device's "/"
    landed = sim_state.root / "rootfs/data/image.raucb"
    assert landed.read_bytes() == image.read_bytes()
    assert (sim_state.root / "rootfs/escape.bin").exists()
    assert not (sim_state.root.parent / "escape.bin").exists()


async def test_interactive_shell_on_pty(sim_state: DeviceState) -> None:
    async with running_device(sim_state) as device, _connect(device) as conn:
        proc = await conn.create_process(term_type="xterm", term_size=(100, 30))
        proc.stdin.write("stty size; echo mark-$((6*7))\n")
        seen = ""
        async with asyncio.timeout(10):
            while "mark-42" not in seen:
                seen += await proc.stdout.read(1024)
        assert "30 100" in seen
        proc.change_terminal_size(120, 40)
        proc.stdin.write("stty size\nexit 3\n")
        result = await asyncio.wait_for(proc.wait(), 10)
        assert "40 120" in result.stdout
        assert result.exit_status == 3


async def test_usernames_cannot_reach_outside_the_device(sim_state: DeviceState, tmp_path: Path) -> None:
    """A traversal username creates nothing outside the state dir and cannot use keys found there."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    victim = tmp_path / "victim" / ".ssh"
    victim.mkdir(parents=True)
    (victim / "authorized_keys").write_bytes(key.export_public_key())  # as the host's /root/.ssh would have
    before = _outside(tmp_path)
    async with running_device(sim_state) as device:
        escape = "../../../escaped"  # rootfs/home/<user> -> tmp_path/escaped
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(device, username=escape, password="wrong"):
                pass
        for user in ("../../../victim", "../../victim/../../victim", "nosuchuser"):
            with pytest.raises(asyncssh.PermissionDenied):
                async with _connect(device, username=user, password=None, client_keys=[key]):
                    pass
        with pytest.raises(asyncssh.PermissionDenied):  # a password that is right for root, a name that is not
            async with _connect(device, username="root/../root", password=PASSWORD):
                pass
    assert _outside(tmp_path) == before
    assert not (tmp_path / "escaped").exists()
    assert not (sim_state.root / "rootfs/home/nosuchuser").exists()


def _outside(tmp_path: Path) -> list[Path]:
    """Everything under tmp_path that is not the device's state dir."""
    return sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "device" not in p.parts)


async def test_keys_only_device_refuses_the_right_password(sim_state: DeviceState) -> None:
    device = SimulatedDevice(sim_state, ssh_port=0, ssh_password_login=False)
    await device.start()
    try:
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(device):
                pass
    finally:
        await device.stop()
