"""A full provisioning run changes the simulated device, never the machine running the tests.

Provisioning is the most invasive thing Siteline does to a device: it sets the hostname, replaces root's
password, writes files under /etc/siteline, and loads a firewall whose OUTPUT policy is DROP. Against the
simulator every one of those must land in the device's state directory. This test takes a snapshot of what a
leak would change on the host (hostname, /etc/hostname, users and passwords, the host's firewall, the names in
/ and /etc) before and after a complete run, and compares them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from tests.integration.test_provision_e2e import device_file, device_with_factory_login, keep_for, provision_core

pytestmark = [pytest.mark.asyncio]


def _digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return f"unreadable: {type(exc).__name__}"


def _ruleset(tool: str, *args: str) -> str:
    exe = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if exe is None:
        return "absent"
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, check=False)
    if out.returncode != 0:
        return f"unreadable: exit {out.returncode}"
    # iptables-save's comment lines carry the time it ran
    return hashlib.sha256("\n".join(x for x in out.stdout.splitlines() if not x.startswith("#")).encode()).hexdigest()


def leaks() -> list[str]:
    """Device paths that must never exist on the host."""
    return [p for p in ("/etc/siteline", "/data") if os.path.lexists(p)]


def host_snapshot() -> dict[str, object]:
    return {
        "device paths on the host": leaks(),
        "hostname": socket.gethostname(),
        "/etc/hostname": _digest("/etc/hostname"),
        "/etc/passwd": _digest("/etc/passwd"),
        "/etc/shadow": _digest("/etc/shadow"),
        "/etc/group": _digest("/etc/group"),
        "/etc/hosts": _digest("/etc/hosts"),
        "iptables-save": _ruleset("iptables-save"),
        "ip6tables-save": _ruleset("ip6tables-save"),
        "nft list ruleset": _ruleset("nft", "list", "ruleset"),
        "/ names": sorted(os.listdir("/")),
        "/etc names": sorted(os.listdir("/etc")),
    }


@pytest.mark.timeout(240)
async def test_a_full_provisioning_run_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    before = host_snapshot()
    assert not before["device paths on the host"], f"on the host before the test (an earlier leak): {before}"
    async with device_with_factory_login(tmp_path) as (state, tty, profile), keep_for(tmp_path) as keep:
        job = await provision_core(tmp_path, tty, profile, keep)
        factory = profile.credentials.factory[0]
        factory_works = state.check_password(factory.user, factory.password)
        device_hostname = device_file(state, "/etc/hostname").read_text().strip()
    after = host_snapshot()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"provisioning a simulated device changed the host: {changed}"
    assert not after["device paths on the host"], "a device file landed on the host"
    # Checked after the host: a run that stops half-way must not have touched the host either.
    assert job.status == "provisioned", f"{job.status}: {job.message}"
    assert not factory_works, "the device still takes its factory password"
    # ... and the changes are real, on the device: had they leaked, the snapshot would have seen them.
    assert device_hostname == job.device != after["hostname"]
