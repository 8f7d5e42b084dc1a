"""Review of the flash job store and the rollout rules against garbage on disk and surprises mid-rollout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from siteline.core.flash.job import FlashJob, FlashOptions
from siteline.core.flash.rollout import (
    DeviceRun,
    RolloutError,
    RolloutHooks,
    RolloutStore,
    plan_rollout,
    run_rollout,
)
from siteline.core.flash.store import JobStore


def _job(device: str = "gw-01") -> FlashJob:
    return FlashJob.new(device=device, site="s", target="ssh://root@10.0.0.1", image="/i/u.raucb",
                        signature="/i/u.raucb.sig", image_sha256="0" * 64, image_format="raucb", image_version="2",
                        image_size=1, options=FlashOptions())


def _devices(n: int) -> list[tuple[str, str]]:
    return [(f"gw-{i:02d}", f"ssh://root@10.0.0.{i}") for i in range(1, n + 1)]


def test_one_job_file_with_a_wrongly_typed_field_does_not_break_every_listing(tmp_path: Path) -> None:
    # BUG: FlashJob.from_json checks no field types, so a JSON job with "created": null (hand-edited, or written
    # by another build) loads; JobStore.jobs() then sorts by created and raises TypeError for the whole store.
    # `siteline flash/rollback/rollout` (unfinished() first) and `siteline jobs` all crash for every device.
    # Fix: in job.py from_json, check the types of the scalar fields (created/updated numbers, status/kind in
    # their Literals, steps a list of dicts) and raise ValueError, which jobs() already logs and skips.
    store = JobStore(tmp_path)
    good = _job()
    store.save(good)
    raw = json.loads(good.to_json())
    raw.update(id="broken", created=None)
    (tmp_path / "broken.json").write_text(json.dumps(raw))
    assert [j.id for j in store.jobs()] == [good.id]
    assert [j.id for j in store.unfinished("gw-01")] == [good.id]


def test_a_job_file_with_an_unknown_step_name_is_refused_when_read(tmp_path: Path) -> None:
    # BUG (same root cause): a step name that is not a StepName loads; run_job then dies on HANDLERS[name]
    # (KeyError) inside _drive and ends the job "needs-attention"/"failed" as an internal error, on a job
    # that was never started against the device. It should be unreadable (ValueError) instead.
    raw = json.loads(_job().to_json())
    raw["steps"][0]["name"] = "format-the-disk"
    with pytest.raises(ValueError, match=r"format-the-disk|step"):
        FlashJob.from_json(json.dumps(raw).encode())


def test_a_canary_count_as_large_as_the_site_does_not_update_the_whole_site_at_once() -> None:
    # BUG: plan_rollout clamps canary to len(devices): `siteline rollout SITE IMG --canary 5` on a 5-device site
    # (or --canary 3 on 3) puts every device in wave 0, which run_wave starts all at once (parallel 0), with
    # no soak - the opposite of "one canary first ... never update a whole site at once".
    # Fix: plan_rollout raises RolloutError when canary >= len(devices) > 1 ("leave at least one device for
    # after the soak"), or clamps to len(devices) - 1.
    with pytest.raises(RolloutError):
        plan_rollout("site-a", _devices(3), image="/i/u.raucb", signature="", canary=3, soak=0)


class _BoomError(Exception):
    pass


def test_an_unexpected_error_for_one_device_stops_the_rollout_without_cancelling_the_others(tmp_path: Path) -> None:
    # BUG: run_device catches only SitelineError/OSError/TimeoutError. Anything else from run_one (a bug, a
    # ValueError from a job file) escapes the TaskGroup, which CANCELS every other device's task in the wave
    # - their run_job gets CancelledError in the middle of install/reboot - and run_rollout raises an
    # ExceptionGroup: no "stop" record, the rollout left "running". Fix: in rollout.py run_device catch
    # Exception (log it) and make it device.status = "failed" with the words; the stop rules do the rest.
    cancelled: list[str] = []
    finished: list[str] = []
    records: list[tuple[str, dict[str, Any], str]] = []

    async def run_one(device: DeviceRun) -> FlashJob:
        if device.name == "gw-02":
            await asyncio.sleep(0.01)
            raise _BoomError("a bug in the device's job runner")
        try:
            await asyncio.sleep(0.2)  # gw-03 is mid-install
        except asyncio.CancelledError:
            cancelled.append(device.name)
            raise
        finished.append(device.name)
        job = _job(device.name)
        job.status = "succeeded"
        return job

    async def recheck(device: DeviceRun) -> str | None:
        return None

    async def nap(_s: float) -> None:
        return None

    rollout = plan_rollout("site-a", _devices(3), image="/i/u.raucb", signature="", canary=1, wave_size=2, soak=0)
    hooks = RolloutHooks(run_one=run_one, recheck=recheck, record=lambda a, d, r: records.append((a, dict(d), r)),
                         sleep=nap)

    async def go() -> Any:
        return await run_rollout(rollout, RolloutStore(tmp_path), hooks)

    try:
        done = asyncio.run(go())
    except BaseException as exc:  # what escaped is the finding
        pytest.fail(f"run_rollout raised {exc!r}; devices cancelled mid-flash: {cancelled}")
    assert cancelled == []
    assert finished == ["gw-01", "gw-03"]
    assert done.status == "stopped"
    assert records[-1][1]["event"] == "stop"


def test_a_listener_bug_does_not_break_the_rollout(tmp_path: Path) -> None:
    # BUG (same shape): _Runner.save calls the listener unguarded (Flow.save guards its listener). A window's
    # bug raised there in run_device escapes the TaskGroup too and cancels the wave's other devices.
    # Fix: wrap the listener call in _Runner.save in try/except Exception + log.exception, as Flow.save does.
    calls = {"n": 0}

    def listener(_r: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a progress widget was deleted")

    async def run_one(device: DeviceRun) -> FlashJob:
        job = _job(device.name)
        job.status = "succeeded"
        return job

    async def recheck(device: DeviceRun) -> str | None:
        return None

    async def nap(_s: float) -> None:
        return None

    rollout = plan_rollout("site-a", _devices(2), image="/i/u.raucb", signature="", canary=1, soak=0)
    hooks = RolloutHooks(run_one=run_one, recheck=recheck, record=lambda *_: None, listener=listener, sleep=nap)
    done = asyncio.run(run_rollout(rollout, RolloutStore(tmp_path), hooks))
    assert done.status == "succeeded"


def test_a_rollout_keeps_the_signature_path_absolute_for_its_resume(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # BUG: flash_cli.rollout_main makes args.image absolute ("the jobs of a resumed rollout must find it from
    # anywhere") but not args.sig: `siteline rollout SITE update.raucb --sig update.sig` stores "update.sig".
    # `siteline jobs resume ID` (or a later wave's prepare_flash) run from another folder then finds no
    # signature, the next device is "refused: unsigned" and the whole rollout stops, blaming that device.
    # Fix: in rollout_main also `if args.sig: args.sig = os.path.abspath(args.sig)`.
    import subprocess

    from siteline import flash_cli
    from siteline.cli import build_parser
    from siteline.core.images.trusted_keys import TrustedKeys
    from siteline.core.inventory import DeviceEntry, Inventory

    if subprocess.run(["openssl", "version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("openssl CLI missing")
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    key, pub = work / "key.pem", work / "pub.pem"
    for cmd in (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                ["pkey", "-in", str(key), "-pubout", "-out", str(pub)]):
        subprocess.run(["openssl", *cmd], capture_output=True, check=True, timeout=30)
    (work / "update.img").write_bytes(b"\0" * 4096)
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), "-out", str(work / "update.sig"),
                    str(work / "update.img")], capture_output=True, check=True, timeout=30)
    TrustedKeys().add(pub.read_bytes(), "review")
    from siteline import paths

    inventory = Inventory(paths.config_dir() / "devices.json")
    inventory.upsert(DeviceEntry(name="gw-01", target="ssh://root@127.0.0.1:1", site="site-a"))
    captured: list[Any] = []

    async def capture(args: Any, rollout: Any, *, resumed: bool) -> int:
        captured.append(rollout)
        return 0

    monkeypatch.setattr(flash_cli, "_run_rollout", capture)
    monkeypatch.chdir(work)
    args = build_parser().parse_args(["rollout", "site-a", "update.img", "--sig", "update.sig", "--yes",
                                      "--soak", "0s"])
    assert flash_cli.rollout_main(args) == 0
    assert captured, "the rollout did not start"
    assert Path(captured[0].image).is_absolute()
    assert Path(captured[0].signature).is_absolute(), captured[0].signature
