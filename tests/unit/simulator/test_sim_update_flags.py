"""Drill flags of simulator bundles (healthy=false images boot but edge-agent.service fails); simulated swupdate."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from siteline.simulator import slots
from siteline.simulator.bundles import read_manifest
from siteline.simulator.state import DeviceState
from siteline.simulator.tools import rauc, swupdate, systemctl
from tests.peers import require_tool


def _bundle(path: Path, flags: str) -> Path:
    text = f"[update]\ncompatible={slots.COMPATIBLE}\nversion=2024.09.0\n\n{flags}"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.raucm")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    return path


@pytest.fixture
def state(tmp_path: Path) -> DeviceState:
    return DeviceState.open(tmp_path / "dev", name="gw-09", password="pw")


@pytest.mark.parametrize(
    ("flags", "boots", "healthy"),
    [("", True, True), ("[siteline-sim]\nhealthy=false\n", True, False),
     ("[siteline-sim]\nboots=false\nhealthy=no\n", False, False), ("[meta.siteline-sim]\nhealthy=0\n", True, False),
     ("[siteline-sim]\nhealthy=yes\n", True, True), ("[siteline-sim]\nhealthy=garbage\n", True, True)],
)
def test_flags_are_parsed(tmp_path: Path, flags: str, boots: bool, healthy: bool) -> None:
    m = read_manifest(_bundle(tmp_path / "b.raucb", flags))
    assert (m.boots, m.healthy) == (boots, healthy)


def _systemctl(state: DeviceState, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = systemctl.main("systemctl", list(argv), state)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _install_and_boot(state: DeviceState, bundle: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert rauc.main("rauc", ["install", str(bundle)], state) == 0
    capsys.readouterr()
    return state.boot().slot


def test_unhealthy_slot_fails_the_agent_and_a_healthy_one_brings_it_back(
    state: DeviceState, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _systemctl(state, capsys, "is-active", "edge-agent.service") == (0, "active\n", "")
    assert _install_and_boot(state, _bundle(tmp_path / "sick.raucb", "[siteline-sim]\nhealthy=false\n"), capsys) == "B"
    assert json.loads((state.root / slots.SLOTS_FILE).read_text())["B"]["healthy"] is False
    assert _systemctl(state, capsys, "is-active", "edge-agent.service") == (3, "failed\n", "")
    assert _systemctl(state, capsys, "is-active", "--quiet", "edge-agent")[:2] == (3, "")
    assert _systemctl(state, capsys, "is-active", "sshd.service")[0] == 0  # only the agent is sick
    code, out, _ = _systemctl(state, capsys, "status", "edge-agent.service")
    assert code == 3
    assert "Active: failed (Result: exit-code)" in out
    assert "edge-agent[412]: FATAL: cannot load /etc/edge-agent/agent.toml" in out
    code, _, err = _systemctl(state, capsys, "restart", "edge-agent.service")
    assert code == 1
    assert "Job for edge-agent.service failed" in err
    assert "edge-agent.service" in _systemctl(state, capsys, "list-units", "--state=failed")[1]
    # Rolling back to the healthy slot A (the machine's "mark the other slot active") heals the agent.
    assert rauc.main("rauc", ["status", "mark-active", "other"], state) == 0
    capsys.readouterr()
    assert state.boot().slot == "A"
    assert _systemctl(state, capsys, "is-active", "edge-agent.service") == (0, "active\n", "")


def test_boot_health_is_journaled(state: DeviceState, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _install_and_boot(state, _bundle(tmp_path / "sick.raucb", "[siteline-sim]\nhealthy=false\n"), capsys)
    systemctl.log_boot_health(state)
    text = (state.root / "journal" / "journal.jsonl").read_text()
    assert "status=1/FAILURE" in text
    assert "unsupported config schema" in text


def test_damaged_slot_table_counts_as_healthy(state: DeviceState, capsys: pytest.CaptureFixture[str]) -> None:
    (state.root / slots.SLOTS_FILE).write_text("{not json")
    assert _systemctl(state, capsys, "is-active", "edge-agent.service")[0] == 0


# ---------------------------------------------------------------- the simulated swupdate
def _swu(tmp_path: Path, description: str, extra: dict[str, bytes] | None = None) -> Path:
    src = tmp_path / "swu"
    src.mkdir(exist_ok=True)
    (src / "sw-description").write_text(description)
    (src / "rootfs.ext4").write_bytes(b"\0" * 1024)
    for name, data in (extra or {}).items():
        (src / name).write_bytes(data)
    names = ["sw-description", "rootfs.ext4", *(extra or {})]
    out = tmp_path / "u.swu"
    with out.open("wb") as fh:
        subprocess.run([require_tool("cpio"), "-o", "-H", "newc"], input="\n".join(names).encode() + b"\n",
                       cwd=src, stdout=fh, stderr=subprocess.DEVNULL, check=True, timeout=30)
    return out


def _swupdate(state: DeviceState, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = swupdate.main("swupdate", list(argv), state)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


SINGLE = ('software = { version = "2024.10.0"; hardware-compatibility = [ "1.0", "nwedge-gw-imx8mm" ]; '
          'images: ( { filename = "rootfs.ext4"; device = "/dev/mmcblk0p3"; } ); %s };')


def test_swupdate_flags_from_the_description_group(state: DeviceState, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    swu = _swu(tmp_path, SINGLE % 'siteline-sim = { boots = false; healthy = "false"; };')
    code, out, err = _swupdate(state, capsys, "-v", "-i", str(swu))
    assert code == 0, err
    assert "[INFO ] : SWUPDATE successful" in out
    record = slots.load(state.root)["B"]
    assert (record["version"], record["boots"], record["healthy"]) == ("2024.10.0", False, False)
    assert state.read_env()["BOOT_ORDER"].split()[0] == "B"


def test_swupdate_flags_file_json_description_check_and_post_reboot(
    state: DeviceState, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desc = ('{"software": {"version": "2024.11.0", "hardware-compatibility": ["nwedge-gw-imx8mm"], '
            '"images": [{"filename": "rootfs.ext4", "device": "/dev/mmcblk0p3"}]}}')
    swu = _swu(tmp_path, desc, {"siteline-sim.conf": b"[siteline-sim]\nhealthy=false\n"})
    assert _swupdate(state, capsys, "-c", "-i", str(swu))[0] == 0  # -c: checked, nothing installed
    assert slots.load(state.root)["B"]["version"] == slots.FIRST_VERSION
    code, _, err = _swupdate(state, capsys, "--image=" + str(swu), "-p", "reboot")
    assert code == 0, err
    assert slots.load(state.root)["B"]["healthy"] is False
    assert state.take_reboot_request()


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["-H", "nwedge:1.0"], 0, ""),  # the revision is in hardware-compatibility
    (["-H", "nwedge:2.0"], 1, "SW not compatible with hardware"),
    (["-e", "stable"], 1, "Incorrect select option format"),
    (["-x"], 1, "invalid option"),
    (["-i"], 1, "requires an argument"),
])
def test_swupdate_options(state: DeviceState, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          argv: list[str], code: int, says: str) -> None:
    swu = _swu(tmp_path, SINGLE % "")
    got, _, err = _swupdate(state, capsys, "-i", str(swu), *argv)
    assert got == code
    assert says in err


@pytest.mark.parametrize("data", [b"", b"070701" + b"z" * 200, b"\x00" * 512])
def test_swupdate_garbage_is_an_error_not_a_crash(state: DeviceState, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    bad = tmp_path / "bad.swu"
    bad.write_bytes(data)
    code, _, err = _swupdate(state, capsys, "-i", str(bad))
    assert code == 1
    assert "Image invalid or corrupted" in err
