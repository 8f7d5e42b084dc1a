"""The firewall step against a simulated device over serial and SSH: the baseline applied behind its dead-man
switch, confirmed over a fresh login, persisted and verified; and, when confirmation never comes, the
device going back to its previous rules by itself (the test only watches it, Siteline does nothing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.errors import TransportError
from siteline.core.provisioning import firewall
from siteline.core.provisioning.api import ProvisionLink, StepContext, StepFailedError
from siteline.core.provisioning.firewall import allow_list, firewall_step, iptables_rules, nft_script, nft_table
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import FirewallPolicy, IdentityPolicy, MqttClientSettings, Profile
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport
from siteline.simulator import rootfs, shell
from siteline.simulator.device import SimulatedDevice
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio

DEADMAN = 2.0  # where the switch is meant to fire
CONFIRM_IN = 30.0  # where the confirm is meant to win, even over a slow login on a loaded machine
FILES = "/etc/siteline"  # device-side: the simulator keeps a device's /etc writes in its state dir (hostguard)
INPUT_RULE = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
UNIT = firewall.REVERT_UNIT
NO_PENDING = f"! ls {FILES}/firewall.pending.* >/dev/null 2>&1"  # no apply's marker left


def _profile(deadman: float = CONFIRM_IN) -> Profile:
    return Profile("fw-test", ("*",), identity=IdentityPolicy(marker=f"{FILES}/provisioned.json"),
                   mqtt=MqttClientSettings(broker="203.0.113.10", port=8883),
                   firewall=FirewallPolicy(control_plane=("198.51.100.0/24",), deadman_seconds=deadman))


@dataclass
class Linked:
    state: DeviceState
    device: SimulatedDevice
    link: TransportProvisionLink


@pytest_asyncio.fixture
async def serial(tmp_path: Path) -> AsyncIterator[Linked]:
    async for linked in _linked(tmp_path, "serial"):
        yield linked


@pytest_asyncio.fixture(params=["serial", "ssh"])
async def linked(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Linked]:
    async for each in _linked(tmp_path, request.param):
        yield each


async def _linked(tmp_path: Path, kind: str) -> AsyncIterator[Linked]:
    state = make_state(tmp_path / "dev", name="gw-fw")
    tty = tmp_path / "ttyGW"
    async with running_device(state, ssh=kind == "ssh", serial_link=tty if kind == "serial" else None) as device:
        url = f"serial://{tty}?baud=115200" if kind == "serial" else f"ssh://root@127.0.0.1:{device.ssh_port}"
        target = parse_target(url)
        link = TransportProvisionLink(target, Credentials("root", PASSWORD), lambda c: open_transport(
            target, c, tmp_path / "known_hosts", accept_new_host_key=True), known_hosts=tmp_path / "known_hosts")
        assert (await _device(state, f"iptables {INPUT_RULE}"))[0] == 0  # a rule of the device's own
        try:
            yield Linked(state, device, link)
        finally:
            await link.close()


def _context(link: ProvisionLink, *, dry_run: bool = False, profile: Profile | None = None) -> StepContext:
    job = ProvisionJob.new(target="device", site="north-7", profile_name="fw-test", profile_sha256="0")
    return StepContext(job=job, profile=profile or _profile(), link=link, step="firewall", dry_run=dry_run)


async def _device(state: DeviceState, command: str) -> tuple[int, str]:
    """A command on the device, not through Siteline's link: how the test watches it."""
    code, out, _err = await shell.run_command(state, command, timeout=20)
    return code, out.decode()


async def _filter_rules(state: DeviceState) -> list[str]:
    """iptables-save's and ip6tables-save's filter tables, without their comments and counters."""
    _, out = await _device(state, "iptables-save -t filter; ip6tables-save -t filter")
    return [line.split(" [")[0] for line in out.splitlines() if line and not line.startswith("#")]


async def _reboot(linked: Linked) -> None:
    boots = linked.device.boots
    assert (await _device(linked.state, "reboot"))[0] == 0
    for _ in range(500):
        if linked.device.boots > boots and linked.device.up.is_set():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the device did not come back from its reboot within 10 s")


class NoComeback:
    """A link whose fresh login fails (as when the new rules lock Siteline out); ``delay`` makes it late instead."""

    def __init__(self, inner: TransportProvisionLink, delay: float | None = None) -> None:
        self.inner, self.delay, self.kind = inner, delay, inner.kind

    @property
    def credentials(self) -> Credentials:
        return self.inner.credentials

    async def run(self, command: str, timeout: float) -> Result:
        return await self.inner.run(command, timeout)

    async def reconnect(self, timeout: float) -> None:
        if self.delay is None:
            raise TransportError("connection timed out (test: the new rules keep Siteline out)")
        await asyncio.sleep(self.delay)
        await self.inner.reconnect(timeout)

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return await self.inner.try_login(credentials, timeout)

    def use_credentials(self, credentials: Credentials) -> None:
        self.inner.use_credentials(credentials)

    async def close(self) -> None:
        await self.inner.close()


