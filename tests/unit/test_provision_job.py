"""The provisioning job, its store and the runner's logic, with injected fake steps and a fake link."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from siteline.core.errors import AuthError, HostKeyError, TransportError
from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome, StepRefusedError
from siteline.core.provisioning.finish_steps import posture_step, provisioning_record, record_step
from siteline.core.provisioning.job import STEPS, ProvisionJob
from siteline.core.provisioning.profile import PosturePolicy, Profile
from siteline.core.provisioning.runner import KeepHooks, ProfileChangedError, run_provision
from siteline.core.provisioning.store import JobBusyError, ProvisionStore
from siteline.core.transports.base import Credentials, Result

SHA = "a" * 64


class FakeLink:
    kind = "serial"

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.files: dict[str, str] = {}

    @property
    def credentials(self) -> Credentials:
        return Credentials(username="root", password="root")

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if command.startswith("cat "):
            path = command.split()[1].strip("'")
            return Result(0, self.files[path]) if path in self.files else Result(1, "", "No such file")
        return Result(0, "")

    async def reconnect(self, timeout: float) -> None: ...

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return True

    def use_credentials(self, credentials: Credentials) -> None: ...

    async def close(self) -> None: ...


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any], str]] = []
        self.items: list[tuple[str, dict[str, Any]]] = []

    def hooks(self) -> KeepHooks:
        def record(action: str, detail: Mapping[str, Any], result: str) -> None:
            self.records.append((action, dict(detail), result))

        def put(kind: str, payload: Mapping[str, Any]) -> str:
            self.items.append((kind, dict(payload)))
            return f"item-{len(self.items)}"

        return KeepHooks(record=record, vault_put=lambda n, v: None, vault_get=lambda n: None, outbox_put=put)


def profile(sha: str = SHA, required: tuple[Any, ...] = ("firewall_output",)) -> Profile:
    return Profile(name="test-family", family=("test-*",), sha256=sha, posture=PosturePolicy(required=required))


def new_job() -> ProvisionJob:
    return ProvisionJob.new(target="serial:///dev/ttyX", site="north-7", profile_name="test-family",
                            profile_sha256=SHA, tags=["pump"])


def fake_steps(calls: list[str], *, fail: dict[str, BaseException] | None = None,
               once: bool = True) -> list[tuple[str, Any]]:
    """A step per name: records its call, plans one change, raises the given exception (once, by default)."""
    pending = dict(fail or {})

    def make(name: str) -> Any:
        async def step(ctx: StepContext) -> StepOutcome:
            calls.append(name)
            await ctx.read(f"read-{name}")
            await ctx.change(f"change-{name} secret-{name}", secrets=[f"secret-{name}"], what=name)
            if name in pending:
                exc = pending.pop(name) if once else pending[name]
                raise exc
            if name == "identify":
                ctx.job.device = "dev-1"
            ctx.job.data[name] = {"ran": True}
            return StepOutcome(f"{name} done with secret-{name}", {"n": name}, skipped=name == "mqtt")
        return step

    return [(name, make(name)) for name in STEPS]


def test_job_json_round_trip_and_garbage(tmp_path: Path) -> None:
    job = new_job()
    job.facts = {"serial": "X1"}
    again = ProvisionJob.from_json(job.to_json())
    assert again == job
    for text in ("[]", "{}", json.dumps({"format": 99})):
        with pytest.raises(ValueError, match="not a provisioning job"):
            ProvisionJob.from_json(text)
    with pytest.raises(ValueError, match="missing or unknown fields"):
        ProvisionJob.from_json(json.dumps({"format": 1, "id": 3}))
    with pytest.raises(ValueError, match="Expecting value"):
        ProvisionJob.from_json("not json")


def test_store_save_load_lists_and_lock(tmp_path: Path) -> None:
    store = ProvisionStore(tmp_path / "jobs")
    assert store.jobs() == []
    assert store.latest_for("s", "d") is None
    first, second = new_job(), new_job()
    first.device = second.device = "dev-1"
    second.status = "provisioned"
    store.save(first)
    store.save(second)
    (tmp_path / "jobs" / "garbage.json").write_bytes(b"\xff\x00 not a job")
    assert [j.id for j in store.jobs()] == [first.id, second.id]
    assert store.load(first.id) == first
    assert [j.id for j in store.unfinished(site="north-7", device="dev-1")] == [first.id]
    assert store.unfinished(device="other") == []
    assert store.latest_for("north-7", "dev-1").id == second.id  # type: ignore[union-attr]
    assert store.latest_for_target("serial:///dev/ttyX").id == second.id  # type: ignore[union-attr]
    assert oct(os.stat(store.path(first.id)).st_mode & 0o777) == "0o600"
    lock = store.lock(first.id)
    with pytest.raises(JobBusyError):
        store.lock(first.id)
    lock.release()
    store.lock(first.id).release()
    stale = tmp_path / "jobs" / f".{first.id}.lock"
    stale.write_text("999999999 gone\n")  # a process that is gone: its lock is taken over
    store.lock(first.id).release()
    assert not stale.exists()


@pytest.mark.asyncio
async def test_runs_every_step_in_order_saving_and_auditing(tmp_path: Path) -> None:
    store, rec, calls, seen = ProvisionStore(tmp_path), Recorder(), list[str](), list[Any]()
    job = new_job()
    done = await run_provision(job, FakeLink(), profile(), store=store, keep_hooks=rec.hooks(),
                               listener=lambda j: seen.append((j.next_step(), j.status)), steps=fake_steps(calls))
    assert calls == list(STEPS)
    assert done.status == "provisioned"
    assert done.message == ""
    assert [s.state for s in done.steps] == ["done"] * 4 + ["skipped"] + ["done"] * 3
    assert done.step("names").detail == "names done with ********"  # secrets masked in what is kept
    saved = store.load(job.id)
    assert saved.status == "provisioned"
    assert saved.device == "dev-1"
    assert "secret-" not in store.path(job.id).read_text()
    steps = [r for r in rec.records if r[0] == "provision-step"]
    assert [r[1]["step"] for r in steps] == list(STEPS)
    assert rec.records[-1][0] == "provision"
    assert rec.records[-1][1]["status"] == "provisioned"
    assert ("identify", "running") in seen
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".lock")]  # the lock is released


@pytest.mark.asyncio
@pytest.mark.parametrize("cut", STEPS)
async def test_a_dropped_link_interrupts_and_the_next_run_resumes_there(tmp_path: Path, cut: str) -> None:
    store, rec, calls = ProvisionStore(tmp_path), Recorder(), list[str]()
    steps = fake_steps(calls, fail={cut: TransportError("the serial port went away")})
    job = await run_provision(new_job(), FakeLink(), profile(), store=store, keep_hooks=rec.hooks(), steps=steps)
    assert job.status == "interrupted"
    assert job.next_step() == cut
    assert "run the same command again" in job.message
    assert "resumes at" in job.message
    assert store.unfinished()[0].id == job.id
    calls.clear()
    resumed = await run_provision(store.load(job.id), FakeLink(), profile(), store=store, keep_hooks=rec.hooks(),
                                  steps=steps)
    assert resumed.status == "provisioned"
    assert calls == list(STEPS[STEPS.index(cut):])


@pytest.mark.asyncio
@pytest.mark.parametrize(("exc", "status"), [
    (StepRefusedError("already provisioned", "use --reprovision"), "refused"),
    (StepFailedError("no space", "free some"), "failed"),
    (AuthError("login refused"), "interrupted"),
    (HostKeyError("the host key changed"), "refused"),
    (TimeoutError(), "interrupted"),
    (RuntimeError("a bug"), "interrupted"),
])
async def test_statuses(tmp_path: Path, exc: BaseException, status: str) -> None:
    store, rec, calls = ProvisionStore(tmp_path), Recorder(), list[str]()
    job = await run_provision(new_job(), FakeLink(), profile(), store=store, keep_hooks=rec.hooks(),
                              steps=fake_steps(calls, fail={"credentials": exc}))
    assert job.status == status
    assert calls == ["identify", "names", "credentials"]
    assert job.step("credentials").state == ("pending" if status == "interrupted" else "failed")
    assert rec.records[-1][0] == "provision"
    assert rec.records[-1][2] == status
    assert store.load(job.id).status == status


@pytest.mark.asyncio
async def test_cancel_saves_interrupted_and_reraises(tmp_path: Path) -> None:
    store, rec = ProvisionStore(tmp_path), Recorder()
    started = asyncio.Event()

    async def slow(ctx: StepContext) -> StepOutcome:
        started.set()
        await asyncio.sleep(30)
        return StepOutcome("never")

    job = new_job()
    task = asyncio.create_task(run_provision(job, FakeLink(), profile(), store=store, keep_hooks=rec.hooks(),
                                             steps=[("identify", slow)]))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = store.load(job.id)
    assert saved.status == "interrupted"
    assert saved.next_step() == "identify"


@pytest.mark.asyncio
async def test_a_changed_profile_is_refused_before_anything(tmp_path: Path) -> None:
    store, calls = ProvisionStore(tmp_path), list[str]()
    with pytest.raises(ProfileChangedError, match="changed since"):
        await run_provision(new_job(), FakeLink(), profile(sha="b" * 64), store=store, keep_hooks=KeepHooks(),
                            steps=fake_steps(calls))
    assert calls == []
    assert store.jobs() == []


@pytest.mark.asyncio
async def test_dry_run_plans_everything_masks_secrets_saves_nothing(tmp_path: Path) -> None:
    store, rec, calls, link = ProvisionStore(tmp_path), Recorder(), list[str](), FakeLink()
    job = new_job()
    plan = await run_provision(job, link, profile(), store=store, keep_hooks=rec.hooks(), dry_run=True,
                               steps=fake_steps(calls))
    assert calls == list(STEPS)
    assert [p["step"] for p in plan.data["plan"]] == list(STEPS)
    assert all("secret-" not in p["command"] and "********" in p["command"] for p in plan.data["plan"])
    assert link.commands == [f"read-{name}" for name in STEPS]  # reads ran; no change did
    assert plan.status == job.status == "running"
    assert job.data == {}
    assert job.device == ""
    assert store.jobs() == []
    assert rec.records == []
    assert rec.items == []


@pytest.mark.asyncio
async def test_dry_run_stops_at_a_refusal(tmp_path: Path) -> None:
    calls: list[str] = []
    plan = await run_provision(new_job(), FakeLink(), profile(), store=ProvisionStore(tmp_path),
                               keep_hooks=KeepHooks(), dry_run=True,
                               steps=fake_steps(calls, fail={"names": StepRefusedError("no")}))
    assert calls == ["identify", "names"]
    assert "stops at" in plan.message


def _ctx(job: ProvisionJob, link: FakeLink, hooks: KeepHooks, prof: Profile) -> StepContext:
    return StepContext(job=job, profile=prof, link=link, step="record", outbox_put=hooks.outbox_put,
                       secrets=["S3cretPass"])


@pytest.mark.asyncio
async def test_record_step_queues_once_and_writes_the_marker(tmp_path: Path) -> None:
    rec, link, prof = Recorder(), FakeLink(), profile()
    job = new_job()
    job.device, job.facts = "dev-1", {"serial": "X1"}
    job.data["credentials"] = {"users": ["root"], "vault": {"root": "device/north-7/dev-1/password"}, "proved": True}
    job.step("credentials").detail = "replaced S3cretPass"  # a leaked secret is masked in the record
    outcome = await record_step(_ctx(job, link, rec.hooks(), prof))
    assert len(rec.items) == 1
    assert rec.items[0][0] == "provisioning"
    payload = rec.items[0][1]
    assert payload["vault_refs"] == ["device/north-7/dev-1/password"]
    assert "S3cretPass" not in json.dumps(payload)
    assert payload["facts"] == {"serial": "X1"}
    assert job.data["record"]["item"] == "item-1"
    assert not outcome.skipped
    writes = [c for c in link.commands if "base64 -d" in c]
    assert writes
    assert any("provisioned.json" in c for c in link.commands)
    # The marker is there now (as the device would have it): a second run queues nothing and writes nothing.
    link.files[prof.identity.marker] = json.dumps({"job": job.id})
    link.commands.clear()
    again = await record_step(_ctx(job, link, rec.hooks(), prof))
    assert again.skipped
    assert len(rec.items) == 1
    assert link.commands == [f"cat {prof.identity.marker} 2>/dev/null"]


def test_record_holds_no_secret_values() -> None:
    job = new_job()
    job.data["credentials"] = {"users": ["root"], "vault": {"root": "device/x/y/password"}, "proved": True}
    ctx = _ctx(job, FakeLink(), KeepHooks(), profile())
    record = provisioning_record(ctx, "tech")
    assert record["credentials"] == {"users": ["root"], "proved": True}
    assert record["technician"] == "tech"
    assert record["profile"]["sha256"] == SHA


@pytest.mark.asyncio
async def test_posture_step_required_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from siteline.core.provisioning import finish_steps

    async def checks(ctx: StepContext) -> list[dict[str, str]]:
        return [{"key": "firewall_output", "status": "fail", "reason": "OUTPUT policy ACCEPT"},
                {"key": "clock_sync", "status": "pass", "reason": "ok"}]

    monkeypatch.setattr(finish_steps, "_posture_checks", checks)
    job = new_job()
    job.data["credentials"] = {"proved": True}
    ctx = StepContext(job=job, profile=profile(required=("firewall_output", "factory_credentials")),
                      link=FakeLink())
    outcome = await posture_step(ctx)
    assert job.data["posture"]["required_failed"] == ["firewall_output"]
    assert "firewall_output (fail)" in outcome.detail
    keys = [c["key"] for c in job.data["posture"]["checks"]]
    assert keys == ["firewall_output", "clock_sync", "factory_credentials"]


@pytest.mark.asyncio
async def test_incomplete_when_a_required_check_fails(tmp_path: Path) -> None:
    calls: list[str] = []
    steps = dict(fake_steps(calls))

    async def posture(ctx: StepContext) -> StepOutcome:
        ctx.job.data["posture"] = {"checks": [], "required_failed": ["firewall_output"]}
        return StepOutcome("required but not passing: firewall_output")

    steps["posture"] = posture
    job = await run_provision(new_job(), FakeLink(), profile(), store=ProvisionStore(tmp_path),
                              keep_hooks=Recorder().hooks(), steps=list(steps.items()))
    assert job.status == "incomplete"
    assert "firewall_output" in job.message
    assert job.step("record").state == "done"


def test_scrub_keeps_names_as_vault_references_and_drops_values() -> None:
    from siteline.core.provisioning.job import scrub

    clean = {"users": ["root"], "vault": {"root": "device/a/b/password"}}
    assert scrub(clean) is clean
    dirty = {"password_entry": "device/a/b/password", "new_password": "hunter2", "nested": [{"token": 7}],
             "password_changed": True}
    assert scrub(dirty, frozenset({"device/a/b/password"})) == {
        "password_entry": "vault:device/a/b/password", "new_password": None, "nested": [{"token": None}],
        "password_changed": True}


def test_hooks_from_keep_queue_record_and_vault(tmp_path: Path) -> None:
    from siteline.core.keep import Keep
    from siteline.core.provisioning.runner import hooks_from_keep
    from siteline.core.vault import KdfCost, Vault

    keep = Keep.open(tmp_path / "outbox.sqlite3", tmp_path / "vault.siteline", tmp_path / "control-plane.json")
    try:
        device = {"name": ""}
        locked = hooks_from_keep(keep, "north-7", lambda: device["name"])
        assert locked.vault_put is None  # no vault: the password step refuses
        keep.vault = Vault.create(tmp_path / "vault.siteline", "correct horse battery staple",
                                  cost=KdfCost(iterations=1, memory_kib=1024, lanes=1))
        hooks = hooks_from_keep(keep, "north-7", lambda: device["name"])
        device["name"] = "nw-0042"
        assert hooks.vault_put is not None
        assert hooks.vault_get is not None
        assert hooks.outbox_put is not None
        hooks.vault_put("device/north-7/nw-0042/password", "Gen3rated")
        assert hooks.vault_get("device/north-7/nw-0042/password") == "Gen3rated"
        item_id = hooks.outbox_put("provisioning", {"job": "j", "vault_refs": ["device/north-7/nw-0042/password"]})
        item = keep.outbox.get(item_id)
        assert item is not None
        assert (item.kind, item.site, item.device) == ("provisioning", "north-7", "nw-0042")
        assert item.vault_refs == ("device/north-7/nw-0042/password",)
        assert hooks.inbound_certificate() is None
        hooks.record("provision-step", {"job": "j", "step": "identify"}, "ok")
        assert keep.flush_records()
        assert [r.action for r in keep.audit.records("nw-0042")] == ["provision-step"]
    finally:
        asyncio.run(keep.close())


@pytest.mark.asyncio
async def test_a_queued_record_is_saved_at_once_and_not_queued_again(tmp_path: Path) -> None:
    """Siteline killed right after the record was queued (before the step ended): the resume finds its id."""
    from siteline.core.provisioning.finish_steps import record_step as real_record

    store, rec = ProvisionStore(tmp_path), Recorder()
    steps = dict(fake_steps(list[str]()))
    seen_on_disk: list[dict[str, Any]] = []

    async def record_then_die(ctx: StepContext) -> StepOutcome:
        assert ctx.outbox_put is not None
        ctx.outbox_put("provisioning", {"job": ctx.job.id})
        seen_on_disk.append(store.load(ctx.job.id).data)
        raise TransportError("killed (test)")

    steps["record"] = record_then_die
    job = await run_provision(new_job(), FakeLink(), profile(), store=store, keep_hooks=rec.hooks(),
                              steps=list(steps.items()))
    assert seen_on_disk[0]["queued"] == {"record:provisioning": "item-1"}
    steps["record"] = real_record
    done = await run_provision(store.load(job.id), FakeLink(), profile(), store=store, keep_hooks=rec.hooks(),
                               steps=list(steps.items()))
    assert done.status == "provisioned"
    assert [kind for kind, _ in rec.items] == ["provisioning"]
    assert done.data["record"]["item"] == "item-1"
