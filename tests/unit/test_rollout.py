"""The rollout rules on their own: plan, soak, canary re-check, waves, stop on the first failure, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from siteline.core.flash.job import FlashJob, FlashOptions, HealthCheck
from siteline.core.flash.rollout import (
    DEFAULT_SOAK,
    DeviceRun,
    Rollout,
    RolloutError,
    RolloutHooks,
    RolloutStore,
    parse_duration,
    plan_rollout,
    run_rollout,
    site_devices,
)
from siteline.core.inventory import DeviceEntry

NAMES = [f"gw-{i:02d}" for i in range(1, 10)]


def devices(n: int) -> list[tuple[str, str]]:
    return [(name, f"ssh://root@10.0.0.{i}") for i, name in enumerate(NAMES[:n], 1)]


def plan(n: int, **kw: Any) -> Rollout:
    return plan_rollout("site-a", devices(n), image="/img/update.raucb", signature="/img/update.raucb.sig", **kw)


class Fake:
    """Stand-ins for the device work: a status per device, a log of what was touched and slept."""

    def __init__(self, outcome: Mapping[str, str] | None = None, unhealthy: Mapping[str, str] | None = None) -> None:
        self.outcome = dict(outcome or {})
        self.unhealthy = dict(unhealthy or {})
        self.touched: list[str] = []
        self.rechecked: list[str] = []
        self.slept: list[float] = []
        self.records: list[tuple[str, dict[str, Any], str]] = []
        self.now = 1000.0

    async def run_one(self, device: DeviceRun) -> FlashJob:
        self.touched.append(device.name)
        await asyncio.sleep(0)
        job = FlashJob.new(device=device.name, site="site-a", target=device.target, image="x", signature="x.sig",
                           image_sha256="0" * 64, image_format="raucb", image_version="2", image_size=1,
                           rollout="r")
        job.status = self.outcome.get(device.name, "succeeded")  # type: ignore[assignment]
        return job

    async def recheck(self, device: DeviceRun) -> str | None:
        self.rechecked.append(device.name)
        return self.unhealthy.get(device.name)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def hooks(self, parallel: int = 0) -> RolloutHooks:
        return RolloutHooks(run_one=self.run_one, recheck=self.recheck,
                            record=lambda a, d, r: self.records.append((a, dict(d), r)), parallel=parallel,
                            sleep=self.sleep, clock=lambda: self.now)

    def events(self) -> list[str]:
        return [d["event"] for a, d, _ in self.records if a == "rollout"]


def test_plan_canary_then_waves_of_a_quarter_rounded_up() -> None:
    r = plan(9)
    assert [[d.name for d in w] for w in r.waves()] == [NAMES[:1], NAMES[1:3], NAMES[3:5], NAMES[5:7], NAMES[7:9]]
    assert (r.soak, r.soak_chosen, r.wave_size) == (DEFAULT_SOAK, False, 2)
    assert plan(3, canary=2, wave_size=5, soak=0).waves()[1][0].name == "gw-03"
    assert len(plan(1, canary=5).waves()) == 1  # a one-device site: its only device is the canary
    with pytest.raises(RolloutError, match="covers all"):  # the whole site at once, no soak: refused (R1 #5)
        plan(2, canary=5)
    assert "default" in plan(3).plan_detail()["soak"]
    assert plan(3, soak=90).plan_detail()["soak"] == "90s (chosen explicitly)"


@pytest.mark.parametrize(("kw", "says"), [({"canary": 0}, "canary"), ({"wave_size": 0}, "wave"),
                                          ({"soak": -1.0}, "negative")])
def test_plan_refuses_bad_options(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(RolloutError, match=says):
        plan(3, **kw)
    with pytest.raises(RolloutError, match="no devices"):
        plan_rollout("x", [], image="i", signature="s")


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "10m", "1h", "1h30m", "0s", "0", "2.5")] == [
        90, 600, 3600, 5400, 0, 0, 2.5]
    for bad in ("", "ten", "10x", "-5s", "1h 30m", "s"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_site_devices_refuses_unknown_and_empty() -> None:
    entries = [DeviceEntry("gw-1", "ssh://root@10.0.0.1", "north"), DeviceEntry("gw-2", "ssh://root@10.0.0.2", "south")]
    assert site_devices(entries, "north") == [("gw-1", "ssh://root@10.0.0.1")]
    with pytest.raises(RolloutError, match="no site 'east'") as info:
        site_devices(entries, "east")
    assert "north, south" in str(info.value)
    with pytest.raises(RolloutError, match="empty"):
        site_devices([], "north")


def test_all_good_soaks_then_rechecks_canary_then_waves(tmp_path: Path) -> None:
    fake, store = Fake(), RolloutStore(tmp_path)
    r = asyncio.run(run_rollout(plan(5, soak=600, wave_size=2), store, fake.hooks(parallel=1)))
    assert (r.status, r.phase) == ("succeeded", "done")
    assert fake.touched == NAMES[:5]
    assert sum(fake.slept) == 600
    assert max(fake.slept) == 30  # in steps, by the wall clock
    assert fake.rechecked == ["gw-01"]
    assert fake.events() == ["start", "wave", "soak", "wave", "wave", "finish"]
    start = fake.records[0][1]
    assert start["soak"] == "10m (chosen explicitly)"
    assert start["waves"] == [["gw-01"], ["gw-02", "gw-03"], ["gw-04", "gw-05"]]
    assert store.load(r.id).status == "succeeded"
    assert all(d.status == "succeeded" and d.job_id for d in store.load(r.id).devices)


def test_canary_failure_stops_before_anyone_else_is_touched(tmp_path: Path) -> None:
    fake = Fake({"gw-01": "rolled-back"})
    r = asyncio.run(run_rollout(plan(3, soak=0), RolloutStore(tmp_path), fake.hooks()))
    assert r.status == "stopped"
    assert fake.touched == ["gw-01"]
    assert fake.slept == []
    assert fake.rechecked == []
    assert "gw-01 ended 'rolled-back'" in r.message
    assert "not touched: gw-02, gw-03" in r.message
    assert fake.events()[-1] == "stop"
    assert fake.records[-1][2] == "stopped"
    assert fake.records[-1][1]["not_touched"] == ["gw-02", "gw-03"]


def test_unhealthy_canary_after_the_soak_stops(tmp_path: Path) -> None:
    fake = Fake(unhealthy={"gw-01": "edge-agent.service is failed"})
    r = asyncio.run(run_rollout(plan(3, soak=0), RolloutStore(tmp_path), fake.hooks()))
    assert r.status == "stopped"
    assert fake.touched == ["gw-01"]
    assert "not healthy after the soak: edge-agent.service is failed" in r.message


def test_failure_in_a_wave_starts_nothing_new(tmp_path: Path) -> None:
    fake = Fake({"gw-03": "failed"})
    r = asyncio.run(run_rollout(plan(8, soak=0, wave_size=4), RolloutStore(tmp_path), fake.hooks(parallel=1)))
    assert r.status == "stopped"
    assert fake.touched == ["gw-01", "gw-02", "gw-03"]  # gw-04, gw-05 (same wave) and later: untouched
    assert [d.status for d in r.devices] == ["succeeded", "succeeded", "failed"] + ["pending"] * 5


def test_devices_already_running_in_the_wave_finish(tmp_path: Path) -> None:
    fake = Fake({"gw-02": "failed"})
    r = asyncio.run(run_rollout(plan(6, soak=0, wave_size=3), RolloutStore(tmp_path), fake.hooks(parallel=0)))
    assert r.status == "stopped"
    assert sorted(fake.touched) == ["gw-01", "gw-02", "gw-03", "gw-04"]  # the whole wave ran; wave 2 did not
    assert r.device("gw-05").status == "pending"  # type: ignore[union-attr]


def test_resume_waits_only_for_the_rest_of_the_soak_and_skips_done_devices(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    r = plan(3, soak=600)
    r.announced, r.phase, r.soak_ends = True, "soak", 1000.0 + 200
    r.devices[0].status, r.devices[0].job_id = "succeeded", "job-1"
    store.save(r)
    fake = Fake()
    done = asyncio.run(run_rollout(store.load(r.id), store, fake.hooks()))
    assert done.status == "succeeded"
    assert sum(fake.slept) == 200
    assert fake.touched == ["gw-02", "gw-03"]
    assert "start" not in fake.events()


def test_resume_of_a_device_cut_mid_job_runs_it_again(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    r = plan(2, soak=0)
    r.announced, r.devices[0].status = True, "running"
    store.save(r)
    fake = Fake()
    assert asyncio.run(run_rollout(store.load(r.id), store, fake.hooks())).status == "succeeded"
    assert fake.touched == ["gw-01", "gw-02"]
    assert store.unfinished() == []


def test_store_reads_back_and_skips_garbage(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    r = plan(2, options=FlashOptions(reboot=True, health=HealthCheck(units=("edge-agent.service",), settle=0.1)))
    store.save(r)
    (store.root / "junk.json").write_bytes(b"{not json")
    (store.root / "other.json").write_text('{"format": 99}')
    assert [x.id for x in store.rollouts()] == [r.id]
    assert store.unfinished()[0].devices == r.devices
    assert store.unfinished()[0].options == r.options
    with pytest.raises(ValueError, match="another Siteline version"):
        Rollout.from_json(b'{"format": 99}')
    with pytest.raises(ValueError, match="this Siteline can read"):
        Rollout.from_json(b'{"format": 1, "devices": []}')


def test_a_job_runner_error_is_a_failure_that_stops(tmp_path: Path) -> None:
    from siteline.core.errors import TransportError

    async def broken(device: DeviceRun) -> FlashJob:
        raise TransportError(f"{device.target} did not answer")

    fake = Fake()
    hooks = fake.hooks()
    hooks.run_one = broken
    r = asyncio.run(run_rollout(plan(2, soak=0), RolloutStore(tmp_path), hooks))
    assert r.status == "stopped"
    assert "did not answer" in r.devices[0].message


# -- the CLI's small pieces (flash_cli): exit codes, the estimate, the confirmation, progress lines -----------------

def test_every_job_status_has_its_exit_code_and_words() -> None:
    from typing import get_args

    from siteline import flash_cli
    from siteline.core.flash.job import JobStatus

    statuses = set(get_args(JobStatus))
    assert statuses <= set(flash_cli.STATUS_EXIT)
    assert statuses <= set(flash_cli.STATUS_WORDS)
    assert {flash_cli.STATUS_EXIT[s] for s in ("refused", "rolled-back", "failed", "needs-attention")} == {3, 6, 7, 8}
    assert flash_cli.STATUS_EXIT["succeeded"] == flash_cli.STATUS_EXIT["installed"] == 0
    for code in (0, 3, 6, 7, 8):
        assert f"\n  {code}  " in flash_cli.EPILOG


def test_estimate_in_words() -> None:
    from siteline.flash_cli import estimate

    assert estimate(512 << 20, "ssh", None) == "about 3 min 34 s at 20 Mbit/s"
    assert estimate(1 << 20, "serial", 115200) == "about 2 min 1 s at 115200 baud"
    assert estimate(1 << 20, "mqtt", None) == "time unknown over this link"


def test_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import io

    from siteline.flash_cli import confirm

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert confirm(argparse.Namespace(yes=True), "Flash? ") is None
    monkeypatch.setattr("sys.stdin", io.StringIO())
    assert confirm(argparse.Namespace(yes=False), "Flash? ") == "not a terminal: pass --yes to flash from a script"
    monkeypatch.setattr("sys.stdin", Tty())
    assert confirm(argparse.Namespace(yes=False), "Flash? ", ask=lambda q: "y") is None
    assert "not confirmed" in str(confirm(argparse.Namespace(yes=False), "Flash? ", ask=lambda q: ""))

    def eof(question: str) -> str:
        raise EOFError

    assert "not confirmed" in str(confirm(argparse.Namespace(yes=False), "Flash? ", ask=eof))


def test_progress_lines_say_device_step_and_percent() -> None:
    import io

    from siteline.flash_cli import JobProgress

    out = io.StringIO()
    progress = JobProgress(out)
    job = FlashJob.new(device="gw-01", site="s", target="ssh://root@h", image="x", signature="x.sig",
                       image_sha256="0" * 64, image_format="raucb", image_version="2", image_size=100)
    job.steps[0].state = "done"
    transfer = job.step("transfer")
    transfer.state, transfer.done, transfer.total, transfer.detail = "running", 40, 100, "40 bytes of 100"
    progress(job)
    progress(job)  # unchanged and not a terminal: not repeated
    transfer.state, transfer.done = "done", 100
    progress(job)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("gw-01: transfer")
    assert " 40.0%  40 bytes of 100" in lines[0]
    assert "100.0%" in lines[1]
