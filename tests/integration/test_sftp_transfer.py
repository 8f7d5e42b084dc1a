"""SFTP put/get with progress, resume and SHA-256 checks, through the fault proxy in front of real sshd."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.integrity import BLOCK_SIZE
from siteline.core.transports.ssh import SshTransport
from siteline.core.transports.transfer import Progress

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd"), pytest.mark.timeout(30)]
MIB = 1 << 20


@pytest.fixture
def proxy(sshd: SshdHandle) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        yield p


def _transport(sshd: SshdHandle, proxy: FaultProxy, tmp: Path) -> SshTransport:
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{proxy.port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    return SshTransport(target, creds, tmp / "known_hosts", keepalive_interval=1.0, accept_new_host_key=True)


def _file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


# Small sync helpers: the async tests touch local files only through these (ruff ASYNC240).
def _exists(path: Path) -> bool:
    return path.exists()


def _size(path: Path) -> int:
    return path.stat().st_size


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_put_and_get_with_progress(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.shape(rtt=0.01, rate=20_000_000)
    src = _file(tmp_path / "src.bin", 4 * MIB)
    remote = tmp_path / "far" / "dst.bin"
    remote.parent.mkdir()
    seen: list[Progress] = []
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        began = time.monotonic()
        result = await t.put(src, str(remote), progress=seen.append)
        took = time.monotonic() - began
        assert _sha(remote) == _sha(src) == result.sha256
        assert not _exists(Path(str(remote) + ".part"))
        assert (result.size, result.resumed_from, result.transferred) == (4 * MIB, 0, 4 * MIB)
        assert seen[-1].done == seen[-1].total == 4 * MIB
        assert [p.done for p in seen] == sorted(p.done for p in seen)
        assert len(seen) <= took * 10 + 2  # throttled to 10 a second
        assert any(p.rate > 0 and p.eta is not None for p in seen)

        back = tmp_path / "back.bin"
        got = await t.get(str(remote), back, progress=seen.append)
        assert _sha(back) == _sha(src) == got.sha256
        assert not _exists(back.with_name("back.bin.part"))
    finally:
        await t.close()


async def test_cut_at_half_then_resume_sends_little_more_than_the_file(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    size = 64 * MIB  # the 2 MiB in flight at the cut may be lost: 3 % of this file, well inside the 5 % bound
    src = _file(tmp_path / "src.bin", size)
    remote = str(tmp_path / "dst.bin")
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    proxy.cut_after(up=size // 2)
    with pytest.raises(TransportError, match=r"(?i)run the upload again"):
        await t.put(src, remote)
    await t.close()
    part = Path(remote + ".part")
    assert 0 < _size(part) < size

    proxy.heal()
    t2 = _transport(sshd, proxy, tmp_path)
    await t2.connect()
    try:
        result = await t2.put(src, remote)
    finally:
        await t2.close()
    print(f"resumed from {result.resumed_from}, sent {proxy.bytes_up} for {size}")
    assert result.resumed_from > size // 3
    assert _sha(Path(remote)) == _sha(src)
    assert proxy.bytes_up <= 1.05 * size, f"sent {proxy.bytes_up / size:.3f} x the file"


async def test_corrupted_part_tail_is_sent_again(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    src = _file(tmp_path / "src.bin", 6 * MIB)
    remote = str(tmp_path / "dst.bin")
    data = src.read_bytes()
    _write(Path(remote + ".part"), data[: 4 * MIB] + b"\0" * 4096)  # a torn, zero-filled tail
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        result = await t.put(src, remote)
    finally:
        await t.close()
    assert 0 < result.resumed_from < 4 * MIB
    assert _sha(Path(remote)) == _sha(src)


async def test_holes_in_the_last_window_are_filled_and_good_blocks_kept(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    src = _file(tmp_path / "src.bin", 6 * MIB)
    remote = str(tmp_path / "dst.bin")
    part = bytearray(src.read_bytes()[: 4 * MIB])
    hole = 4 * MIB - 5 * BLOCK_SIZE  # a request that never landed, with later ones that did
    part[hole : hole + BLOCK_SIZE] = bytes(BLOCK_SIZE)
    _write(Path(remote + ".part"), bytes(part))
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        proxy.reset_counters()
        result = await t.put(src, remote)
    finally:
        await t.close()
    assert _sha(Path(remote)) == _sha(src)
    assert result.resumed_from == 4 * MIB - BLOCK_SIZE  # everything but the hole was kept
    assert proxy.bytes_up < 2 * MIB + 4 * BLOCK_SIZE, "only the hole and the missing end were sent"


async def test_get_resumes_from_a_checked_local_part(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    remote = _file(tmp_path / "far.bin", 5 * MIB)
    local = tmp_path / "near.bin"
    local.with_name("near.bin.part").write_bytes(remote.read_bytes()[: 3 * MIB])
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        result = await t.get(str(remote), local)
    finally:
        await t.close()
    assert result.resumed_from == 3 * MIB
    assert _sha(local) == _sha(remote)


async def test_clear_errors(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    src = _file(tmp_path / "src.bin", 1000)
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        with pytest.raises(TransportError, match=r"local file .* does not exist"):
            await t.put(tmp_path / "nope.bin", str(tmp_path / "x"))
        with pytest.raises(TransportError, match="does not exist on the device"):
            await t.put(src, str(tmp_path / "missing-dir" / "x.bin"))
        with pytest.raises(TransportError, match="does not exist"):
            await t.get(str(tmp_path / "missing.bin"), tmp_path / "m.bin")
        # Root ignores file modes; /proc refuses new files to everyone.
        with pytest.raises(TransportError, match=r"permission denied|does not exist"):
            await t.put(src, "/proc/siteline-test.bin")
    finally:
        await t.close()


async def test_transfers_run_over_two_sftp_sessions(sshd_bastion: SshdHandle, tmp_path: Path) -> None:
    device = sshd_bastion  # the sshd that logs at DEBUG1, where each subsystem request shows
    src = _file(tmp_path / "src.bin", 3 * MIB)
    offset = _size(device.log_file)
    target = parse_target(f"ssh://{device.user}@127.0.0.1:{device.port}")
    t = SshTransport(target, Credentials(key_path=str(device.client_key), use_agent=False), tmp_path / "known_hosts",
                     accept_new_host_key=True)
    await t.connect()
    try:
        up = await t.put(src, str(tmp_path / "dst.bin"))
        down = await t.get(str(tmp_path / "dst.bin"), tmp_path / "back.bin")
    finally:
        await t.close()
    assert up.sha256 == down.sha256 == _sha(tmp_path / "back.bin") == _sha(src)
    assert device.log_text(offset).count("request subsystem") == 4  # put: 2 sessions, get: 2


def _limit_sessions(sshd: SshdHandle, sessions: int) -> None:
    """Restart sshd with MaxSessions (a small device's limit on channels per connection)."""
    sshd.stop()
    write = sshd._write_config

    def limited() -> Path:
        cfg = write()
        cfg.write_text(cfg.read_text() + f"MaxSessions {sessions}\n")
        return cfg

    sshd._write_config = limited  # type: ignore[method-assign]
    sshd.start()


async def test_a_device_allowing_one_session_still_gets_checked_files(
    sshd: SshdHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _limit_sessions(sshd, 1)
    src = _file(tmp_path / "src.bin", 3 * MIB)
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}")
    t = SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False), tmp_path / "known_hosts",
                     accept_new_host_key=True)
    await t.connect()
    try:
        with caplog.at_level("DEBUG", logger="siteline.core.transports.transfer"):
            up = await t.put(src, str(tmp_path / "dst.bin"))
            down = await t.get(str(tmp_path / "dst.bin"), tmp_path / "back.bin")
    finally:
        await t.close()
    assert up.sha256 == down.sha256 == _sha(src) == _sha(tmp_path / "back.bin")
    assert "using 1 SFTP session(s)" in caplog.text


