"""`siteline flash` as a script sees it, against `siteline sim` devices over SSH: refusals (exit 3, nothing
uploaded), a good flash end to end, an image that does not boot (rolled back), and `siteline jobs`.

The bundles are made and signed by the real `rauc bundle`; the detached signatures by the real openssl CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.peers import require_tool
from tests.peers.sim import FAST, PASSWORD, SimProcess, make_state, start_sim_process

from siteline.core.audit_verify import read_records
from siteline.simulator.rootfs import rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.tools import systemctl

pytestmark = pytest.mark.timeout(90)
COMPATIBLE = "nwedge-gw-imx8mm"  # what the simulator's devices are
# Millisecond timings: the flash waits only for what the device really does.
FAST_FLASH = ("--yes", "--health-settle", "0", "--boot-timeout", "30", "--accept-new-host-key")


def _run(*args: str | Path) -> None:
    done = subprocess.run([*map(str, args)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _bundle(pki: Path, name: str, version: str, *, boots: bool = True, compatible: str = COMPATIBLE) -> Path:
    content = pki / f"{name}.content"
    content.mkdir()
    (content / "rootfs.ext4").write_bytes(os.urandom(32768))
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={compatible}\nversion={version}\n\n"
                                            "[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.ext4\n")
    if not boots:  # rauc 1.8 drops unknown manifest groups: the drill flag rides in a file of its own
        (content / "siteline-sim.conf").write_text("[siteline-sim]\nboots=false\n")
    out = pki / f"{name}.raucb"
    _run(require_tool("rauc"), "bundle", f"--cert={pki / 'cert.pem'}", f"--key={pki / 'key.pem'}", content, out)
    _run(require_tool("openssl"), "dgst", "-sha256", "-sign", pki / "key.pem", "-out", f"{out}.sig", out)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """good (boots), bad (does not boot), foreign (another compatible), all signed by the trusted key."""
    require_tool("unsquashfs")
    pki = tmp_path_factory.mktemp("flashpki")
    _run(require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pki / "key.pem",
         "-out", pki / "cert.pem", "-days", "1", "-subj", "/CN=siteline-flash-test")
    _run("openssl", "pkey", "-in", pki / "key.pem", "-pubout", "-out", pki / "pub.pem")
    _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pki / "other.pem")
    return {"pub": pki / "pub.pem", "other": pki / "other.pem", "good": _bundle(pki, "good", "2025.01.0"),
            "bad": _bundle(pki, "bad", "2025.02.0", boots=False),
            "foreign": _bundle(pki, "foreign", "2025.01.0", compatible="acme-router-x1")}


def siteline(home: Path, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_HOME": str(home), "SITELINE_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "siteline", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def trusting_home(home: Path, pub: Path) -> Path:
    added = siteline(home, "keys", "add", pub, "--name", "ops", "--yes")
    assert added.returncode == 0, added.stderr
    return home


def sim_device(root: Path, name: str = "gw-01") -> tuple[SimProcess, DeviceState]:
    """A `siteline sim` over SSH with ms timings whose own mark-good service is off: Siteline's health check
    decides whether the new slot is marked good."""
    state = make_state(root, name=name, **FAST)
    (rootfs(state.root) / "var/tmp").mkdir(parents=True, exist_ok=True)  # where images go on a real device
    assert systemctl.set_enabled(state, systemctl.MARK_GOOD_UNIT, False) == 0
    proc = start_sim_process(root)
    return proc, state


def uploaded(state: DeviceState) -> list[str]:
    """What lies in the device's /var/tmp and /tmp (where an image would have been sent)."""
    fs = rootfs(state.root)
    return sorted(p.name for d in (fs / "var/tmp", fs / "tmp") if d.is_dir() for p in d.iterdir())


def slots_of(state: DeviceState) -> dict[str, str]:
    env = state.read_env()
    return {k: v for k, v in env.items() if k.startswith("BOOT_")}


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[SimProcess, DeviceState]]:
    proc, state = sim_device(tmp_path / "dev")
    try:
        yield proc, state
    finally:
        proc.stop()


