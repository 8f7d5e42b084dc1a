"""Review: the firewall step's persisted rules against what the device actually runs with once confirmed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.integration.test_provision_firewall import (
    DEADMAN,
    FILES,
    Linked,
    NoComeback,
    _context,
    _device,
    _filter_rules,
    _linked,
    _profile,
    _reboot,
)

from siteline.core.errors import TransportError
from siteline.core.provisioning import firewall
from siteline.core.provisioning.api import StepFailedError
from siteline.core.provisioning.firewall import firewall_step
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.transports.base import Result
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio

FIRST_DEADMAN = 12.0  # run 1's switch: long enough for run 2 to reach its marker first
# (F2: was 6 s; run 2 takes 4-5 s to its marker on an idle machine and more under -n 2, so the test skipped
# even against the unfixed code.)
NAT_RULE = "-A POSTROUTING -o wwan0 -j MASQUERADE"  # a gateway sharing its uplink: what the LAN side lives on


@pytest_asyncio.fixture
async def ssh(tmp_path: Path) -> AsyncIterator[Linked]:
    async for linked in _linked(tmp_path, "ssh"):
        yield linked


async def test_persisted_rules_keep_the_devices_nat_table(ssh: Linked) -> None:
    # The gateway's own NAT, live and persisted the way iptables-persistent does it.
    state = ssh.state
    assert (await _device(state, f"iptables -t nat {NAT_RULE}"))[0] == 0
    assert (await _device(state, f"mkdir -p /etc/iptables && iptables-save > {firewall.RULES_V4}"))[0] == 0
    outcome = await firewall_step(_context(ssh.link))
    assert not outcome.skipped
    _, live_nat = await _device(state, "iptables -t nat -S POSTROUTING")
    assert NAT_RULE in live_nat.splitlines()  # the confirmed, running rules still have it ...
    persisted = rootfs.device_file(state.root, firewall.RULES_V4).read_text()
    assert NAT_RULE in persisted, "the rules persisted for the next boot lost the nat table the device runs with"
    await _reboot(ssh)
    _, booted_nat = await _device(state, "iptables -t nat -S POSTROUTING")
    assert NAT_RULE in booted_nat.splitlines(), "after a reboot the gateway no longer masquerades its LAN"


@pytest_asyncio.fixture
async def serial(tmp_path: Path) -> AsyncIterator[Linked]:
    async for linked in _linked(tmp_path, "serial"):
        yield linked


async def test_the_nft_revert_undoes_only_the_siteline_table(serial: Linked) -> None:
    # The apply only adds `table inet siteline`; the revert reloads a snapshot of the WHOLE ruleset
    # ("flush ruleset" + `nft list ruleset`). Whatever another service changed in the window (NetworkManager's
    # shared-connection NAT, fail2ban's bans, docker) is silently wiped; and a listing nft cannot read back
    # (iptables-nft's xt compat expressions) makes the restore fail as a whole, leaving policy drop in place.
    state = serial.state
    vendor = "table ip vendor {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
    assert (await _device(state, f"printf '%s' '{vendor}' | nft -f -"))[0] == 0
    with pytest.raises(TransportError):
        await firewall_step(_context(NoComeback(serial.link), profile=_profile(DEADMAN)))
    _, ruleset = await _device(state, "nft list ruleset")
    assert f"table inet {firewall.NFT_TABLE}" in ruleset
    later = ("table ip nm-shared-wlan0 {\n\tchain nat_postrouting {\n"
             "\t\ttype nat hook postrouting priority srcnat;\n\t}\n}\n")
    assert (await _device(state, f"printf '%s' '{later}' | nft -f -"))[0] == 0  # a service, during the window
    applied = time.monotonic()
    while f"table inet {firewall.NFT_TABLE}" in (await _device(state, "nft list ruleset"))[1]:
        assert time.monotonic() - applied < DEADMAN + 5, "the device did not revert by itself"
        await asyncio.sleep(0.1)
    _, reverted = await _device(state, "nft list ruleset")
    assert "table ip vendor" in reverted
    assert "table ip nm-shared-wlan0" in reverted, "the revert wiped a table another service added meanwhile"


class StallsAfterPending(NoComeback):
    """A link that stalls right after the new "pending" marker is made (a slow serial line), until the
    interrupted run's revert timer is due (and past it); its fresh login then fails (the new rules keep it out).

    (Fix F2: the marker is now "firewall.pending.<token>", and a fixed run stops run 1's timer so it never
    fires and never writes firewall.reverted; the stall therefore waits out run 1's deadline instead of
    watching for that file. The unfixed code still fails here: its stale timer claims run 2's marker.)"""

    def __init__(self, inner: TransportProvisionLink, state: DeviceState, due: float) -> None:
        super().__init__(inner)
        self.state, self.due, self.interleaved = state, due, False

    async def run(self, command: str, timeout: float) -> Result:
        result = await self.inner.run(command, timeout)
        if command.startswith(": > ") and f"{FILES}/firewall.pending" in command and time.monotonic() < self.due:
            await asyncio.sleep(self.due - time.monotonic() + 1.0)  # run 1's timer (if still armed) fires now
            self.interleaved = True
        return result


async def test_a_stale_revert_timer_cannot_disarm_the_next_apply(ssh: Linked) -> None:
    # Run 1 is cut off at its login (its switch armed); the technician fixes the profile and runs again at once,
    # as the error message suggests. Run 2 restores by hand but leaves run 1's timer armed, creates the same
    # "pending" name, and only then stops the old timer: when that timer fires in between, it claims run 2's
    # marker, run 2's own timer later finds nothing to claim, and run 2's rules stay with no switch at all.
    state = ssh.state
    before = await _filter_rules(state)
    with pytest.raises(TransportError):
        await firewall_step(_context(NoComeback(ssh.link), profile=_profile(FIRST_DEADMAN)))
    due = time.monotonic() + FIRST_DEADMAN  # run 1 armed its timer before this
    fixed = _profile(DEADMAN)
    fixed = dataclasses.replace(fixed, firewall=dataclasses.replace(fixed.firewall, control_plane=("192.0.2.0/24",)))
    link = StallsAfterPending(ssh.link, state, due)
    with pytest.raises((TransportError, StepFailedError)):
        await firewall_step(_context(link, profile=fixed))
    if not link.interleaved:
        pytest.skip("run 1's timer went off before run 2 made its marker: the interleaving was not reached")
    applied = time.monotonic()
    while await _filter_rules(state) != before:  # nobody confirms run 2's rules: the device must revert alone
        if time.monotonic() - applied > DEADMAN + 5:
            _, live = await _device(state, "iptables -S OUTPUT; ls /etc/siteline; systemctl list-timers --no-legend")
            raise AssertionError(f"run 2's unconfirmed rules stayed with no revert armed:\n{live}")
        await asyncio.sleep(0.1)
