"""`siteline put` / `siteline get` as a script sees them: SFTP to a real sshd, console chunks to the simulator."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_cli import siteline
from tests.peers.faultproxy import FaultProxy

MIB = 1 << 20


def _file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def proxy(sshd: Any) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        yield p


def test_put_and_get_over_ssh_print_the_sha256(sshd: Any, tmp_path: Path) -> None:
    src = _file(tmp_path / "src.bin", 3 * MIB + 5)
    remote = tmp_path / "remote dir"
    remote.mkdir()
    target = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    key = ["-i", str(sshd.client_key), "--accept-new-host-key"]
    dest = remote / "it's.bin"
    put = siteline("put", target, str(src), str(dest), *key, home=tmp_path)
    assert put.returncode == 0, put.stderr
    assert put.stdout == f"{_sha(src)}  {dest}\n"
    assert "100.0%" in put.stderr  # the last progress line (plain: stderr is not a terminal here)
    assert "\r" not in put.stderr
    back = tmp_path / "back.bin"
    got = siteline("get", target, str(dest), str(back), *key, home=tmp_path)
    assert got.returncode == 0, got.stderr
    assert _sha(back) == _sha(src)
    assert got.stdout.split()[0] == _sha(src)


def test_cut_upload_then_second_put_resumes(sshd: Any, proxy: FaultProxy, tmp_path: Path) -> None:
    size = 16 * MIB
    src = _file(tmp_path / "src.bin", size)
    remote = tmp_path / "dst.bin"
    target = f"ssh://{sshd.user}@127.0.0.1:{proxy.port}"
    key = ["-i", str(sshd.client_key), "--accept-new-host-key"]
    proxy.cut_after(up=size // 2)
    first = siteline("put", target, str(src), str(remote), *key, home=tmp_path)
    assert first.returncode == 4, first.stderr
    assert "again" in first.stderr
    assert first.stderr.strip().splitlines()[-1].startswith("siteline: ")
    proxy.heal()
    proxy.reset_counters()
    second = siteline("put", target, str(src), str(remote), *key, home=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "siteline: resuming at " in second.stderr
    assert f"of {size / MIB:.1f} MiB" in second.stderr
    assert _sha(remote) == _sha(src)
    assert proxy.bytes_up < 0.8 * size  # the kept half did not go again


def test_usage_errors(tmp_path: Path) -> None:
    missing = siteline("put", "ssh://root@127.0.0.1:1", str(tmp_path / "nope"), "/tmp/x", home=tmp_path)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    nodir = siteline("get", "ssh://root@127.0.0.1:1", "/etc/hostname", str(tmp_path / "no" / "x"), home=tmp_path)
    assert nodir.returncode == 2
    fwd = siteline("forward", "mqtt://127.0.0.1:1/edge/a/b", "80", home=tmp_path)
    assert fwd.returncode == 2
    assert "needs SSH" in fwd.stderr
    spec = siteline("forward", "ssh://root@127.0.0.1:1", "80:x", home=tmp_path)
    assert spec.returncode == 2


def test_put_and_get_over_the_simulators_serial_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.peers.sim import PASSWORD, start_sim_process

    link = tmp_path / "ttySIM0"
    device = start_sim_process(tmp_path / "dev", "--serial-link", str(link))
    try:
        src = _file(tmp_path / "small.bin", 5000)
        target = f"serial://{link}?baud=115200"
        env = {"SITELINE_PASSWORD": PASSWORD}
        # The simulator's shell sees the host's files: every path stays under tmp_path.
        far = tmp_path / "far"
        far.mkdir()
        put = siteline("put", target, str(src), str(far), "--user", "root", home=tmp_path, env=env)
        assert put.returncode == 0, put.stderr
        assert put.stdout == f"{_sha(src)}  {far / 'small.bin'}\n"  # into the directory, as scp; says where
        assert sorted(p.name for p in far.iterdir()) == ["small.bin"]
        monkeypatch.chdir(tmp_path / "dev")  # `get ... .` writes to the working directory
        got = siteline("get", target, str(far / "small.bin"), ".", "--user", "root", home=tmp_path, env=env)
        assert got.returncode == 0, got.stderr
        back = tmp_path / "dev" / "small.bin"
        assert got.stdout == f"{_sha(src)}  small.bin\n"
        assert back.read_bytes() == src.read_bytes()
        # A cut upload left its first 3000 bytes behind: the next put keeps the whole chunks among them.
        dest = tmp_path / "again.bin"
        Path(f"{dest}.part").write_bytes(src.read_bytes()[:3000])
        again = siteline("put", target, str(src), str(dest), "--user", "root", home=tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        assert re.search(r"siteline: resuming at 2\.\d KiB of 4\.9 KiB", again.stderr), again.stderr
        assert dest.read_bytes() == src.read_bytes()
    finally:
        device.stop()


def test_put_into_a_directory_and_get_into_a_folder_over_ssh(sshd: Any, tmp_path: Path) -> None:
    src = _file(tmp_path / "src.bin", 100_000)
    far = tmp_path / "far"
    far.mkdir()
    target = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    key = ["-i", str(sshd.client_key), "--accept-new-host-key"]
    for remote in (str(far), f"{far}/"):
        put = siteline("put", target, str(src), remote, *key, home=tmp_path)
        assert put.returncode == 0, put.stderr
        assert put.stdout == f"{_sha(src)}  {far / 'src.bin'}\n"
    assert sorted(p.name for p in far.iterdir()) == ["src.bin"]
    logs = tmp_path / "logs"
    logs.mkdir()
    got = siteline("get", target, str(far / "src.bin"), f"{logs}/", *key, home=tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"{_sha(src)}  {logs / 'src.bin'}\n"
    assert sorted(p.name for p in logs.iterdir()) == ["src.bin"]
    missing = siteline("get", target, str(far / "src.bin"), f"{tmp_path}/nope/", *key, home=tmp_path)
    assert missing.returncode == 2
    assert "nope does not exist" in missing.stderr
    noname = siteline("get", target, "/", str(logs), *key, home=tmp_path)
    assert noname.returncode == 2
    assert "names no file" in noname.stderr