async def test_confirmation_never_comes_and_the_rules_revert_by_themselves(linked: Linked) -> None:
    state = linked.state
    before = await _filter_rules(state)
    ctx = _context(NoComeback(linked.link), profile=_profile(DEADMAN))
    with pytest.raises(TransportError, match="restores its previous rules by itself"):
        await firewall_step(ctx)  # the job would be saved "interrupted"
    _, live = await _device(state, "iptables -S OUTPUT")
    applied = time.monotonic()
    assert live.splitlines()[0] == "-P OUTPUT DROP"  # the baseline is in, and nobody will confirm it
    while await _filter_rules(state) != before:  # Siteline does nothing from here: the device reverts alone
        assert time.monotonic() - applied < DEADMAN + 5, "the device did not restore its rules by itself"
        await asyncio.sleep(0.1)
    assert INPUT_RULE in before
    # The switch calls it reverted only once its restore has worked: the rename follows the restore closely.
    while (await _device(state, f"test -e {FILES}/firewall.reverted && {NO_PENDING}"))[0] != 0:
        assert time.monotonic() - applied < DEADMAN + 8, "the switch restored the rules but never said so"
        await asyncio.sleep(0.1)
    assert (await _device(state, f"systemctl is-active -q {UNIT}.timer"))[0] != 0
    assert (await _device(state, f"test -e {firewall.RULES_V4}"))[0] != 0  # never persisted
    assert "firewall" not in ctx.job.data


async def test_applied_confirmed_persisted_then_skipped(linked: Linked) -> None:
    state = linked.state
    ctx = _context(linked.link)
    outcome = await firewall_step(ctx)
    rules = iptables_rules(allow_list(ctx.profile), 4)
    assert not outcome.skipped
    assert "OUTPUT policy DROP" in outcome.detail
    assert outcome.evidence["backend"] == "iptables"
    assert outcome.evidence["rules"] == len(allow_list(ctx.profile))
    assert len(str(outcome.evidence["previous_sha256"])) == 64
    assert ctx.job.data["firewall"]["confirmed"] is True
    _, live = await _device(state, "iptables -S")
    assert "-P OUTPUT DROP" in live
    assert INPUT_RULE in live.splitlines()
    assert all(rule in live.splitlines() for rule in rules)
    persisted = rootfs.device_file(state.root, firewall.RULES_V4).read_text()  # in the device's state dir
    assert ":OUTPUT DROP [0:0]" in persisted
    assert INPUT_RULE in persisted
    assert (await _device(state, f"systemctl is-active -q {UNIT}.timer"))[0] != 0  # disarmed
    assert (await _device(state, "systemctl list-timers --no-legend"))[1].strip() == ""
    assert (await _device(state, f"test -e {FILES}/firewall.confirmed && {NO_PENDING}"))[0] == 0
    _, v6 = await _device(state, "ip6tables -S OUTPUT")
    assert v6.splitlines()[:1] == ["-P OUTPUT DROP"]
    assert "-A OUTPUT -p ipv6-icmp -j ACCEPT" in v6.splitlines()
    again = await firewall_step(_context(linked.link))
    assert again.skipped


async def test_a_resumed_run_confirms_what_the_interrupted_one_applied_and_persists(serial: Linked) -> None:
    linked = serial
    profile = _profile()
    with pytest.raises(TransportError):
        await firewall_step(_context(NoComeback(linked.link), profile=profile))  # the cable pulled at the login
    resumed = await firewall_step(_context(linked.link, profile=profile))
    assert "confirmed the baseline an interrupted run applied" in resumed.detail
    assert (await _device(linked.state, f"systemctl is-active -q {UNIT}.timer"))[0] != 0
    assert (await _device(linked.state, f"test -e {FILES}/firewall.confirmed"))[0] == 0
    _, persisted = await _device(linked.state, f"cat {firewall.RULES_V4}")
    assert ":OUTPUT DROP [0:0]" in persisted
    _, live = await _device(linked.state, "iptables -S OUTPUT")
    assert live.splitlines() == ["-P OUTPUT DROP", *iptables_rules(allow_list(profile), 4)]
    assert (await firewall_step(_context(linked.link, profile=profile))).skipped
    # Live but not persisted (as if the link dropped between the confirm and the persist): persisted, no new switch.
    # Removed through the link's own shell: each device shell has its own /etc overlay mount, and a file removed
    # under another one's feet reads back there as a stale file handle.
    assert (await linked.link.run(f"rm {firewall.RULES_V4}", 10)).ok
    ctx = _context(linked.link, profile=profile)
    assert "already live" in (await firewall_step(ctx)).detail
    assert not any("systemd-run" in p.command or "iptables-restore" in p.command for p in ctx.plan)
    assert rootfs.device_file(linked.state.root, firewall.RULES_V4).exists()
    await _reboot(linked)  # the persisted rules are what the device boots with
    _, booted = await _device(linked.state, "iptables -S OUTPUT")
    assert booted.splitlines() == live.splitlines()


