"""Files over a console through real shells: bash on a pty (socat), the simulator's serial console, MQTT.

Every transfer goes through the transport's own ``run``; cuts are a ``run`` that raises after N chunk
commands (what a pulled cable looks like to the transfer), corruption is a byte changed in the real
``.part`` file between runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from tests.peers import require_tool
from tests.peers.sim import PASSWORD, running_device
from tests.peers.socat_shell import SocatShell, start_socat_shell

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.console_transfer import (
    CHUNK_SIZE,
    Progress,
    RunCommand,
    get_over_console,
    put_over_console,
)
from siteline.core.transports.mqtt import MqttTransport
from siteline.core.transports.serial import SerialTransport
from siteline.simulator.broker import BrokerHandle
from siteline.simulator.state import DeviceState

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]
ODD_DIR = "dir with 'quotes' and \"spaces\""
APPEND = "printf %s "  # how an upload chunk command starts
READ = "| base64 &&"  # in every download chunk command
CS = 400  # chunk size the resume tests ask for: fits a typed line even with ODD_DIR in a long tmp path


# Small sync helpers: the async tests touch local files only through these (ruff ASYNC240).
def _read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _exists(path: str | Path) -> bool:
    return Path(path).exists()


def _size_of(path: str | Path) -> int:
    return Path(path).stat().st_size


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _flip(path: str | Path, offset: int, mask: int) -> None:
    """One byte of ``path`` changes, as a flash cell that rots or a tampered file."""
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= mask
    Path(path).write_bytes(bytes(data))


def _payload(size: int, seed: int = 1) -> bytes:
    """Binary data with every byte value, NULs and newlines included."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest() + bytes(range(256))
        counter += 1
    return bytes(out[:size])


def _cut_after(run: RunCommand, marker: str, n: int) -> tuple[RunCommand, list[int]]:
    """``run`` that raises like a dropped link when the (n+1)-th command containing ``marker`` is sent."""
    seen = [0]

    async def cut(command: str, timeout: float) -> Result:
        if marker in command:
            if seen[0] >= n:
                raise TransportError("The serial port went away (cable pulled).")
            seen[0] += 1
        return await run(command, timeout)

    return cut, seen


@pytest_asyncio.fixture
async def bash_run(socat_shell: SocatShell) -> AsyncIterator[RunCommand]:
    t = SerialTransport(parse_target(socat_shell.url), Credentials(), wake_timeout=1.0)
    await t.connect()
    try:
        yield t.run
    finally:
        await t.close()


@pytest.fixture
def odd_dir(tmp_path: Path) -> Path:
    d = tmp_path / ODD_DIR
    d.mkdir()
    return d


async def _round_trip(run: RunCommand, tmp_path: Path, remote_dir: Path, data: bytes, name: str) -> None:
    src = tmp_path / f"{name}.src"
    src.write_bytes(data)
    remote = str(remote_dir / f"{name} it's.bin")
    seen: list[Progress] = []
    up = await put_over_console(run, src, remote, seen.append)
    assert _read(remote) == data
    assert not _exists(remote + ".part")
    assert (up.size, up.transferred, up.resumed_from) == (len(data), len(data), 0)
    assert up.sha256 == hashlib.sha256(data).hexdigest()
    assert seen
    assert seen[-1].done == len(data)
    back = tmp_path / f"{name}.back"
    down = await get_over_console(run, remote, back)
    assert _read(back) == data
    assert not _exists(back.with_name(back.name + ".part"))
    assert down.sha256 == up.sha256


# -- bash on a pty (socat) ---------------------------------------------------------------------------


@pytest.mark.peer("socat")
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 17])
async def test_bash_round_trip(bash_run: RunCommand, tmp_path: Path, odd_dir: Path, size: int) -> None:
    await _round_trip(bash_run, tmp_path, odd_dir, _payload(size, size), f"f{size}")


@pytest.mark.peer("socat")
async def test_bash_upload_resumes_after_a_cut(bash_run: RunCommand, tmp_path: Path, odd_dir: Path) -> None:
    data = _payload(10 * CS + 100)
    src, remote = tmp_path / "big", str(odd_dir / "big.bin")
    src.write_bytes(data)
    cut, _ = _cut_after(bash_run, APPEND, 4)
    with pytest.raises(TransportError, match=f"stopped after {4 * CS} bytes of {10 * CS + 100} bytes") as info:
        await put_over_console(cut, src, remote, chunk_size=CS)
    assert "Run it again to resume" in info.value.hint
    assert _size_of(remote + ".part") == 4 * CS
    again = await put_over_console(bash_run, src, remote, chunk_size=CS)
    assert again.resumed_from == 4 * CS
    assert again.transferred == len(data) - 4 * CS  # only the remainder went over the line
    assert _read(remote) == data


