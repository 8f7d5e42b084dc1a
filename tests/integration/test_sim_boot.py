"""Reboots, RAUC installs and U-Boot boot counting; a power cut never corrupts the state directory."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from tests.peers import require_tool

from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    return DeviceState.open(tmp_path / "dev", password="pw")


def sh(device: DeviceState, command: str) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(device, command, timeout=20))
    return code, out.decode(), err.decode()


def bundle(tmp_path: Path, version: str, *, boots: bool, compatible: str = "nwedge-gw-imx8mm") -> Path:
    text = f"[update]\ncompatible={compatible}\nversion={version}\n\n[siteline-sim]\nboots={str(boots).lower()}\n"
    path = tmp_path / f"update-{version}.raucb"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.raucm")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    return path


def rauc_json(device: DeviceState) -> dict[str, object]:
    return json.loads(sh(device, "rauc status --detailed --output-format=json")[1])  # type: ignore[no-any-return]


def test_bad_image_burns_its_attempts_and_the_device_comes_back_on_the_old_slot(
    device: DeviceState, tmp_path: Path
) -> None:
    code, out, err = sh(device, f"rauc install {bundle(tmp_path, '2024.09.0', boots=False)}")
    assert code == 0, err
    assert "succeeded" in out
    assert rauc_json(device)["boot_primary"] == "rootfs.1"
    assert sh(device, "reboot")[0] == 0
    assert device.take_reboot_request()
    outcome = device.boot()
    assert outcome.attempts == ["B", "B", "B", "A"]
    assert outcome.slot == "A"
    assert outcome.rolled_back
    env = device.read_env()
    assert (env["BOOT_ORDER"], env["BOOT_B_LEFT"], env["BOOT_A_LEFT"]) == ("B A", "0", "2")
    status = rauc_json(device)
    assert status["booted"] == "A"
    assert status["boot_primary"] == "rootfs.0"
    slots = {k: v for item in status["slots"] for k, v in item.items()}  # type: ignore[attr-defined]
    assert slots["rootfs.1"]["boot_status"] == "bad"
    assert "VERSION_ID=2024.03.0" in sh(device, "cat /etc/os-release")[1]
    assert any("Kernel panic" in line for line in outcome.console_lines)


def test_good_image_boots_on_the_new_slot_and_mark_good_resets_counters(device: DeviceState, tmp_path: Path) -> None:
    assert sh(device, f"rauc install {bundle(tmp_path, '2024.09.0', boots=True)}")[0] == 0
    outcome = device.boot()
    assert (outcome.slot, outcome.attempts, outcome.rolled_back) == ("B", ["B"], False)
    assert device.read_env()["BOOT_B_LEFT"] == "2"
    assert "VERSION_ID=2024.09.0" in sh(device, "cat /etc/os-release")[1]
    assert sh(device, "rauc status mark-good")[1] == "rauc status: marked slot rootfs.1 as good\n"
    assert device.read_env()["BOOT_B_LEFT"] == "3"
    status = rauc_json(device)
    assert status["booted"] == "B"
    slots = {k: v for item in status["slots"] for k, v in item.items()}  # type: ignore[attr-defined]
    assert slots["rootfs.1"]["slot_status"]["bundle"]["version"] == "2024.09.0"
    assert sh(device, "rauc status mark-active other")[1] == "rauc status: activated slot rootfs.0\n"
    assert device.read_env()["BOOT_ORDER"].split()[0] == "A"


def test_incompatible_bundle_is_refused(device: DeviceState, tmp_path: Path) -> None:
    code, _, err = sh(device, f"rauc install {bundle(tmp_path, '9', boots=True, compatible='other-board')}")
    assert code == 1
    assert "Compatible mismatch" in err
    assert device.read_env()["BOOT_ORDER"] == "A B"


def test_uptime_restarts_at_boot(device: DeviceState) -> None:
    time.sleep(0.3)
    assert device.uptime() >= 0.3
    device.boot()
    assert device.uptime() < 0.3


WRITER = """
import sys
from pathlib import Path
from siteline.simulator.state import DeviceState
s = DeviceState.open(Path(sys.argv[1]), password="pw")
print("ready", flush=True)
n = 0
while True:
    n += 1
    s.log(f"entry {n}", "writer")
    s.set_password("root", f"pw{n % 3}")
    s.write_env({**s.read_env_or_default(), "counter": str(n)})
    s.fail_wired(n % 2 == 0)
    s.boot()
"""


def test_power_cut_never_corrupts_the_state(device: DeviceState) -> None:
    """SIGKILL a process that keeps writing every kind of state, then reopen and read everything."""
    counters: list[int] = []
    for cut in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(device.root)], stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.04 * cut)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        again = DeviceState.open(device.root, create=False)
        env = again.read_env()  # raises if the env file were torn
        counters.append(int(env.get("counter", "0")))
        assert env["BOOT_ORDER"]
        assert env.get("counter", "1").isdigit()
        assert any(again.check_password("root", f"pw{n}") for n in range(3)) or again.check_password("root", "pw")
        for name in ("sim.json", "device.json", "slots.json", "modem.json", "network.json", "shadow.json"):
            json.loads((again.root / name).read_text())
        assert sh(again, "journalctl -o json -n 3")[0] == 0
        assert isinstance(again.telemetry(), dict)
    assert counters[-1] > 0, "the writer never got to write: the test proved nothing"
    leftovers = [p.name for p in device.root.rglob(".*.tmp")]
    assert len(leftovers) <= 6  # a temp file may survive a cut (never read); never more than one per cut


@pytest.mark.peer("rauc")
def test_a_real_rauc_bundle_installs(device: DeviceState, tmp_path: Path) -> None:
    """A bundle made by the real `rauc bundle` (squashfs + CMS signature), read through unsquashfs."""
    rauc, openssl = require_tool("rauc"), require_tool("openssl")
    require_tool("unsquashfs")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=siteline-test"],
                   check=True, capture_output=True, timeout=60)
    content = tmp_path / "content"
    content.mkdir()
    (content / "rootfs.ext4").write_bytes(b"\0" * 65536)
    (content / "manifest.raucm").write_text(
        "[update]\ncompatible=nwedge-gw-imx8mm\nversion=2025.01.0\n\n[image.rootfs]\nfilename=rootfs.ext4\n")
    (content / "siteline-sim.conf").write_text("[siteline-sim]\nboots=false\n")  # rauc 1.8 drops unknown groups
    out = tmp_path / "real.raucb"
    subprocess.run([rauc, "bundle", f"--cert={tmp_path / 'cert.pem'}", f"--key={tmp_path / 'key.pem'}",
                    str(content), str(out)], check=True, capture_output=True, timeout=60)
    code, text, err = sh(device, f"rauc install {out}")
    assert code == 0, err
    assert "succeeded" in text
    assert device.boot().attempts == ["B", "B", "B", "A"]  # the drill flag survived bundling
