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
    # /run is a fresh tmpfs (only the guard's fstab and util-linux's own mount table), so no systemd or D-Bus
    # socket is in reach; PID 1 is the device's init shell.
    assert lines[:3] == [Path(hostguard.FSTAB).name, "mount", "sh"]
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


# -- the device's own /dev ---------------------------------------------------------------------------
DEVICE_DEV = {".nodes", "fd", "full", "mapper", "mmcblk0p2", "mmcblk0p3", "null", "ptmx", "pts", "random", "shm",
              "stderr", "stdin", "stdout", "tty", "urandom", "zero"}


def _host_disks() -> list[str]:
    """The host's block devices (names under /sys/block whose /dev node exists here)."""
    return sorted(p.name for p in Path("/sys/block").iterdir() if Path("/dev", p.name).is_block_device())


def private_dev(command: str) -> str:
    """``command`` after the shell has shown that its /dev is not the host's (another inode, another mount ns)."""
    st = os.stat("/dev")
    return isolated("mnt", f'[ "$(/usr/bin/stat -c %d:%i /dev)" != "{st.st_dev}:{st.st_ino}" ] || '
                           f"exit {NOT_ISOLATED}\n{command}")


def test_dev_holds_only_the_device(device: DeviceState) -> None:
    code, out, err = sh(device, private_dev("/bin/ls -A /dev; echo --; /bin/ls -A /dev/mapper; "
                                            "echo x >/dev/null && head -c 8 /dev/urandom | wc -c"))
    assert code == 0, err
    listing, rest = out.split("--\n")
    assert set(listing.split()) == DEVICE_DEV
    assert rest.split() == ["control", "data", "8"]
    assert not set(listing.split()) & set(_host_disks())


def test_host_disk_is_out_of_reach(device: DeviceState) -> None:
    disks = _host_disks()
    if not disks:
        pytest.skip("this host shows no block device under /sys/block")
    name = disks[0]
    host = Path("/dev", name)
    before = os.stat(host)
    # Only after the same shell has shown that /dev is private and the name is no device there (neither a
    # node with the host's numbers nor anything at all) does dd run; else exit 98 and nothing is written.
    dd = shutil.which("dd", path="/usr/bin:/bin")  # the real one: the shim (below) would refuse the path
    guard = (f'[ -e /dev/{name} ] && exit 98; [ -b /dev/{name} ] && exit 98; '
             f"{dd} if=/dev/zero of=/dev/{name} bs=1 count=1 2>/dev/null; echo rc=$?")
    code, out, err = sh(device, private_dev(guard))
    assert code == 0, (code, err)
    assert out == "rc=0\n"  # a plain file in the device's /dev: the state directory
    assert (device.root / "rootfs/dev" / name).read_bytes() == b"\0"
    after = os.stat(host)
    assert (after.st_rdev, after.st_ino, after.st_mode) == (before.st_rdev, before.st_ino, before.st_mode)
    assert host.is_block_device()


def test_slot_device_write_lands_in_the_state_dir(device: DeviceState, tmp_path: Path) -> None:
    image = tmp_path / "slot.img"
    image.write_bytes(os.urandom(70_000))
    slot = device.root / "rootfs/dev/mmcblk0p3"
    assert slot.stat().st_size == 8 * 1024 * 1024  # made with the device, sparse
    code, _, err = sh(device, private_dev(f"/bin/dd if={image} of=/dev/mmcblk0p3 bs=4M conv=fsync 2>/dev/null && "
                                          "[ ! -b /dev/mmcblk0p3 ]"))
    assert code == 0, err
    assert slot.read_bytes() == image.read_bytes()
    assert not Path("/dev/mmcblk0p3").exists() or Path("/dev/mmcblk0p3").is_block_device()


def test_terminal_and_pty_work_inside(device: DeviceState) -> None:
    # The simulator's consoles and SSH shells are host ptys: the device's /dev/pts is the host's devpts.
    script = "import os; m, s = os.openpty(); print(os.ttyname(s).startswith('/dev/pts/'))"
    code, out, err = sh(device, f'python3 -c "{script}"')
    assert code == 0, err
    assert out == "True\n"


def test_kernel_knobs_are_read_only_and_sysrq_is_gone(device: DeviceState) -> None:
    # Only looked at, never written: a failed guard must not let this test reboot the machine.
    mounts = "/bin/grep -E ' /(proc/sys|sys) ' /proc/self/mountinfo | /usr/bin/awk '{print $5, $6}'"
    code, out, err = sh(device, f"{mounts}; [ -e /proc/sysrq-trigger ] && "
                                "/usr/bin/stat -c %t:%T /proc/sysrq-trigger || echo none")
    assert code == 0, err
    *lines, sysrq = out.splitlines()
    top = {point: opts for point, opts in (line.split() for line in lines)}  # the last mount at a point wins
    assert top["/proc/sys"].startswith("ro,"), lines
    assert top["/sys"].startswith("ro,"), lines
    assert sysrq in ("1:3", "none")  # /dev/null's numbers: SysRq writes go nowhere


