"""Provisioning interrupted in every step (the transport closed mid-step) and resumed ends in the same state as an
uninterrupted run: a simulated device over its serial pty, the eight real steps, a vault and an outbox in memory.

The cut is the harsh kind: the command runs on the device, then the link drops before Siteline reads the
answer, so the step cannot know whether it happened. Each resume is a fresh link and the job reloaded from
disk, as a new `siteline provision` process would do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.peers.sim import make_state, running_device

from siteline.core.errors import AuthError, SitelineError, TransportError
from siteline.core.keep import device_secret_name
from siteline.core.provisioning.job import STEPS, ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import Profile, find_profile, load_profile
from siteline.core.provisioning.runner import KeepHooks, default_steps, run_provision
from siteline.core.provisioning.store import ProvisionStore
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("socat"), pytest.mark.timeout(300)]
SITE = "north-7"


def _ready() -> None:
    """Every step module must be importable (a missing one fails, never skips)."""
    try:
        default_steps()
    except SitelineError as exc:
        pytest.fail(f"a provisioning step is missing: {exc.message}")


def _profile() -> Profile:
    profile = load_profile(find_profile("nwedge-gw-imx8mm"))
    # A short dead-man switch: a cut between applying and confirming the rules reverts them within the test.
    return dataclasses.replace(profile, firewall=dataclasses.replace(profile.firewall, deadman_seconds=2.0))


class MemoryKeep:
    """The vault, outbox and audit trail of a laptop, in memory; every vault write is kept to count them."""

    def __init__(self) -> None:
        self.vault: dict[str, str] = {}
        self.puts: Counter[str] = Counter()
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.records: list[tuple[str, dict[str, Any], str]] = []

    def hooks(self) -> KeepHooks:
        def put(name: str, value: str) -> None:
            self.vault[name] = value
            self.puts[name] += 1

        def queue(kind: str, payload: Mapping[str, Any]) -> str:
            self.items.append((kind, json.loads(json.dumps(payload, default=str))))
            return f"item-{len(self.items)}"

        return KeepHooks(record=lambda a, d, r: self.records.append((a, dict(d), r)), vault_put=put,
                         vault_get=self.vault.get, outbox_put=queue)


class Pace:
    """How many commands each step ran in the uninterrupted run, published as that run goes (the two devices are
    provisioned side by side: the cut run waits for a step's count before it cuts that step)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.known: dict[str, asyncio.Event] = {step: asyncio.Event() for step in STEPS}

    def publish(self, step: str, count: int) -> None:
        self.counts[step] = count
        self.known[step].set()

    def release_all(self) -> None:  # the uninterrupted run ended (or failed): nobody waits any longer
        for event in self.known.values():
            event.set()

    async def cut_at(self, step: str) -> int:
        """Cut after half of the commands the step ran uninterrupted (at least the first)."""
        await asyncio.wait_for(self.known[step].wait(), 120)
        return max(1, (self.counts[step] + 1) // 2) if self.counts[step] else 0  # 0: not cut


class CuttingLink:
    """A link that pulls the cable once in every step (with ``pace``): after the step's n-th command ran; without
    ``pace`` it only counts, and publishes the counts to ``publish`` as the steps end."""

    def __init__(self, inner: TransportProvisionLink, pace: Pace | None, cut_done: set[str],
                 publish: Pace | None = None) -> None:
        self.inner, self.pace, self.cut_done, self.publish = inner, pace, cut_done, publish
        self.kind = inner.kind
        self.step = ""
        self.counts: Counter[str] = Counter()

    @property
    def credentials(self) -> Credentials:
        return self.inner.credentials

    def listen(self, job: ProvisionJob) -> None:
        self.step = next((s.name for s in job.steps if s.state == "running"), self.step)
        if self.publish is not None:
            for rec in job.steps:
                if rec.state in ("done", "skipped") and not self.publish.known[rec.name].is_set():
                    self.publish.publish(rec.name, self.counts[rec.name])

    async def run(self, command: str, timeout: float) -> Result:
        step = self.step
        cut = await self.pace.cut_at(step) if self.pace is not None and step not in self.cut_done else 0
        result = await self.inner.run(command, timeout)
        self.counts[step] += 1
        if cut and self.counts[step] >= cut:
            self.cut_done.add(step)
            await self.inner.close()
            raise TransportError(f"the cable was pulled in {step} (test)")
        return result

    async def reconnect(self, timeout: float) -> None:
        await self.inner.reconnect(timeout)

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return await self.inner.try_login(credentials, timeout)

    def use_credentials(self, credentials: Credentials) -> None:
        self.inner.use_credentials(credentials)

    async def close(self) -> None:
        await self.inner.close()


async def _connect(target: Target, known: Path, candidates: list[Credentials]) -> TransportProvisionLink:
    """The first login the device takes: the vault's password once it was replaced, else the factory one."""
    for credentials in candidates:
        link = TransportProvisionLink(target, credentials, lambda c: open_transport(target, c, known),
                                      known_hosts=known, connect_timeout=15)
        try:
            await link.connect()
            return link
        except AuthError:
            await link.close()
    raise AssertionError("the device took none of the logins")


async def _provision(tmp: Path, target: Target, profile: Profile, keep: MemoryKeep, pace: Pace | None,
                     publish: Pace | None) -> tuple[ProvisionJob, int]:
    """Run the job to its end, resuming after each cut like a new process. (job, runs that were cut)"""
    store = ProvisionStore(tmp / "jobs")
    job = ProvisionJob.new(target=str(target), site=SITE, profile_name=profile.name,
                           profile_sha256=profile.sha256, tags=["pump"])
    factory = profile.credentials.factory[0]
    cut_done: set[str] = set()
    for runs in range(len(STEPS) + 2):
        vault = keep.vault.get(device_secret_name(SITE, job.device, "password")) if job.device else None
        candidates = [Credentials(factory.user, p) for p in (vault, factory.password) if p]
        link = CuttingLink(await _connect(target, tmp / "known_hosts", candidates), pace, cut_done, publish)
        try:
            job = await run_provision(job, link, profile, store=store, keep_hooks=keep.hooks(), listener=link.listen)
        finally:
            await link.close()
        if job.status != "interrupted":
            return job, runs
        assert "run the same command again" in job.message
        job = store.load(job.id)
    raise AssertionError(f"still not finished after {len(STEPS) + 2} runs: {job.message}")


async def _end_state(target: Target, known: Path, password: str, job: ProvisionJob) -> dict[str, str]:
    """What the device ends with, the device's own names and numbers replaced by placeholders."""
    link = await _connect(target, known, [Credentials("root", password)])
    reads = {
        "hostname": "hostname",
        "files": "ls -a /etc/siteline | sort",
        "site": "cat /etc/siteline/site.json",
        "mqtt": "cat /etc/siteline/mqtt.json",
        "key_mode": "stat -c %a /etc/siteline/device.key",
        "rules": "iptables -S OUTPUT",
        "csr_subject": "openssl req -in /etc/siteline/device.csr -noout -subject",
    }
    found: dict[str, str] = {}
    try:
        for key, command in reads.items():
            found[key] = (await link.run(command, 20)).stdout.strip()
        found["marker_job"] = json.loads((await link.run("cat /etc/siteline/provisioned.json", 20)).stdout)["job"]
    finally:
        await link.close()
    assert found["marker_job"] == job.id
    del found["marker_job"]
    facts = job.facts
    own = [job.device, str(facts.get("serial", "")), str(facts.get("serial_tail", "")), str(facts.get("mac", "")),
           str(facts.get("imei", ""))]
    for value in sorted((v for v in own if v), key=len, reverse=True):
        found = {k: v.replace(value, "<own>") for k, v in found.items()}
    return {k: re.sub(r"\s+", " ", v) for k, v in found.items()}


def _device(tmp: Path, name: str, profile: Profile, *, ssh: bool = False) -> Any:
    factory = profile.credentials.factory[0]
    state = make_state(tmp / name, name=name, password=factory.password)
    tty = tmp / f"tty-{name}"
    return state, tty, running_device(state, ssh=ssh, serial_link=None if ssh else tty)


async def test_interrupted_in_every_step_and_resumed_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    _ready()
    profile = _profile()
    factory = profile.credentials.factory[0]
    pace = Pace()

    async def one(name: str, cutting: bool) -> dict[str, str]:
        state, tty, running = _device(tmp_path, name, profile)
        async with running:
            target = parse_target(f"serial://{tty}?baud=115200")
            keep = MemoryKeep()
            try:
                job, runs = await _provision(tmp_path / name, target, profile, keep, pace if cutting else None,
                                             None if cutting else pace)
            finally:
                if not cutting:
                    pace.release_all()
            assert job.status in ("provisioned", "incomplete"), job.message
            assert runs == (len(STEPS) if cutting else 0)  # cut once in every step
            password = keep.vault[device_secret_name(SITE, job.device, "password")]
            assert list(keep.puts.values()) == [1]  # one password per device, however often it was cut
            assert state.check_password("root", password)
            assert not state.check_password("root", factory.password)
            kinds = Counter(kind for kind, _ in keep.items)
            assert kinds == Counter({"csr": 1, "provisioning": 1}), keep.items
            return await _end_state(target, tmp_path / name / "known_hosts", password, job)

    ends = await asyncio.gather(one("gw-plain", False), one("gw-cut", True))
    assert ends[0] == ends[1]
    assert "DROP" in ends[1]["rules"]


async def test_posture_step_runs_the_real_probe_over_serial(tmp_path: Path) -> None:
    """Reads only: runs before the host guard is in place too."""
    from siteline.core.provisioning.api import StepContext
    from siteline.core.provisioning.finish_steps import posture_step

    profile = _profile()
    _state, tty, running = _device(tmp_path, "gw-posture", profile)
    async with running:
        target = parse_target(f"serial://{tty}?baud=115200")
        link = await _connect(target, tmp_path / "known_hosts", [Credentials("root", "root")])
        try:
            job = ProvisionJob.new(target=str(target), site=SITE, profile_name=profile.name,
                                   profile_sha256=profile.sha256)
            job.data["credentials"] = {"proved": True}
            outcome = await posture_step(StepContext(job=job, profile=profile, link=link, step="posture"))
        finally:
            await link.close()
    checks = {c["key"]: c["status"] for c in job.data["posture"]["checks"]}
    assert {"firewall_output", "clock_sync", "certificate", "factory_credentials"} <= set(checks)
    assert checks["factory_credentials"] == "pass"
    assert checks["firewall_output"] != "pass"  # a factory device sends anywhere
    assert "firewall_output" in job.data["posture"]["required_failed"]
    assert "required but not passing" in outcome.detail


async def test_over_ssh_a_cut_after_the_password_change_and_in_the_firewall_resumes(tmp_path: Path) -> None:
    """SSH: the proof logins are separate connections and the firewall step reconnects; cut in both and resume."""
    _ready()
    profile = _profile()
    factory = profile.credentials.factory[0]
    pace = Pace()
    pace.publish("credentials", 1)  # right after its first command (the password change)
    pace.publish("firewall", 19)  # half-way through
    pace.release_all()  # no other step is cut
    state, _tty, running = _device(tmp_path, "gw-ssh", profile, ssh=True)
    async with running as device:
        target = parse_target(f"ssh://root@127.0.0.1:{device.ssh_port}")
        (tmp_path / "gw-ssh").mkdir(exist_ok=True)
        # Pin the simulated device's host key, as a technician's first `--accept-new-host-key` would.
        first = open_transport(target, Credentials("root", factory.password), tmp_path / "gw-ssh" / "known_hosts",
                               accept_new_host_key=True)
        await first.connect()
        await first.close()
        keep = MemoryKeep()
        job, runs = await _provision(tmp_path / "gw-ssh", target, profile, keep, pace, None)
        assert job.status in ("provisioned", "incomplete"), job.message
        assert runs == 2
        password = keep.vault[device_secret_name(SITE, job.device, "password")]
        assert list(keep.puts.values()) == [1]
        assert state.check_password("root", password)
        assert not state.check_password("root", factory.password)
        assert Counter(kind for kind, _ in keep.items) == Counter({"csr": 1, "provisioning": 1})
        end = await _end_state(target, tmp_path / "gw-ssh" / "known_hosts", password, job)
    assert "-P OUTPUT DROP" in end["rules"]
    assert end["key_mode"] == "600"
