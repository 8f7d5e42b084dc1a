"""Update backends' install commands: exact text, hostile paths stay literal, and the raw write run by a real shell."""

from __future__ import annotations

import asyncio
import gzip
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from siteline.core.plugin_api import DeviceContext, UpdateBackend, make_context
from siteline.core.transports.base import Result
from siteline_slots import siteline_update_backends
from siteline_slots.update import RaucBackend, RawBackend, SwupdateBackend
from tests.peers import require_tool

HOSTILE = ["/data/my image.swu", "/data/it's.swu", '/data/"q".swu', "/data/$(touch PWNED).swu", "/data/`id`;rm.swu",
           "/data/a\nb.swu"]
ENV_SIZE = 0x4000
PAYLOAD = os.urandom(3 * 65536 + 123)


def _bash(command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    bash = require_tool("bash")
    return subprocess.run([bash, "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, **(env or {})})


def test_registered_backends_satisfy_the_protocol() -> None:
    backends = siteline_update_backends()
    assert [b.name for b in backends] == ["rauc", "swupdate", "raw"]
    assert all(isinstance(b, UpdateBackend) for b in backends)
    assert {f for b in backends for f in b.formats} == {"raucb", "swu", "raw"}


def test_command_text() -> None:
    assert RaucBackend().install_command("/data/u.raucb", "/dev/mmcblk0p3") == "rauc install /data/u.raucb"
    sw = SwupdateBackend()
    assert sw.install_command("/data/u.swu", None) == "swupdate -v -i /data/u.swu"
    assert sw.install_command("/data/u.swu", "/dev/mmcblk0p3") == "swupdate -v -i /data/u.swu -e stable,copy2"
    assert sw.install_command("/data/u.swu", "/dev/mmcblk0p2") == "swupdate -v -i /data/u.swu -e stable,copy1"
    assert sw.install_command("/data/u.swu", "/dev/sda2").endswith("-e stable,copy1")
    # No guess for an unusual layout: the device's own configured selection applies.
    assert sw.install_command("/data/u.swu", "/dev/mmcblk0p5") == "swupdate -v -i /data/u.swu"
    family = SwupdateBackend({"/dev/mmcblk0p5": "alt"}, software_set="release")
    assert family.install_command("/data/u.swu", "/dev/mmcblk0p5").endswith("-e release,alt")
    assert RawBackend.bootname("/dev/disk/by-partlabel/rootfs_b") == "B"
    assert RawBackend.bootname("/dev/mmcblk0p3") is None
    assert RawBackend().switches_slot("/dev/disk/by-partlabel/rootfsA")
    assert not RawBackend().switches_slot("/dev/sdb")


@pytest.mark.parametrize("path", HOSTILE)
@pytest.mark.parametrize("backend", [RaucBackend(), SwupdateBackend()])
def test_hostile_paths_reach_the_tool_as_one_word(tmp_path: Path, path: str, backend: UpdateBackend) -> None:
    command = backend.install_command(path, "/dev/mmcblk0p3")
    assert shlex.split(command)[3 if backend.name == "swupdate" else 2] == path
    # A real shell, with the tool replaced by a function that prints its arguments one per NUL.
    shown = _bash(f"{backend.name}() {{ printf '%s\\0' \"$@\"; }}; {command}", tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert path in shown.stdout.split("\0")
    assert not (tmp_path / "PWNED").exists()


async def _detect(backend: UpdateBackend, exit_code: int) -> tuple[bool, list[str]]:
    seen: list[str] = []

    async def run(command: str, timeout: float) -> Result:
        seen.append(command)
        return Result(exit_code, "")

    ctx: DeviceContext = make_context("gw", "ssh://gw", run, __import__("logging").getLogger("t"))
    return await backend.detect(ctx), seen


@pytest.mark.parametrize("backend", [RaucBackend(), SwupdateBackend(), RawBackend()])
def test_detect_is_one_harmless_command(backend: UpdateBackend) -> None:
    found, seen = asyncio.run(_detect(backend, 0))
    assert found
    assert len(seen) == 1
    assert "command -v" in seen[0]
    assert not asyncio.run(_detect(backend, 1))[0]


# --- the raw write, by a real shell on tmp files standing in for the slot device -------------------------------


def _slot(tmp_path: Path, name: str = "slot-b.img") -> Path:
    dev = tmp_path / name
    dev.write_bytes(b"\xff" * (len(PAYLOAD) + 4096))
    return dev


def _fwenv(tmp_path: Path) -> dict[str, str]:
    """Real fw_printenv/fw_setenv on an env file, first on PATH (as the device's /etc/fw_env.config would be)."""
    config, env_file, defaults, bindir = (tmp_path / n for n in ("fw_env.config", "uboot.env", "defaults", "bin"))
    config.write_text(f"{env_file} 0x0000 {ENV_SIZE:#x}\n")
    defaults.write_text("BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n")
    env_file.write_bytes(bytes(ENV_SIZE))
    subprocess.run([require_tool("fw_setenv"), "-c", str(config), "-f", str(defaults)], check=True,
                   capture_output=True, timeout=10)
    bindir.mkdir()
    for tool in ("fw_printenv", "fw_setenv"):
        (bindir / tool).write_text(f'#!/bin/sh\nexec {require_tool(tool)} -c "{config}" "$@"\n')
        (bindir / tool).chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def _printenv(env: dict[str, str], name: str, cwd: Path) -> str:
    return _bash(f"fw_printenv -n {name}", cwd, env).stdout.strip()


@pytest.mark.parametrize(("suffix", "tool"), [("", None), (".gz", "gzip"), (".xz", "xz"), (".zst", "zstd")])
def test_raw_write_lands_the_bytes(tmp_path: Path, suffix: str, tool: str | None) -> None:
    image = tmp_path / f"it's $(touch PWNED) a.img{suffix}"
    plain = tmp_path / "plain.img"
    plain.write_bytes(PAYLOAD)
    if tool is None:
        shutil.copyfile(plain, image)
    else:
        with image.open("wb") as fh:
            subprocess.run([require_tool(tool), "-c", str(plain)], stdout=fh, check=True, timeout=30)
    dev = _slot(tmp_path)
    run = _bash(RawBackend().install_command(str(image), str(dev)), tmp_path)
    assert run.returncode == 0, run.stderr
    assert dev.read_bytes() == PAYLOAD  # dd without notrunc: the stand-in file is the image, as the slot would hold
    assert not (tmp_path / "PWNED").exists()


def test_raw_write_uses_bmaptool_with_a_bmap(tmp_path: Path) -> None:
    bmaptool = require_tool("bmaptool")
    image = tmp_path / "sparse.img"
    with image.open("wb") as fh:
        fh.write(PAYLOAD[:8192])
        fh.truncate(1 << 20)  # a hole after the data: bmaptool copies only the mapped blocks
    subprocess.run([bmaptool, "create", "-o", f"{image}.bmap", str(image)], check=True, capture_output=True, timeout=30)
    dev = tmp_path / "slot"
    dev.write_bytes(b"\xaa" * (1 << 20))
    run = _bash(RawBackend().install_command(str(image), str(dev)), tmp_path)
    assert run.returncode == 0, run.stderr
    data = dev.read_bytes()
    assert data[:8192] == PAYLOAD[:8192]
    assert "using bmap file" in run.stderr  # bmaptool did the copy (to a file it truncates, so bytes cannot tell)


def test_raw_write_switches_uboot_when_the_path_names_the_slot(tmp_path: Path) -> None:
    env = _fwenv(tmp_path)
    image = tmp_path / "new.img"
    image.write_bytes(PAYLOAD)
    dev = _slot(tmp_path, "rootfs_b")
    assert RawBackend().switches_slot(str(dev))
    run = _bash(RawBackend().install_command(str(image), str(dev)), tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert dev.read_bytes() == PAYLOAD
    assert _printenv(env, "BOOT_ORDER", tmp_path) == "B A"
    assert _printenv(env, "BOOT_B_LEFT", tmp_path) == "3"
    assert "slot B boots next" in run.stdout


def test_raw_refusals(tmp_path: Path) -> None:
    image = tmp_path / "x.img"
    image.write_bytes(PAYLOAD)
    none = _bash(RawBackend().install_command(str(image), None), tmp_path)
    assert none.returncode != 0
    assert "inactive slot is not known" in none.stderr
    missing = _bash(RawBackend().install_command(str(image), str(tmp_path / "nope")), tmp_path)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert not (tmp_path / "nope").exists()  # never creates the "device"
    gone = _bash(RawBackend().install_command(str(tmp_path / "gone.img"), str(_slot(tmp_path))), tmp_path)
    assert gone.returncode == 2
    assert "not found on the device" in gone.stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])  # dash tests the archive first; bash has pipefail
def test_raw_truncated_archive_fails_and_does_not_switch(tmp_path: Path, shell: str) -> None:
    env = _fwenv(tmp_path)
    image = tmp_path / "cut.img.gz"
    image.write_bytes(gzip.compress(PAYLOAD)[:5000])
    command = RawBackend().install_command(str(image), str(_slot(tmp_path, "rootfs_b")))
    run = _bash(command.replace("sh -c ", f"{shell} -c ", 1), tmp_path, env)
    assert run.returncode != 0
    assert "siteline-raw:" in run.stderr
    assert _printenv(env, "BOOT_ORDER", tmp_path) == "A B"


def test_raw_write_refuses_a_bmap_that_does_not_match(tmp_path: Path) -> None:
    bmaptool = require_tool("bmaptool")
    image = tmp_path / "img"
    image.write_bytes(PAYLOAD[:16384])
    subprocess.run([bmaptool, "create", "-o", f"{image}.bmap", str(image)], check=True, capture_output=True, timeout=30)
    image.write_bytes(PAYLOAD[16384:32768])  # the image changed after its bmap was made
    run = _bash(RawBackend().install_command(str(image), str(_slot(tmp_path))), tmp_path)
    assert run.returncode == 1
    assert "bmaptool copy to" in run.stderr