def _dev_writer_args(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    """What the dd shim (as a device without the namespace runs it) would pass to the real dd: run with
    `printf` in place of dd, so no argument is ever written to, whatever the mapping does."""
    state = DeviceState.open(tmp_path / "plain", name="gw-plain", password="pw")
    shim = (state.root / "bin/dd").read_text()
    dd = shutil.which("dd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert shim.count(f"exec {dd} ") == 1
    probe = tmp_path / "dd-probe"
    probe.write_text(shim.replace(f"exec {dd} ", "exec printf '%s\\n' "))
    done = subprocess.run(["/bin/sh", str(probe), *args], capture_output=True, text=True, timeout=10, check=False)
    return done.returncode, done.stdout.splitlines(), done.stderr


def test_dd_shim_maps_slot_paths_and_refuses_host_devices(tmp_path: Path) -> None:
    code, argv, err = _dev_writer_args(tmp_path, "if=/tmp/x.img", "of=/dev/mmcblk0p3", "bs=4M", "conv=fsync")
    assert code == 0, err
    slot = tmp_path / "plain/rootfs/dev/mmcblk0p3"
    assert argv == ["if=/tmp/x.img", f"of={slot.resolve()}", "bs=4M", "conv=fsync"]
    assert _dev_writer_args(tmp_path, "if=/dev/zero", "of=/dev/null")[1] == ["if=/dev/zero", "of=/dev/null"]
    for host in ("of=/dev/sda", "if=/dev/vda", "/dev/nvme0n1", "of=/dev/mmcblk0p3/../sda", "of=/dev/mapper"):
        code, argv, err = _dev_writer_args(tmp_path, "if=/dev/zero", host)
        assert (code, argv) == (1, []), host
        assert "refusing to touch the host's" in err or "without .." in err


def test_slot_files_never_follow_a_planted_link(tmp_path: Path) -> None:
    from siteline.simulator import slots

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    root = tmp_path / "state"
    (root / "rootfs/dev").mkdir(parents=True)
    (root / "rootfs/dev/mmcblk0p2").symlink_to(victim)
    slots.ensure_slot_files(root)
    assert victim.read_bytes() == b"keep"
    assert (root / "rootfs/dev/mmcblk0p3").stat().st_size == slots.SLOT_FILE_SIZE


def test_old_overlay_work_dirs_are_not_looked_for_through_a_planted_link(tmp_path: Path) -> None:
    # The state dir is writable by device commands: <state>/.overlay-work may now lead to a host folder whose
    # w.* entries the cleanup would delete.
    outside = tmp_path / "outside"
    (outside / "w.keep").mkdir(parents=True)
    root = tmp_path / "state"
    root.mkdir()
    (root / hostguard.WORK_DIR).symlink_to(outside)
    hostguard._forget_old_work_dirs(root)
    assert (outside / "w.keep").is_dir()


def test_a_planted_link_turns_a_device_folder_into_an_empty_read_only_one(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    fs = tmp_path / "state" / "rootfs"
    (fs / "var").mkdir(parents=True)
    (fs / "var/tmp").symlink_to(outside)
    (fs / "data").mkdir()
    assert hostguard._device_dir_row(fs, fs / "var/tmp", Path("/var/tmp"))[2:] == ("tmpfs", "ro,mode=0755,size=4k")
    assert hostguard._device_dir_row(fs, fs / "data", Path("/data")) == (os.path.realpath(fs / "data"), "/data",
                                                                         "none", "bind")


def test_the_sim_refuses_to_write_its_sshd_drop_in_through_a_planted_link(tmp_path: Path) -> None:
    from siteline.simulator import rootfs, runner

    state = DeviceState.open(tmp_path / "dev", name="gw-link", password="pw")
    outside = tmp_path / "outside"
    outside.mkdir()
    ssh = rootfs.rootfs(state.root) / "etc/ssh"
    if ssh.exists():
        shutil.rmtree(ssh)
    ssh.parent.mkdir(parents=True, exist_ok=True)
    ssh.symlink_to(outside)
    (outside / "sshd_config.d").mkdir()
    with pytest.raises(runner.SimSetupError, match="leads out of the state directory"):
        runner._write_sshd_drop_in(state, keys_only=True)
    assert not any((outside / "sshd_config.d").iterdir())