@pytest.mark.peer("socat")
async def test_bash_upload_drops_a_corrupted_tail(bash_run: RunCommand, tmp_path: Path, odd_dir: Path) -> None:
    data = _payload(8 * CS)
    src, remote = tmp_path / "c", str(odd_dir / "c.bin")
    src.write_bytes(data)
    cut, _ = _cut_after(bash_run, APPEND, 6)
    with pytest.raises(TransportError):
        await put_over_console(cut, src, remote, chunk_size=CS)
    _flip(remote + ".part", 3 * CS + 5, 0xFF)  # chunk 3 rots on the device's flash
    again = await put_over_console(bash_run, src, remote, chunk_size=CS)
    assert again.resumed_from == 3 * CS  # chunks 0-2 kept, 3 and later sent again
    assert _read(remote) == data


@pytest.mark.peer("socat")
async def test_bash_garbled_chunk_is_cut_and_sent_again(bash_run: RunCommand, tmp_path: Path, odd_dir: Path) -> None:
    data = _payload(3 * CS)
    src, remote = tmp_path / "g", str(odd_dir / "g.bin")
    src.write_bytes(data)
    appends = [0]

    async def noisy(command: str, timeout: float) -> Result:
        if APPEND in command:
            appends[0] += 1
            if appends[0] == 2:  # the line flips a character of chunk 2 on its way
                at = command.index(APPEND) + len(APPEND) + 100
                command = command[:at] + ("A" if command[at] != "A" else "B") + command[at + 1 :]
        return await bash_run(command, timeout)

    result = await put_over_console(noisy, src, remote, chunk_size=CS)
    assert appends[0] == 4  # three chunks, one of them twice
    assert _read(remote) == data
    assert result.transferred == len(data)


@pytest.mark.peer("socat")
async def test_bash_download_resumes_and_drops_a_bad_tail(bash_run: RunCommand, tmp_path: Path) -> None:
    data = _payload(9 * CS + 5)
    remote = tmp_path / "remote file.bin"
    remote.write_bytes(data)
    local = tmp_path / "local.bin"
    cut, _ = _cut_after(bash_run, READ, 5)
    with pytest.raises(TransportError, match="Run it again to resume"):
        await get_over_console(cut, str(remote), local, chunk_size=CS)
    part = local.with_name("local.bin.part")
    assert _size_of(part) == 5 * CS
    _flip(part, 4 * CS, 0x01)
    again = await get_over_console(bash_run, str(remote), local, chunk_size=CS)
    assert again.resumed_from == 4 * CS
    assert _read(local) == data
    assert not _exists(part)


