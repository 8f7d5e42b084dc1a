"""Host tools called by absolute path from a device command reach only the device's namespaces.

Each dangerous command runs only after the same shell has checked that it really is in a private
namespace (its ns link differs from the test process's), so a broken guard fails the test instead
of rebooting, flushing or killing the machine running it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from siteline.simulator import hostguard
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState

_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOT_ISOLATED = 99


def require_guard() -> None:
    if hostguard.available():
        return
    message = ("the host guard's namespaces are not available here (needs root with CAP_SYS_ADMIN and "
               "unshare): device commands cannot be shown to stay off the host")
    if _IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    require_guard()
    return DeviceState.open(tmp_path / "dev", name="gw-guard", password="pw")


def sh(device: DeviceState, command: str, timeout: float = 20) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(device, command, timeout=timeout))
    return code, out.decode(), err.decode()


def isolated(kind: str, command: str) -> str:
    """``command`` guarded by a check that the shell's ``kind`` namespace is not the host's."""
    host = os.readlink(f"/proc/self/ns/{kind}")
    return f'[ "$(readlink /proc/self/ns/{kind})" != "{host}" ] || exit {NOT_ISOLATED}\n{command}'


def _iptables_save() -> str | None:
    exe = shutil.which("iptables-save", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if exe is None:
        return None
    done = subprocess.run([exe], capture_output=True, text=True, timeout=10, check=False)
    return "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith("#")) if done.returncode == 0 else None


def _lo_up() -> bool:
    return bool(int(Path("/sys/class/net/lo/flags").read_text(), 16) & 0x1)


def test_absolute_reboot_cannot_reach_systemd(device: DeviceState) -> None:
    reboot = shutil.which("reboot", path="/usr/sbin:/sbin")
    if reboot is None:
        pytest.skip("no /sbin/reboot on this host")
    code, out, err = sh(device, isolated("pid", f"/bin/ls -A /run; /bin/cat /proc/1/comm; {reboot}; echo rc=$?"))
    assert code == 0, err
    lines = out.splitlines()
    # /run is a fresh tmpfs (only util-linux's own mount table), so no systemd or D-Bus socket is in
    # reach; PID 1 is the device's init shell.
    assert lines[:2] == ["mount", "sh"]
    assert lines[-1] != "rc=0"


def test_absolute_iptables_flush_stays_in_the_device(device: DeviceState) -> None:
    iptables = shutil.which("iptables", path="/usr/sbin:/sbin")
    if iptables is None:
        pytest.skip("iptables is not installed")
    before = _iptables_save()
    code, _, err = sh(device, isolated("net", f"{iptables} -A INPUT -s 192.0.2.7 -j DROP && {iptables} -F && "
                                              f"{iptables} -A INPUT -s 192.0.2.8 -j DROP"))
    assert code == 0, err
    assert _iptables_save() == before
    assert "192.0.2.8" not in (before or "")


def test_absolute_ip_link_down_stays_in_the_device(device: DeviceState) -> None:
    ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ip is None:
        pytest.skip("iproute2 is not installed")
    assert _lo_up()
    code, out, err = sh(device, isolated("net", f"{ip} -o link show lo; {ip} link set lo down && {ip} -o link show lo"))
    assert code == 0, err
    first, second = out.splitlines()
    assert "state UNKNOWN" in first or ",UP" in first  # the guard brought the device's own lo up
    assert ",UP" not in second
    assert _lo_up()


def test_kill_all_reaches_only_the_device(device: DeviceState) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])  # a host process a root `kill -9 -1` would take down
    try:
        code, out, err = sh(device, isolated("pid", "sleep 30 & kill -9 -1; wait; echo survived"))
        assert code == 0, err
        assert out == "survived\n"
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_commands_see_only_device_processes(device: DeviceState) -> None:
    code, out, err = sh(device, "/bin/ls /proc | grep -c '^[0-9]'")
    assert code == 0, err
    assert int(out) < 10  # init sh, this sh, ls, grep: never the host's processes


def test_namespace_overhead_is_small(device: DeviceState, capsys: pytest.CaptureFixture[str]) -> None:
    sh(device, "true")  # warm the page cache
    started = time.monotonic()
    for _ in range(10):
        sh(device, "true")
    per_call = (time.monotonic() - started) / 10
    with capsys.disabled():
        print(f"\nguarded device command round trip: {per_call * 1000:.1f} ms")
    assert per_call < 0.5, f"a guarded command took {per_call:.3f} s"


def test_root_without_namespaces_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hostguard, "required", lambda: True)
    monkeypatch.setattr(hostguard, "available", lambda: False)
    with pytest.raises(hostguard.HostGuardError, match="CAP_SYS_ADMIN"):
        hostguard.wrap(tmp_path, "gw", ["/bin/true"])
    with pytest.raises(hostguard.HostGuardError):
        hostguard.check()
