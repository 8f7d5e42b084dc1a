"""`siteline rollout` over three `siteline sim` devices of one site in the device list: a canary whose image
does not boot stops the rollout before any other device is touched; a good one goes to all of them, also
when the rollout was killed in its soak and resumed."""

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
from tests.integration.test_flash_cli import images, sim_device, siteline, slots_of, trusting_home, uploaded
from tests.peers.sim import PASSWORD, SimProcess

from siteline.core.audit_verify import read_records
from siteline.core.inventory import DeviceEntry, Inventory
from siteline.simulator.state import DeviceState

__all__ = ["images"]  # the module-scoped bundles fixture, shared with test_flash_cli
pytestmark = pytest.mark.timeout(120)
SITE = "north-yard"
FAST = ("--yes", "--soak", "0s", "--health-settle", "0", "--boot-timeout", "30", "--accept-new-host-key")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[list[tuple[SimProcess, DeviceState]]]:
    devices = [sim_device(tmp_path / f"dev{i}", name=f"gw-{i}") for i in range(1, 4)]
    try:
        yield devices
    finally:
        for proc, _ in devices:
            proc.stop()


def home_for(tmp_path: Path, pub: Path, devices: list[tuple[SimProcess, DeviceState]]) -> Path:
    home = trusting_home(tmp_path / "home", pub)
    inventory = Inventory(home / "config" / "devices.json")
    for i, (proc, _) in enumerate(devices, 1):
        inventory.upsert(DeviceEntry(f"gw-{i}", proc.ready["ssh"], SITE))
    inventory.upsert(DeviceEntry("elsewhere", "ssh://root@127.0.0.1:1", "south-yard"))
    return home


def test_canary_that_does_not_boot_stops_before_any_other_device(
        images: dict[str, Path], site: list[tuple[SimProcess, DeviceState]], tmp_path: Path) -> None:
    home = home_for(tmp_path, images["pub"], site)
    others = [(slots_of(state), uploaded(state)) for _, state in site[1:]]
    done = siteline(home, "rollout", SITE, images["bad"], *FAST, timeout=100)
    assert done.returncode == 7, (done.stdout, done.stderr)
    assert "canary: gw-1" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("rollout stopped: gw-1 ended 'rolled-back'"), done.stdout
    assert "not touched: gw-2, gw-3" in last
    assert [(slots_of(state), uploaded(state)) for _, state in site[1:]] == others  # nothing sent, nothing switched
    assert site[0][1].booted_slot() == "A"  # the canary is back on its old slot
    records = [r for r in read_records(home / "data" / "outbox.sqlite3") if r.action == "rollout"]
    events = [r.detail_obj()["event"] for r in reversed(records)]
    assert events == ["start", "wave", "stop"]
    assert records[-1].detail_obj()["soak"] == "0s (chosen explicitly)"
    assert records[0].result == "stopped"
    rollout = json.loads(next((home / "data" / "flash-jobs" / "rollouts").glob("*.json")).read_text())
    assert rollout["status"] == "stopped"
    assert [d["status"] for d in rollout["devices"]] == ["rolled-back", "pending", "pending"]


def test_unknown_site_and_bad_soak_are_refused(images: dict[str, Path], tmp_path: Path) -> None:
    home = trusting_home(tmp_path / "home", images["pub"])
    empty = siteline(home, "rollout", SITE, images["good"], "--yes")
    assert empty.returncode == 3
    assert "device list is empty" in empty.stderr
    Inventory(home / "config" / "devices.json").upsert(DeviceEntry("gw-9", "ssh://root@127.0.0.1:1", "south-yard"))
    unknown = siteline(home, "rollout", SITE, images["good"], "--yes")
    assert unknown.returncode == 3
    assert f"no site '{SITE}'" in unknown.stderr
    assert "south-yard" in unknown.stderr
    no_reboot = siteline(home, "rollout", "south-yard", images["good"], "--no-reboot", "--yes")
    assert no_reboot.returncode == 3
    assert "--no-reboot" in no_reboot.stderr
    bad = siteline(home, "rollout", "south-yard", images["good"], "--soak", "soon", "--yes")
    assert bad.returncode == 2
    assert "not a duration" in bad.stderr


def test_killed_rollout_is_listed_and_resumes_where_it_stopped(
        images: dict[str, Path], site: list[tuple[SimProcess, DeviceState]], tmp_path: Path) -> None:
    home = home_for(tmp_path, images["pub"], site)
    env = {**os.environ, "SITELINE_HOME": str(home), "SITELINE_PASSWORD": PASSWORD}
    args = [*FAST[:1], "--soak", "3s", *FAST[3:]]
    proc = subprocess.Popen([sys.executable, "-m", "siteline", "rollout", SITE, str(images["good"]), *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rollouts = home / "data" / "flash-jobs" / "rollouts"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the canary is done and the soak has begun: kill it there
            found = list(rollouts.glob("*.json")) if rollouts.is_dir() else []
            if found and json.loads(found[0].read_text())["phase"] == "soak":
                break
            time.sleep(0.02)
        else:
            pytest.fail("the rollout never reached its soak")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    rollout_id = found[0].stem
    listed = siteline(home, "jobs")
    assert rollout_id in listed.stdout
    assert "1/3 devices, soak" in listed.stdout
    resumed = siteline(home, "jobs", "resume", rollout_id, "--accept-new-host-key", timeout=100)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert f"resuming rollout {rollout_id}" in resumed.stderr
    assert [state.booted_slot() for _, state in site] == ["B", "B", "B"]
    jobs = [json.loads(p.read_text()) for p in (home / "data" / "flash-jobs").glob("*.json")]
    assert sorted(j["device"] for j in jobs) == ["gw-1", "gw-2", "gw-3"]  # the canary was not flashed again
    assert resumed.stdout.strip().splitlines()[-1] == f"all 3 devices of {SITE} updated"
    assert "gw-2: transfer" in resumed.stderr  # per-device progress lines
    events = [r.detail_obj()["event"] for r in reversed(read_records(home / "data" / "outbox.sqlite3"))
              if r.action == "rollout"]
    assert events == ["start", "wave", "soak", "wave", "wave", "finish"]  # waves of one: a quarter of 2, rounded up
    assert siteline(home, "jobs").stdout.strip() == "no unfinished jobs"