@pytest.mark.peer("socat")
async def test_bash_clear_errors(bash_run: RunCommand, tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.write_bytes(b"x" * 100)
    with pytest.raises(TransportError, match="does not exist on the device"):
        await put_over_console(bash_run, src, str(tmp_path / "no such dir" / "f"))
    with pytest.raises(TransportError, match=r"local file .* does not exist"):
        await put_over_console(bash_run, tmp_path / "missing", str(tmp_path / "f"))
    with pytest.raises(TransportError, match="it does not exist on the device"):
        await get_over_console(bash_run, str(tmp_path / "nothing here"), tmp_path / "x")
    with pytest.raises(TransportError, match=r"up to 50 bytes\. At 115200 bit/s it would take about 0.0 minutes"):
        await put_over_console(bash_run, src, str(tmp_path / "f"), max_size=50, line_bps=115200)
    assert not (tmp_path / "f.part").exists()


# -- the simulator: serial console and MQTT ------------------------------------------------------------


async def _sim_serial(state: DeviceState, link: Path, use: Callable[[RunCommand], Awaitable[None]]) -> None:
    async with running_device(state, ssh=False, serial_link=link):
        target = parse_target(f"serial://{link}?baud=115200")
        t = SerialTransport(target, Credentials("root", PASSWORD), wake_timeout=1.0, login_timeout=5.0)
        await t.connect()

        try:
            await use(t.run)
        finally:
            await t.close()


async def test_sim_serial_round_trip_and_resume(tmp_path: Path, odd_dir: Path) -> None:
    from tests.peers.sim import make_state

    state = make_state(tmp_path / "device")
    data = _payload(4 * CS + 9)

    async def use(run: RunCommand) -> None:
        await _round_trip(run, tmp_path, odd_dir, data[:CHUNK_SIZE + 3], "sim")
        src, remote = tmp_path / "r", str(odd_dir / "r.bin")
        src.write_bytes(data)
        cut, _ = _cut_after(run, APPEND, 2)
        with pytest.raises(TransportError, match="Run it again to resume"):
            await put_over_console(cut, src, remote, chunk_size=CS)
        again = await put_over_console(run, src, remote, chunk_size=CS)
        assert (again.resumed_from, again.transferred) == (2 * CS, len(data) - 2 * CS)
        assert _read(remote) == data
        rel = await put_over_console(run, src, "rel.bin")  # relative: into the login's home on the device
        assert rel.size == len(data)
        assert [p.read_bytes() for p in (tmp_path / "device").rglob("rel.bin")] == [data]

    await _sim_serial(state, tmp_path / "ttyCT", use)


@pytest.mark.peer("mosquitto")
async def test_sim_mqtt_round_trip(sim_state: DeviceState, mosquitto: BrokerHandle, tmp_path: Path,
                                   odd_dir: Path) -> None:
    async with running_device(sim_state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
        prefix = f"edge/{sim_state.config.site}/{sim_state.config.name}"
        t = MqttTransport(parse_target(f"mqtt://127.0.0.1:{mosquitto.port}/{prefix}"), Credentials(),
                          connect_timeout=3, status_timeout=3)
        await t.connect()
        try:
            await _round_trip(t.run, tmp_path, odd_dir, _payload(2 * CHUNK_SIZE + 1, 7), "mq")
            await _round_trip(t.run, tmp_path, odd_dir, b"", "mq-empty")
            # No line editor between MQTT and the device's shell: `siteline put` gives it longer lines.
            data = _payload(3 * CHUNK_SIZE + 5, 8)
            src = tmp_path / "long-lines.src"
            src.write_bytes(data)
            sent: list[tuple[str, Result]] = []
            up = await put_over_console(_recording(t.run, sent), src, f"{odd_dir}/", max_line=cmds.LONG_LINE)
            assert _read(up.path) == data
            assert len([c for c, _ in sent if APPEND in c]) == 4  # whole 2304-byte chunks
        finally:
            await t.close()



@pytest.mark.peer("socat")
async def test_bash_openssl_fallback(bash_run: RunCommand, tmp_path: Path, odd_dir: Path) -> None:
    """A device without base64: the probe says so (rewritten here), and openssl's base64 carries the chunks."""

    async def no_base64(command: str, timeout: float) -> Result:
        result = await bash_run(command, timeout)
        if "codec=" in result.stdout:
            result = Result(result.exit_code, result.stdout.replace("codec=base64", "codec=openssl"), result.stderr)
        else:
            assert "| base64" not in command
        return result

    await _round_trip(no_base64, tmp_path, odd_dir, _payload(2 * CS + 7, 3), "ossl")


# -- destinations that are folders, line length, power cuts ----------------------------------------------


def _recording(run: RunCommand, sent: list[tuple[str, Result]]) -> RunCommand:
    async def rec(command: str, timeout: float) -> Result:
        result = await run(command, timeout)
        sent.append((command, result))
        return result

    return rec


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths os.fsync is called on from now on (a spy: the real fsync still runs)."""
    paths: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return paths


@pytest.mark.peer("socat")
async def test_bash_put_into_a_directory_and_get_into_a_folder(
    bash_run: RunCommand, tmp_path: Path, odd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _payload(1500, 5)
    src = tmp_path / "the image.bin"
    src.write_bytes(data)
    sent: list[tuple[str, Result]] = []
    run = _recording(bash_run, sent)
    # As scp: an existing directory, or a path ending in "/", gets the local file's name inside it.
    for remote in (str(odd_dir), f"{odd_dir}/"):
        up = await put_over_console(run, src, remote)
        assert up.path == str(odd_dir / "the image.bin")
        assert _read(up.path) == data
    assert _names(odd_dir) == ["the image.bin"]  # no stray .part, nothing moved in
    # The device syncs before the rename (data on flash) and after it (the new name).
    finish = [c for c, _ in sent if " mv -f " in c]
    assert finish
    assert all("sync && mv -f " in c and c.endswith("&& sync") for c in finish)
    (odd_dir / "sub").mkdir()
    sub_src = tmp_path / "sub"
    sub_src.write_bytes(b"x")
    with pytest.raises(TransportError, match="sub: it is a directory on the device"):
        await put_over_console(run, sub_src, str(odd_dir))
    with pytest.raises(TransportError, match="does not exist on the device"):
        await put_over_console(run, src, f"{odd_dir}/missing/")

    fsynced = _fsynced(monkeypatch)
    folder = tmp_path / "logs"
    folder.mkdir()
    down = await get_over_console(run, str(odd_dir / "the image.bin"), folder)
    assert down.path == str(folder / "the image.bin")
    assert _read(folder / "the image.bin") == data
    assert _names(folder) == ["the image.bin"]
    # On disk before the rename, then the folder after it: a file reported done survives a power cut.
    assert fsynced == [str(folder / "the image.bin.part"), str(folder)]
    with pytest.raises(TransportError, match="names no file"):
        await get_over_console(run, "/", folder)
    taken = tmp_path / "taken"
    (taken / "the image.bin").mkdir(parents=True)  # the name the download would take inside the folder
    with pytest.raises(TransportError, match=r"the image\.bin is a folder"):
        await get_over_console(run, str(odd_dir / "the image.bin"), taken)


@pytest.mark.peer("socat")
async def test_bash_every_typed_line_fits_busybox_ash(bash_run: RunCommand, tmp_path: Path, odd_dir: Path) -> None:
    """No typed line, framing included, passes MAX_TYPED_LINE (ash cuts at 1023); and what that costs.

    Measured here (a 20 KB file; 62- and 93-character folders): an upload types 1.84 and 2.04 bytes per payload
    byte (base64 alone: 1.33; 1.65 to a short path like /data/update.bin), a download's replies 1.39.
    """
    data = _payload(20_000, 9)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    sent: list[tuple[str, Result]] = []
    run = _recording(bash_run, sent)
    for where in (tmp_path, odd_dir):  # a plain path, and one whose quotes the framing quotes again
        sent.clear()
        up = await put_over_console(run, src, str(where / "f.bin"))
        assert max(cmds.typed_length(c) for c, _ in sent) <= cmds.MAX_TYPED_LINE
        typed = sum(cmds.typed_length(c) for c, _ in sent)  # the Enter included
        back = sum(len(r.stdout) + len(r.stderr) for _, r in sent)
        print(f"\nupload to {len(str(where))}-char dir: {len(sent)} commands, typed {typed / len(data):.2f} B/B, "
              f"replies {back / len(data):.2f} B/B")
        assert typed < 2.1 * len(data)
        assert up.size == len(data)
    sent.clear()
    await get_over_console(run, str(tmp_path / "f.bin"), tmp_path / "down.bin")
    typed = sum(cmds.typed_length(c) for c, _ in sent)
    back = sum(len(r.stdout) + len(r.stderr) for _, r in sent)
    print(f"download: {len(sent)} commands, typed {typed / len(data):.2f} B/B, replies {back / len(data):.2f} B/B")
    assert back < 1.45 * len(data)
    assert max(cmds.typed_length(c) for c, _ in sent) <= cmds.MAX_TYPED_LINE


@pytest.mark.peer("socat")
async def test_bash_too_long_a_path_is_refused_before_a_byte(bash_run: RunCommand, tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.write_bytes(b"x" * 100)
    sent: list[tuple[str, Result]] = []
    with pytest.raises(TransportError, match="too long to type"):
        await put_over_console(_recording(bash_run, sent), src, str(tmp_path / ("d" * 300) / "f.bin"))
    assert sent == []


@pytest.mark.peer("socat")
async def test_dash_round_trip_into_a_directory(tmp_path: Path, odd_dir: Path) -> None:
    """dash descends from ash (BusyBox's shell): the lines are plain POSIX sh, no bash in them."""
    require_tool("socat")
    require_tool("dash")
    shell = start_socat_shell(tmp_path / "dash", ps1="# ", program="/bin/dash -i")
    try:
        t = SerialTransport(parse_target(shell.url), Credentials(), wake_timeout=1.0)
        await t.connect()
        try:
            data = _payload(2500, 11)
            src = tmp_path / "d.bin"
            src.write_bytes(data)
            up = await put_over_console(t.run, src, str(odd_dir))
            assert up.path == str(odd_dir / "d.bin")
            assert _read(up.path) == data
            down = await get_over_console(t.run, up.path, tmp_path / "dash")
            assert _read(down.path) == data
        finally:
            await t.close()
    finally:
        shell.stop()