async def test_confirm_after_the_device_reverted_says_so(serial: Linked) -> None:
    before = await _filter_rules(serial.state)
    with pytest.raises(StepFailedError, match="already restored its previous firewall rules"):
        await firewall_step(_context(NoComeback(serial.link, delay=DEADMAN + 1.5), profile=_profile(DEADMAN)))
    assert await _filter_rules(serial.state) == before


async def test_nft_device_gets_a_table_of_its_own(serial: Linked) -> None:
    state = serial.state
    own = "table ip vendor {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
    assert (await _device(state, f"printf '%s' '{own}' | nft -f -"))[0] == 0
    ctx = _context(serial.link)
    outcome = await firewall_step(ctx)
    assert outcome.evidence["backend"] == "nft"
    _, ruleset = await _device(state, "nft list ruleset")
    assert ruleset == own + nft_table(allow_list(ctx.profile))
    # Only our table is persisted, in a file of its own that the boot configuration includes.
    _, persisted = await _device(state, f"cat {firewall.NFT_INCLUDE}")
    assert persisted == nft_script(allow_list(ctx.profile))
    _, conf = await _device(state, f"cat {firewall.NFT_CONF}")
    assert conf.splitlines()[0] == "#!/usr/sbin/nft -f"
    assert f'include "{firewall.NFT_INCLUDE}"' in conf.splitlines()
    assert "vendor" not in conf
    assert outcome.evidence["persisted"] == [firewall.NFT_INCLUDE, firewall.NFT_CONF]
    assert outcome.evidence["ipv6"] == "covered"
    _, v4 = await _device(state, "iptables -S OUTPUT")
    assert v4.splitlines() == ["-P OUTPUT ACCEPT"]  # iptables untouched on an nft device
    assert (await firewall_step(_context(serial.link))).skipped
    await _reboot(serial)  # the vendor's table was never persisted (not ours to); ours comes back
    _, booted = await _device(state, "nft list ruleset")
    assert booted == nft_table(allow_list(ctx.profile))


async def test_dry_run_plans_everything_and_changes_nothing(serial: Linked) -> None:
    before = await _filter_rules(serial.state)
    ctx = _context(serial.link, dry_run=True)
    outcome = await firewall_step(ctx)
    assert outcome.detail.startswith("dry run")
    planned = "\n".join(p.command for p in ctx.plan)
    for word in ("iptables-save >", "systemd-run --on-active=30s", "iptables-restore -w 10 <", "firewall.pending.",
                 f"mv {FILES}/firewall.pending", firewall.RULES_V4):
        assert word in planned
    assert await _filter_rules(serial.state) == before
    assert (await _device(serial.state, f"test -e {FILES}/firewall.prev || test -e {FILES}/firewall.pending"))[0] != 0
    assert (await _device(serial.state, "systemctl list-timers --no-legend"))[1].strip() == ""


async def test_a_reboot_before_the_confirm_loses_the_new_rules_and_the_timer(serial: Linked) -> None:
    profile = _profile()
    with pytest.raises(TransportError):
        await firewall_step(_context(NoComeback(serial.link), profile=profile))
    assert (await _device(serial.state, f"systemctl is-active -q {UNIT}.timer"))[0] == 0
    await _reboot(serial)
    assert (await _device(serial.state, f"systemctl is-active -q {UNIT}.timer"))[0] != 0
    _, live = await _device(serial.state, "iptables -S OUTPUT")
    assert live.splitlines() == ["-P OUTPUT ACCEPT"]  # never persisted: gone with the reboot, as on hardware


async def test_a_revert_cut_short_is_run_again_before_a_new_apply(tmp_path: Path) -> None:
    async for ssh in _linked(tmp_path, "ssh"):
        state = ssh.state
        before = await _filter_rules(state)
        with pytest.raises(TransportError):
            await firewall_step(_context(NoComeback(ssh.link)))
        # As if the switch's service was killed between its claim and its restore: claimed, rules still new.
        claim = (f"systemctl stop {UNIT}.timer; for f in {FILES}/firewall.pending.*; do "
                 f'mv "$f" "{FILES}/firewall.reverting.${{f##*.}}"; done')
        assert (await _device(state, claim))[0] == 0
        assert await _filter_rules(state) != before
        ctx = _context(ssh.link)
        outcome = await firewall_step(ctx)
        assert "applied behind" in outcome.detail  # restored first (not confirmed as is), then applied afresh
        plan = [p.command for p in ctx.plan]
        assert any("firewall.reverting." in c and "firewall-revert." in c for c in plan)
        _, prev = await _device(state, f"cat {FILES}/firewall.prev")
        assert ":OUTPUT ACCEPT" in prev  # what the new switch would restore: the rules from before both runs
        assert (await _device(state, f"! ls {FILES}/firewall.reverting.* >/dev/null 2>&1 && {NO_PENDING}"))[0] == 0