async def test_a_directory_takes_the_file_inside_and_done_means_on_disk(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _file(tmp_path / "src.bin", 300_000)
    far = tmp_path / "far"
    far.mkdir()
    remote_syncs: list[str] = []
    real_fsync = asyncssh.SFTPClientFile.fsync

    async def spy_remote(self: asyncssh.SFTPClientFile) -> None:
        try:
            await real_fsync(self)
        except asyncssh.SFTPError as exc:
            remote_syncs.append(type(exc).__name__)
            raise
        remote_syncs.append("ok")

    monkeypatch.setattr(asyncssh.SFTPClientFile, "fsync", spy_remote)
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        for remote in (str(far), f"{far}/"):  # as scp: an existing directory, or a trailing slash
            up = await t.put(src, remote)
            assert up.path == str(far / "src.bin")
        assert sorted(p.name for p in far.iterdir()) == ["src.bin"]
        assert _sha(far / "src.bin") == _sha(src)
        assert remote_syncs == ["ok", "ok"]  # OpenSSH has fsync@openssh.com: the data was on disk before the rename
        (far / "sub").mkdir()
        with pytest.raises(TransportError, match="sub: it is a directory on the device"):
            await t.put(_file(tmp_path / "sub", 10), str(far))

        local_syncs: list[str] = []
        real = os.fsync

        def spy_local(fd: int) -> None:
            local_syncs.append(os.readlink(f"/proc/self/fd/{fd}"))
            real(fd)

        monkeypatch.setattr(os, "fsync", spy_local)
        logs = tmp_path / "logs"
        logs.mkdir()
        down = await t.get(str(far / "src.bin"), logs)
        assert down.path == str(logs / "src.bin")
        assert _sha(logs / "src.bin") == _sha(src)
        assert local_syncs == [str(logs / "src.bin.part"), str(logs)]  # the file before the rename, the folder after
    finally:
        await t.close()
