"""The simulator's U-Boot env against Debian's real fw_printenv/fw_setenv (libubootenv-tool), both ways."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from tests.peers import require_tool

from siteline.simulator import ubootenv
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.peer("fw_setenv")


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    return DeviceState.open(tmp_path / "dev", password="pw")


def real(tool: str, device: DeviceState, *args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool(tool)
    config = str(device.root / ubootenv.CONFIG_NAME)
    return subprocess.run([exe, "-c", config, *args], capture_output=True, text=True, timeout=20, check=False)


def ours(device: DeviceState, command: str) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(device, command, timeout=20))
    return code, out.decode(), err.decode()


def test_real_fw_printenv_reads_what_the_simulator_wrote(device: DeviceState) -> None:
    assert ours(device, "fw_setenv upgrade_available 1 && fw_setenv note 'two words'")[0] == 0
    printed = real("fw_printenv", device)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == ours(device, "fw_printenv")[1]
    assert "BOOT_ORDER=A B\n" in printed.stdout
    assert "note=two words\n" in printed.stdout
    assert real("fw_printenv", device, "-n", "upgrade_available").stdout == "1\n"


def test_simulator_reads_what_the_real_fw_setenv_wrote(device: DeviceState) -> None:
    result = real("fw_setenv", device, "BOOT_ORDER", "B A")
    assert result.returncode == 0, result.stderr
    assert real("fw_setenv", device, "BOOT_B_LEFT", "1").returncode == 0
    assert real("fw_setenv", device, "bootcount").returncode == 0  # no value: delete
    assert ours(device, "fw_printenv -n BOOT_ORDER")[1] == "B A\n"
    assert device.read_env()["BOOT_B_LEFT"] == "1"
    assert "bootcount" not in device.read_env()
    assert ours(device, "fw_printenv")[1] == real("fw_printenv", device).stdout


def test_files_are_byte_identical_after_the_same_change(device: DeviceState, tmp_path: Path) -> None:
    ours(device, "fw_setenv x 42")
    mine = (device.root / ubootenv.ENV_NAME).read_bytes()
    real("fw_setenv", device, "x", "41")
    real("fw_setenv", device, "x", "42")
    assert (device.root / ubootenv.ENV_NAME).read_bytes() == mine


def test_a_bad_crc_is_refused_by_both(device: DeviceState) -> None:
    env_file = device.root / ubootenv.ENV_NAME
    blob = bytearray(env_file.read_bytes())
    blob[20] ^= 0x55  # flip bits in the data area: the stored CRC no longer matches
    env_file.write_bytes(bytes(blob))
    real_result = real("fw_printenv", device)
    code, out, err = ours(device, "fw_printenv")
    assert real_result.returncode != 0
    assert code != 0
    assert code == real_result.returncode
    assert "Cannot read environment" in real_result.stderr
    assert "Cannot read environment" in err
    assert out == ""
    assert device.boot().slot == "A"  # U-Boot falls back to its default env and still boots