def test_refusals_exit_3_before_anything_is_sent(images: dict[str, Path], device: tuple[SimProcess, DeviceState],
                                                 tmp_path: Path) -> None:
    proc, state = device
    home = trusting_home(tmp_path / "home", images["pub"])
    ssh = proc.ready["ssh"]
    before = slots_of(state)
    unsigned = tmp_path / "unsigned.raucb"
    unsigned.write_bytes(images["good"].read_bytes())
    flipped = tmp_path / "flipped.raucb"
    data = bytearray(images["good"].read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    other_sig = tmp_path / "other.sig"
    _run("openssl", "dgst", "-sha256", "-sign", images["other"], "-out", other_sig, images["good"])
    cases = [
        (["flash", ssh, unsigned, *FAST_FLASH], "unsigned"),
        (["flash", ssh, flipped, "--sig", f"{images['good']}.sig", *FAST_FLASH], "signature refused"),
        (["flash", ssh, images["good"], "--sig", other_sig, *FAST_FLASH], "signature refused"),
        (["flash", ssh, images["foreign"], *FAST_FLASH], "not for this device"),
        (["flash", ssh, images["good"], "--accept-new-host-key"], "pass --yes to flash from a script"),
    ]
    for args, says in cases:
        done = siteline(home, *args)
        assert done.returncode == 3, (args, done.stdout, done.stderr)
        assert says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert uploaded(state) == []
    assert slots_of(state) == before
    refusals = [r.detail_obj()["refusals"][0] for r in read_records(home / "data" / "outbox.sqlite3")
                if r.action == "flash" and r.result == "refused"]
    assert len(refusals) == 4  # every refusal about the image is in the trail (not the missing --yes)
    assert refusals[0].startswith("not for this device")


def test_good_image_flashes_end_to_end(images: dict[str, Path], device: tuple[SimProcess, DeviceState],
                                       tmp_path: Path) -> None:
    proc, state = device
    home = trusting_home(tmp_path / "home", images["pub"])
    done = siteline(home, "flash", proc.ready["ssh"], images["good"], *FAST_FLASH, "--health-unit",
                    "edge-agent.service")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "signature: good, key 'ops'" in done.stdout
    assert "compatible: image 'nwedge-gw-imx8mm', device 'nwedge-gw-imx8mm'" in done.stdout
    assert "plan: send" in done.stdout
    assert "install with rauc" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith(f"{proc.ready['ssh']}: updated")
    assert "transfer" in done.stderr
    assert state.booted_slot() == "B"
    actions = [r.action for r in read_records(home / "data" / "outbox.sqlite3")]
    assert "flash" in actions
    assert "flash-step" in actions
    listed = siteline(home, "jobs", "--all")
    assert listed.returncode == 0
    assert "succeeded" in listed.stdout
    assert siteline(home, "jobs").stdout.strip() == "no unfinished jobs"
    back = siteline(home, "rollback", proc.ready["ssh"], "--yes", "--health-settle", "0", "--boot-timeout", "30")
    assert back.returncode == 0, (back.stdout, back.stderr)
    assert state.booted_slot() == "A"


def test_image_that_does_not_boot_is_rolled_back(images: dict[str, Path], device: tuple[SimProcess, DeviceState],
                                                 tmp_path: Path) -> None:
    proc, state = device
    home = trusting_home(tmp_path / "home", images["pub"])
    done = siteline(home, "flash", proc.ready["ssh"], images["bad"], *FAST_FLASH)
    assert done.returncode == 6, (done.stdout, done.stderr)
    assert ": rolled back" in done.stdout.strip().splitlines()[-1]
    assert state.booted_slot() == "A"
    jobs = json.loads(next((home / "data" / "flash-jobs").glob("*.json")).read_text())
    assert jobs["status"] == "rolled-back"


def test_rollback_needs_yes_from_a_script(tmp_path: Path) -> None:
    done = siteline(tmp_path, "rollback", "ssh://root@127.0.0.1:1")
    assert done.returncode == 3
    assert "--yes" in done.stderr


def test_killed_flash_is_listed_refuses_a_second_flash_and_resumes(
        images: dict[str, Path], device: tuple[SimProcess, DeviceState], tmp_path: Path) -> None:
    proc, state = device
    home = trusting_home(tmp_path / "home", images["pub"])
    env = {**os.environ, "SITELINE_HOME": str(home), "SITELINE_PASSWORD": PASSWORD}
    flash = subprocess.Popen([sys.executable, "-m", "siteline", "flash", proc.ready["ssh"], str(images["good"]),
                              *FAST_FLASH], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    jobs = home / "data" / "flash-jobs"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # killed once the image is on the device (Siteline closed mid-job)
            found = list(jobs.glob("*.json")) if jobs.is_dir() else []
            steps = {s["name"]: s["state"] for s in json.loads(found[0].read_text())["steps"]} if found else {}
            if steps.get("transfer") == "done":
                break
            time.sleep(0.01)
        else:
            pytest.fail("the flash never finished its transfer")
        flash.send_signal(signal.SIGKILL)
    finally:
        flash.wait(10)
    job_id = found[0].stem
    listed = siteline(home, "jobs")
    assert job_id in listed.stdout
    assert "running" in listed.stdout
    again = siteline(home, "flash", proc.ready["ssh"], images["good"], *FAST_FLASH)
    assert again.returncode == 3
    assert f"siteline jobs resume {job_id}" in again.stderr
    resumed = siteline(home, "jobs", "resume", job_id, "--accept-new-host-key")
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert ": updated" in resumed.stdout.strip().splitlines()[-1]
    assert state.booted_slot() == "B"
